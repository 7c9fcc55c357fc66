//! The XDP program: redirect the capture's flow (IPv4 or IPv6 UDP to one
//! destination port, optionally one IPv4 address) to the AF_XDP socket of
//! the receive queue, pass everything else (ARP, SSH, other traffic) to the
//! kernel. Every packet access is bounds-checked against `data_end`, as the
//! verifier demands. IPv4 fragments and IPv6 extension headers pass. For a
//! capture, the flow's frames of another layout than the fixed one go to a
//! second socket of the queue ([`ParsedLane`]).

use std::net::Ipv4Addr;

use super::insn::{Alu, Asm, Cond, Insn, Size, reg::*};

/// `bpf_redirect_map` helper number.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// XDP actions.
pub const XDP_ABORTED: i32 = 0;
/// Drop the frame.
pub const XDP_DROP: i32 = 1;
/// Pass the frame to the kernel's stack.
pub const XDP_PASS: i32 = 2;
/// Send the frame back out.
pub const XDP_TX: i32 = 3;

/// What to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// UDP destination port.
    pub port: u16,
    /// IPv4 destination address (None: any; IPv6 matches on the port only).
    pub ipv4_dst: Option<Ipv4Addr>,
}

/// A second socket per queue for the frames whose layout is not the fixed
/// one: Ethernet II, IPv4 without options, UDP, nothing after the datagram.
/// A frame of the fixed layout is described by its length alone (its
/// payload starts at [`crate::packet::FIXED_HEADER_LEN`] and ends with the
/// frame), so the receive thread never reads it unless a sink does; every
/// other frame of the flow goes to the second socket, whose frames the
/// receive thread parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedLane {
    /// The second socket's XSKMAP key: the receive queue plus this.
    pub key_offset: u32,
    /// The action when that key has no socket (XDP_PASS in service).
    pub fallback: i32,
}

/// Builds the program. `map_fd`: the XSKMAP; `fallback`: the action when
/// the queue has no socket in the map (XDP_PASS in service; tests use
/// another action to tell a redirect attempt from a pass); `parsed`: where
/// frames of another layout than the fixed one go (None: with the others).
pub fn redirect_program(m: Match, map_fd: i32, fallback: i32, parsed: Option<ParsedLane>) -> Vec<Insn> {
    let mut a = Asm::default();
    let (pass, ipv4, ipv6, redirect) = (a.label(), a.label(), a.label(), a.label());
    let to_parsed = if parsed.is_some() { a.label() } else { redirect };
    // Loads of network-order fields are compared against constants in the
    // byte order a little-endian load produces.
    let be16 = |v: u16| i32::from(u16::from_le_bytes(v.to_be_bytes()));
    a.alu_reg(Alu::Mov, R6, R1); // ctx
    a.ldx(Size::W, R2, R1, 0); // data
    a.ldx(Size::W, R3, R1, 4); // data_end
    // Ethernet header.
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, 14);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::H, R5, R2, 12);
    a.jmp_imm(Cond::Eq, R5, be16(0x0800), ipv4);
    a.jmp_imm(Cond::Eq, R5, be16(0x86dd), ipv6);
    a.ja(pass);
    // IPv4: fixed part, protocol, no fragment, then UDP after the options.
    a.place(ipv4);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, 14 + 20);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R5, R2, 14 + 9);
    a.jmp_imm(Cond::Ne, R5, 17, pass);
    a.ldx(Size::H, R5, R2, 14 + 6);
    a.jmp_imm(Cond::Set, R5, be16(0x3fff), pass); // MF or a fragment offset
    if let Some(addr) = m.ipv4_dst {
        a.ldx(Size::W, R5, R2, 14 + 16);
        a.jmp32_imm(Cond::Ne, R5, u32::from_le_bytes(addr.octets()), pass);
    }
    a.ldx(Size::B, R5, R2, 14);
    a.alu_imm(Alu::And, R5, 0x0f);
    a.alu_imm(Alu::Lsh, R5, 2); // IHL in bytes, 0..60
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_reg(Alu::Add, R4, R5); // start of IPv4 + 14 = UDP - 14
    a.alu_reg(Alu::Mov, R7, R4);
    a.alu_imm(Alu::Add, R7, 14 + 8);
    a.jmp_reg(Cond::Gt, R7, R3, pass);
    a.ldx(Size::H, R5, R4, 14 + 2); // UDP destination port
    a.jmp_imm(Cond::Ne, R5, be16(m.port), pass);
    if parsed.is_some() {
        fixed_layout_or(&mut a, to_parsed);
    }
    a.ja(redirect);
    // IPv6 without extension headers.
    a.place(ipv6);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, 14 + 40 + 8);
    a.jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx(Size::B, R5, R2, 14 + 6);
    a.jmp_imm(Cond::Ne, R5, 17, pass);
    a.ldx(Size::H, R5, R2, 14 + 40 + 2);
    a.jmp_imm(Cond::Ne, R5, be16(m.port), pass);
    if parsed.is_some() {
        a.ja(to_parsed);
    }
    // bpf_redirect_map(xskmap, rx_queue_index, fallback action).
    a.place(redirect);
    redirect_to(&mut a, map_fd, 0, fallback);
    if let Some(lane) = parsed {
        a.place(to_parsed);
        redirect_to(&mut a, map_fd, lane.key_offset, lane.fallback);
    }
    a.place(pass);
    a.exit_with(XDP_PASS);
    a.finish().expect("labels are all placed")
}

