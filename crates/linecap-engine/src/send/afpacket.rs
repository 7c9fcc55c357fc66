//! The `afpacket` generator: Ethernet/IPv4/UDP frames built by linecap
//! itself in an AF_PACKET TX ring (TPACKET_V2, qdisc bypass), one `send`
//! per batch to hand them to the driver. No socket buffers, no UDP stack on
//! the sending side: how a line-rate generator is made without kernel bypass.
//!
//! The frame header is constant (IP id 0 with DF, UDP checksum 0), so it is
//! built once; each packet gets the template and its `seq` payload (and,
//! with `--flows N`, its flow's source port).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use super::pacing::Pacer;
use super::socket::{SendConfig, SendReport};
use crate::format::l2l4::ipv4_checksum;
use crate::format::seq;
use crate::sys::packet::{self as pk, TP_STATUS_WRONG_FORMAT, TxRing};
use crate::sys::{self};

/// Ethernet + IPv4 + UDP header bytes of a generated frame.
pub const HDR: usize = 14 + 20 + 8;
const TX_FRAMES: u32 = 4096;

/// Finds the MAC address of `ip` on `dev` in `/proc/net/arp` text.
pub fn parse_arp(text: &str, ip: Ipv4Addr, dev: &str) -> Option<[u8; 6]> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[0].parse::<Ipv4Addr>().ok()? != ip || f[5] != dev {
            return None;
        }
        let mut mac = [0u8; 6];
        let mut parts = f[3].split(':');
        for m in &mut mac {
            *m = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        (mac != [0; 6]).then_some(mac)
    })
}

/// The constant Ethernet + IPv4 + UDP header of every frame.
pub fn frame_header(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: usize,
) -> [u8; HDR] {
    let mut h = [0u8; HDR];
    h[0..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { return h };
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&s.ip().octets());
    ip[16..20].copy_from_slice(&d.ip().octets());
    let c = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut h[34..42];
    udp[0..2].copy_from_slice(&s.port().to_be_bytes());
    udp[2..4].copy_from_slice(&d.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    h
}

/// Where a raw-frame generator sends: the interface and the constant
/// Ethernet/IPv4/UDP header of its frames (shared by the afpacket, xdp and
/// xdp-live generators).
pub struct FrameTarget {
    /// Interface index.
    pub ifindex: u32,
    /// The header every frame starts with.
    pub header: [u8; HDR],
}

impl FrameTarget {
    /// Resolves the interface's MAC and IPv4 address and the destination's
    /// MAC (from the neighbour table), for UDP source port `src_port`.
    pub fn resolve(iface: &str, cfg: &SendConfig, src_port: u16, backend: &str) -> crate::Result<Self> {
        let SocketAddr::V4(to) = cfg.to else {
            return Err(crate::Error::InvalidConfig(format!("--backend {backend} sends IPv4 only for now")));
        };
        let ifindex = pk::if_index(iface).map_err(|_| {
            crate::failed!("interface '{iface}' not found in this network namespace (see 'ip link')")
        })?;
        let src_mac = pk::if_hwaddr(iface)?;
        let src_ip =
            pk::if_ipv4(iface).map_err(|e| crate::failed!("interface '{iface}' has no IPv4 address: {e}"))?;
        let arp = std::fs::read_to_string("/proc/thread-self/net/arp").unwrap_or_default();
        let dst_mac = parse_arp(&arp, *to.ip(), iface).ok_or_else(|| {
            crate::failed!(
                "no neighbour entry for {} on {iface}: ping it once, or add one with 'ip neigh add'",
                to.ip()
            )
        })?;
        let src_port = cfg.src_port.unwrap_or(src_port);
        let header = frame_header(src_mac, dst_mac, SocketAddr::from((src_ip, src_port)), cfg.to, cfg.size);
        Ok(Self { ifindex, header })
    }
}

fn open(iface: &str, cfg: &SendConfig) -> crate::Result<(OwnedFd, TxRing, [u8; HDR])> {
    let target = FrameTarget::resolve(iface, cfg, 40_000, "afpacket")?;
    let fd = pk::packet_socket().map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            crate::failed!("AF_PACKET needs CAP_NET_RAW: run as root or grant it with setcap")
        } else {
            crate::failed!("cannot open an AF_PACKET socket: {e}")
        }
    })?;
    pk::set_v2(&fd)?;
    pk::set_qdisc_bypass(&fd)?;
    let frame = (HDR + cfg.size + 32).next_multiple_of(64) as u32;
    let ring = TxRing::setup(&fd, frame.max(256), TX_FRAMES)
        .map_err(|e| crate::failed!("cannot set up the TX ring: {e}"))?;
    pk::bind_iface(&fd, target.ifindex)?;
    Ok((fd, ring, target.header))
}

