//! The operating-system glue: every raw syscall, `mmap` and socket option
//! that linecap uses lives here, behind safe wrappers.
//!
//! This is the only module allowed to use `unsafe`. Every `unsafe` block
//! carries a `// SAFETY:` line saying why it holds. The rest of the crate
//! sees file descriptors, byte slices and `io::Result`s.
//!
//! Calls that fail go through [`cvt`], which turns the C convention
//! (`-1` + `errno`) into `io::Error` so callers can match on the kind.

pub mod bpf;
pub mod cmsg;
pub mod mmsg;
pub mod packet;
pub mod shm;
pub mod slots;
pub mod uring;
pub mod user;
pub mod xsk;

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// `SO_MEMINFO` and the index of the drop counter in its answer (linux/sock_diag.h).
const SO_MEMINFO: libc::c_int = 55;
const SK_MEMINFO_DROPS: usize = 8;
const SK_MEMINFO_VARS: usize = 9;
/// `SO_RCVBUFFORCE`: raise the receive buffer above `rmem_max` (needs CAP_NET_ADMIN).
const SO_RCVBUFFORCE: libc::c_int = 33;
/// ethtool ioctl commands (linux/ethtool.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_STSO: u32 = 0x1f;

/// Turns a C return value into an `io::Result`, reading `errno` on `-1`.
pub fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

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
/// CAP_NET_ADMIN; the error says so.
pub fn set_busy_poll(fd: &impl AsRawFd, usecs: u32, budget: u32) -> io::Result<()> {
    let set = || {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, 1)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, usecs as i32)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL_BUDGET, budget as i32)
    };
    set().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) => {
            io::Error::new(e.kind(), format!("{e}; busy polling needs CAP_NET_ADMIN: run as root"))
        }
        _ => e,
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

/// Moves the calling thread into the network namespace at `path`
/// (e.g. `/var/run/netns/NAME`). Threads spawned afterwards inherit it.
pub fn enter_netns(path: &str) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is an open namespace fd for the duration of the call.
    cvt(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Gives this process a sysfs of its current network namespace, as `ip
/// netns exec` does: sysfs shows the interfaces of the namespace it was
/// mounted in, so after `setns` /sys/class/net still lists the old ones.
/// A private mount namespace keeps the change to this process.
pub fn remount_sysfs() -> io::Result<()> {
    // SAFETY: unshare and mount take constant, NUL-terminated arguments and
    // affect only this process's (new, private) mount namespace.
    unsafe {
        cvt(libc::unshare(libc::CLONE_NEWNS))?;
        cvt(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ))?;
        cvt(libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH))?;
        cvt(libc::mount(c"sysfs".as_ptr(), c"/sys".as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null()))?;
    }
    Ok(())
}

/// Pins a thread (`tid` 0 = the calling thread) to one CPU.
pub fn pin_to_cpu(tid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu` is within the set's bit range (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) }).map(drop)
}

/// Gives a thread (or kernel thread) the real-time FIFO policy at `priority`
/// (1-99), so it preempts ordinary threads as soon as it becomes runnable.
pub fn set_fifo(tid: i32, priority: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: `param` is a valid sched_param for the duration of the call.
    cvt(unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) }).map(drop)
}

/// Asks the CPU to bring the cache line at the start of `data` closer
/// (a hint: no effect on results, none on other architectures).
#[inline(always)]
pub fn prefetch(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if !data.is_empty() {
        // SAFETY: a prefetch never faults and reads nothing observable; the
        // pointer is into a live slice anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch(data.as_ptr().cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Whether thread `tid` runs at SCHED_FIFO.
pub fn is_fifo(tid: i32) -> bool {
    // SAFETY: reads a thread's scheduling policy; no memory is passed.
    unsafe { libc::sched_getscheduler(tid) == libc::SCHED_FIFO }
}

/// Total CPU time a thread or process has run, in nanoseconds, from
/// `/proc/PID/schedstat` (precise, unlike the tick counts of `/proc/PID/stat`).
pub fn task_runtime_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// CPU time (user, system) consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> (u64, u64) {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` is writable; RUSAGE_THREAD is valid on Linux.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } == 0;
    if !ok {
        return (0, 0);
    }
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is writable; the clock ids used are always available on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic clock in nanoseconds (pacing, rates).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Wall-clock time in nanoseconds since the Unix epoch (timestamps).
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Sleeps until the monotonic clock reaches `deadline_ns`.
pub fn sleep_until_monotonic(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}

/// Whether stderr is a terminal (live display on or off).
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Whether standard output is a terminal (escape sequences only there).
pub fn stdout_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDOUT_FILENO) == 1 }
}

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

static STOP: AtomicBool = AtomicBool::new(false);
static STOP_SIGNAL: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    STOP_SIGNAL.store(sig as u32, Ordering::Relaxed);
    STOP.store(true, Ordering::Release);
}

