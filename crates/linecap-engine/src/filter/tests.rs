//! The compiler checked by running its programs in a small classic-BPF
//! interpreter over frames built with etherparse (the kernel's semantics
//! for the instructions used, including ancillary loads).

use super::*;
use etherparse::PacketBuilder;

use super::interp::{Ancillary as Meta, run};

fn frames() -> Vec<(&'static str, Vec<u8>, Meta)> {
    let eth = || PacketBuilder::ethernet2([1; 6], [2; 6]);
    let mut v = Vec::new();
    let mut push = |name, b: Vec<u8>, vlan, outgoing| v.push((name, b, Meta { vlan, outgoing }));
    let w = |b: etherparse::PacketBuilderStep<etherparse::UdpHeader>| {
        let mut o = Vec::new();
        b.write(&mut o, &[0u8; 20]).unwrap();
        o
    };
    push("udp4 a->b 9000", w(eth().ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64).udp(4000, 9000)), None, false);
    push("udp4 b->a 53", w(eth().ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64).udp(53, 5353)), None, false);
    push("udp4 other net", w(eth().ipv4([10, 1, 2, 3], [10, 9, 9, 9], 64).udp(1, 2)), None, false);
    push(
        "udp6",
        w(eth().ipv6([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [2; 16], 64).udp(7, 9000)),
        None,
        false,
    );
    push(
        "udp4 vlan 12",
        w(eth().ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64).udp(4000, 9001)),
        Some(12),
        false,
    );
    push("udp4 outgoing", w(eth().ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64).udp(9000, 4000)), None, true);
    let mut tcp = Vec::new();
    eth()
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(4000, 9000, 1, 100)
        .write(&mut tcp, &[0u8; 10])
        .unwrap();
    push("tcp4 9000", tcp, None, false);
    let mut icmp = Vec::new();
    eth()
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0u8; 8])
        .unwrap();
    push("icmp4", icmp, None, false);
    let mut frag = w(eth().ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64).udp(4000, 9000));
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0x10; // a later fragment: no UDP header here
    push("udp4 fragment", frag, None, false);
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    push("arp", arp, None, false);
    v
}

fn accepted(expr: &str) -> Vec<&'static str> {
    let p = compile(expr, Target::Link).unwrap_or_else(|e| panic!("{expr}: {e}"));
    frames().into_iter().filter(|(_, f, m)| run(&p.0, f, &[], m) != 0).map(|(n, ..)| n).collect()
}

#[test]
fn primitives_on_frames() {
    assert_eq!(
        accepted("udp"),
        vec![
            "udp4 a->b 9000",
            "udp4 b->a 53",
            "udp4 other net",
            "udp6",
            "udp4 vlan 12",
            "udp4 outgoing",
            "udp4 fragment"
        ]
    );
    assert_eq!(accepted("tcp"), vec!["tcp4 9000"]);
    assert_eq!(accepted("icmp"), vec!["icmp4"]);
    assert_eq!(accepted("arp"), vec!["arp"]);
    assert_eq!(accepted("ip6"), vec!["udp6"]);
    assert_eq!(accepted("dst port 9000"), vec!["udp4 a->b 9000", "udp6", "tcp4 9000"]);
    assert_eq!(accepted("udp dst port 9000"), vec!["udp4 a->b 9000", "udp6"]);
    assert_eq!(accepted("tcp port 9000"), vec!["tcp4 9000"]);
    assert_eq!(accepted("port 53"), vec!["udp4 b->a 53"]);
    assert_eq!(
        accepted("portrange 8999-9001"),
        vec!["udp4 a->b 9000", "udp6", "udp4 vlan 12", "udp4 outgoing", "tcp4 9000"]
    );
    assert_eq!(accepted("src host 198.18.0.2"), vec!["udp4 b->a 53", "udp4 outgoing"]);
    assert_eq!(accepted("host 2001:db8::1"), vec!["udp6"]);
    assert_eq!(accepted("net 10.0.0.0/8"), vec!["udp4 other net"]);
    assert_eq!(accepted("dst net 10.9.0.0/16"), vec!["udp4 other net"]);
    assert_eq!(accepted("vlan"), vec!["udp4 vlan 12"]);
    assert_eq!(accepted("vlan 12"), vec!["udp4 vlan 12"]);
    assert!(accepted("vlan 13").is_empty());
    assert_eq!(
        accepted("udp and not port 9000 and not vlan and ip"),
        vec!["udp4 b->a 53", "udp4 other net", "udp4 fragment"]
    );
    assert_eq!(accepted("(icmp or arp) || tcp"), vec!["tcp4 9000", "icmp4", "arp"]);
    assert_eq!(accepted("src and dst host 198.18.0.1"), Vec::<&str>::new());
    assert_eq!(accepted("! ip"), vec!["udp6", "arp"]);
}

