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

pub mod ddd;
pub mod interp;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Either,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Const(bool),
    EtherType(u16),
    /// IP protocol over IPv4 or IPv6 (`None`: either version).
    IpProto(u8, Option<bool>),
    Host(Dir, IpAddr),
    Net(Dir, u32, u32),
    Port(Proto, Dir, u16, u16),
    Vlan(Option<u16>),
    /// The packet was sent by this host (AF_PACKET only).
    Outgoing,
}

// ---------------------------------------------------------------- parsing

struct Parser<'a> {
    toks: Vec<(usize, &'a str)>,
    at: usize,
    len: usize,
}

fn tokenize(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'(' || c == b')' {
            out.push((i, &s[i..i + 1]));
            i += 1;
        } else if (c == b'&' || c == b'|') && b.get(i + 1) == Some(&c) {
            out.push((i, &s[i..i + 2]));
            i += 2;
        } else if c == b'!' {
            out.push((i, &s[i..i + 1]));
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'(' | b')' | b'!') {
                if (b[i] == b'&' || b[i] == b'|') && b.get(i + 1) == Some(&b[i]) {
                    break;
                }
                i += 1;
            }
            out.push((start, &s[start..i]));
        }
    }
    out
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.at).map(|t| t.1)
    }

    fn err(&self, message: impl Into<String>) -> FilterError {
        let (position, token) = match self.toks.get(self.at) {
            Some(&(p, t)) => (p, t.to_string()),
            None => (self.len, String::new()),
        };
        FilterError { message: message.into(), position, token }
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.at += usize::from(t.is_some());
        t
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.term()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.term()?));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.factor()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.factor()?));
        }
        Ok(e)
    }

    fn factor(&mut self) -> Result<Expr, FilterError> {
        match self.peek() {
            Some("not" | "!") => {
                self.next();
                Ok(Expr::Not(Box::new(self.factor()?)))
            }
            Some("(") => {
                self.next();
                let e = self.expr()?;
                if self.peek() != Some(")") {
                    return Err(self.err("expected ')'"));
                }
                self.next();
                Ok(e)
            }
            Some(_) => self.primitive(),
            None => Err(self.err("expected a primitive (udp, host, port...)")),
        }
    }

    fn dir(&mut self) -> Dir {
        let d = match self.peek() {
            Some("src") => Dir::Src,
            Some("dst") => Dir::Dst,
            _ => return Dir::Either,
        };
        self.next();
        // "src or dst" / "src and dst" followed by a qualifier.
        if matches!(self.peek(), Some("or" | "and"))
            && matches!(self.toks.get(self.at + 1).map(|t| t.1), Some("src" | "dst"))
        {
            let both = self.peek() == Some("and");
            self.next();
            self.next();
            return if both { Dir::Both } else { Dir::Either };
        }
        d
    }

    fn number(&mut self, what: &str) -> Result<u16, FilterError> {
        let t = self.peek().ok_or_else(|| self.err(format!("expected {what}")))?;
        let v = t.parse::<u16>().map_err(|_| self.err(format!("expected {what} (0-65535)")))?;
        self.next();
        Ok(v)
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let t = self.peek().expect("checked by caller");
        let simple = match t {
            "ip" => Some(Expr::EtherType(0x0800)),
            "ip6" => Some(Expr::EtherType(0x86dd)),
            "arp" => Some(Expr::EtherType(0x0806)),
            "icmp" => Some(Expr::IpProto(1, Some(false))),
            _ => None,
        };
        if let Some(e) = simple {
            self.next();
            return Ok(e);
        }
        if t == "vlan" {
            self.next();
            let id = match self.peek() {
                Some(n) if n.chars().all(|c| c.is_ascii_digit()) => {
                    let v = self.number("a VLAN id")?;
                    if v > 4095 {
                        self.at -= 1;
                        return Err(self.err("VLAN id must be 0-4095"));
                    }
                    Some(v)
                }
                _ => None,
            };
            return Ok(Expr::Vlan(id));
        }
        let proto = match t {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            _ => Proto::Any,
        };
        if proto != Proto::Any {
            self.next();
            // "udp" alone, or "udp [dir] port N".
            if !matches!(self.peek(), Some("src" | "dst" | "port" | "portrange")) {
                return Ok(Expr::IpProto(if proto == Proto::Udp { 17 } else { 6 }, None));
            }
        }
        let dir = self.dir();
        match self.next() {
            Some("host") if proto == Proto::Any => {
                let a = self.peek().ok_or_else(|| self.err("expected an address"))?;
                let ip = a.parse::<IpAddr>().map_err(|_| self.err("expected an IPv4 or IPv6 address"))?;
                self.next();
                Ok(Expr::Host(dir, ip))
            }
            Some("net") if proto == Proto::Any => {
                let a = self.peek().ok_or_else(|| self.err("expected a network"))?;
                let (addr, len) = a.split_once('/').unwrap_or((a, "32"));
                let ip = addr
                    .parse::<std::net::Ipv4Addr>()
                    .map_err(|_| self.err("expected an IPv4 network A.B.C.D/LEN"))?;
                let len: u32 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= 32)
                    .ok_or_else(|| self.err("prefix length must be 0-32"))?;
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let net = u32::from(ip);
                if net & !mask != 0 {
                    return Err(self.err("network has host bits set"));
                }
                self.next();
                Ok(Expr::Net(dir, net, mask))
            }
            Some("port") => {
                let p = self.number("a port number")?;
                Ok(Expr::Port(proto, dir, p, p))
            }
            Some("portrange") => {
                let r = self.peek().ok_or_else(|| self.err("expected a port range N-M"))?;
                let (a, b) = r.split_once('-').ok_or_else(|| self.err("expected a port range N-M"))?;
                let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                    return Err(self.err("expected a port range N-M of numbers 0-65535"));
                };
                if a > b {
                    return Err(self.err("port range is reversed"));
                }
                self.next();
                Ok(Expr::Port(proto, dir, a, b))
            }
            _ => {
                self.at -= 1;
                Err(self.err("unknown or misplaced primitive"))
            }
        }
    }
}

