//! Where replayed packets go: UDP payloads through a connected socket
//! (`sendmmsg` batches) or whole frames through an AF_PACKET TX ring with
//! their addresses rewritten where asked; and what each counted.

use std::net::SocketAddr;

use super::LateHistogram;
use crate::format::l2l4::{self, Decoded};
use crate::packet::Packet;
use crate::send::socket::MAX_UDP_PAYLOAD;
use crate::sys::packet as pk;
use crate::sys::{self, mmsg::MmsgTx};

/// What every output counts, and the call being filled.
#[derive(Default)]
pub(super) struct Tally {
    /// Packets queued in the current call, and the due time of its first.
    queued: usize,
    first_due: Option<u64>,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) errors: u64,
    pub(super) refused: u64,
    /// Frames that could not be sent as they are (too large for a ring frame).
    pub(super) unsendable: u64,
    pub(super) late: LateHistogram,
}

impl Tally {
    fn queue(&mut self, bytes: usize, due: Option<u64>) {
        self.queued += 1;
        self.bytes += bytes as u64;
        if self.first_due.is_none() {
            self.first_due = due;
        }
    }

    /// The queued call went out: its lateness is its first packet's.
    fn sent(&mut self) {
        if let Some(due) = self.first_due.take() {
            self.late.add(sys::monotonic_ns().saturating_sub(due), self.queued as u64);
        }
        self.packets += self.queued as u64;
        self.queued = 0;
    }
}

/// Where replayed packets go.
pub(super) trait Output {
    /// Queues one packet (sending the call first when it is full).
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()>;
    /// Sends the queued packets.
    fn flush(&mut self) -> crate::Result<()>;
    /// What was sent.
    fn tally(&self) -> &Tally;
}

/// UDP payloads through a connected socket, `sendmmsg` batches.
pub(super) struct SocketOut {
    fd: std::os::fd::OwnedFd,
    tx: MmsgTx,
    batch: usize,
    t: Tally,
}

impl SocketOut {
    pub(super) fn open(to: SocketAddr, batch: usize) -> crate::Result<Self> {
        let fd = sys::udp_socket(&to)?;
        let _ = sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        sys::connect(&fd, &to).map_err(|e| crate::failed!("cannot send to {to}: {e}"))?;
        Ok(SocketOut { fd, tx: MmsgTx::new(batch, MAX_UDP_PAYLOAD), batch, t: Tally::default() })
    }
}

impl Output for SocketOut {
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()> {
        if self.t.queued == self.batch {
            self.flush()?;
        }
        let n = p.data.len().min(MAX_UDP_PAYLOAD);
        self.tx.slot_mut(self.t.queued)[..n].copy_from_slice(&p.data[..n]);
        self.tx.set(self.t.queued, n, None);
        self.t.queue(n, due);
        Ok(())
    }

    /// Sends the queued payloads, retrying what the kernel did not take.
    fn flush(&mut self) -> crate::Result<()> {
        let mut from = 0;
        let mut consecutive = 0u32;
        while from < self.t.queued {
            match self.tx.send(&self.fd, from, self.t.queued - from) {
                Ok(n) => {
                    from += n;
                    consecutive = 0;
                }
                Err(e) if transient(&e) && consecutive < 100_000 => {
                    self.t.errors += 1;
                    self.t.refused += u64::from(e.raw_os_error() == Some(libc::ECONNREFUSED));
                    consecutive += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(crate::failed!("replay send failed: {e}")),
            }
        }
        self.t.sent();
        Ok(())
    }

    fn tally(&self) -> &Tally {
        &self.t
    }
}

/// Whole frames through an AF_PACKET TX ring on an interface (qdisc
/// bypass), their addresses rewritten where asked.
pub(super) struct RingOut {
    fd: std::os::fd::OwnedFd,
    ring: pk::TxRing,
    iface: String,
    rewrite: Rewrite,
    next: usize,
    batch: usize,
    submitted: Vec<usize>,
    t: Tally,
}

/// Ring frames: room for a 1500-byte MTU frame with VLAN tags.
const RING_FRAME: u32 = 2048;
const RING_FRAMES: u32 = 4096;

impl RingOut {
    pub(super) fn open(iface: &str, rewrite: Rewrite, batch: usize) -> crate::Result<Self> {
        let ifindex = pk::if_index(iface).map_err(|_| {
            crate::failed!("interface '{iface}' not found in this network namespace (see 'ip link')")
        })?;
        let fd = pk::packet_socket().map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => {
                crate::failed!("AF_PACKET needs CAP_NET_RAW: run as root or grant it with setcap")
            }
            _ => crate::failed!("cannot open an AF_PACKET socket: {e}"),
        })?;
        pk::set_v2(&fd)?;
        pk::set_qdisc_bypass(&fd)?;
        let ring = pk::TxRing::setup(&fd, RING_FRAME, RING_FRAMES)
            .map_err(|e| crate::failed!("cannot set up the TX ring: {e}"))?;
        pk::bind_iface(&fd, ifindex)?;
        let batch = batch.clamp(1, ring.frames() / 2);
        Ok(RingOut {
            fd,
            ring,
            iface: iface.into(),
            rewrite,
            next: 0,
            batch,
            submitted: Vec::with_capacity(batch),
            t: Tally::default(),
        })
    }
}