/// `bpf_redirect_map(xskmap, rx_queue_index + key_offset, fallback)`, then exit.
fn redirect_to(a: &mut Asm, map_fd: i32, key_offset: u32, fallback: i32) {
    a.ldx(Size::W, R2, R6, 16); // ctx->rx_queue_index
    if key_offset != 0 {
        a.alu_imm(Alu::Add, R2, key_offset as i32);
    }
    a.ld_map_fd(R1, map_fd);
    a.alu_imm(Alu::Mov, R3, fallback);
    a.call(BPF_FUNC_REDIRECT_MAP);
    a.exit();
}

/// Jumps to `other` unless the IPv4 datagram at hand (R2 data, R3
/// data_end, R4 data + IHL, its UDP header bounds-checked) has the fixed
/// layout: no IP options, and the IP and UDP lengths both end exactly at
/// the end of the frame (no Ethernet padding or trailing bytes).
fn fixed_layout_or(a: &mut Asm, other: super::insn::Label) {
    a.ldx(Size::B, R5, R2, 14);
    a.jmp_imm(Cond::Ne, R5, 0x45, other); // version 4, IHL 5
    // IP total length: data + 14 + it must be data_end.
    load_be16(a, R5, R2, 14 + 2);
    a.alu_reg(Alu::Mov, R7, R2);
    a.alu_reg(Alu::Add, R7, R5);
    a.alu_imm(Alu::Add, R7, 14);
    a.jmp_reg(Cond::Ne, R7, R3, other);
    // UDP length: the UDP header + it must be data_end.
    load_be16(a, R5, R4, 14 + 4);
    a.alu_reg(Alu::Mov, R7, R4);
    a.alu_reg(Alu::Add, R7, R5);
    a.alu_imm(Alu::Add, R7, 14);
    a.jmp_reg(Cond::Ne, R7, R3, other);
}

/// `dst` = the network-order u16 at `src + off`, in host order.
fn load_be16(a: &mut Asm, dst: u8, src: u8, off: i16) {
    a.ldx(Size::H, dst, src, off);
    a.to_be16(dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::insn::to_bytes;

    /// The program's bytes are part of what linecap loads into kernels:
    /// pin them, so any change is deliberate (and re-verified on a kernel).
    #[test]
    fn golden_bytes_port_9000() {
        let p = redirect_program(Match { port: 9000, ipv4_dst: None }, 7, XDP_PASS, None);
        let hex: String = to_bytes(&p).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p.len(), 43);
        assert_eq!(hex, GOLDEN_9000);
    }

    #[test]
    fn address_match_adds_two_instructions() {
        let a = redirect_program(Match { port: 9000, ipv4_dst: None }, 3, XDP_PASS, None);
        let b = redirect_program(
            Match { port: 9000, ipv4_dst: Some(Ipv4Addr::new(198, 18, 0, 2)) },
            3,
            XDP_PASS,
            None,
        );
        assert_eq!(b.len(), a.len() + 2);
        // The map fd sits in the first slot of the 64-bit load, marked BPF_PSEUDO_MAP_FD.
        let ld = b.iter().find(|i| i.code == 0x18).unwrap();
        assert_eq!((ld.src, ld.imm), (1, 3));
    }

    const GOLDEN_9000: &str = include_str!("xdp_golden_9000.hex");
}
