//! Socket options and addresses: UDP sockets, buffers, busy polling, the
//! socket's own counters.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{cmsg, cvt};

/// `SO_MEMINFO` and the index of the drop counter in its answer (linux/sock_diag.h).
const SO_MEMINFO: libc::c_int = 55;
const SK_MEMINFO_DROPS: usize = 8;
const SK_MEMINFO_VARS: usize = 9;
/// `SO_RCVBUFFORCE`: raise the receive buffer above `rmem_max` (needs CAP_NET_ADMIN).
const SO_RCVBUFFORCE: libc::c_int = 33;

/// Creates a UDP socket of the family of `addr`, close-on-exec.
pub fn udp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall with constant arguments; the returned fd is owned
    // by the OwnedFd below and closed exactly once.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket() and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets an integer socket option.
pub fn setsockopt_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

fn setsockopt_bytes(fd: &impl AsRawFd, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is a valid buffer of `value.len()` bytes for the call's
    // duration; the kernel copies it and keeps no reference.
    cvt(unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), value.len() as libc::socklen_t)
    })
    .map(drop)
}

/// Reads an integer socket option.
pub fn getsockopt_int(fd: &impl AsRawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` holds the size of `value`.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len) })?;
    Ok(value)
}

/// Preferred busy polling on a socket (Linux 5.11+): a receive call on it
/// polls the device's NAPI context for up to `usecs` itself, up to `budget`
/// packets per poll, and while the socket keeps polling the kernel defers
/// the device's interrupts and softirq work to it (with the device's
/// `napi_defer_hard_irqs` and `gro_flush_timeout` set).
/// Preferring busy polling and raising its time or budget need
/// CAP_NET_ADMIN (EPERM without it); kernels before 5.11 know neither
/// option (ENOPROTOOPT).
pub fn set_busy_poll(fd: &impl AsRawFd, usecs: u32, budget: u32) -> io::Result<()> {
    let set = || {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, 1)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, usecs as i32)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL_BUDGET, budget as i32)
    };
    set().inspect_err(|_| {
        // Half set (preferred, then refused the time): not preferred either.
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, 0);
    })
}

/// A non-blocking receive whose only purpose is its side effect (a busy
/// poll of the device, a wake-up of an AF_XDP socket); a datagram that was
/// waiting is discarded.
pub fn poke_recv(fd: &impl AsRawFd) {
    // SAFETY: a zero-length non-blocking recvfrom writes nothing; the result
    // (a length or EAGAIN) does not matter.
    unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

/// The NAPI context the socket last received from (0: none known, so busy
/// polling it polls nothing).
pub fn napi_id(fd: &impl AsRawFd) -> io::Result<u32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID).map(|v| v as u32)
}

/// The socket's drop counter (`sk_drops`), exact and cumulative: datagrams the
/// kernel discarded because the receive buffer was full.
pub fn socket_drops(fd: &impl AsRawFd) -> io::Result<u64> {
    Ok(u64::from(socket_meminfo(fd)?[SK_MEMINFO_DROPS]))
}

/// `MEMBARRIER_CMD_GLOBAL` (linux/membarrier.h).
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// Waits for one RCU grace period of the whole machine:
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` is the kernel's `synchronize_rcu()`.
/// When it returns, every softirq or NAPI poll that was delivering a packet
/// when it was called has finished: a UDP socket lookup takes no reference
/// (the socket is freed only after a grace period), so a datagram steered to
/// a socket is on that socket's queue before the read-side section of its
/// lookup ends. Takes milliseconds; refused on `nohz_full` machines.
pub fn wait_rcu_grace_period() -> io::Result<()> {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    cvt(unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) }).map(|_| ())
}

/// Bytes (truesize) held in the socket's receive queue now
/// (`SK_MEMINFO_RMEM_ALLOC`).
pub fn socket_queued_bytes(fd: &impl AsRawFd) -> io::Result<u64> {
    Ok(u64::from(socket_meminfo(fd)?[0]))
}

fn socket_meminfo(fd: &impl AsRawFd) -> io::Result<[u32; SK_MEMINFO_VARS]> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, info.as_mut_ptr().cast(), &mut len)
    })?;
    Ok(info)
}

/// Sets the receive buffer, forcing it above `rmem_max` when privileged.
/// Returns the size the kernel reports afterwards (it doubles the request).
pub fn set_rcvbuf(fd: &impl AsRawFd, bytes: i32) -> io::Result<(i32, bool)> {
    let forced = setsockopt_int(fd, libc::SOL_SOCKET, SO_RCVBUFFORCE, bytes).is_ok();
    if !forced {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)?;
    }
    Ok((getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?, forced))
}

/// Sets the send buffer, forcing above `wmem_max` when privileged.
pub fn set_sndbuf(fd: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    const SO_SNDBUFFORCE: i32 = 32;
    if setsockopt_int(fd, libc::SOL_SOCKET, SO_SNDBUFFORCE, bytes).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)?;
    }
    Ok(())
}

/// Sets `SO_RCVTIMEO`, so a blocking receive wakes up to look at stop flags.
pub fn set_rcvtimeo(fd: &impl AsRawFd, micros: i64) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: micros / 1_000_000, tv_usec: micros % 1_000_000 };
    // SAFETY: `timeval` is plain old data; viewing it as bytes is sound.
    let bytes =
        unsafe { std::slice::from_raw_parts((&raw const tv).cast::<u8>(), size_of::<libc::timeval>()) };
    setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, bytes)
}

/// Joins an IPv4 multicast group on the interface with address `iface`.
pub fn join_multicast_v4(fd: &impl AsRawFd, group: Ipv4Addr, iface: Ipv4Addr) -> io::Result<()> {
    let mreq = libc::ip_mreq {
        imr_multiaddr: libc::in_addr { s_addr: u32::from_ne_bytes(group.octets()) },
        imr_interface: libc::in_addr { s_addr: u32::from_ne_bytes(iface.octets()) },
    };
    // SAFETY: `ip_mreq` is plain old data.
    let bytes =
        unsafe { std::slice::from_raw_parts((&raw const mreq).cast::<u8>(), size_of::<libc::ip_mreq>()) };
    setsockopt_bytes(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, bytes)
}

/// Converts a Rust socket address into a `sockaddr_storage` and its length.
pub fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid `sockaddr_storage`.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (&raw mut ss).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Converts a kernel-filled `sockaddr_storage` into a Rust address.
pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: a sockaddr_storage is plain bytes, readable as such for its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (ss as *const libc::sockaddr_storage).cast::<u8>(),
            size_of::<libc::sockaddr_storage>(),
        )
    };
    cmsg::parse_sockaddr(bytes)
}

/// Binds a socket.
pub fn bind(fd: &impl AsRawFd, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

/// Connects a datagram socket (fixes its peer so sends need no address).
pub fn connect(fd: &impl AsRawFd, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid address of `len` bytes.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

/// The address a socket is bound to.
pub fn local_addr(fd: &impl AsRawFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid `sockaddr_storage`.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` is writable for `len` bytes.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len) })?;
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("socket has no IP address"))
}
