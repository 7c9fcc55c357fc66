//! Damage done on purpose and replays: a receiver counts exactly what the
//! sender's `--drop/--reorder/--duplicate` did; a recording replayed by
//! linecap assembles into the blocks the live capture made; tcpreplay
//! replays a linecap recording into a linecap capture.

mod common;

use std::process::Command;

use common::*;

/// A stream of 30 000, damaged on purpose, the same way every time.
const DAMAGE: &[&str] = &[
    "--count",
    "30000",
    "--rate",
    "40kpps",
    "--drop",
    "1%",
    "--reorder",
    "1%:4",
    "--duplicate",
    "0.1%",
    "--seed",
    "42",
];

#[test]
fn a_receiver_counts_exactly_the_damage_the_sender_did() {
    let dir = TempDir::new("impair");
    let addr = free_loopback();
    let blocks = dir.0.join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq", "--blocks", blocks.to_str().unwrap()]);
    let sent = send(None, &[&["--to", &addr][..], DAMAGE].concat());
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let done = sent.impaired.expect("the sender reports its damage");
    assert!(done.dropped > 0 && done.reordered > 0 && done.duplicated > 0, "{done:?}");
    // The comparison holds when the network lost nothing on its own.
    assert_eq!(rep.total_drops(), 0, "{rep:#?}");
    let v = rep.verify.unwrap();
    assert_eq!(
        (v.missing, v.reordered, v.duplicates),
        (done.dropped, done.reordered, done.duplicated),
        "{v:?}"
    );
    let b = rep.blocks.unwrap();
    assert_eq!(b.dropped_blocks, 0);
    assert_eq!(
        (b.assembly.slots_lost, b.assembly.duplicates, b.assembly.late),
        (done.dropped, done.duplicated, 0)
    );
    // The same seed, the same damage.
    let again = send(None, &[&["--to", &addr][..], DAMAGE].concat());
    assert_eq!(again.impaired, Some(done));
}

#[test]
fn impairments_are_refused_where_they_cannot_be_done() {
    for args in [
        &["send", "--to", "127.0.0.1:9", "--count", "1", "--drop", "150%"][..],
        &["send", "--to", "127.0.0.1:9", "--count", "1", "--reorder", "1%:0"],
        &[
            "send",
            "--to",
            "127.0.0.1:9",
            "--count",
            "1",
            "--backend",
            "afpacket",
            "--iface",
            "lo",
            "--drop",
            "1%",
        ],
    ] {
        let o = linecap(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn a_replayed_recording_assembles_into_the_live_blocks() {
    let dir = TempDir::new("replay");
    let (file, live) = (dir.0.join("rec.pcap"), dir.0.join("live"));
    std::fs::create_dir_all(&live).unwrap();
    let rec = record_loopback(&file, &live, "20000");
    assert_eq!(rec.total_drops(), 0, "{rec:#?}");
    for timing in [&["--speed", "2"][..], &["--rate", "50kpps"], &["--max"]] {
        let addr = free_loopback();
        let out = dir.0.join(format!("blocks{}", timing[0].trim_start_matches('-')));
        std::fs::create_dir_all(&out).unwrap();
        let cap = capture(None, &["--listen", &addr, "--verify", "seq", "--blocks", out.to_str().unwrap()]);
        let mut args = vec![file.to_str().unwrap(), "--to", addr.as_str()];
        args.extend_from_slice(timing);
        let r = replay(&args);
        let rep = stop(cap);
        assert_eq!((r.records, r.sent.packets, r.not_udp), (rec.packets, rec.packets, 0), "{timing:?}");
        assert_books(&r.sent, &rep, &[]);
        if timing[0] == "--speed" {
            assert!(r.lateness.is_some_and(|l| l.packets == rec.packets), "{:?}", r.lateness);
        }
        if rep.total_drops() > 0 {
            // Unpaced over loopback the socket may overflow: counted, and
            // the blocks then differ by those packets; nothing more to compare.
            assert_eq!(timing[0], "--max", "{rep:#?}");
            continue;
        }
        let v = rep.verify.unwrap();
        assert_eq!((v.valid, v.missing, v.duplicates), (rec.packets, 0, 0));
        let (a, b) = (read_blocks(&live), read_blocks(&out));
        assert_eq!(a.len(), b.len());
        for ((sa, da), (sb, db)) in a.iter().zip(&b) {
            assert_eq!(sa, sb);
            assert!(da == db, "block {} byte for byte", sa.number);
        }
    }
    // Loops: the file twice, the verifier sees every number twice.
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    let r = replay(&[file.to_str().unwrap(), "--to", &addr, "--rate", "40kpps", "--loop", "2"]);
    let rep = stop(cap);
    assert_eq!(r.sent.packets, 2 * rec.packets);
    assert_books(&r.sent, &rep, &[]);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, AF_PACKET): run the tests as root")]
fn tcpreplay_replays_a_linecap_recording_into_a_linecap_capture() {
    if !Command::new("tcpreplay").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return skip_or_fail("tcpreplay not installed (.ci/run installs it)");
    }
    let tb = linecap::testbed::Testbed::up(&linecap::testbed::TestbedOptions::new(&unique("tr"))).unwrap();
    let dir = TempDir::new("tcpreplay");
    let file = dir.0.join("frames.pcap");
    // Frames as they arrived at the receiving side: the right MACs and
    // addresses to be sent again from the other end of the pair.
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let cap = capture(
        Some(&tb.ns_rx),
        &[
            "--backend",
            "afpacket",
            "--iface",
            &tb.if_rx,
            "--filter",
            "udp dst port 9000",
            "--write",
            file.to_str().unwrap(),
        ],
    );
    // Frames built by linecap's AF_PACKET generator: their UDP checksum is
    // whole (0, "none"). A socket sender's frames cross veth with a partial
    // checksum (offload), which a tap records as it is and a replay then
    // delivers as checksum errors.
    send(
        Some(&tb.ns_tx),
        &["--to", &to, "--count", "5000", "--rate", "20kpps", "--backend", "afpacket", "--iface", &tb.if_tx],
    );
    let rec = stop(cap);
    assert!(rec.packets > 0);
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to, "--verify", "seq"]);
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns_tx, "tcpreplay", "-q", "--pps", "20000", "-i", &tb.if_tx])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&out.stderr));
    let rep = stop(cap);
    let v = rep.verify.unwrap();
    // What tcpreplay sent is the recording; what the socket did not take is counted.
    assert_eq!(rep.received + rep.total_drops(), rec.packets, "{rep:#?}");
    assert!(rep.received > 0 && rep.kernel["udp_csum_errors"] == 0, "{rep:#?}");
    assert_eq!((v.valid, v.corrupt, v.duplicates), (rep.received, 0, 0));

    // The same frames through linecap's own AF_PACKET replay.
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to, "--verify", "seq"]);
    let (ns, iface, path) = (tb.ns_tx.as_str(), tb.if_tx.as_str(), file.to_str().unwrap());
    let r = replay(&["--netns", ns, "--backend", "afpacket", "--iface", iface, "--rate", "20kpps", path]);
    let rep = stop(cap);
    assert_eq!((r.records, r.sent.packets, r.unsendable), (rec.packets, rec.packets, 0));
    assert_books(&r.sent, &rep, &[]);
    assert_eq!(rep.verify.unwrap().valid, rep.received);
}

