//! What each counter counts, in a sentence: the `# HELP` line of its
//! Prometheus family and the reference for people reading `stats`.

/// What each counter of each stage kind counts: (kind, counter, sentence).
const HELP: &[(&str, &str, &str)] = &[
    ("rx", "packets", "Packets the receive thread delivered to its sinks."),
    ("rx", "bytes", "Payload bytes the receive thread delivered to its sinks."),
    ("rx", "datagrams", "Messages the kernel returned (a UDP GRO super-packet is one)."),
    ("rx", "syscalls", "Receive calls made (recvmmsg, poll or io_uring submissions)."),
    ("rx", "truncated", "Packets longer than the receive buffer, cut short."),
    (
        "rx",
        "kernel_drops",
        "Packets the kernel dropped before this capture could read them (socket, ring or AF_XDP queue).",
    ),
    ("rx", "cpu_user_ns", "User CPU time of the receive thread."),
    ("rx", "cpu_sys_ns", "System CPU time of the receive thread."),
    ("rx", "ring_freezes", "AF_PACKET ring blocks the kernel found full (the ring froze)."),
    ("rx", "losing_blocks", "AF_PACKET ring blocks flagged as having lost packets."),
    ("rx", "ring_full_drops", "Packets dropped because a ring was full."),
    (
        "rx",
        "no_buffer_drops",
        "Packets dropped for want of a free buffer (AF_XDP fill ring, io_uring provided buffers).",
    ),
    ("rx", "poll_gaps", "Busy-poll gaps longer than 100 microseconds between two polls."),
    ("rx", "poll_gap_ns", "Total time of the busy-poll gaps."),
    ("rx", "gro_on", "1 while UDP GRO is switched on for this socket."),
    (
        "rx",
        "filtered",
        "Packets read back from a file that --filter refused (not lost: not asked for; a kernel filter's refusals are never seen).",
    ),
    (
        "rx",
        "fill_ring_empty",
        "Times the AF_XDP fill ring was found empty (the kernel had no frame to fill).",
    ),
    ("rx", "gro_switches", "Times the adaptive policy switched UDP GRO on or off."),
    ("verify", "packets", "Packets the sequence verifier looked at."),
    ("verify", "valid", "Packets whose payload matched their sequence number."),
    ("verify", "corrupt", "Packets whose payload did not match their sequence number."),
    ("verify", "malformed", "Packets too short to carry a checked sequence number."),
    ("verify", "duplicates", "Packets whose sequence number was seen before."),
    ("verify", "reordered", "Packets that arrived after a later sequence number."),
    ("verify", "missing", "Sequence numbers never seen (lost anywhere upstream)."),
    ("verify", "too_old", "Packets older than the verifier's window."),
    ("verify", "flows", "Senders (flows) the verifier tracked."),
    ("verify", "not_udp", "Packets the verifier skipped: not UDP."),
    ("verify", "out_of_window", "Packets far outside the window, held until confirmed and then counted."),
    ("verify", "resyncs", "Times the verifier restarted its count after a confirmed jump."),
    ("pcap.queue", "packets", "Packets handed to the pcap writer thread."),
    ("pcap.queue", "bytes", "Bytes of records handed to the pcap writer thread."),
    ("pcap.queue", "ring_full_drops", "Packets dropped because the hand-off to the pcap writer was full."),
    ("pcap.queue", "chunks", "Chunks of records handed to the pcap writer."),
    ("pcap.queue", "ring_full_bytes", "Payload bytes of the packets dropped at a full hand-off."),
    (
        "pcap.queue",
        "lent",
        "Packets whose frame the source lent to the pcap writer, which copied it itself (AF_XDP).",
    ),
    ("pcap.writer", "packets", "Packets written to pcap files."),
    ("pcap.writer", "bytes", "Bytes written to pcap files."),
    ("pcap.writer", "files", "pcap files opened (rotation starts a new one)."),
    ("pcap.writer", "write_error_drops", "Packets dropped because a write failed (disk full, I/O error)."),
    ("pcap.writer", "chunks", "Chunks written to pcap files."),
    ("pcap.writer", "write_error_bytes", "Payload bytes of the packets dropped by failed writes."),
    ("pcap.writer", "resumed", "Times writing resumed after failing."),
    ("blocks", "packets", "Packets the assembler looked at."),
    ("blocks", "placed", "Packets placed into a block slot."),
    ("blocks", "duplicates", "Packets for a slot already filled."),
    ("blocks", "late", "Packets for a block already sent on."),
    ("blocks", "malformed", "Packets the format decoder refused."),
    ("blocks", "bad_channel", "Packets whose channel is outside the block's rows."),
    ("blocks", "no_buffer", "Packets dropped for want of a free block buffer."),
    ("blocks", "resyncs", "Times the assembler restarted after a confirmed jump."),
    ("blocks", "blocks", "Blocks completed."),
    ("blocks", "slots_lost", "Slots of completed blocks no packet filled."),
    ("blocks", "written", "Blocks written to files or published into the ring."),
    ("blocks", "dropped_blocks", "Blocks dropped because the writer's queue was full."),
    ("blocks", "write_errors", "Blocks whose write failed."),
    ("blocks", "wraps", "Times a narrow counter wrapped around."),
    ("blocks", "dropped_packets", "Placed packets inside dropped blocks."),
    ("blocks", "ring_overwritten", "Ring blocks overwritten before the reader took them (lossy ring)."),
    ("blocks", "ring_waits", "Times the writer waited for the reader (lossless ring)."),
    ("blocks", "ring_dropped", "Blocks dropped at the ring."),
    ("blocks", "invalid", "Packets their sender flagged invalid (VDIF), counted and left empty."),
    ("blocks", "out_of_window", "Packets far outside the window, held until confirmed and then counted."),
    (
        "blocks",
        "group_forced",
        "Times the group completed blocks without this receive thread, which was behind (lossy group).",
    ),
    ("blocks", "group_waits", "Times this receive thread waited for a slower one (lossless group)."),
    (
        "blocks",
        "members_left",
        "Receive threads that ended while the group went on; their share of later blocks is lost.",
    ),
    ("relay", "offered", "Packets offered to the relay."),
    ("relay", "relayed", "Packets relayed."),
    ("relay", "dropped", "Packets dropped because the relay's socket buffer was full."),
    ("relay", "errors", "Packets the relay could not send (refused, unreachable)."),
    ("relay", "not_udp", "Packets the relay skipped: not UDP."),
    ("relay", "syscalls", "sendmmsg calls the relay made."),
    ("relay", "messages", "Messages the relay sent (a GSO super-packet is one)."),
    ("kernel", "udp_rcvbuf_errors", "UDP receive buffer errors of the namespace since the capture started."),
    ("kernel", "udp_in_errors", "UDP input errors of the namespace since the capture started."),
    ("kernel", "udp_csum_errors", "UDP checksum errors of the namespace since the capture started."),
    ("kernel", "udp_no_ports", "UDP datagrams to a port nobody listened on, since the capture started."),
    ("kernel", "iface_rx_dropped", "Packets the capture's interface dropped since the capture started."),
    ("kernel", "softnet_dropped", "Packets dropped from a full backlog queue since the capture started."),
    ("settings", "rcvbuf_bytes", "Socket receive buffer the kernel granted (bytes; 0: not a socket)."),
    ("settings", "rcvbuf_forced", "1 if the receive buffer was forced above net.core.rmem_max."),
    ("settings", "filter", "1 if a packet filter (--filter, --bpf-file) drops what it excludes."),
    ("settings", "gro", "1 if UDP GRO was on at the start (rx gro_on: whether it is now)."),
    ("settings", "busy_poll_ns", "Busy-poll time per poll (0: the kernel's NAPI receives)."),
    (
        "settings",
        "busy_poll_refused",
        "The errno with which the kernel refused the busy polling asked for (0: granted or not asked; 1: EPERM, it needs CAP_NET_ADMIN).",
    ),
    ("settings", "threads", "Receive threads."),
    ("settings", "cpu_mask", "CPUs the receive threads are pinned to, as a bit mask (0: not pinned)."),
    ("settings", "port", "UDP port the capture takes (0: a whole interface)."),
    ("settings", "ring_bytes", "Bytes of the AF_PACKET ring or AF_XDP UMEM per thread (0: a socket)."),
];

