//! The one parser of what the kernel writes beside a received datagram:
//! its sender (a `sockaddr` as bytes) and its control messages (receive
//! timestamp, UDP GRO segment size). Safe code over byte slices, bounds
//! checked and saturating: `recvmmsg` and io_uring both hand their buffers
//! to it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// What the control messages of one datagram said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// Kernel receive timestamp (ns since the epoch), 0 if none.
    pub ts_ns: u64,
    /// UDP GRO segment size (a super-packet of equal datagrams), 0 if none.
    pub gro_segment: u16,
}

/// Reads a kernel sockaddr (as bytes) into an address; `None` when unknown.
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let flowinfo = u32::from_ne_bytes(b.get(4..8)?.try_into().ok()?);
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, flowinfo, scope)))
        }
        _ => None,
    }
}

/// Reads the control messages linecap asks for.
pub fn parse_control(mut c: &[u8]) -> Control {
    let (mut ts, mut seg) = (0, 0);
    let hdr = 16; // cmsghdr on 64-bit Linux: len (8), level (4), type (4)
    while c.len() >= hdr {
        let len = u64::from_ne_bytes(c[0..8].try_into().expect("8")) as usize;
        let level = i32::from_ne_bytes(c[8..12].try_into().expect("4"));
        let ty = i32::from_ne_bytes(c[12..16].try_into().expect("4"));
        if len < hdr || len > c.len() {
            break;
        }
        let data = &c[hdr..len];
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) if data.len() >= 16 => {
                let s = u64::from_ne_bytes(data[0..8].try_into().expect("8"));
                let ns = u64::from_ne_bytes(data[8..16].try_into().expect("8"));
                // Saturating: the words are the kernel's, but a parser
                // never trusts arithmetic on what it reads.
                ts = s.saturating_mul(1_000_000_000).saturating_add(ns);
            }
            (libc::SOL_UDP, libc::UDP_GRO) if data.len() >= 4 => {
                seg = i32::from_ne_bytes(data[0..4].try_into().expect("4")) as u16;
            }
            _ => {}
        }
        c = &c[len.next_multiple_of(8).min(c.len())..];
    }
    Control { ts_ns: ts, gro_segment: seg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_bytes() {
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&9000u16.to_be_bytes());
        b[4..8].copy_from_slice(&[198, 18, 0, 1]);
        assert_eq!(parse_sockaddr(&b), Some("198.18.0.1:9000".parse().unwrap()));
        assert_eq!(parse_sockaddr(&b[..3]), None);
        assert_eq!(parse_sockaddr(&[0u8; 16]), None);
    }

    #[test]
    fn control_messages() {
        let mut c = Vec::new();
        // SCM_TIMESTAMPNS: len 32 (16 header + 16 timespec)
        c.extend_from_slice(&32u64.to_ne_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        c.extend_from_slice(&5u64.to_ne_bytes());
        c.extend_from_slice(&7u64.to_ne_bytes());
        // UDP_GRO: len 20, padded to 24
        c.extend_from_slice(&20u64.to_ne_bytes());
        c.extend_from_slice(&libc::SOL_UDP.to_ne_bytes());
        c.extend_from_slice(&libc::UDP_GRO.to_ne_bytes());
        c.extend_from_slice(&272i32.to_ne_bytes());
        c.extend_from_slice(&[0; 4]);
        assert_eq!(parse_control(&c), Control { ts_ns: 5_000_000_007, gro_segment: 272 });
        assert_eq!(parse_control(&c[..20]), Control::default(), "truncated");
        assert_eq!(parse_control(&[0xff; 40]), Control::default());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = parse_control(&data);
            let _ = parse_sockaddr(&data);
        }
    }
}
