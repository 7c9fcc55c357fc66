//! The io_uring backend: the books over loopback and a testbed, and the
//! clear error when io_uring is disabled.

mod common;

use common::*;
use linecap::capture::DropPlace;
use linecap::orchestrate::TestbedCounters;
use linecap::testbed::{Testbed, TestbedOptions};

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Held by every test here: one of them turns io_uring off system-wide for
/// a moment, which the others (io_uring captures) must not run into.
static SYSCTL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SYSCTL_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Restores `kernel.io_uring_disabled` when dropped.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn uring_capture_closes_the_books_on_loopback() {
    let _one = lock();
    // Loopback, unprivileged.
    let addr = free_loopback();
    let cap = capture(None, &["--backend", "uring", "--listen", &addr, "--verify", "seq"]);
    let sent = send(None, &["--to", &addr, "--count", "30000", "--rate", "60kpps"]);
    let rep = stop(cap);
    assert_eq!(rep.kind(), Some(linecap::source::BackendKind::Uring));
    assert_books(&sent, &rep, &[]);
    let v = rep.verify.unwrap();
    assert_eq!((v.valid, v.corrupt, v.duplicates), (rep.received, 0, 0));
    assert_eq!(v.missing, rep.drops[&DropPlace::SocketOverflow]);
}

/// The port is free again as soon as a uring capture has ended: its
/// receive request (which holds the socket) is cancelled before the ring
/// goes, not left to the ring's asynchronous teardown.
#[test]
fn the_port_is_free_once_a_uring_capture_ends() {
    let _one = lock();
    let addr = free_loopback();
    for _ in 0..5 {
        let cap = capture(None, &["--backend", "uring", "--listen", &addr]);
        send(None, &["--to", &addr, "--count", "2000", "--rate", "100kpps"]);
        let rep = stop(cap);
        assert!(rep.received > 0, "{rep:#?}");
        let taken = std::net::UdpSocket::bind(&addr);
        assert!(taken.is_ok(), "{addr} still bound after the capture ended: {taken:?}");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn uring_on_the_testbed_keeps_the_books_and_fails_clearly_when_disabled() {
    let _one = lock();
    // A testbed, unpaced into a small buffer: the ring runs dry and is re-armed,
    // the socket may overflow; every packet is still accounted for.
    let tb = Testbed::up(&TestbedOptions::new(&unique("u"))).unwrap();
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let before = TestbedCounters::read(&tb).unwrap();
    let cap =
        capture(Some(&tb.ns_rx), &["--backend", "uring", "--listen", &to, "--no-gro", "--rcvbuf", "256k"]);
    let sent = send(Some(&tb.ns_tx), &["--to", &to, "--duration", "1s", "--rate", "max"]);
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    let derived = before.drops(&after, &rep).iter().find(|(k, _)| *k == DropPlace::SocketOverflow).unwrap().1;
    assert_eq!(rep.drops[&DropPlace::SocketOverflow], derived, "socket counter exact without GRO");

    // io_uring switched off system-wide: one clear line, no panic.
    let Ok(old) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("skipped the disabled part: no {SYSCTL}");
        return;
    };
    let _restore = Restore(old);
    std::fs::write(SYSCTL, "2").unwrap();
    let o = linecap(&["capture", "--backend", "uring", "--listen", "127.0.0.1:0", "--count", "1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("io_uring is unavailable") && e.contains("io_uring_disabled = 2"), "{e}");
    assert!(e.contains("--backend socket"), "{e}");

    // The default capture, whose socket without GRO a ring would read,
    // reads it with recvmmsg instead: it runs and keeps its books.
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--no-gro", "--verify", "seq"]);
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "50kpps"]);
    let rep = stop(cap);
    assert_eq!(rep.kind(), Some(linecap::source::BackendKind::Socket));
    assert_books(&sent, &rep, &[]);
    assert_eq!(rep.verify.unwrap().valid, rep.received);
}
