//! The tcpdump-subset expression language: tokens, and a recursive-descent
//! parser into an expression tree.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Src,
    Dst,
    Either,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    Udp,
    Tcp,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
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

pub(super) struct Parser<'a> {
    toks: Vec<(usize, &'a str)>,
    at: usize,
    len: usize,
}

pub(super) fn tokenize(s: &str) -> Vec<(usize, &str)> {
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

    /// `vlan`, with or without an id.
    fn vlan(&mut self) -> Result<Expr, FilterError> {
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
        Ok(Expr::Vlan(id))
    }

    /// `net A.B.C.D/LEN` (after `net`).
    fn net(&mut self, dir: Dir) -> Result<Expr, FilterError> {
        let a = self.peek().ok_or_else(|| self.err("expected a network"))?;
        let (addr, len) = a.split_once('/').unwrap_or((a, "32"));
        let ip = addr
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| self.err("expected an IPv4 network A.B.C.D/LEN"))?;
        let len: u32 =
            len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| self.err("prefix length must be 0-32"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = u32::from(ip);
        if net & !mask != 0 {
            return Err(self.err("network has host bits set"));
        }
        self.next();
        Ok(Expr::Net(dir, net, mask))
    }

    /// `portrange N-M` (after `portrange`).
    fn port_range(&mut self, proto: Proto, dir: Dir) -> Result<Expr, FilterError> {
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
            return self.vlan();
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
            Some("net") if proto == Proto::Any => self.net(dir),
            Some("port") => {
                let p = self.number("a port number")?;
                Ok(Expr::Port(proto, dir, p, p))
            }
            Some("portrange") => self.port_range(proto, dir),
            _ => {
                self.at -= 1;
                Err(self.err("unknown or misplaced primitive"))
            }
        }
    }
}

pub(super) fn parse(s: &str) -> Result<Expr, FilterError> {
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
