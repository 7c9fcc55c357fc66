//! `linecap demo`: the whole path on this machine in a few seconds.

use std::process::ExitCode;
use std::time::Duration;

use linecap::orchestrate::{self, CaptureChild, Identity, TestbedCounters};
use linecap::sys;
use linecap::testbed::{self, Testbed, TestbedOptions};
use linecap::units::Rate;

use crate::{DemoArgs, DemoReceiver, DemoSender, send_line, summary};

fn rate_arg(rate: Rate, size: usize) -> String {
    match rate.pps(size) {
        Some(p) => format!("{p:.0}"),
        None => "max".into(),
    }
}

/// Who sends and who receives, given the options and the privileges.
struct Plan {
    /// The kernel-side generator (xdp-live) sends: it needs the testbed.
    kernel_generator: bool,
    /// An AF_XDP receiver busy-polls veth: it needs the testbed.
    xdp: bool,
}

fn plan(a: &DemoArgs, root: bool) -> Plan {
    let sender = match (a.sender, a.xdp_live) {
        (Some(s), _) => s,
        (None, true) => DemoSender::Kernel,
        // The reference rate needs the kernel-side generator (user-space
        // senders stop near 0.4 Mpps here); it needs the testbed, so root.
        (None, false) if root => DemoSender::Kernel,
        (None, false) => DemoSender::Socket,
    };
    let wanted = a.receiver.unwrap_or(if sender == DemoSender::Kernel {
        DemoReceiver::Xdp
    } else {
        DemoReceiver::Socket
    });
    if wanted == DemoReceiver::Xdp && !root {
        println!("the AF_XDP receiver needs the testbed (root): receiving on a socket instead");
    }
    if sender == DemoSender::Kernel && !root {
        println!("the kernel-side generator needs the testbed (root): sending from a socket instead");
    }
    Plan { kernel_generator: sender == DemoSender::Kernel && root, xdp: wanted == DemoReceiver::Xdp && root }
}

/// The testbed as root (busy-poll placement for the AF_XDP receiver),
/// else nothing: loopback.
fn testbed_for(a: &DemoArgs, plan: &Plan, root: bool) -> anyhow::Result<Option<Testbed>> {
    if !root {
        println!(
            "linecap demo: not root, so no testbed: running over loopback (127.0.0.1) without network namespaces,\n  \
             NAPI placement or veth drop counters; run as root for the realistic setup"
        );
        return Ok(None);
    }
    let mut o = TestbedOptions::new(&testbed::unique_name("demo"));
    // The AF_XDP receiver busy-polls veth's NAPI from its own thread.
    o.placement = if plan.xdp { testbed::Placement::BusyPoll } else { a.placement };
    let tb = Testbed::up(&o)?;
    println!("{}", tb.describe());
    Ok(Some(tb))
}

/// The capture's and the sender's arguments.
fn arguments(a: &DemoArgs, plan: &Plan, tb: Option<&Testbed>, listen: &str) -> (Vec<String>, Vec<String>) {
    let size = a.size as usize;
    let mut cap_args = vec!["--listen".to_string(), listen.to_string(), "--verify".into(), "seq".into()];
    let mut send_args = vec![
        "--to".to_string(),
        listen.to_string(),
        "--size".into(),
        size.to_string(),
        "--rate".into(),
        rate_arg(a.rate, size),
        "--duration".into(),
        format!("{}ms", a.duration.as_millis()),
    ];
    let Some(t) = tb else { return (cap_args, send_args) };
    if sys::online_cpus() > 1 {
        cap_args.extend(["--cpus".into(), t.rx_cpu.to_string()]);
        send_args.extend(["--cpus".into(), t.tx_cpu.to_string()]);
    }
    if plan.kernel_generator {
        send_args.extend(["--backend".into(), "xdp-live".into(), "--iface".into(), t.if_tx.clone()]);
    }
    if plan.xdp {
        cap_args.extend(["--backend", "xdp", "--iface", &t.if_rx, "--busy-poll", "20"].map(String::from));
    }
    (cap_args, send_args)
}