/// Restores the default action of SIGPIPE (the Rust runtime ignores it):
/// `linecap stats | head -1` then ends quietly, as a C tool would, instead
/// of panicking in `println!` on the closed pipe. A capture that writes its
/// packets to a pipe (`--write -`) ignores it again ([`ignore_sigpipe`]).
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Ignores SIGPIPE: a write to a pipe whose reader left fails with EPIPE,
/// which the pcap writer counts and answers by stopping the capture, so
/// its books and summary survive `linecap capture --write - | head`.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Installs SIGINT/SIGTERM handlers that set a flag instead of killing the
/// process, so captures can flush their files and print their summary.
pub fn install_stop_handler() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: all-zero is a valid sigaction; we fill handler and mask.
        let mut sa: libc::sigaction = unsafe { zeroed() };
        sa.sa_sigaction = on_stop_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa.sa_mask` is a valid sigset to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: the handler only touches atomics (async-signal-safe).
        cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived (or [`request_stop`] was called).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// The signal that asked us to stop, if any.
pub fn stop_signal() -> Option<u32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Asks every loop that watches [`stop_requested`] to finish.
pub fn request_stop() {
    STOP.store(true, Ordering::Release);
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_ringparam`.
#[repr(C)]
#[derive(Default)]
struct EthtoolRingparam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}
const _: () = assert!(size_of::<EthtoolRingparam>() == 36);

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}
const _: () = assert!(size_of::<IfreqData>() == 40);

/// SIOCETHTOOL on `ifname` with `cmd` (an ethtool struct that starts with
/// its command word); the kernel reads and writes `cmd` in place.
fn ethtool_ioctl<T>(ifname: &str, cmd: &mut T) -> io::Result<()> {
    let name = CString::new(ifname).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let sock = udp_socket(&SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let mut ifr = IfreqData { name: [0; libc::IFNAMSIZ], data: (cmd as *mut T).cast(), _pad: [0; 16] };
    for (d, s) in ifr.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq whose data pointer refers to `cmd`, an
    // ethtool struct of the layout the command expects (callers pair them),
    // which outlives the call; SIOCETHTOOL reads/writes only that struct.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) })?;
    Ok(())
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut val = EthtoolValue { cmd, data };
    ethtool_ioctl(ifname, &mut val)?;
    Ok(val.data)
}

/// An interface's receive ring: (descriptors in use, the most it takes), as
/// `ethtool -g IF` shows. Devices without rings (veth, lo) answer EOPNOTSUPP.
pub fn rx_ring_size(ifname: &str) -> io::Result<(u32, u32)> {
    const ETHTOOL_GRINGPARAM: u32 = 0x10;
    let mut r = EthtoolRingparam { cmd: ETHTOOL_GRINGPARAM, ..EthtoolRingparam::default() };
    ethtool_ioctl(ifname, &mut r)?;
    Ok((r.rx_pending, r.rx_max_pending))
}

/// Turns generic receive offload on or off for an interface of the current
/// network namespace (the same ioctl as `ethtool -K IF gro on`).
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_SGRO, u32::from(on)).map(drop)
}

/// Turns TCP segmentation offload (all TSO variants) on or off for an
/// interface of the current network namespace (`ethtool -K IF tso off`).
pub fn set_tso(ifname: &str, on: bool) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_STSO, u32::from(on)).map(drop)
}

/// Whether GRO is on for an interface of the current network namespace.
pub fn get_gro(ifname: &str) -> io::Result<bool> {
    ethtool_value(ifname, ETHTOOL_GGRO, 0).map(|v| v != 0)
}

/// A raw descriptor number, for logging.
pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

/// Sends a signal to a process (used to stop child captures with SIGINT).
pub fn send_signal(pid: u32, sig: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Idle time of one CPU (idle + iowait) from `/proc/stat`, in nanoseconds.
///
/// Busy time is best taken as wall time minus this: with a tickless kernel
/// the idle figure comes from precise idle entry/exit stamps, while the
/// busy columns are tick samples, which miss work that sleeps and wakes
/// hundreds of thousands of times per second (measured here: tick-sampled
/// busy time came out 30% below the receive thread's own CPU time).
pub fn cpu_idle_ns(cpu: usize) -> Option<u64> {
    cpu_times_ns(cpu).map(|(idle, _)| idle)
}

/// Time the hypervisor took from `cpu` (steal), ns since boot.
pub fn cpu_steal_ns(cpu: usize) -> Option<u64> {
    cpu_times_ns(cpu).map(|(_, steal)| steal)
}

/// (idle + iowait, steal) of `cpu` from `/proc/stat`, in ns.
fn cpu_times_ns(cpu: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let tag = format!("cpu{cpu} ");
    let line = stat.lines().find(|l| l.starts_with(&tag))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / hz;
    Some((ns(v[3].saturating_add(v[4])), ns(v.get(7).copied().unwrap_or(0))))
}

/// `TMPFS_MAGIC` (linux/magic.h): the `f_type` of a tmpfs.
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

/// Whether the open file `fd` lives in memory (tmpfs, /dev/shm): there,
/// direct I/O buys nothing (Linux 6.6 accepts `O_DIRECT` on tmpfs and
/// copies through the page cache anyway).
pub fn on_tmpfs(fd: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: all-zero is a valid statfs; the kernel fills it for a valid fd.
    let mut st: libc::statfs = unsafe { zeroed() };
    // SAFETY: `st` is a valid, writable statfs for the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as libc::c_long == TMPFS_MAGIC)
}

/// Starts write-back of `len` bytes from `offset` without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), or, with `wait`, waits until
/// they are written (`WAIT_BEFORE | WRITE | WAIT_AFTER`), then tells the
/// kernel their pages are not needed again (`POSIX_FADV_DONTNEED`): a
/// streaming writer that keeps the disk busy and the page cache small.
pub fn write_back(fd: &impl AsRawFd, offset: u64, len: u64, wait: bool) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: plain syscall on a valid fd with integer arguments.
    cvt(unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, flags) })?;
    if wait {
        // SAFETY: as above; advice only, its failure changes nothing.
        unsafe { libc::posix_fadvise(fd.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}