fn parse(s: &str) -> Result<Expr, FilterError> {
    let mut p = Parser { toks: tokenize(s), at: 0, len: s.len() };
    if p.toks.is_empty() {
        return Err(p.err("empty filter"));
    }
    let e = p.expr()?;
    if p.peek().is_some() {
        return Err(p.err("unexpected token"));
    }
    Ok(e)
}

// ---------------------------------------------------------------- code

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

enum Item {
    Insn(u16, u32),
    /// Conditional jump: op, k, true label, false label.
    Jump(u16, u32, Label, Label),
    Place(Label),
}

struct Gen {
    items: Vec<Item>,
    labels: usize,
    target: Target,
}

impl Gen {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn ld(&mut self, code: u16, k: u32) {
        self.items.push(Item::Insn(code, k));
    }

    fn jump(&mut self, op: u16, k: u32, t: Label, f: Label) {
        self.items.push(Item::Jump(op, k, t, f));
    }

    fn place(&mut self, l: Label) {
        self.items.push(Item::Place(l));
    }

    /// Emits code for `e` that continues at `t` when true, `f` when false.
    fn expr(&mut self, e: &Expr, t: Label, f: Label) {
        match e {
            Expr::And(a, b) => {
                let mid = self.label();
                self.expr(a, mid, f);
                self.place(mid);
                self.expr(b, t, f);
            }
            Expr::Or(a, b) => {
                let mid = self.label();
                self.expr(a, t, mid);
                self.place(mid);
                self.expr(b, t, f);
            }
            Expr::Not(a) => self.expr(a, f, t),
            Expr::Const(c) => self.jump(JA, 0, if *c { t } else { f }, f),
            atom => {
                let lowered = self.lower(atom);
                match lowered {
                    Some(e) => self.expr(&e, t, f),
                    None => self.atom(atom, t, f),
                }
            }
        }
    }

