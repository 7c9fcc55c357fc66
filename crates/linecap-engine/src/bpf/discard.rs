//! The tcx ingress program of `capture --discard-unreceived`: a UDP
//! datagram to the capture's address and port that no socket would receive
//! ends here, after the AF_PACKET tap, instead of going up the stack.
//!
//! Why: the kernel answers such a datagram by trying an ICMP port
//! unreachable, and it looks up a route for that reply before its rate
//! limit drops it. Measured on the testbed at 1 Mpps (`docs/BENCHMARKS.md`),
//! that lookup and the walk up to UDP took most of the receive core, and a
//! capture of a stream nobody else reads got 0.57 of what it got once the
//! datagrams ended at a socket.
//!
//! What it keeps: the program asks the kernel's own socket lookup
//! (`bpf_sk_lookup_udp`) for every matching datagram and lets it through
//! when a socket would take it, so an application that binds the port
//! later still gets its stream. Only unicast frames to this host (`pkt_type`
//! HOST), to the one address given, unfragmented and without IPv4 options
//! or IPv6 extension headers are looked at; everything else goes on. It
//! runs before netfilter, so a datagram that a DNAT or TPROXY rule would
//! have sent to another port ends too (said in the option's help).

use std::net::{IpAddr, SocketAddr};

use super::insn::{Alu, Asm, Cond, Insn, Size, reg::*};

/// `bpf_sk_lookup_udp` helper number.
const BPF_FUNC_SK_LOOKUP_UDP: i32 = 85;
/// `bpf_sk_release` helper number.
const BPF_FUNC_SK_RELEASE: i32 = 86;
/// tcx verdicts: go on to the next program (or the stack), drop.
pub const TCX_NEXT: i32 = -1;
/// Drop the packet.
pub const TCX_DROP: i32 = 2;
/// `struct __sk_buff` offsets: `pkt_type`, `data`, `data_end`.
const SKB_PKT_TYPE: i16 = 4;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
/// Ethernet header length; the frame starts there at tc ingress.
const ETH: i16 = 14;

/// Where the lookup key (`struct bpf_sock_tuple`) sits in the packet for
/// one address family, and what identifies the capture's datagrams.
struct Layout {
    /// The Ethernet type of the family.
    ethertype: u16,
    /// Bytes from the frame's start that must be present (Ethernet, IP
    /// and UDP headers).
    headers: i32,
    /// Offset and length of the lookup key: source and destination
    /// addresses followed by the UDP ports, contiguous in the frame.
    tuple_at: i16,
    tuple_len: i16,
    /// Offsets of the destination address and port.
    daddr_at: i16,
    dport_at: i16,
}

const V4: Layout = Layout {
    ethertype: 0x0800,
    headers: (ETH + 20 + 8) as i32,
    // saddr, daddr, then (IHL 5) the UDP ports: the tuple as it lies.
    tuple_at: ETH + 12,
    tuple_len: 12,
    daddr_at: ETH + 16,
    dport_at: ETH + 20 + 2,
};

const V6: Layout = Layout {
    ethertype: 0x86dd,
    headers: (ETH + 40 + 8) as i32,
    tuple_at: ETH + 8,
    tuple_len: 36,
    daddr_at: ETH + 24,
    dport_at: ETH + 40 + 2,
};

