//! The rows of a bench: the receivers measured (each with the baseline
//! it is compared with) and the generators.

use super::*;

/// A receiver to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Row {
    /// One recvmsg per packet.
    Recv,
    /// recvmmsg batches.
    Recvmmsg,
    /// recvmmsg with UDP GRO kept on.
    RecvmmsgGro,
    /// The socket capture as a user runs it: no options (adaptive GRO).
    Default,
    /// recvmmsg with UDP GRO, busy-polling (busy-poll placement).
    RecvmmsgGroBusyPoll,
    /// io_uring multishot receive, provided buffers (no GRO, to compare with recvmmsg).
    Uring,
    /// recvmmsg+gro with assembly into a shared-memory block ring (lossy, no reader).
    RecvmmsgGroBlocks,
    /// AF_XDP socket (copy mode on veth) fed by linecap's XDP program.
    Xdp,
    /// The same, busy-polling veth's NAPI from its own thread (on a testbed
    /// with the busy-poll placement).
    XdpBusyPoll,
    /// AF_PACKET TPACKET_V3 ring, one thread.
    Afpacket,
    /// AF_PACKET, two threads in a load-balancing fanout group.
    Afpacket2,
    /// AF_PACKET with `--discard-unreceived`: the stream ends after the tap.
    AfpacketDiscard,
    /// tcpdump -w /dev/null (reference, when installed).
    Tcpdump,
    /// The baseline of the socket rows: a plain recvmmsg loop, same buffer,
    /// no GRO, no control messages (`bench::baseline`).
    PlainRecvmmsg,
    /// The baseline of the xdp row: libxdp's minimal receiver loop on the
    /// same socket and program (`bench::baseline`).
    XdpMinimal,
    /// The baseline of the xdp+busypoll row: the minimal loop busy-polling
    /// the device when the rx ring is empty (busy-poll placement).
    XdpMinimalBusyPoll,
    /// The xdp row writing every packet to a pcap file in tmpfs
    /// (`/dev/shm`); its baseline is the xdp row: the ratio is what writing costs.
    XdpWriteTmpfs,
    /// The same, writing into the bench's output folder (the disk).
    XdpWriteDisk,
}

impl FromStr for Row {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "recv" => Row::Recv,
            "recvmmsg" => Row::Recvmmsg,
            "recvmmsg+gro" => Row::RecvmmsgGro,
            "default" => Row::Default,
            "recvmmsg+gro+busypoll" | "recvmmsg+gro+bp" => Row::RecvmmsgGroBusyPoll,
            "uring" => Row::Uring,
            "recvmmsg+gro+blocks" | "blocks" => Row::RecvmmsgGroBlocks,
            "xdp" => Row::Xdp,
            "xdp+busypoll" | "xdp+bp" => Row::XdpBusyPoll,
            "afpacket" => Row::Afpacket,
            "afpacket2" | "afpacketx2" | "afpacket×2" => Row::Afpacket2,
            "afpacket+discard" => Row::AfpacketDiscard,
            "tcpdump" => Row::Tcpdump,
            "plain-recvmmsg" | "plain" => Row::PlainRecvmmsg,
            "xdp-minimal" => Row::XdpMinimal,
            "xdp-minimal+busypoll" | "xdp-minimal+bp" => Row::XdpMinimalBusyPoll,
            "xdp+write" | "xdp+write-tmpfs" => Row::XdpWriteTmpfs,
            "xdp+write-disk" => Row::XdpWriteDisk,
            _ => {
                return Err(format!(
                    "unknown bench row '{s}' (recv, recvmmsg, recvmmsg+gro, default, recvmmsg+gro+busypoll, uring, blocks, xdp, xdp+busypoll, afpacket, afpacket2, afpacket+discard, tcpdump, plain-recvmmsg, xdp-minimal, xdp-minimal+busypoll, xdp+write, xdp+write-disk)"
                ));
            }
        })
    }
}

impl Row {
    /// The plainest receiver doing this row's job, measured in the same
    /// rounds (`--at`): its ratio is the row's figure.
    pub fn baseline(&self) -> Option<Row> {
        match self {
            Row::Recv
            | Row::Recvmmsg
            | Row::RecvmmsgGro
            | Row::Default
            | Row::Uring
            | Row::RecvmmsgGroBlocks => Some(Row::PlainRecvmmsg),
            Row::Afpacket | Row::Afpacket2 | Row::AfpacketDiscard => Some(Row::Tcpdump),
            Row::Xdp => Some(Row::XdpMinimal),
            Row::XdpBusyPoll => Some(Row::XdpMinimalBusyPoll),
            Row::XdpWriteTmpfs | Row::XdpWriteDisk => Some(Row::Xdp),
            _ => None,
        }
    }

