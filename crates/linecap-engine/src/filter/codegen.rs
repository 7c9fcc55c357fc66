//! Classic BPF from an expression tree: instructions with labels,
//! resolved into jump offsets, for the link or the UDP-header target.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Label(usize);

pub(super) enum Item {
    Insn(u16, u32),
    /// Conditional jump: op, k, true label, false label.
    Jump(u16, u32, Label, Label),
    Place(Label),
}

pub(super) struct Gen {
    pub(super) items: Vec<Item>,
    pub(super) labels: usize,
    pub(super) target: Target,
}

impl Gen {
    pub(super) fn label(&mut self) -> Label {
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
    pub(super) fn expr(&mut self, e: &Expr, t: Label, f: Label) {
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
                self.ipv4_address(link, dir, f);
                self.jump(JEQ_K, u32::from(a), t, f);
            }
            Expr::Host(dir, IpAddr::V6(a)) => self.host6(dir, a, t, f),
            Expr::Net(dir, net, mask) => {
                self.ipv4_address(link, dir, f);
                self.ld(ALU_AND_K, mask);
                self.jump(JEQ_K, net, t, f);
            }
            Expr::Port(proto, dir, lo, hi) => self.port(proto, dir, lo, hi, t, f),
            Expr::Vlan(None) => {
                self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
                self.jump(JEQ_K, 1, t, f);
            }
            Expr::Vlan(Some(id)) => self.vlan_id(id, t, f),
            Expr::Outgoing => {
                self.ld(LD_H_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE);
                self.jump(JEQ_K, 4, t, f);
            }
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) | Expr::Const(_) | Expr::IpProto(_, None) => {
                unreachable!("lowered before emission")
            }
        }
    }

    /// A = the IPv4 source or destination address (an IPv6 or other
    /// packet jumps to `f` when the program starts at the link header).
    fn ipv4_address(&mut self, link: bool, dir: Dir, f: Label) {
        let off = if dir == Dir::Src { 12 } else { 16 };
        if link {
            self.ethertype(0x0800, f);
            self.ld(LD_W_ABS, 14 + off);
        } else {
            self.ld(LD_W_ABS, SKF_NET_OFF + off);
        }
    }

    /// An IPv6 address, one 32-bit word at a time.
    fn host6(&mut self, dir: Dir, a: std::net::Ipv6Addr, t: Label, f: Label) {
        let link = self.target == Target::Link;
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

    /// A port or port range of TCP or UDP: after the IPv4 options (first
    /// fragments only), or right after an IPv6 header; at a socket, the
    /// UDP header itself.
    fn port(&mut self, proto: Proto, dir: Dir, lo: u16, hi: u16, t: Label, f: Label) {
        let link = self.target == Target::Link;
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

    /// A VLAN id, from the tag the kernel keeps beside the frame.
    fn vlan_id(&mut self, id: u16, t: Label, f: Label) {
        let present = self.label();
        self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
        self.jump(JEQ_K, 1, present, f);
        self.place(present);
        self.ld(LD_W_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG);
        self.ld(ALU_AND_K, 0x0fff);
        self.jump(JEQ_K, u32::from(id), t, f);
    }

    /// Resolves labels into relative jumps; appends accept/reject returns.
    pub(super) fn assemble(mut self, accept: Label, reject: Label) -> Result<Vec<Insn>, String> {
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