fn announce(a: &DemoArgs, plan: &Plan) {
    let size = a.size as usize;
    println!(
        "receiver: {}\n\
         (others: capture --backend afpacket|uring|xdp); sender: {}\n\
         offering {size}-byte seq payloads at {} for {:.1} s",
        if plan.xdp {
            "AF_XDP (copy mode on veth), busy-polling veth's NAPI from its own thread"
        } else {
            "socket/recvmmsg+gro, the socket backend that loses least on this kind of machine"
        },
        if plan.kernel_generator { "the kernel (xdp-live)" } else { "a socket (sendmmsg)" },
        match a.rate.pps(size) {
            Some(p) => format!("{:.3} Mpps ({:.2} Gbit/s payload)", p / 1e6, p * size as f64 * 8.0 / 1e9),
            None => "the sender's maximum".into(),
        },
        a.duration.as_secs_f64()
    );
}

/// Sends; an older kernel (live frames need 5.18) or no XDP falls back to
/// the socket sender, which still shows the path and the books.
fn send_with_fallback(
    exe: &std::path::Path,
    ns_tx: Option<&str>,
    send_args: &[String],
    kernel_generator: bool,
) -> anyhow::Result<linecap::send::socket::SendReport> {
    match orchestrate::send(exe, ns_tx, send_args) {
        Err(e) if kernel_generator => {
            println!("the kernel-side generator failed ({e:#}): sending from a socket instead");
            let socket_args: Vec<String> =
                send_args.iter().take_while(|a| a.as_str() != "--backend").cloned().collect();
            orchestrate::send(exe, ns_tx, &socket_args)
        }
        r => r,
    }
}

/// Runs the demo; exit status 0 only when the accounting identity holds
/// (3 when it does not: the books of a run are its loss status).
pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    let exe = orchestrate::linecap_exe();
    let root = sys::is_root();
    let plan = plan(&a, root);
    let tb = testbed_for(&a, &plan, root)?;
    let listen = match &tb {
        Some(_) => format!("{}:9000", testbed::RX_ADDR),
        None => {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        }
    };
    let (ns_rx, ns_tx) = match &tb {
        Some(t) => (Some(t.ns_rx.as_str()), Some(t.ns_tx.as_str())),
        None => (None, None),
    };
    let (cap_args, send_args) = arguments(&a, &plan, tb.as_ref(), &listen);
    announce(&a, &plan);
    let before = tb.as_ref().map(TestbedCounters::read).transpose()?;
    let name = format!("demo-{}", std::process::id());
    let cap = CaptureChild::spawn(&exe, ns_rx, &name, &cap_args, sys::stderr_is_tty())?;
    if let (true, Some(t)) = (plan.xdp, &tb) {
        orchestrate::prime_busy_poll(&exe, t, 9000)?;
    }
    let sent = send_with_fallback(&exe, ns_tx, &send_args, plan.kernel_generator)?;
    std::thread::sleep(Duration::from_millis(300));
    let report = cap.stop()?;
    let network = match (&tb, before) {
        (Some(t), Some(b)) => b.drops_from(&TestbedCounters::read(t)?, &report, Some(&sent)),
        _ => Vec::new(),
    };
    println!();
    print!("{}", summary(&report));
    println!("{}", send_line(&sent));
    let size = a.size as usize;
    if let Some(target) = a.rate.pps(size)
        && sent.pps < 0.95 * target
        && !plan.kernel_generator
    {
        println!(
            "note: this machine's user-space socket sender reached {:.3} Mpps of the {:.3} Mpps asked for (one core);\n      \
             `sudo linecap demo` offers it with the kernel-side generator, to a busy-polling AF_XDP receiver",
            sent.pps / 1e6,
            target / 1e6
        );
    }
    if let Some(t) = &tb {
        println!("({})", t.placement.label());
    }
    let id = Identity::close(&sent, &report, &network);
    println!("accounting: {}", id.line());
    Ok(if id.holds() { ExitCode::SUCCESS } else { ExitCode::from(crate::strict::exit::LOSS) })
}
