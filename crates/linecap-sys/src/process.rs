//! Threads, CPUs and clocks: namespaces, pinning, scheduling policy, CPU
//! times (the thread's, a CPU's idle and steal), the terminal.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;

use crate::cvt;

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
    set_cpus(tid, &[cpu])
}

/// Lets a thread (`tid` 0 = the calling thread) run only on `cpus`; the
/// threads it starts afterwards inherit the set.
pub fn set_cpus(tid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    for &cpu in cpus {
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is within the set's bit range (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) }).map(drop)
}

/// The CPUs the calling thread may run on, in order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) })?;
    let bits = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: every index is within the set's bit range.
    Ok((0..bits).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
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
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    thread_rusage().map_or((0, 0), |ru| (ns(ru.ru_utime), ns(ru.ru_stime)))
}

/// Minor page faults the calling thread has taken (a page put in place on
/// first touch): 0 if the kernel does not say.
pub fn thread_minor_faults() -> u64 {
    thread_rusage().map_or(0, |ru| ru.ru_minflt as u64)
}

/// The calling thread's resource usage, if the kernel gives it.
fn thread_rusage() -> Option<libc::rusage> {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` is writable; RUSAGE_THREAD is valid on Linux.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } == 0;
    ok.then_some(ru)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is writable; the clock ids used are always available on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the running kernel's release is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release_at_least(&rel, major, minor)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release.trim().split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Monotonic clock in nanoseconds (pacing, rates).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The monotonic clock as of the last timer tick (a few ms coarse): a
/// read of a shared word, no TSC read, for the hot path's "is it time
/// yet" checks.
pub fn coarse_monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(release_at_least("6.18.44-generic\n", 6, 2));
        assert!(release_at_least("6.2", 6, 2));
        assert!(!release_at_least("6.1.119-1-cloud", 6, 2));
        assert!(!release_at_least("5.15.0", 6, 2));
        assert!(release_at_least("10.0", 6, 2));
        assert!(!release_at_least("garbage", 6, 2));
    }

    #[test]
    fn a_thread_runs_where_it_is_placed_and_its_children_inherit_it() {
        let all = allowed_cpus().unwrap();
        assert!(!all.is_empty());
        let first = all[0];
        std::thread::spawn(move || {
            set_cpus(0, &[first]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
            let child = std::thread::spawn(|| allowed_cpus().unwrap()).join().unwrap();
            assert_eq!(child, vec![first]);
        })
        .join()
        .unwrap();
        assert!(set_cpus(0, &[usize::MAX]).is_err());
    }
}
