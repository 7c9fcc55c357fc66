//! The UDP relay: forwards every received UDP payload to another address,
//! in order, straight from the receive buffers (one iovec per payload, no
//! copy in user space), runs of equal length gathered into UDP GSO
//! super-packets, one `sendmmsg` per batch. It never waits: a payload the
//! socket buffer cannot take is dropped and counted, so a slow or absent
//! destination never slows the capture.
//!
//! Its books: offered = relayed + dropped (socket buffer full) + errors
//! (the destination refused, the route vanished, ...), for UDP packets;
//! frames that are not UDP datagrams (raw backends) are counted apart.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use super::Sink;
use crate::packet::Batch;
use crate::stats::{RelayIdx, StageCounters};
use crate::sys::{self, mmsg::GatherTx};

/// Relay options.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Where to send.
    pub to: SocketAddr,
    /// Gather equal-length runs into UDP GSO super-packets.
    pub gso: bool,
    /// Socket send buffer (bytes; forced above wmem_max when root).
    pub sndbuf: i32,
}

/// The relay's final figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayCounts {
    /// UDP payloads offered to the relay.
    pub offered: u64,
    /// Payloads the kernel took.
    pub relayed: u64,
    /// Payloads dropped because the socket buffer was full.
    pub dropped: u64,
    /// Payloads lost to send errors (refused, unreachable...).
    pub errors: u64,
    /// Frames that were not UDP datagrams, not relayed.
    pub not_udp: u64,
    /// sendmmsg calls.
    pub syscalls: u64,
    /// Messages sent (a GSO super-packet counts once).
    pub messages: u64,
}

/// Forwards payloads to one address.
pub struct RelaySink {
    fd: OwnedFd,
    tx: GatherTx,
    gso: bool,
    counts: RelayCounts,
    counters: StageCounters,
    last_error: Option<String>,
    /// Indexes of the batch's UDP packets (reused: no allocation per batch).
    idx: Vec<usize>,
}

impl RelaySink {
    /// Opens a socket connected to `o.to`.
    pub fn start(o: &RelayOptions, counters: StageCounters) -> io::Result<Self> {
        let fd = sys::udp_socket(&o.to)?;
        sys::set_sndbuf(&fd, o.sndbuf)?;
        sys::connect(&fd, &o.to)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot relay to {}: {e}", o.to)))?;
        Ok(Self {
            fd,
            tx: GatherTx::new(),
            gso: o.gso,
            counts: RelayCounts::default(),
            counters,
            last_error: None,
            idx: Vec::new(),
        })
    }

    /// The figures so far.
    pub fn counts(&self) -> RelayCounts {
        self.counts
    }

    fn publish(&self) {
        let c = &self.counts;
        let set = |i: RelayIdx, v: u64| self.counters.set(i as usize, v);
        set(RelayIdx::Offered, c.offered);
        set(RelayIdx::Relayed, c.relayed);
        set(RelayIdx::Dropped, c.dropped);
        set(RelayIdx::Errors, c.errors);
        set(RelayIdx::NotUdp, c.not_udp);
        set(RelayIdx::Syscalls, c.syscalls);
        set(RelayIdx::Messages, c.messages);
    }
}

impl Sink for RelaySink {
    fn consume(&mut self, batch: &Batch<'_>) {
        // Raw backends may deliver frames that are not UDP: relay the UDP
        // payloads only, in order.
        self.idx.clear();
        self.idx.extend((0..batch.len()).filter(|&i| batch.get(i).is_udp));
        let udp = self.idx.len();
        self.counts.not_udp += (batch.len() - udp) as u64;
        if udp == 0 {
            return;
        }
        self.counts.offered += udp as u64;
        let idx = &self.idx;
        let get = |i: usize| batch.get(idx[i]).data;
        let mut r = self.tx.send(&self.fd, udp, self.gso, get);
        if self.gso
            && r.packets == 0
            && matches!(
                r.error.as_ref().and_then(io::Error::raw_os_error),
                Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
            )
        {
            // The route's device cannot segment: plain datagrams from now on.
            tracing::warn!(
                "relay: UDP GSO refused ({}); sending plain datagrams",
                r.error.as_ref().map_or(String::new(), ToString::to_string)
            );
            self.gso = false;
            r = self.tx.send(&self.fd, udp, false, get);
        }
        let rest = (udp - r.packets) as u64;
        self.counts.relayed += r.packets as u64;
        self.counts.syscalls += r.calls as u64;
        self.counts.messages += r.messages as u64;
        match r.error {
            None => self.counts.dropped += rest,
            Some(e) => {
                self.counts.errors += rest;
                if rest > 0 && self.last_error.is_none() {
                    tracing::warn!("relay: {e} (counted; the capture goes on)");
                }
                self.last_error = Some(e.to_string());
            }
        }
        self.publish();
    }

    fn tick(&mut self) {
        self.publish();
    }

    fn finish(&mut self) -> crate::Result<()> {
        self.publish();
        Ok(())
    }

    fn name(&self) -> &'static str {
        "relay"
    }
}
