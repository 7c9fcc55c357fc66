//! A two-host network on one machine: namespaces `<name>-tx` and
//! `<name>-rx` joined by a veth pair, addresses in the RFC 2544 benchmark
//! range 198.18.0.0/15, static neighbour entries (no ARP on the path),
//! IPv6 off.
//!
//! Placement of the receive-side kernel work matters for every figure.
//! On a plain veth the receiving half of the kernel path runs inside the
//! *sender's* `send` call, on the sender's CPU, which makes every receiver
//! look cheap. The default [`Placement::Napi`] makes veth behave like a NIC:
//! GRO on the receiving veth gives it a NAPI context, threaded NAPI turns
//! that into a kernel thread `napi/<if>-<id>`, and that thread is pinned to
//! the receive core. [`Placement::Sender`] keeps the unrealistic default and
//! is labelled as such wherever figures are printed.
//!
//! [`Testbed`] removes everything it created when dropped, unless it was
//! made persistent (`linecap testbed up`).

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use crate::stats::kernel::{self, IfaceCounters};
use crate::sys;

/// Real-time priority of the receiving veth's NAPI thread (as `chrt -f 50`).
pub const NAPI_FIFO_PRIORITY: i32 = 50;

/// Address of the sending side.
pub const TX_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of the receiving side.
pub const RX_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Where the receive-side kernel work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Realistic: a threaded NAPI context pinned to the receive core, as with a NIC.
    Napi,
    /// Unrealistic: veth's default, the receive path runs on the sender's CPU.
    Sender,
    /// For busy-polling receivers (`capture --busy-poll`): no NAPI thread;
    /// the device defers its softirq work (`napi_defer_hard_irqs` 2,
    /// `gro_flush_timeout` 10 ms) so the receiver's own thread runs it.
    #[value(name = "busy-poll")]
    #[serde(rename = "busy-poll")]
    BusyPoll,
}

/// `gro_flush_timeout` of the busy-poll placement: how long the device
/// waits for the busy poller before its softirq takes over again (10 ms
/// beat 200 µs on this machine: each busy poll got cheaper, ~1.4 µs vs 10).
pub const BUSY_POLL_FLUSH_NS: u64 = 10_000_000;
/// `napi_defer_hard_irqs` of the busy-poll placement.
pub const BUSY_POLL_DEFER_IRQS: u32 = 2;

impl Placement {
    /// A label to print beside every figure.
    pub fn label(&self) -> &'static str {
        match self {
            Placement::Napi => "realistic placement: receive work on the receive core (threaded NAPI)",
            Placement::Sender => "UNREALISTIC placement: receive work runs on the sender's CPU",
            Placement::BusyPoll => {
                "busy-poll placement: receive work runs in the busy-polling receiver's thread, on the receive core"
            }
        }
    }
}

/// How to build a testbed.
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    /// Base name (namespaces `<name>-tx`, `<name>-rx`): at most 12 of `[a-z0-9-]`.
    pub name: String,
    /// Placement of receive work.
    pub placement: Placement,
    /// The receive core (NAPI thread and receivers).
    pub rx_cpu: usize,
    /// The send core.
    pub tx_cpu: usize,
    /// Queues of each veth end (veth picks the receive queue of an XDP
    /// frame by the sending CPU, of an skb by its transmit queue).
    pub queues: u32,
    /// Run the NAPI thread at SCHED_FIFO (as softirq preempts a receiver on
    /// a NIC host); false leaves it at normal priority, as many hosts run
    /// their softirq work in ksoftirqd.
    pub napi_fifo: bool,
}

impl TestbedOptions {
    /// Defaults for this machine: receive on the last CPU, send on the first.
    pub fn new(name: &str) -> Self {
        let n = sys::online_cpus();
        Self {
            name: name.to_string(),
            placement: Placement::Napi,
            rx_cpu: n.saturating_sub(1),
            tx_cpu: 0,
            queues: 1,
            napi_fifo: true,
        }
    }
}

/// A running testbed.
#[derive(Debug)]
pub struct Testbed {
    /// Base name.
    pub name: String,
    /// Sending namespace.
    pub ns_tx: String,
    /// Receiving namespace.
    pub ns_rx: String,
    /// veth end in the sending namespace.
    pub if_tx: String,
    /// veth end in the receiving namespace.
    pub if_rx: String,
    /// Placement in force.
    pub placement: Placement,
    /// Receive core.
    pub rx_cpu: usize,
    /// Send core.
    pub tx_cpu: usize,
    /// Queues of each veth end.
    pub queues: u32,
    /// The NAPI kernel thread (the first queue's), with [`Placement::Napi`].
    pub napi_pid: Option<i32>,
    /// Whether the NAPI threads run at SCHED_FIFO.
    pub napi_fifo: bool,
    persistent: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call (for parallel tests).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 1_000_000)
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 12
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(crate::EngineError::InvalidConfig(format!(
            "testbed name '{name}' must be 1-12 characters of a-z, 0-9 and '-'"
        ))
        .into());
    }
    Ok(())
}