    /// Rewrites a compound primitive into simpler ones (None: emit directly).
    fn lower(&self, e: &Expr) -> Option<Expr> {
        let and = |a, b| Expr::And(Box::new(a), Box::new(b));
        let or = |a, b| Expr::Or(Box::new(a), Box::new(b));
        let udp_socket = matches!(self.target, Target::Udp { .. });
        let ipv6_socket = matches!(self.target, Target::Udp { ipv6: true });
        Some(match e {
            Expr::EtherType(t) if udp_socket => Expr::Const(match *t {
                0x0800 => !ipv6_socket,
                0x86dd => ipv6_socket,
                _ => false,
            }),
            Expr::IpProto(p, v) if udp_socket => {
                Expr::Const(*p == 17 && v.is_none_or(|v6| v6 == ipv6_socket))
            }
            Expr::IpProto(p, None) => or(Expr::IpProto(*p, Some(false)), Expr::IpProto(*p, Some(true))),
            Expr::Host(Dir::Either, a) => or(Expr::Host(Dir::Src, *a), Expr::Host(Dir::Dst, *a)),
            Expr::Host(Dir::Both, a) => and(Expr::Host(Dir::Src, *a), Expr::Host(Dir::Dst, *a)),
            Expr::Net(Dir::Either, n, m) => or(Expr::Net(Dir::Src, *n, *m), Expr::Net(Dir::Dst, *n, *m)),
            Expr::Net(Dir::Both, n, m) => and(Expr::Net(Dir::Src, *n, *m), Expr::Net(Dir::Dst, *n, *m)),
            Expr::Host(_, IpAddr::V4(_)) | Expr::Net(..) if ipv6_socket => Expr::Const(false),
            Expr::Host(_, IpAddr::V6(_)) if udp_socket && !ipv6_socket => Expr::Const(false),
            Expr::Port(p, Dir::Either, a, b) => {
                or(Expr::Port(*p, Dir::Src, *a, *b), Expr::Port(*p, Dir::Dst, *a, *b))
            }
            Expr::Port(p, Dir::Both, a, b) => {
                and(Expr::Port(*p, Dir::Src, *a, *b), Expr::Port(*p, Dir::Dst, *a, *b))
            }
            Expr::Port(Proto::Tcp, ..) if udp_socket => Expr::Const(false),
            Expr::Port(Proto::Any, d, a, b) if !udp_socket => {
                or(Expr::Port(Proto::Udp, *d, *a, *b), Expr::Port(Proto::Tcp, *d, *a, *b))
            }
            _ => return None,
        })
    }

    /// The IPv4-or-IPv6 prefix check of a link-layer atom.
    fn ethertype(&mut self, t: u16, f: Label) {
        let ok = self.label();
        self.ld(LD_H_ABS, 12);
        self.jump(JEQ_K, u32::from(t), ok, f);
        self.place(ok);
    }

    fn range(&mut self, lo: u16, hi: u16, t: Label, f: Label) {
        if lo == hi {
            self.jump(JEQ_K, u32::from(lo), t, f);
        } else {
            let ge = self.label();
            self.jump(JGE_K, u32::from(lo), ge, f);
            self.place(ge);
            self.jump(JGT_K, u32::from(hi), f, t);
        }
    }

