//! The summary a capture prints when it ends.

use std::fmt::Write;

use super::*;

/// The per-stage summary printed at the end of a capture.
pub(crate) fn summary(r: &CaptureReport) -> String {
    let mut s = String::new();
    header_lines(&mut s, r);
    sink_lines(&mut s, r);
    let _ = writeln!(
        s,
        "  cpu        user {:.3} s, sys {:.3} s: {:.0} ns/packet (receive threads)",
        r.cpu_user_ns as f64 / 1e9,
        r.cpu_sys_ns as f64 / 1e9,
        r.cpu_ns_per_packet
    );
    s
}

/// What was captured where, delivered, received and dropped.
fn header_lines(s: &mut String, r: &CaptureReport) {
    let mode = &r.mode;
    let _ = writeln!(
        s,
        "capture '{}' on {} ({}/{mode}{}, {} thread(s)) stopped by {} after {:.2} s",
        r.name,
        r.listen,
        r.backend,
        if r.gro { "+gro" } else { "" },
        r.threads,
        r.stopped_by,
        r.duration_s
    );
    let _ = writeln!(
        s,
        "  delivered  {} packets, {} bytes ({:.1} kpps)",
        r.packets,
        r.bytes,
        r.packets as f64 / r.duration_s.max(1e-9) / 1e3
    );
    let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let kernel: Vec<String> = r.kernel.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if r.kind() == Some(linecap::source::BackendKind::File) {
        let _ = writeln!(s, "  read       {} packets; {}", r.received, kernel.join(", "));
        let _ = writeln!(s, "  skipped    {}", drops.join(", "));
    } else {
        // What one receive hands over: a socket's message (a GRO
        // super-packet holds several datagrams), a raw backend's frame.
        let unit = match r.kind() {
            Some(linecap::source::BackendKind::AfPacket | linecap::source::BackendKind::Xdp) => "frames",
            _ => "datagrams",
        };
        let _ = writeln!(
            s,
            "  rx         {} packets in {} {unit}, {} syscalls ({:.1} packets/syscall)",
            r.received,
            r.datagrams,
            r.syscalls,
            r.received as f64 / r.syscalls.max(1) as f64
        );
        let _ = writeln!(s, "  drops      {}", drops.join(", "));
        let _ = writeln!(s, "  kernel     {}", kernel.join(", "));
    }
}

/// The verifier's, relay's and assembler's lines, for those that ran.
fn sink_lines(s: &mut String, r: &CaptureReport) {
    if let Some(v) = &r.verify {
        let _ = writeln!(
            s,
            "  verify     valid {}, corrupt {}, malformed {}, missing {}, duplicates {}, reordered {}, too old {}, out of window {}, resyncs {}",
            v.valid,
            v.corrupt,
            v.malformed,
            v.missing,
            v.duplicates,
            v.reordered,
            v.too_old,
            v.out_of_window,
            v.resyncs
        );
    }
    if let Some(x) = &r.relay {
        let _ = writeln!(
            s,
            "  relay      offered {}, relayed {}, dropped {} (socket full), errors {}; {} messages in {} syscalls",
            x.offered, x.relayed, x.dropped, x.errors, x.messages, x.syscalls
        );
    }
    if let Some(b) = &r.blocks {
        let a = &b.assembly;
        let _ = writeln!(
            s,
            "  blocks     {} written, {} dropped ({} packets), {} write errors; packets placed {}, duplicates {}, late {}, malformed {}, invalid {}, bad channel {}, no buffer {}, out of window {} (resyncs {}); slots lost {}",
            b.written,
            b.dropped_blocks,
            b.dropped_packets,
            b.write_errors,
            a.placed,
            a.duplicates,
            a.late,
            a.malformed,
            a.invalid,
            a.bad_channel,
            a.no_buffer,
            a.out_of_window,
            a.resyncs,
            a.slots_lost
        );
        if r.threads > 1 {
            let _ = writeln!(
                s,
                "  group      {} threads filled one block sequence; a slow thread was released by force {} times, waited for {} times; {} left early",
                r.threads, b.group_forced, b.group_waits, b.members_left
            );
        }
    }
}