impl Output for RingOut {
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()> {
        let Some(frame) = p.frame.filter(|f| f.len() <= self.ring.max_frame()) else {
            self.t.unsendable += 1;
            return Ok(());
        };
        if self.t.queued == self.batch {
            self.flush()?;
        }
        // The kick is blocking: after a flush every frame is user space's again.
        if self.ring.data_mut(self.next).is_none() {
            self.flush()?;
        }
        let Some(buf) = self.ring.data_mut(self.next) else {
            return Err(crate::failed!("the TX ring on {} holds a frame the kernel never sent", self.iface));
        };
        buf[..frame.len()].copy_from_slice(frame);
        self.rewrite.apply(&mut buf[..frame.len()]);
        self.ring.submit(self.next, frame.len());
        self.submitted.push(self.next);
        self.next = (self.next + 1) % self.ring.frames();
        self.t.queue(frame.len(), due);
        Ok(())
    }

    fn flush(&mut self) -> crate::Result<()> {
        if self.t.queued == 0 {
            return Ok(());
        }
        match pk::tx_kick(&self.fd) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)) => {
                self.t.errors += 1
            }
            Err(e) => return Err(crate::failed!("AF_PACKET send on {} failed: {e}", self.iface)),
        }
        // Each submitted frame is sent or refused now.
        let ring = &self.ring;
        let refused =
            self.submitted.iter().filter(|&&i| ring.status(i) & pk::TP_STATUS_WRONG_FORMAT != 0).count();
        self.submitted.clear();
        self.t.errors += refused as u64;
        self.t.queued -= refused;
        self.t.sent();
        Ok(())
    }

    fn tally(&self) -> &Tally {
        &self.t
    }
}

/// Addresses to write into every replayed frame (AF_PACKET replay), as
/// tcprewrite does: MACs as given; a new IPv4 destination with the header
/// checksum recomputed and the UDP checksum cleared (0: not computed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Source MAC.
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC.
    pub dst_mac: Option<[u8; 6]>,
    /// Destination IPv4 address of UDP datagrams.
    pub dst_ip: Option<std::net::Ipv4Addr>,
}

impl Rewrite {
    fn apply(&self, frame: &mut [u8]) {
        if frame.len() < 14 {
            return;
        }
        if let Some(m) = self.dst_mac {
            frame[0..6].copy_from_slice(&m);
        }
        if let Some(m) = self.src_mac {
            frame[6..12].copy_from_slice(&m);
        }
        let Some(ip) = self.dst_ip else { return };
        let Decoded::Udp(u) = l2l4::decode(frame, None) else { return };
        if !u.dst.is_ipv4() {
            return;
        }
        let l3 = u.l3_offset;
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        frame[l3 + 16..l3 + 20].copy_from_slice(&ip.octets());
        frame[l3 + 10..l3 + 12].fill(0);
        let c = l2l4::ipv4_checksum(&frame[l3..l3 + ihl]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        if let Some(udp_sum) = frame.get_mut(l3 + ihl + 6..l3 + ihl + 8) {
            udp_sum.fill(0);
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_frame_stays_a_valid_datagram() {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(4000, 9000)
            .write(&mut f, b"payload")
            .unwrap();
        let rw =
            Rewrite { src_mac: Some([7; 6]), dst_mac: Some([8; 6]), dst_ip: Some([198, 19, 1, 2].into()) };
        rw.apply(&mut f);
        assert_eq!((&f[0..6], &f[6..12]), (&[8u8; 6][..], &[7u8; 6][..]));
        let Decoded::Udp(u) = l2l4::decode(&f, None) else { panic!("still UDP") };
        assert_eq!(u.dst, "198.19.1.2:9000".parse().unwrap());
        assert_eq!(l2l4::ipv4_checksum(&f[14..34]), 0, "the header checksum verifies");
        assert_eq!(&f[40..42], &[0, 0], "UDP checksum cleared");
        assert_eq!(&f[u.payload_offset..], b"payload");
    }
}
