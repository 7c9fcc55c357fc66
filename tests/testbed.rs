//! Root tests on a real testbed: namespaces, veth, threaded NAPI, and the
//! books closed against the sender's own count and veth's drop counters.

mod common;

use common::*;
use linecap::testbed::{Placement, Testbed, TestbedOptions, netns_exists};

fn testbed(placement: Placement) -> Testbed {
    let mut o = TestbedOptions::new(&unique("t"));
    o.placement = placement;
    Testbed::up(&o).expect("testbed up")
}

fn run_through(tb: &Testbed, cap_args: &[&str], send_args: &[&str]) {
    let listen = format!("{}:9000", linecap::testbed::RX_ADDR);
    let mut c = vec!["--listen", listen.as_str(), "--verify", "seq"];
    c.extend_from_slice(cap_args);
    let mut s = vec!["--to", listen.as_str()];
    s.extend_from_slice(send_args);
    let tx0 = tb.tx_iface().unwrap();
    let rx0 = tb.rx_iface().unwrap();
    let cap = capture(Some(&tb.ns_rx), &c);
    let sent = send(Some(&tb.ns_tx), &s);
    let rep = stop(cap);
    let tx1 = tb.tx_iface().unwrap();
    let rx1 = tb.rx_iface().unwrap();
    assert!(sent.packets > 0);
    assert_books(
        &sent,
        &rep,
        &[("veth_tx_dropped", tx1.tx_dropped - tx0.tx_dropped), ("rx_iface_dropped", rx1.rx_dropped - rx0.rx_dropped)],
    );
    // The sender's packets all crossed the veth (nothing else did).
    assert_eq!(tx1.tx_packets - tx0.tx_packets, sent.packets);
    let v = rep.verify.unwrap();
    assert_eq!((v.corrupt, v.malformed, v.duplicates), (0, 0, 0));
}

#[test]
fn napi_testbed_closes_the_books() {
    if !root_or_skip("napi_testbed_closes_the_books") {
        return;
    }
    let tb = testbed(Placement::Napi);
    assert!(tb.napi_pid.is_some(), "threaded NAPI kthread pinned");
    run_through(&tb, &[], &["--count", "50000", "--rate", "100kpps"]);
    run_through(&tb, &["--mode", "recv", "--no-gro"], &["--count", "20000", "--rate", "50kpps"]);
    // Unpaced: the receiver may lose packets; every loss must still be attributed.
    run_through(&tb, &["--rcvbuf", "64k"], &["--duration", "1s", "--rate", "max"]);
}

#[test]
fn sender_placement_and_reuseport_threads() {
    if !root_or_skip("sender_placement_and_reuseport_threads") {
        return;
    }
    let tb = testbed(Placement::Sender);
    assert!(tb.napi_pid.is_none());
    run_through(&tb, &["--threads", "2"], &["--count", "40000", "--rate", "80kpps", "--threads", "4"]);
}

#[test]
fn testbed_is_removed_on_drop() {
    if !root_or_skip("testbed_is_removed_on_drop") {
        return;
    }
    let tb = testbed(Placement::Napi);
    let (a, b) = (tb.ns_tx.clone(), tb.ns_rx.clone());
    assert!(netns_exists(&a) && netns_exists(&b));
    // The same name cannot be taken twice.
    let mut o = TestbedOptions::new(&tb.name);
    o.placement = Placement::Sender;
    let err = Testbed::up(&o).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    drop(tb);
    assert!(!netns_exists(&a) && !netns_exists(&b));
}

#[test]
fn demo_succeeds_and_says_where_it_ran() {
    if !root_or_skip("demo_succeeds_and_says_where_it_ran") {
        return;
    }
    let out = linecap(&["demo", "--duration", "1s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("every packet accounted for"), "{text}");
    assert!(text.contains("realistic placement"), "{text}");
}
