//! Kernel counters shown beside ours: `/proc/net/snmp` (UDP errors),
//! `/proc/net/dev` (interface drops) and `/proc/net/softnet_stat` (backlog
//! drops). `/proc/net` belongs to the network namespace of the reading
//! thread, so [`in_netns`] reads another namespace's view from a helper
//! thread that enters it.

use std::collections::BTreeMap;
use std::io;

/// UDP counters of `/proc/net/snmp`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UdpSnmp {
    /// Datagrams delivered to sockets.
    pub in_datagrams: u64,
    /// Datagrams to a port with no socket.
    pub no_ports: u64,
    /// All receive errors (includes the two below).
    pub in_errors: u64,
    /// Dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Bad checksums.
    pub in_csum_errors: u64,
}

/// Parses the `Udp:` lines of `/proc/net/snmp`.
pub fn parse_snmp_udp(text: &str) -> Option<UdpSnmp> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> = lines.next()?.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let get = |n: &str| names.iter().position(|x| *x == n).and_then(|i| values.get(i).copied()).unwrap_or(0);
    Some(UdpSnmp {
        in_datagrams: get("InDatagrams"),
        no_ports: get("NoPorts"),
        in_errors: get("InErrors"),
        rcvbuf_errors: get("RcvbufErrors"),
        in_csum_errors: get("InCsumErrors"),
    })
}

/// Per-interface counters of `/proc/net/dev`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IfaceCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Receive drops.
    pub rx_dropped: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit drops (on veth: frames the peer's ring refused).
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, IfaceCounters> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        if v.len() < 16 {
            continue;
        }
        out.insert(
            name.trim().to_string(),
            IfaceCounters { rx_packets: v[1], rx_dropped: v[3], tx_packets: v[9], tx_dropped: v[11] },
        );
    }
    out
}

/// One CPU's line of `/proc/net/softnet_stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SoftnetCpu {
    /// CPU (line number).
    pub cpu: usize,
    /// Packets processed.
    pub processed: u64,
    /// Packets dropped because the CPU's backlog was full.
    pub dropped: u64,
    /// Times NAPI stopped with work left (budget or time ran out).
    pub time_squeeze: u64,
}

/// Parses `/proc/net/softnet_stat` (hex columns: processed, dropped,
/// time_squeeze, ...), one line per CPU; a line without the first two
/// columns is skipped. Never panics.
pub fn parse_softnet(text: &str) -> Vec<SoftnetCpu> {
    text.lines()
        .enumerate()
        .filter_map(|(cpu, line)| {
            let mut cols = line.split_whitespace().map(|c| u64::from_str_radix(c, 16).ok());
            Some(SoftnetCpu {
                cpu,
                processed: cols.next()??,
                dropped: cols.next()??,
                time_squeeze: cols.next().flatten().unwrap_or(0),
            })
        })
        .collect()
}

/// Sum of the `dropped` column of `/proc/net/softnet_stat` (all CPUs).
pub fn parse_softnet_dropped(text: &str) -> u64 {
    // Saturating: a garbled file must not overflow (found by cargo fuzz).
    parse_softnet(text).iter().map(|c| c.dropped).fold(0u64, u64::saturating_add)
}

/// Everything read at one moment, in the current network namespace.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct KernelSnapshot {
    /// `/proc/net/snmp` UDP line.
    pub udp: UdpSnmp,
    /// `/proc/net/dev` by interface.
    pub ifaces: BTreeMap<String, IfaceCounters>,
    /// Backlog drops, all CPUs (global, not per namespace).
    pub softnet_dropped: u64,
}

impl KernelSnapshot {
    /// Reads the kernel counters as the calling thread's namespace sees them.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self {
            udp: parse_snmp_udp(&read("/proc/thread-self/net/snmp")).unwrap_or_default(),
            ifaces: parse_net_dev(&read("/proc/thread-self/net/dev")),
            softnet_dropped: parse_softnet_dropped(&read("/proc/net/softnet_stat")),
        }
    }

    /// Receive drops over all interfaces except loopback.
    pub fn iface_rx_dropped(&self) -> u64 {
        self.ifaces.iter().filter(|(n, _)| *n != "lo").map(|(_, c)| c.rx_dropped).fold(0, u64::saturating_add)
    }
}

/// Runs `f` on a helper thread that has entered network namespace `ns`
/// (a name under `/var/run/netns`), and returns its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        crate::sys::enter_netns(&path)?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("netns helper thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 2 7 5 6 0 1 0 0\n";
        let u = parse_snmp_udp(t).unwrap();
        assert_eq!(
            u,
            UdpSnmp { in_datagrams: 100, no_ports: 2, in_errors: 7, rcvbuf_errors: 6, in_csum_errors: 1 }
        );
        assert!(parse_snmp_udp("garbage").is_none());
    }

    #[test]
    fn net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\nveth0: 5000 50 0 3 0 0 0 0 6000 60 0 9 0 0 0 0\nbroken: 1 2\n";
        let m = parse_net_dev(t);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m["veth0"],
            IfaceCounters { rx_packets: 50, rx_dropped: 3, tx_packets: 60, tx_dropped: 9 }
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC*") {
            let _ = parse_snmp_udp(&text);
            let _ = parse_net_dev(&text);
            let _ = parse_softnet_dropped(&text);
        }
    }

    #[test]
    fn softnet() {
        assert_eq!(parse_softnet_dropped("0000abcd 00000002 0\n00000001 0000000a 0\n"), 12);
    }
}
