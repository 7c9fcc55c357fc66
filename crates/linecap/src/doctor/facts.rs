//! Reading the machine: sysctls, softnet, interfaces, NAPI threads and
//! where captures' threads may run. What [`super::diagnose`] judges.

use super::*;

/// What the doctor knows of an interface.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IfaceFacts {
    /// Name.
    pub name: String,
    /// Counters since the interface came up.
    pub counters: IfaceCounters,
    /// GRO on, when the device says.
    pub gro: Option<bool>,
    /// Receive ring (in use, maximum), for devices that have one.
    pub rx_ring: Option<(u32, u32)>,
    /// `napi_defer_hard_irqs`.
    pub defer_hard_irqs: Option<u64>,
    /// `gro_flush_timeout` (ns).
    pub gro_flush_timeout: Option<u64>,
}

/// What the doctor knows of the machine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SystemFacts {
    /// Online CPUs.
    pub cpus: usize,
    /// `net.core.rmem_max`.
    pub rmem_max: Option<u64>,
    /// `net.core.netdev_max_backlog`.
    pub netdev_max_backlog: Option<u64>,
    /// `net.core.netdev_budget`.
    pub netdev_budget: Option<u64>,
    /// `net.core.netdev_budget_usecs`.
    pub netdev_budget_usecs: Option<u64>,
    /// `kernel.io_uring_disabled` (2: nobody may create a ring).
    pub io_uring_disabled: Option<u64>,
    /// Per-CPU softnet counters since boot.
    pub softnet: Vec<SoftnetCpu>,
    /// UDP counters since boot.
    pub udp: UdpSnmp,
    /// Interfaces (loopback left out).
    pub ifaces: Vec<IfaceFacts>,
    /// The kernel's NAPI threads (`napi/IF-ID`) and the CPUs each may run on.
    pub napi_threads: Vec<KernelThread>,
    /// Running captures' receive threads: the CPUs each may run on, by capture.
    pub capture_cpus: Vec<(String, Vec<Vec<usize>>)>,
}

/// A thread and the CPUs it may run on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelThread {
    /// Its name (`comm`).
    pub name: String,
    /// `Cpus_allowed_list`.
    pub cpus: Vec<usize>,
}

/// The CPUs a task may run on (`Cpus_allowed_list` of its status file).
pub(super) fn allowed_cpus(status: &str) -> Vec<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|v| crate::units::parse_cpu_list(v.trim()).ok())
        .unwrap_or_default()
}

/// The kernel's NAPI threads, from /proc (threaded NAPI names them `napi/IF-ID`).
pub fn read_napi_threads() -> Vec<KernelThread> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?.trim().to_string();
            name.starts_with("napi/").then_some(())?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            Some(KernelThread { name, cpus: allowed_cpus(&status) })
        })
        .collect()
}

/// The CPUs each receive thread (`linecap-rxN`) of process `pid` may run on.
pub fn read_capture_cpus(pid: u32) -> Vec<Vec<usize>> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut threads: Vec<(String, Vec<usize>)> = dir
        .flatten()
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?.trim().to_string();
            name.starts_with("linecap-rx").then_some(())?;
            Some((name, allowed_cpus(&std::fs::read_to_string(e.path().join("status")).ok()?)))
        })
        .collect();
    threads.sort();
    threads.into_iter().map(|(_, cpus)| cpus).collect()
}

/// Adds where the kernel's receive work and the running captures' receive
/// threads may run.
pub fn read_placement(s: &mut SystemFacts, caps: &[Snapshot]) {
    s.napi_threads = read_napi_threads();
    s.capture_cpus =
        caps.iter().filter(|c| c.running).map(|c| (c.name.clone(), read_capture_cpus(c.pid))).collect();
}

pub(super) fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).ok()?.trim().parse().ok()
}

pub(super) fn iface_sysfs(ifname: &str, file: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{file}")).ok()?.trim().parse().ok()
}

/// Reads the machine's side (this network namespace's interfaces).
pub fn read_system() -> SystemFacts {
    let mut s = read_global();
    read_namespace(&mut s);
    s
}

/// The facts that belong to the machine, not to a network namespace
/// (sysctls of net.core are the initial namespace's, softnet per CPU).
pub fn read_global() -> SystemFacts {
    SystemFacts {
        cpus: sys::online_cpus(),
        rmem_max: sysctl("rmem_max"),
        netdev_max_backlog: sysctl("netdev_max_backlog"),
        netdev_budget: sysctl("netdev_budget"),
        netdev_budget_usecs: sysctl("netdev_budget_usecs"),
        io_uring_disabled: std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        softnet: parse_softnet(&std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default()),
        ..SystemFacts::default()
    }
}

/// Adds the current network namespace's UDP counters and interfaces.
pub fn read_namespace(s: &mut SystemFacts) {
    let k = kernel::KernelSnapshot::read();
    s.udp = k.udp;
    s.ifaces = k
        .ifaces
        .iter()
        .filter(|(name, _)| name.as_str() != "lo")
        .map(|(name, c)| IfaceFacts {
            name: name.clone(),
            counters: *c,
            gro: sys::get_gro(name).ok(),
            rx_ring: sys::rx_ring_size(name).ok().filter(|&(_, max)| max > 0),
            defer_hard_irqs: iface_sysfs(name, "napi_defer_hard_irqs"),
            gro_flush_timeout: iface_sysfs(name, "gro_flush_timeout"),
        })
        .collect();
}