#[test]
fn inbound_drops_outgoing() {
    let p = compile_inbound("udp").unwrap();
    let got: Vec<_> =
        frames().into_iter().filter(|(_, f, m)| run(&p.0, f, &[], m) != 0).map(|(n, ..)| n).collect();
    assert!(!got.contains(&"udp4 outgoing"));
    assert!(got.contains(&"udp4 a->b 9000"));
    let wrapped = inbound(&compile("udp", Target::Link).unwrap());
    let got2: Vec<_> =
        frames().into_iter().filter(|(_, f, m)| run(&wrapped.0, f, &[], m) != 0).map(|(n, ..)| n).collect();
    assert_eq!(got, got2);
}

#[test]
fn udp_socket_target() {
    // The datagram as a UDP socket filter sees it: UDP header first, the IP header via SKF_NET_OFF.
    let f = frames();
    let (_, frame, m) = &f[0]; // udp4 a->b 9000
    let ip = &frame[14..34];
    let udp = &frame[34..];
    let ok = |e: &str| run(&compile(e, Target::Udp { ipv6: false }).unwrap().0, udp, ip, m) != 0;
    assert!(ok("udp"));
    assert!(ok("dst port 9000") && ok("src port 4000") && !ok("dst port 9001"));
    assert!(ok("src host 198.18.0.1") && !ok("dst host 198.18.0.1"));
    assert!(ok("net 198.18.0.0/15"));
    assert!(!ok("tcp") && !ok("ip6") && !ok("arp") && ok("ip"));
    assert!(!ok("tcp port 9000") && ok("udp port 9000"));
    assert!(!ok("host ::1"));
    assert!(ok("not tcp and portrange 1-9000"));
}

#[test]
fn errors_point_at_the_token() {
    let e = compile("udp and prot 9000", Target::Link).unwrap_err();
    assert_eq!((e.position, e.token.as_str()), (8, "prot"));
    let e = compile("port 70000", Target::Link).unwrap_err();
    assert_eq!(e.token, "70000");
    let e = compile("(udp", Target::Link).unwrap_err();
    assert_eq!(e.position, 4);
    assert!(e.message.contains("')'"));
    assert!(compile("", Target::Link).is_err());
    assert!(compile("udp udp", Target::Link).unwrap_err().message.contains("unexpected"));
    assert!(compile("net 10.0.0.1/8", Target::Link).unwrap_err().message.contains("host bits"));
    assert!(compile("portrange 9-1", Target::Link).unwrap_err().message.contains("reversed"));
    assert!(compile("host 1.2.3", Target::Link).is_err());
    assert!(compile("vlan 5000", Target::Link).is_err());
}

#[test]
fn jumps_stay_in_range_or_error() {
    // A long chain of ORs: either it compiles with valid jumps or it says why.
    let long = (0..200).map(|p| format!("port {p}")).collect::<Vec<_>>().join(" or ");
    match compile(&long, Target::Link) {
        Ok(p) => assert!(p.0.len() <= MAX_INSNS),
        Err(e) => assert!(e.message.contains("8-bit jumps") || e.message.contains("instructions")),
    }
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "[a-z0-9 ()!&|./:-]{0,40}") {
        if let Ok(p) = compile(&s, Target::Link) {
            for (_, f, m) in frames() {
                let _ = run(&p.0, &f, &[], &m);
            }
        }
        let _ = compile(&s, Target::Udp { ipv6: true });
    }
}