/// The sentence for counter `name` of a stage of kind `kind` (`rx`,
/// `verify`, `pcap.queue`, `pcap.writer`, `blocks`, `relay`, `kernel`,
/// `settings`).
pub fn counter_help(kind: &str, name: &str) -> &'static str {
    HELP.iter()
        .find(|(k, n, _)| *k == kind && *n == name)
        .map_or("linecap counter (docs/ARCHITECTURE.md, accounting).", |(_, _, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        BLOCKS_COUNTERS, KERNEL_COUNTERS, QUEUE_COUNTERS, RELAY_COUNTERS, RX_COUNTERS, SETTINGS_COUNTERS,
        VERIFY_COUNTERS, WRITER_COUNTERS,
    };

    #[test]
    fn every_counter_has_its_sentence() {
        let kinds: [(&str, &[&str]); 8] = [
            ("settings", SETTINGS_COUNTERS),
            ("rx", RX_COUNTERS),
            ("verify", VERIFY_COUNTERS),
            ("pcap.queue", QUEUE_COUNTERS),
            ("pcap.writer", WRITER_COUNTERS),
            ("blocks", BLOCKS_COUNTERS),
            ("relay", RELAY_COUNTERS),
            ("kernel", KERNEL_COUNTERS),
        ];
        let generic = counter_help("", "");
        for (kind, names) in kinds {
            for name in names {
                assert_ne!(counter_help(kind, name), generic, "{kind}.{name} has no help");
            }
        }
    }
}