/// Runs `ip` (or another command) and returns stdout, with stderr in the error.
fn run(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow::anyhow!("'{cmd}' not found: install iproute2 (apt-get install iproute2)")
        } else {
            anyhow::anyhow!("cannot run {cmd}: {e}")
        }
    })?;
    if !out.status.success() {
        bail!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a network namespace of that name exists.
pub fn netns_exists(ns: &str) -> bool {
    std::path::Path::new(&format!("/var/run/netns/{ns}")).exists()
}

/// Fails with a one-line message unless we may create namespaces and links.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("{what} needs CAP_NET_ADMIN and CAP_SYS_ADMIN (network namespaces, veth): run as root");
    }
    Ok(())
}

/// Writes a sysfs file of an interface inside a namespace (`ip netns exec`
/// mounts that namespace's sysfs, where the interface is visible).
fn write_netns_sysfs(ns: &str, path: &str, value: &str) -> anyhow::Result<()> {
    run("ip", &["netns", "exec", ns, "sh", "-c", &format!("echo {value} > {path}")]).map(drop)
}

fn read_netns_sysfs(ns: &str, path: &str) -> Option<String> {
    run("ip", &["netns", "exec", ns, "cat", path]).ok().map(|s| s.trim().to_string())
}

fn mac_of(ns: &str, ifname: &str) -> anyhow::Result<String> {
    let out = run("ip", &["-n", ns, "-br", "link", "show", "dev", ifname])?;
    out.split_whitespace()
        .nth(2)
        .map(str::to_string)
        .with_context(|| format!("no MAC address for {ifname} in {ns}"))
}

/// Finds the threaded NAPI kernel thread of an interface (`napi/<if>-<id>`;
/// /proc shows kernel threads' full names).
pub fn find_napi_thread(ifname: &str) -> Option<i32> {
    find_napi_threads(ifname).into_iter().min()
}

/// Every threaded NAPI kernel thread of an interface (one per queue).
pub fn find_napi_threads(ifname: &str) -> Vec<i32> {
    let prefix = format!("napi/{ifname}-");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.trim().starts_with(&prefix).then_some(pid)
        })
        .collect()
}

impl Testbed {
    /// Builds the testbed. On any failure, what was created is removed.
    pub fn up(opts: &TestbedOptions) -> anyhow::Result<Self> {
        validate_name(&opts.name)?;
        require_root("the testbed")?;
        let name = opts.name.clone();
        let tb = Testbed {
            ns_tx: format!("{name}-tx"),
            ns_rx: format!("{name}-rx"),
            if_tx: format!("{name}t"),
            if_rx: format!("{name}r"),
            name,
            placement: opts.placement,
            rx_cpu: opts.rx_cpu,
            tx_cpu: opts.tx_cpu,
            queues: opts.queues.max(1),
            napi_fifo: opts.napi_fifo,
            napi_pid: None,
            persistent: false,
        };
        if netns_exists(&tb.ns_tx) || netns_exists(&tb.ns_rx) {
            bail!(
                "testbed '{}' already exists: remove it with 'linecap testbed down --name {}'",
                tb.name,
                tb.name
            );
        }
        // From here on, Drop cleans up whatever exists.
        let mut tb = tb;
        tb.build()?;
        Ok(tb)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        self.wire()?;
        if self.placement != Placement::Sender {
            self.place_receive_work()?;
        }
        Ok(())
    }