    /// Display name.
    pub fn name(&self) -> &'static str {
        match self {
            Row::Recv => "recv",
            Row::Recvmmsg => "recvmmsg",
            Row::RecvmmsgGro => "recvmmsg+gro",
            Row::Default => "default",
            Row::RecvmmsgGroBusyPoll => "recvmmsg+gro+busypoll",
            Row::Uring => "uring",
            Row::RecvmmsgGroBlocks => "recvmmsg+gro+blocks",
            Row::Xdp => "xdp",
            Row::XdpBusyPoll => "xdp+busypoll",
            Row::Afpacket => "afpacket",
            Row::Afpacket2 => "afpacket×2 (lb)",
            Row::AfpacketDiscard => "afpacket+discard",
            Row::Tcpdump => "tcpdump",
            Row::PlainRecvmmsg => "plain-recvmmsg",
            Row::XdpMinimal => "xdp-minimal",
            Row::XdpMinimalBusyPoll => "xdp-minimal+busypoll",
            Row::XdpWriteTmpfs => "xdp+write (tmpfs)",
            Row::XdpWriteDisk => "xdp+write (disk)",
        }
    }

    /// Whether the row reads a whole interface through AF_PACKET (no --listen).
    pub fn is_afpacket(&self) -> bool {
        matches!(self, Row::Afpacket | Row::Afpacket2 | Row::AfpacketDiscard)
    }

    /// Whether the row runs on a testbed with the busy-poll placement.
    pub fn busy_polls(&self) -> bool {
        matches!(self, Row::XdpBusyPoll | Row::RecvmmsgGroBusyPoll | Row::XdpMinimalBusyPoll)
    }

    /// The pcap file a writing row writes (removed after each point).
    pub(super) fn write_path(&self, tb: &Testbed, out: &Path) -> Option<PathBuf> {
        let file = format!("{}.pcap", tb.name);
        match self {
            Row::XdpWriteTmpfs => Some(Path::new("/dev/shm").join(file)),
            Row::XdpWriteDisk => Some(out.join(file)),
            _ => None,
        }
    }

    pub(super) fn capture_args(&self, tb: &Testbed) -> Vec<String> {
        let rx = tb.rx_cpu.to_string();
        // The same filter as the tcpdump row it is compared with.
        let afpacket = ["--backend", "afpacket", "--iface", tb.if_rx.as_str(), "--filter", "udp port 9000"];
        let discard = format!("{}:9000", crate::testbed::RX_ADDR);
        let mut v: Vec<&str> = match self {
            Row::Recv => vec!["--mode", "recv", "--no-gro"],
            Row::Recvmmsg => vec!["--mode", "recvmmsg", "--no-gro"],
            Row::RecvmmsgGro => vec!["--mode", "recvmmsg", "--gro-always"],
            Row::Default => vec![],
            Row::RecvmmsgGroBusyPoll => vec!["--mode", "recvmmsg", "--busy-poll", "20"],
            Row::Uring => vec!["--backend", "uring", "--no-gro"],
            Row::RecvmmsgGroBlocks => vec!["--mode", "recvmmsg", "--shm", "", "--slot-bytes", "264"],
            Row::Afpacket => afpacket.to_vec(),
            Row::Xdp => vec!["--backend", "xdp", "--iface", tb.if_rx.as_str()],
            Row::XdpBusyPoll => vec!["--backend", "xdp", "--iface", tb.if_rx.as_str(), "--busy-poll", "20"],
            Row::Afpacket2 => [&afpacket[..], &["--threads", "2", "--fanout", "lb"]].concat(),
            Row::AfpacketDiscard => [&afpacket[..], &["--discard-unreceived", &discard]].concat(),
            Row::Tcpdump => vec![],
            Row::PlainRecvmmsg => vec!["--plain-loop"],
            Row::XdpMinimal => vec!["--backend", "xdp", "--iface", tb.if_rx.as_str(), "--plain-loop"],
            Row::XdpMinimalBusyPoll => {
                vec!["--backend", "xdp", "--iface", tb.if_rx.as_str(), "--busy-poll", "20", "--plain-loop"]
            }
            Row::XdpWriteTmpfs | Row::XdpWriteDisk => vec!["--backend", "xdp", "--iface", tb.if_rx.as_str()],
        };
        // Every receive thread on the receive core: the kernel side (NAPI,
        // the copy into a ring) runs there whatever the threads do.
        let cpus = if *self == Row::Afpacket2 { format!("{rx},{rx}") } else { rx };
        v.extend(["--cpus", cpus.as_str()]);
        // The ring is named after the testbed (unique per bench run).
        v.iter().map(|s| if s.is_empty() { format!("{}-ring", tb.name) } else { s.to_string() }).collect()
    }
}
/// A generator to compare on one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SenderRow {
    /// `linecap send` (seq payloads, pacing engine, unpaced).
    Socket,
    /// `linecap send --gso`.
    SocketGso,
    /// A plain sendmmsg loop of one prebuilt batch (the yardstick).
    PlainLoop,
    /// `linecap send --backend afpacket` (TX ring, qdisc bypass).
    Afpacket,
    /// `linecap send --backend xdp-live` (the kernel transmits).
    XdpLive,
    /// `linecap send --backend xdp` (AF_XDP tx ring).
    Xdp,
}

impl SenderRow {
    /// Display name.
    pub fn name(&self) -> &'static str {
        match self {
            SenderRow::Socket => "socket",
            SenderRow::SocketGso => "socket+gso",
            SenderRow::PlainLoop => "plain sendmmsg loop",
            SenderRow::Afpacket => "afpacket (TX ring)",
            SenderRow::XdpLive => "xdp-live (kernel)",
            SenderRow::Xdp => "xdp (AF_XDP tx ring)",
        }
    }

    pub(super) fn args(&self, tb: &Testbed) -> Vec<String> {
        let v: &[&str] = match self {
            SenderRow::Socket => &[],
            SenderRow::SocketGso => &["--gso"],
            SenderRow::PlainLoop => &["--plain-loop"],
            SenderRow::Afpacket => &["--backend", "afpacket", "--iface", &tb.if_tx],
            SenderRow::XdpLive => &["--backend", "xdp-live", "--iface", &tb.if_tx],
            SenderRow::Xdp => &["--backend", "xdp", "--iface", &tb.if_tx],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_the_error_names_parses_and_every_baseline_is_a_row() {
        let err = "nope".parse::<Row>().unwrap_err();
        let list = err.split_once('(').unwrap().1.trim_end_matches(')');
        for name in list.split(", ") {
            let row: Row = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(base) = row.baseline() {
                assert!(list.split(", ").any(|n| n.parse::<Row>() == Ok(base)), "{name}'s baseline");
            }
        }
    }
}
