//! Turning UDP GRO off for real: a fresh socket takes the old one's place.
//!
//! `UDP_GRO` on a socket turns on the kernel's `udp_encap_needed_key` until
//! that socket closes: from then on every UDP packet the machine receives
//! is looked up again in GRO and checked for encapsulation at delivery,
//! whether the socket still asks for GRO or not (`setsockopt(UDP_GRO, 0)`
//! does not undo it). Measured on the testbed (SCHED_FIFO NAPI thread, a
//! `sendmmsg` sender at its maximum, 3 runs each): a capture whose GRO had
//! been switched off in place delivered 203–245 k datagrams in 2 s where
//! one that never had GRO delivered 316–340 k. So when the policy turns GRO
//! off, a new socket without it replaces the old one, and the old one's
//! close releases the key.
//!
//! The swap loses nothing: the old socket and the new one form a
//! `SO_REUSEPORT` group, whose program sends every datagram to the newer
//! member; the old socket is read until no datagram can reach it any more,
//! one RCU grace period after the program took over (see
//! [`sys::wait_rcu_grace_period`]), and then closed (what it held and
//! dropped is counted). The wait is short (8–24 ms measured here, against
//! the 100 ms timer it replaces, which only guessed how long a datagram can
//! be in flight): until the old socket closes, its `UDP_GRO` keeps the
//! kernel's GRO lookup on for every UDP packet of the machine. Where the
//! grace period cannot be waited for, the old socket closes on that timer
//! ([`GRACE_NS`]). Outside a swap the
//! socket has no `SO_REUSEPORT`, so no other socket can join its port and
//! take a share of the stream; during one, only a socket of the same user
//! (root, for a capture started as root) could.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{SocketOptions, Spread, open_udp_socket};
use crate::sys;

/// How long the old socket is read after a swap before it closes when the
/// grace period cannot be waited for: far longer than a datagram the kernel
/// steered to it before the program took over can take to reach its queue.
pub(super) const GRACE_NS: u64 = 100_000_000;

/// A reuseport program that picks the group's second member: the new
/// socket during a swap (the old one is the first). With one member left
/// the index is out of range and the kernel picks by hash: that member.
const TO_SECOND_MEMBER: [crate::filter::Insn; 1] = [(0x06, 0, 0, 1)];

/// The socket a swap replaced, read until no datagram can reach it.
pub(super) struct Retiring {
    pub(super) fd: OwnedFd,
    /// Set once an RCU grace period has passed since the program took over.
    grace_passed: Arc<AtomicBool>,
    /// When it closes anyway (the grace period could not be waited for).
    until_ns: u64,
}

impl Retiring {
    /// Starts waiting for the grace period on a thread of its own (it takes
    /// milliseconds; the receive thread goes on reading both sockets), with
    /// a timer `fallback_ns` from now for a kernel that refuses the wait.
    pub(super) fn start(fd: OwnedFd, fallback_ns: u64) -> Self {
        let grace_passed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&grace_passed);
        let waiter = std::thread::Builder::new().name("linecap-grace".into()).spawn(move || {
            match sys::wait_rcu_grace_period() {
                Ok(()) => flag.store(true, Ordering::Release),
                Err(e) => tracing::debug!(
                    "cannot wait for an RCU grace period ({e}): the GRO swap waits on a timer"
                ),
            }
        });
        if let Err(e) = waiter {
            tracing::debug!("cannot start the grace-period waiter ({e}): the GRO swap waits on a timer");
        }
        Self { fd, grace_passed, until_ns: sys::monotonic_ns() + fallback_ns }
    }

    /// Whether no datagram can reach the old socket any more. Asked before
    /// the receive that finds it empty: a datagram queued before the answer
    /// is then found by that receive.
    pub(super) fn unreachable(&self) -> bool {
        self.grace_passed.load(Ordering::Acquire) || sys::monotonic_ns() >= self.until_ns
    }
}

/// Whether a socket with these options can be replaced without loss or
/// duplicates: one socket (a reuseport group of several is spread by the
/// kernel's hash or a program of its own) and no multicast group (every
/// member of a reuseport group receives each multicast datagram).
pub(super) fn can_swap(opts: &SocketOptions) -> bool {
    !opts.reuseport && opts.join.is_none() && opts.gro_adaptive
}

/// Opens a socket like `opts` without GRO, bound to `local` beside `old`,
/// with every new datagram steered to it; `old` is then [`Retiring`]. The
/// new socket must get at least `rcvbuf` (what the old one was granted): a
/// capture that dropped its privileges (`--user`) could not force as much.
pub(super) fn fresh_socket_beside(
    old: &OwnedFd,
    opts: &SocketOptions,
    local: SocketAddr,
    rcvbuf: i32,
) -> io::Result<OwnedFd> {
    let fresh =
        SocketOptions { listen: local, gro: false, reuseport: true, spread: Spread::Hash, ..opts.clone() };
    set_reuseport(old, true)?;
    let opened = open_udp_socket(&fresh).and_then(|(fd, setup)| {
        if setup.rcvbuf < rcvbuf {
            let why = format!("its receive buffer would be {} bytes, not {rcvbuf}", setup.rcvbuf);
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
        }
        sys::packet::attach_reuseport_filter(&fd, &TO_SECOND_MEMBER).map(|()| fd)
    });
    if opened.is_err() {
        // Closed to others again; the old socket goes on alone.
        let _ = set_reuseport(old, false);
    }
    opened
}

/// Closes the group to other sockets once the old member is gone.
pub(super) fn settle(fd: &OwnedFd) -> io::Result<()> {
    set_reuseport(fd, false)
}

fn set_reuseport(fd: &OwnedFd, on: bool) -> io::Result<()> {
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, i32::from(on))
}