    /// Namespaces, the veth pair, addresses, routes and static neighbours.
    fn wire(&mut self) -> anyhow::Result<()> {
        let (ntx, nrx, itx, irx) = (&self.ns_tx, &self.ns_rx, &self.if_tx, &self.if_rx);
        run("ip", &["netns", "add", ntx])?;
        run("ip", &["netns", "add", nrx])?;
        let q = self.queues.max(1).to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                itx,
                "netns",
                ntx,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                irx,
                "netns",
                nrx,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
        )?;
        for (ns, ifname, addr) in [(ntx, itx, TX_ADDR), (nrx, irx, RX_ADDR)] {
            let ns = ns.clone();
            kernel::in_netns(&ns, || {
                // No IPv6: no router solicitations or DAD on the measured path.
                let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
                let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
            })?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", ifname])?;
            run("ip", &["-n", &ns, "link", "set", "dev", ifname, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "dev", "lo", "up"])?;
            // Multicast groups (`capture --join`) route over the veth.
            run("ip", &["-n", &ns, "route", "add", "224.0.0.0/4", "dev", ifname])?;
        }
        let mac_tx = mac_of(ntx, itx)?;
        let mac_rx = mac_of(nrx, irx)?;
        let rx_s = RX_ADDR.to_string();
        let tx_s = TX_ADDR.to_string();
        run(
            "ip",
            &["-n", ntx, "neigh", "replace", &rx_s, "lladdr", &mac_rx, "dev", itx, "nud", "permanent"],
        )?;
        run(
            "ip",
            &["-n", nrx, "neigh", "replace", &tx_s, "lladdr", &mac_tx, "dev", irx, "nud", "permanent"],
        )?;
        Ok(())
    }

    /// Where receive work runs: the receiving veth's NAPI deferred to a
    /// busy-polling receiver, or a threaded NAPI pinned to the receive core.
    fn place_receive_work(&mut self) -> anyhow::Result<()> {
        let (ntx, nrx, itx, irx) = (&self.ns_tx, &self.ns_rx, &self.if_tx, &self.if_rx);
        // veth hands a locally sent skb to the peer's NAPI only when the
        // sending device has no TSO feature (veth_skb_is_eligible_for_gro);
        // otherwise UDP from a socket bypasses NAPI and the receive path
        // runs on the sender's CPU after all. TSO is irrelevant to UDP.
        let ifname = itx.clone();
        kernel::in_netns(ntx, move || sys::set_tso(&ifname, false))?
            .context("cannot turn TSO off on the sending veth (ethtool ioctl)")?;
        let ifname = irx.clone();
        kernel::in_netns(nrx, move || sys::set_gro(&ifname, true))?
            .context("cannot turn GRO on for the receiving veth (ethtool ioctl)")?;
        if self.placement == Placement::BusyPoll {
            // The receiver polls; the device only defers to it.
            for (file, value) in [
                ("napi_defer_hard_irqs", BUSY_POLL_DEFER_IRQS.to_string()),
                ("gro_flush_timeout", BUSY_POLL_FLUSH_NS.to_string()),
            ] {
                write_netns_sysfs(nrx, &format!("/sys/class/net/{irx}/{file}"), &value)
                    .with_context(|| format!("cannot set {file} on the receiving veth"))?;
            }
            return Ok(());
        }
        write_netns_sysfs(nrx, &format!("/sys/class/net/{irx}/threaded"), "1")
            .context("cannot switch the receiving veth to threaded NAPI")?;
        let pids = find_napi_threads(irx);
        if pids.is_empty() {
            bail!("no napi/{irx}-* kernel thread appeared");
        }
        for &pid in &pids {
            sys::pin_to_cpu(pid, self.rx_cpu)
                .with_context(|| format!("cannot pin napi thread {pid} to CPU {}", self.rx_cpu))?;
            // On a host with a NIC, NAPI runs in softirq context and
            // preempts the receiving thread at once. A threaded NAPI
            // kthread of normal priority instead waits for the receiver's
            // time slice (ms), far longer than veth's 256-frame ring
            // lasts. FIFO restores the NIC's behaviour: the kernel side
            // runs promptly, the socket buffer absorbs the receiver's delays.
            if self.napi_fifo {
                sys::set_fifo(pid, NAPI_FIFO_PRIORITY)
                    .with_context(|| format!("cannot make napi thread {pid} SCHED_FIFO"))?;
            }
        }
        self.napi_pid = pids.iter().copied().min();
        Ok(())
    }

    /// Re-opens a testbed made earlier (e.g. by `linecap testbed up`).
    pub fn attach(name: &str) -> anyhow::Result<Self> {
        validate_name(name)?;
        let ns_rx = format!("{name}-rx");
        if !netns_exists(&ns_rx) {
            bail!("no testbed '{name}': create it with 'linecap testbed up --name {name}'");
        }
        let if_rx = format!("{name}r");
        let napi_pid = find_napi_thread(&if_rx);
        let queues = run("ip", &["-n", &ns_rx, "-d", "link", "show", "dev", &if_rx])
            .ok()
            .and_then(|out| {
                let mut words = out.split_whitespace();
                words.find(|w| *w == "numrxqueues")?;
                words.next()?.parse().ok()
            })
            .unwrap_or(1);
        let deferred = read_netns_sysfs(&ns_rx, &format!("/sys/class/net/{if_rx}/napi_defer_hard_irqs"))
            .is_some_and(|v| v != "0");
        let n = sys::online_cpus();
        Ok(Testbed {
            ns_tx: format!("{name}-tx"),
            ns_rx,
            if_tx: format!("{name}t"),
            if_rx,
            name: name.to_string(),
            placement: match (napi_pid, deferred) {
                (Some(_), _) => Placement::Napi,
                (None, true) => Placement::BusyPoll,
                (None, false) => Placement::Sender,
            },
            rx_cpu: n.saturating_sub(1),
            tx_cpu: 0,
            queues,
            napi_pid,
            napi_fifo: napi_pid.is_some_and(sys::is_fifo),
            persistent: true,
        })
    }

    /// Keeps the testbed after this value is dropped.
    pub fn persist(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Removes the namespaces (and with them the veth pair).
    pub fn down(mut self) -> anyhow::Result<()> {
        self.persistent = false;
        self.teardown()
    }

    fn teardown(&self) -> anyhow::Result<()> {
        let mut first_err = None;
        if netns_exists(&self.ns_rx) && self.placement == Placement::Napi {
            // Threaded NAPI off first, or a later attach inherits an unpinned thread.
            let _ = write_netns_sysfs(&self.ns_rx, &format!("/sys/class/net/{}/threaded", self.if_rx), "0");
        }
        for ns in [&self.ns_tx, &self.ns_rx] {
            if netns_exists(ns)
                && let Err(e) = run("ip", &["netns", "del", ns])
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Counters of the sending veth end: its `tx_dropped` counts frames the
    /// receiving ring refused (veth counts that loss on the sender's side).
    pub fn tx_iface(&self) -> anyhow::Result<IfaceCounters> {
        let ifname = self.if_tx.clone();
        kernel::in_netns(&self.ns_tx, move || kernel::KernelSnapshot::read().ifaces.get(&ifname).copied())?
            .with_context(|| format!("{} vanished", self.if_tx))
    }

    /// Counters of the receiving veth end.
    pub fn rx_iface(&self) -> anyhow::Result<IfaceCounters> {
        let ifname = self.if_rx.clone();
        kernel::in_netns(&self.ns_rx, move || kernel::KernelSnapshot::read().ifaces.get(&ifname).copied())?
            .with_context(|| format!("{} vanished", self.if_rx))
    }

    /// A human summary (`linecap testbed status`).
    pub fn describe(&self) -> String {
        let threaded = read_netns_sysfs(&self.ns_rx, &format!("/sys/class/net/{}/threaded", self.if_rx));
        let napi_cpu = self.napi_pid.and_then(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()?
                .lines()
                .find(|l| l.starts_with("Cpus_allowed_list"))
                .map(|l| l.split_whitespace().last().unwrap_or("?").to_string())
        });
        let sysfs = |f: &str| {
            read_netns_sysfs(&self.ns_rx, &format!("/sys/class/net/{}/{f}", self.if_rx))
                .unwrap_or_else(|| "?".into())
        };
        let deferral = format!(
            ", napi_defer_hard_irqs {}, gro_flush_timeout {} ns",
            sysfs("napi_defer_hard_irqs"),
            sysfs("gro_flush_timeout")
        );
        format!(
            "testbed {}: {} ({} {TX_ADDR}) <-> {} ({} {RX_ADDR})\n  {}\n  threaded NAPI: {}, napi thread: {}{deferral}",
            self.name,
            self.ns_tx,
            self.if_tx,
            self.ns_rx,
            self.if_rx,
            self.placement.label(),
            threaded.unwrap_or_else(|| "?".into()),
            match (self.napi_pid, napi_cpu) {
                (Some(p), Some(c)) if self.napi_fifo => {
                    format!("pid {p} on CPU {c}, SCHED_FIFO {NAPI_FIFO_PRIORITY}")
                }
                (Some(p), Some(c)) => format!("pid {p} on CPU {c}, normal priority"),
                (Some(p), None) => format!("pid {p}"),
                _ => "none".into(),
            }
        )
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !self.persistent
            && let Err(e) = self.teardown()
        {
            tracing::warn!("testbed {} cleanup: {e:#}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("linecap").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("UPPER").is_err());
        assert!(validate_name("much-too-long-name").is_err());
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(validate_name(&a).is_ok(), "{a}");
    }
}