#[test]
fn a_replay_damaged_on_purpose_is_counted_exactly_by_the_receiver() {
    let dir = TempDir::new("replaydmg");
    let (file, live) = (dir.0.join("rec.pcap"), dir.0.join("live"));
    std::fs::create_dir_all(&live).unwrap();
    let rec = record_loopback(&file, &live, "20000");
    assert_eq!(rec.total_drops(), 0, "{rec:#?}");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    let r = replay(&[
        file.to_str().unwrap(),
        "--to",
        &addr,
        "--rate",
        "40kpps",
        "--drop",
        "1%",
        "--reorder",
        "1%:8",
        "--duplicate",
        "0.5%",
    ]);
    let rep = stop(cap);
    let done = r.sent.impaired.expect("the replay reports its damage");
    assert!(done.dropped > 0 && done.reordered > 0 && done.duplicated > 0, "{done:?}");
    assert_eq!(r.sent.packets, rec.packets - done.dropped + done.duplicated);
    assert_books(&r.sent, &rep, &[]);
    assert_eq!(rep.total_drops(), 0, "{rep:#?}");
    let v = rep.verify.unwrap();
    // A last packet left out shows no gap: the books allow for that tail.
    assert!(v.missing == done.dropped || v.missing + 1 == done.dropped, "{v:?} {done:?}");
    assert_eq!((v.reordered, v.duplicates), (done.reordered, done.duplicated), "{v:?}");
}

#[test]
fn replay_refuses_what_it_cannot_do_and_fails_clearly_on_bad_files() {
    let dir = TempDir::new("replaybad");
    let text = dir.0.join("notes.pcap");
    std::fs::write(&text, b"not a capture file at all\n").unwrap();
    let empty = dir.0.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let (t, e) = (text.to_str().unwrap(), empty.to_str().unwrap());
    let to = free_loopback();
    // Usage errors: what a backend needs or ignores, values that cannot be.
    assert_usage_error(linecap(&["replay", t]), "needs --to");
    assert_usage_error(linecap(&["replay", t, "--backend", "afpacket"]), "needs --iface");
    assert_usage_error(
        linecap(&["replay", t, "--backend", "afpacket", "--iface", "lo", "--to", &to]),
        "--to",
    );
    assert_usage_error(linecap(&["replay", t, "--to", &to, "--dst-mac", "02:00:00:00:00:01"]), "--dst-mac");
    assert_exit(
        linecap(&["replay", t, "--backend", "afpacket", "--iface", "lo", "--dst-mac", "zz"]),
        2,
        "MAC",
    );
    assert_exit(linecap(&["replay", t, "--to", &to, "--loop", "0"]), 2, "positive");
    assert_exit(linecap(&["replay", t, "--to", &to, "--drop", "2"]), 2, "between 0 and 100%");
    // Files that are no capture: one line, exit 1, nothing sent.
    assert_fails_with(linecap(&["replay", t, "--to", &to]), "not a pcap or pcapng file");
    assert_fails_with(linecap(&["replay", e, "--to", &to]), "empty");
    assert_fails_with(
        linecap(&["replay", dir.0.join("none-*.pcap").to_str().unwrap(), "--to", &to]),
        "no file matches",
    );
}