/// What every frame-building generator (afpacket, xdp, xdp-live) asks of
/// its options: seq payloads, a bounded run, one sending thread (`why`).
pub fn check_frame_sender(cfg: &SendConfig, why_one_thread: &str) -> crate::Result<()> {
    crate::ensure_valid!(
        cfg.size >= seq::MIN_LEN,
        "--size must be at least {} bytes for the seq format",
        seq::MIN_LEN
    );
    crate::ensure_valid!(
        cfg.count.is_some() || cfg.duration.is_some(),
        "give --count or --duration: every traffic run is bounded"
    );
    crate::ensure_valid!(cfg.threads == 1, "{why_one_thread}");
    Ok(())
}

/// Sends through the TX ring until the count or duration is reached, or SIGINT.
pub fn run(cfg: &SendConfig, iface: &str) -> crate::Result<SendReport> {
    check_frame_sender(cfg, "--backend afpacket sends from one thread (one TX ring)")?;
    crate::ensure_valid!(!cfg.gso, "--gso applies to the socket backend only");
    let (fd, mut ring, header) = open(iface, cfg)?;
    let base_port = super::flows::frame_base_port(&header, cfg)?;
    crate::ensure_valid!(HDR + cfg.size <= ring.max_frame(), "--size {} does not fit a frame", cfg.size);
    super::pin_sender(cfg.cpus.first().copied());
    let len = HDR + cfg.size;
    let frames = ring.frames();
    let batch = cfg.batch.clamp(1, frames / 2) as u64;
    let start = sys::monotonic_ns();
    let deadline = cfg.duration.map(|d| start + d.as_nanos() as u64);
    let rate = cfg.rate.pps(cfg.size);
    let mut pacer = Pacer::new(rate, if rate.is_some() { cfg.burst.max(1) } else { batch }, start);
    let (mut sent, mut errors, mut next) = (0u64, 0u64, 0usize);
    let mut submitted = Vec::with_capacity(batch as usize);
    while let Some(want) =
        super::next_turn(&mut pacer, deadline, cfg.count.map_or(u64::MAX, |c| c - sent), batch)
    {
        submitted.clear();
        for k in 0..want {
            let Some(buf) = ring.data_mut(next) else { break };
            buf[..HDR].copy_from_slice(&header);
            super::flows::set_frame_flow(buf, base_port, sent + k, cfg);
            cfg.format.fill(&mut buf[HDR..len], sent + k);
            ring.submit(next, len);
            submitted.push(next);
            next = (next + 1) % frames;
        }
        match pk::tx_kick(&fd) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)) => {
                errors += 1
            }
            Err(e) => return Err(crate::failed!("AF_PACKET send on {iface} failed: {e}")),
        }
        // The kick is blocking: every submitted frame is done or refused now.
        let refused =
            submitted.iter().filter(|&&i| ring.status(i) & TP_STATUS_WRONG_FORMAT != 0).count() as u64;
        errors += refused;
        let ok = submitted.len() as u64 - refused;
        sent += ok;
        pacer.sent(ok);
        if submitted.is_empty() {
            std::thread::yield_now();
        }
    }
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    let (u, s) = sys::thread_cpu_ns();
    Ok(SendReport::frames(super::socket::Generator::Afpacket, sent, cfg.size, elapsed, u + s, errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::l2l4::{Decoded, decode};

    #[test]
    fn arp_lookup() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n198.18.0.2       0x1         0x6         2a:86:bc:4c:f5:b0     *        lct\n198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        lct\n";
        assert_eq!(
            parse_arp(t, "198.18.0.2".parse().unwrap(), "lct"),
            Some([0x2a, 0x86, 0xbc, 0x4c, 0xf5, 0xb0])
        );
        assert_eq!(parse_arp(t, "198.18.0.2".parse().unwrap(), "other"), None);
        assert_eq!(parse_arp(t, "198.18.0.3".parse().unwrap(), "lct"), None, "incomplete entry");
        assert_eq!(parse_arp("garbage", "1.2.3.4".parse().unwrap(), "x"), None);
    }

    #[test]
    fn header_decodes_as_the_datagram() {
        let h = frame_header(
            [1; 6],
            [2; 6],
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:9000".parse().unwrap(),
            100,
        );
        let mut f = h.to_vec();
        f.extend_from_slice(&[7u8; 100]);
        let Decoded::Udp(u) = decode(&f, None) else { panic!() };
        assert_eq!(u.dst, "198.18.0.2:9000".parse().unwrap());
        assert_eq!(u.payload_len, 100);
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
    }
}
