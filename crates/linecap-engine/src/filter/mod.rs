//! A compiler from a documented subset of tcpdump's filter language to
//! classic BPF, and a reader of `tcpdump -ddd` output.
//!
//! The subset:
//! ```text
//! expr      := term ( ("or" | "||") term )*
//! term      := factor ( ("and" | "&&") factor )*
//! factor    := ("not" | "!") factor | "(" expr ")" | primitive
//! primitive := "ip" | "ip6" | "arp" | "udp" | "tcp" | "icmp"
//!            | "vlan" [ID]
//!            | [proto] [dir] "host" ADDR          (IPv4 or IPv6)
//!            | [proto] [dir] "net" A.B.C.D/LEN    (IPv4)
//!            | [proto] [dir] "port" N
//!            | [proto] [dir] "portrange" N-M
//! proto     := "udp" | "tcp"          (restricts a port primitive)
//! dir       := "src" | "dst" | "src or dst" | "src and dst"   (default: src or dst)
//! ```
//! Ports match UDP and TCP over IPv4 (first fragment only) and IPv6 (no
//! extension headers). VLAN tags are matched with the kernel's ancillary
//! data (`SKF_AD_VLAN_TAG*`), since Linux strips them before packet taps.
//!
//! Two targets: [`Target::Link`] for AF_PACKET (the program starts at the
//! Ethernet header) and [`Target::Udp`] for UDP sockets, where the kernel
//! runs the filter at the UDP header: ports are read there, addresses
//! through `SKF_NET_OFF`, and what a UDP socket can never see (tcp, arp,
//! the other IP version) folds to a constant.

mod codegen;
pub mod ddd;
pub mod interp;
mod parse;

use codegen::*;
use parse::*;

use std::net::IpAddr;

/// One classic BPF instruction `(code, jt, jf, k)`, as `tcpdump -ddd` prints it.
pub type Insn = (u16, u8, u8, u32);

/// A filter error: what is wrong and where (byte offset in the expression).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position} ('{token}')")]
pub struct FilterError {
    /// What is wrong.
    pub message: String,
    /// Byte offset of the offending token.
    pub position: usize,
    /// The offending token (empty at the end of the input).
    pub token: String,
}

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// At the link-layer (Ethernet) header: AF_PACKET sockets.
    Link,
    /// At the UDP header of a UDP socket of this IP version (true: IPv6).
    Udp {
        /// The socket is IPv6.
        ipv6: bool,
    },
}

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_MSH: u16 = 0xb1;
const ALU_AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;

const SKF_AD_OFF: u32 = 0xffff_f000;
const SKF_AD_PKTTYPE: u32 = 4;
const SKF_AD_VLAN_TAG: u32 = 44;
const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
const SKF_NET_OFF: u32 = 0xfff0_0000;
/// Largest program the kernel accepts.
pub const MAX_INSNS: usize = 4096;

/// A compiled filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program(pub Vec<Insn>);

fn compile_expr(e: &Expr, target: Target) -> Result<Program, String> {
    let mut g = Gen { items: Vec::new(), labels: 0, target };
    let accept = g.label();
    let reject = g.label();
    g.expr(e, accept, reject);
    g.assemble(accept, reject).map(Program)
}

/// Compiles `expr` for `target`.
pub fn compile(expr: &str, target: Target) -> Result<Program, FilterError> {
    let e = parse(expr)?;
    compile_expr(&e, target).map_err(|m| FilterError { message: m, position: 0, token: expr.to_string() })
}

/// Compiles `expr` for an AF_PACKET capture of received traffic: the
/// expression, and not a packet this host sent (see `afpacket::DROP_OUTGOING`).
pub fn compile_inbound(expr: &str) -> Result<Program, FilterError> {
    let e = parse(expr)?;
    let e = Expr::And(Box::new(Expr::Not(Box::new(Expr::Outgoing))), Box::new(e));
    compile_expr(&e, Target::Link).map_err(|m| FilterError {
        message: m,
        position: 0,
        token: expr.to_string(),
    })
}

/// Wraps a program read from a file so that it also drops outgoing packets.
pub fn inbound(prog: &Program) -> Program {
    // ldh pkttype; jeq OUTGOING → ret 0; else fall into the user's program.
    let mut v = vec![(LD_H_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE), (JEQ_K, 0, 1, 4), (RET_K, 0, 0, 0)];
    v.extend_from_slice(&prog.0);
    Program(v)
}

#[cfg(test)]
mod tests;