    fn atom(&mut self, e: &Expr, t: Label, f: Label) {
        let link = self.target == Target::Link;
        match *e {
            Expr::EtherType(ty) => {
                self.ld(LD_H_ABS, 12);
                self.jump(JEQ_K, u32::from(ty), t, f);
            }
            Expr::IpProto(p, Some(v6)) => {
                if v6 {
                    self.ethertype(0x86dd, f);
                    self.ld(LD_B_ABS, 14 + 6);
                } else {
                    self.ethertype(0x0800, f);
                    self.ld(LD_B_ABS, 14 + 9);
                }
                self.jump(JEQ_K, u32::from(p), t, f);
            }
            Expr::Host(dir, IpAddr::V4(a)) => {
                let off = if dir == Dir::Src { 12 } else { 16 };
                if link {
                    self.ethertype(0x0800, f);
                    self.ld(LD_W_ABS, 14 + off);
                } else {
                    self.ld(LD_W_ABS, SKF_NET_OFF + off);
                }
                self.jump(JEQ_K, u32::from(a), t, f);
            }
            Expr::Host(dir, IpAddr::V6(a)) => {
                let off = if dir == Dir::Src { 8 } else { 24 };
                let base = if link {
                    self.ethertype(0x86dd, f);
                    14 + off
                } else {
                    SKF_NET_OFF + off
                };
                let o = a.octets();
                for w in 0..4 {
                    let word = u32::from_be_bytes([o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]]);
                    self.ld(LD_W_ABS, base + 4 * w as u32);
                    if w == 3 {
                        self.jump(JEQ_K, word, t, f);
                    } else {
                        let next = self.label();
                        self.jump(JEQ_K, word, next, f);
                        self.place(next);
                    }
                }
            }
            Expr::Net(dir, net, mask) => {
                let off = if dir == Dir::Src { 12 } else { 16 };
                if link {
                    self.ethertype(0x0800, f);
                    self.ld(LD_W_ABS, 14 + off);
                } else {
                    self.ld(LD_W_ABS, SKF_NET_OFF + off);
                }
                self.ld(ALU_AND_K, mask);
                self.jump(JEQ_K, net, t, f);
            }
            Expr::Port(proto, dir, lo, hi) => {
                let off = if dir == Dir::Src { 0 } else { 2 };
                if !link {
                    // A UDP socket's filter starts at the UDP header.
                    self.ld(LD_H_ABS, off);
                    self.range(lo, hi, t, f);
                    return;
                }
                let p = if proto == Proto::Tcp { 6 } else { 17 };
                // IPv4: protocol, first fragment only, then the port after the options.
                let try6 = self.label();
                let v4 = self.label();
                self.ld(LD_H_ABS, 12);
                self.jump(JEQ_K, 0x0800, v4, try6);
                self.place(v4);
                let frag_ok = self.label();
                let proto_ok = self.label();
                self.ld(LD_B_ABS, 14 + 9);
                self.jump(JEQ_K, p, proto_ok, f);
                self.place(proto_ok);
                self.ld(LD_H_ABS, 14 + 6);
                self.jump(JSET_K, 0x1fff, f, frag_ok);
                self.place(frag_ok);
                self.ld(LDX_MSH, 14);
                self.ld(LD_H_IND, 14 + off);
                self.range(lo, hi, t, f);
                // IPv6 without extension headers.
                self.place(try6);
                let v6 = self.label();
                let next_ok = self.label();
                self.ld(LD_H_ABS, 12);
                self.jump(JEQ_K, 0x86dd, v6, f);
                self.place(v6);
                self.ld(LD_B_ABS, 14 + 6);
                self.jump(JEQ_K, p, next_ok, f);
                self.place(next_ok);
                self.ld(LD_H_ABS, 14 + 40 + off);
                self.range(lo, hi, t, f);
            }
            Expr::Vlan(None) => {
                self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
                self.jump(JEQ_K, 1, t, f);
            }
            Expr::Vlan(Some(id)) => {
                let present = self.label();
                self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
                self.jump(JEQ_K, 1, present, f);
                self.place(present);
                self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG);
                self.ld(ALU_AND_K, 0x0fff);
                self.jump(JEQ_K, u32::from(id), t, f);
            }
            Expr::Outgoing => {
                self.ld(LD_H_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE);
                self.jump(JEQ_K, 4, t, f);
            }
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) | Expr::Const(_) | Expr::IpProto(_, None) => {
                unreachable!("lowered before emission")
            }
        }
    }

    /// Resolves labels into relative jumps; appends accept/reject returns.
    fn assemble(mut self, accept: Label, reject: Label) -> Result<Vec<Insn>, String> {
        self.place(accept);
        self.items.push(Item::Insn(RET_K, 0xffff_ffff));
        self.place(reject);
        self.items.push(Item::Insn(RET_K, 0));
        // Label positions in instruction indices.
        let mut pos = vec![usize::MAX; self.labels];
        let mut n = 0;
        for it in &self.items {
            match it {
                Item::Place(l) => pos[l.0] = n,
                _ => n += 1,
            }
        }
        if n > MAX_INSNS {
            return Err(format!("filter needs {n} instructions, more than the kernel's {MAX_INSNS}"));
        }
        let mut out = Vec::with_capacity(n);
        for it in &self.items {
            let i = out.len();
            match *it {
                Item::Place(_) => {}
                Item::Insn(code, k) => out.push((code, 0, 0, k)),
                Item::Jump(JA, _, t, _) => out.push((JA, 0, 0, (pos[t.0] - i - 1) as u32)),
                Item::Jump(op, k, t, f) => {
                    let (jt, jf) = (pos[t.0] - i - 1, pos[f.0] - i - 1);
                    if jt > 255 || jf > 255 {
                        return Err("filter too large for classic BPF's 8-bit jumps: simplify it".into());
                    }
                    out.push((op, jt as u8, jf as u8, k));
                }
            }
        }
        Ok(out)
    }
}

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