/// Builds the program for datagrams to `dst`.
pub fn discard_unreceived_program(dst: SocketAddr) -> Vec<Insn> {
    let mut a = Asm::default();
    let (next, drop) = (a.label(), a.label());
    let be16 = |v: u16| u32::from(u16::from_le_bytes(v.to_be_bytes()));
    let (layout, daddr): (&Layout, Vec<u32>) = match dst.ip() {
        IpAddr::V4(ip) => (&V4, vec![u32::from_le_bytes(ip.octets())]),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            (&V6, o.chunks(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect())
        }
    };
    a.alu_reg(Alu::Mov, R6, R1); // ctx
    a.ldx(Size::W, R2, R1, SKB_PKT_TYPE);
    a.jmp32_imm(Cond::Ne, R2, 0, next); // PACKET_HOST only
    a.ldx(Size::W, R2, R1, SKB_DATA);
    a.ldx(Size::W, R3, R1, SKB_DATA_END);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, layout.headers);
    a.jmp_reg(Cond::Gt, R4, R3, next);
    a.ldx(Size::H, R5, R2, 12);
    a.jmp32_imm(Cond::Ne, R5, be16(layout.ethertype), next);
    if layout.ethertype == 0x0800 {
        a.ldx(Size::B, R5, R2, ETH);
        a.jmp32_imm(Cond::Ne, R5, 0x45, next); // IPv4, no options
        a.ldx(Size::B, R5, R2, ETH + 9);
        a.jmp32_imm(Cond::Ne, R5, 17, next);
        a.ldx(Size::H, R5, R2, ETH + 6);
        a.jmp32_imm(Cond::Set, R5, be16(0x3fff), next); // MF or an offset
    } else {
        a.ldx(Size::B, R5, R2, ETH + 6);
        a.jmp32_imm(Cond::Ne, R5, 17, next); // UDP right after the header
    }
    for (i, word) in daddr.iter().enumerate() {
        a.ldx(Size::W, R5, R2, layout.daddr_at + 4 * i as i16);
        a.jmp32_imm(Cond::Ne, R5, *word, next);
    }
    a.ldx(Size::H, R5, R2, layout.dport_at);
    a.jmp32_imm(Cond::Ne, R5, be16(dst.port()), next);
    // The tuple onto the stack (the helper reads it there), word by word.
    let words = layout.tuple_len / 4;
    for w in 0..words {
        a.ldx(Size::W, R5, R2, layout.tuple_at + 4 * w);
        a.stx(Size::W, R10, -4 * (words - w), R5);
    }
    // bpf_sk_lookup_udp(ctx, &tuple, len, BPF_F_CURRENT_NETNS, 0)
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_reg(Alu::Mov, R2, R10);
    a.alu_imm(Alu::Add, R2, -4 * i32::from(words));
    a.alu_imm(Alu::Mov, R3, i32::from(layout.tuple_len));
    a.alu_imm(Alu::Mov, R4, -1);
    a.alu_imm(Alu::Mov, R5, 0);
    a.call(BPF_FUNC_SK_LOOKUP_UDP);
    a.jmp_imm(Cond::Eq, R0, 0, drop);
    // A socket takes it: give the reference back and let it go on.
    a.alu_reg(Alu::Mov, R1, R0);
    a.call(BPF_FUNC_SK_RELEASE);
    a.ja(next);
    a.place(drop);
    a.exit_with(TCX_DROP);
    a.place(next);
    a.exit_with(TCX_NEXT);
    a.finish().expect("labels are all placed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(p: &[Insn], code: u8) -> usize {
        p.iter().filter(|i| i.code == code).count()
    }

    #[test]
    fn one_lookup_and_a_release_on_the_found_path() {
        for dst in ["198.18.0.2:9000", "[fd00::2]:9000"] {
            let p = discard_unreceived_program(dst.parse().unwrap());
            let calls: Vec<i32> = p.iter().filter(|i| i.code == 0x85).map(|i| i.imm).collect();
            assert_eq!(calls, [BPF_FUNC_SK_LOOKUP_UDP, BPF_FUNC_SK_RELEASE], "{dst}");
            assert_eq!(count(&p, 0x95), 2, "two exits: drop and next");
        }
    }

    #[test]
    fn the_tuple_is_copied_whole() {
        // IPv4: 3 words (12 bytes); IPv6: 9 words (36 bytes), onto the stack.
        let stores = |dst: &str| count(&discard_unreceived_program(dst.parse().unwrap()), 0x63);
        assert_eq!(stores("198.18.0.2:9000"), 3);
        assert_eq!(stores("[fd00::2]:9000"), 9);
    }

    #[test]
    fn the_address_is_compared_in_32_bits() {
        // 10.0.0.200: a constant with its top bit set, compared as such.
        let p = discard_unreceived_program("10.0.0.200:9000".parse().unwrap());
        let want = u32::from_le_bytes([10, 0, 0, 200]) as i32;
        assert!(p.iter().any(|i| i.code == 0x56 && i.imm == want), "a JMP32 JNE on the address");
    }
}
