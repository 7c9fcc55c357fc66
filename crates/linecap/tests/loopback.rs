//! Unprivileged end-to-end tests over loopback: capture and send as real
//! processes, checked against the sender's own count.

mod common;

use common::*;
use linecap::capture::DropPlace;

#[test]
fn every_packet_is_accounted_for_over_loopback() {
    let addr = free_loopback();
    for mode in [["--mode", "recvmmsg"], ["--mode", "recv"]] {
        let cap = capture(None, &["--listen", &addr, "--verify", "seq", mode[0], mode[1]]);
        let sent = send(None, &["--to", &addr, "--count", "20000", "--rate", "50kpps", "--size", "272"]);
        assert_eq!(sent.packets, 20000);
        let rep = stop(cap);
        assert_books(&sent, &rep, &[]);
        let v = rep.verify.expect("verify counts");
        assert_eq!(v.valid, rep.received);
        assert_eq!(v.corrupt + v.malformed + v.duplicates, 0);
        // Whatever was lost at the socket shows up as a sequence gap too.
        assert_eq!(v.missing, rep.drops[&DropPlace::SocketOverflow], "{rep:#?}");
        assert_eq!(rep.bytes, rep.received * 272);
    }
}

#[test]
fn gso_sender_and_two_flows_verify_per_flow() {
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    let sent =
        send(None, &["--to", &addr, "--count", "30000", "--rate", "60kpps", "--threads", "2", "--gso"]);
    assert_eq!(sent.packets, 30000);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let v = rep.verify.unwrap();
    assert_eq!(v.valid, rep.received);
    assert_eq!(v.missing, rep.drops[&DropPlace::SocketOverflow]);
    assert_eq!(v.duplicates, 0);
}

#[test]
fn malformed_short_and_corrupt_payloads_are_counted() {
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut good = vec![0u8; 100];
    let mut sent = 0;
    for seq in 0..50u64 {
        linecap::format::seq::fill(&mut good, seq);
        tx.send_to(&good, &addr).unwrap();
        sent += 1;
    }
    tx.send_to(&[], &addr).unwrap(); // empty datagram
    tx.send_to(&[1, 2, 3], &addr).unwrap(); // shorter than a sequence number
    linecap::format::seq::fill(&mut good, 50);
    good[60] ^= 0x40; // one flipped bit
    tx.send_to(&good, &addr).unwrap();
    let rep = stop(cap);
    let v = rep.verify.unwrap();
    assert_eq!(rep.received, sent + 3);
    assert_eq!((v.valid, v.malformed, v.corrupt, v.missing), (50, 2, 1, 0), "{v:?}");
}

#[test]
fn count_limit_stops_the_capture() {
    let addr = free_loopback();
    let c = capture(None, &["--listen", &addr, "--count", "1000"]);
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "20kpps"]);
    let rep = c.wait().unwrap();
    assert_eq!(rep.stopped_by, "count");
    assert!(rep.packets >= 1000 && rep.packets <= sent.packets, "{rep:#?}");
}

#[test]
fn relay_forwards_every_payload_intact_and_keeps_its_books() {
    let (a, b) = (free_loopback(), free_loopback());
    let far = capture(None, &["--listen", &b, "--verify", "seq"]);
    let near = capture(None, &["--listen", &a, "--relay", &b]);
    let sent = send(None, &["--to", &a, "--count", "20000", "--rate", "50kpps"]);
    let near = stop(near);
    let far = stop(far);
    assert_books(&sent, &near, &[]);
    let r = near.relay.expect("relay books");
    assert_eq!(r.offered, near.received);
    assert_eq!(r.offered, r.relayed + r.dropped + r.errors, "{r:?}");
    // What the relay sent arrived, or the far socket says it dropped it.
    assert_eq!(far.received + far.drops[&DropPlace::SocketOverflow], r.relayed, "{far:#?}");
    let v = far.verify.unwrap();
    assert_eq!((v.valid, v.corrupt, v.malformed), (far.received, 0, 0), "payloads intact");
    assert!(r.relayed > 0);
}

#[test]
fn relay_to_nobody_counts_and_the_capture_goes_on() {
    let (a, nobody) = (free_loopback(), free_loopback());
    let near = capture(None, &["--listen", &a, "--relay", &nobody, "--relay-no-gso"]);
    let sent = send(None, &["--to", &a, "--count", "5000", "--rate", "20kpps"]);
    let near = stop(near);
    assert_books(&sent, &near, &[]);
    let r = near.relay.unwrap();
    // Port unreachable comes back as errors on later sends: counted, never fatal.
    assert_eq!(r.offered, sent.packets);
    assert_eq!(r.offered, r.relayed + r.dropped + r.errors, "{r:?}");
}
