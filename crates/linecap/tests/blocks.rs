//! Assembly end to end: a stream sent by `linecap send` is assembled by
//! `linecap capture --blocks`, and every byte of every block file is
//! checked against what the generator wrote.

mod common;

use common::*;
use linecap::format::raw::RawSpec;

#[test]
fn seq_stream_assembles_byte_for_byte() {
    let dir = TempDir::new("blk");
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--blocks", dir.0.to_str().unwrap(), "--slots", "500", "--slot-bytes", "192"],
    );
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "50kpps", "--size", "200"]);
    let rep = stop(cap);
    let b = rep.blocks.expect("block report");
    assert_eq!(b.assembly.packets, rep.received);
    assert_eq!(b.assembly.packets, b.assembly.accounted());
    assert_eq!(b.written + b.dropped_blocks, b.assembly.blocks, "{b:?}");
    let blocks = read_blocks(&dir.0);
    assert_eq!(blocks.len() as u64, b.written);
    let mut want = vec![0u8; 200];
    let mut present = 0;
    for (s, data) in &blocks {
        assert_eq!(data.len(), 500 * 192);
        for slot in 0..500 {
            let bytes = &data[slot * 192..(slot + 1) * 192];
            if s.is_present(0, slot) {
                linecap::format::seq::fill(&mut want, s.first_seq + slot as u64);
                assert_eq!(bytes, &want[8..], "block {} slot {slot}", s.first_seq);
                present += 1;
            } else {
                assert!(bytes.iter().all(|&x| x == 0));
            }
        }
    }
    // Blocks dropped at the writer's queue under load are counted.
    assert_eq!(present + b.dropped_packets, b.assembly.placed, "{b:?}");
    assert_eq!(
        b.assembly.placed + b.assembly.slots_lost,
        sent.packets,
        "every slot is present or counted lost"
    );
}

#[test]
fn raw_channels_fill_their_rows() {
    let dir = TempDir::new("raw");
    let addr = free_loopback();
    let spec = "header=16,counter=0:1:be,channel=8:2:le,payload=64";
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--blocks",
            dir.0.to_str().unwrap(),
            "--format",
            "raw",
            "--raw",
            spec,
            "--channels",
            "3",
            "--slots",
            "128",
        ],
    );
    // 3 channels x 30000 counters: the 8-bit counter wraps 117 times.
    let sent = send(
        None,
        &[
            "--to",
            &addr,
            "--format",
            "raw",
            "--raw",
            spec,
            "--channels",
            "3",
            "--count",
            "90000",
            "--rate",
            "100kpps",
        ],
    );
    let rep = stop(cap);
    let b = rep.blocks.unwrap();
    assert_eq!(b.assembly.packets, b.assembly.accounted());
    assert_eq!(b.assembly.bad_channel + b.assembly.malformed, 0);
    let spec = RawSpec::parse(spec).unwrap();
    let mut pkt = vec![0u8; spec.packet_len()];
    let mut present = 0u64;
    for (s, data) in read_blocks(&dir.0) {
        for ch in 0..3 {
            for slot in 0..128 {
                if !s.is_present(ch, slot) {
                    continue;
                }
                let counter = s.first_seq + slot as u64;
                spec.encode(&mut pkt, counter, ch as u64); // the generator's full counter: the unwrapped sequence
                let at = (ch * 128 + slot) * 64;
                assert_eq!(&data[at..at + 64], &pkt[16..], "counter {counter} ch {ch}");
                present += 1;
            }
        }
    }
    // Under load the block writer's queue may drop whole blocks (counted):
    // their packets were placed but are in no file.
    assert_eq!(present + b.dropped_packets, b.assembly.placed, "{b:?}");
    assert_eq!(b.assembly.placed + b.assembly.slots_lost, sent.packets);
    assert_eq!(b.wraps, 30000 / 256, "{b:?}");
}

#[test]
fn bad_assembly_input_is_refused_or_counted() {
    let err = |args: &[&str], code: i32, needle: &str| {
        let mut a = vec!["capture", "--listen", "127.0.0.1:0", "--count", "1"];
        a.extend_from_slice(args);
        assert_exit(linecap(&a), code, needle);
    };
    err(&["--blocks", "/nonexistent-lc-dir"], 1, "does not exist");
    let dir = TempDir::new("bad");
    let d = dir.0.to_str().unwrap();
    err(&["--blocks", d, "--format", "raw"], 2, "needs --raw");
    err(&["--blocks", d, "--format", "raw", "--raw", "header=4,counter=0:8:be,payload=8"], 2, "does not fit");
    err(&["--blocks", d, "--slots", "0"], 2, "at least 1");
    // Short and malformed packets are counted, never placed.
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--blocks", d, "--format", "raw", "--raw", "header=8,counter=0:4:be,payload=32"],
    );
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&[1, 2, 3], &addr).unwrap();
    tx.send_to(&[0u8; 39], &addr).unwrap();
    tx.send_to(&[0u8; 40], &addr).unwrap();
    let rep = stop(cap);
    let b = rep.blocks.unwrap();
    assert_eq!((b.assembly.malformed, b.assembly.placed), (2, 1));
    // And the inspector refuses what is not a block.
    std::fs::write(dir.0.join("junk.json"), "{}").unwrap();
    let o = linecap(&["blocks", "inspect", dir.0.join("junk.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a linecap block sidecar"));
}
