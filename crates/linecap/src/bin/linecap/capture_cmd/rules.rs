//! Which option applies to which backend and sink: an option given that
//! the chosen ones ignore is a usage error naming what it needs.

use super::*;

/// Options that apply to some backends or sinks only, and what they need.
pub(super) const BACKEND_RULES: &[(&str, &[Backend], &str)] = &[
    (
        "listen",
        &[Backend::Socket, Backend::Uring, Backend::Xdp],
        "applies to the socket, uring and xdp backends (afpacket takes the whole interface: narrow it with --filter 'udp port N')",
    ),
    (
        "iface",
        &[Backend::Afpacket, Backend::Xdp],
        "applies to --backend afpacket and xdp (the socket backends bind --listen)",
    ),
    ("ring_block_size", &[Backend::Afpacket], "applies to --backend afpacket"),
    ("ring_blocks", &[Backend::Afpacket], "applies to --backend afpacket"),
    ("retire_ms", &[Backend::Afpacket], "applies to --backend afpacket"),
    (
        "discard_unreceived",
        &[Backend::Afpacket],
        "applies to --backend afpacket (the other backends' datagrams end at their own socket or AF_XDP socket)",
    ),
    (
        "fanout",
        &[Backend::Afpacket],
        "applies to --backend afpacket (several --threads share one fanout group)",
    ),
    (
        "bpf_file",
        &[Backend::Afpacket],
        "applies to --backend afpacket: tcpdump programs start at the link header (use --filter with the socket backends)",
    ),
    ("queue", &[Backend::Xdp], "applies to --backend xdp"),
    ("queues", &[Backend::Xdp], "applies to --backend xdp (use --threads with the other backends)"),
    ("force", &[Backend::Xdp], "applies to --backend xdp"),
    ("xdp_ring", &[Backend::Xdp], "applies to --backend xdp"),
    ("busy_poll", &[Backend::Socket, Backend::Xdp], "applies to the socket and xdp backends"),
    ("mode", &[Backend::Socket], "applies to --backend socket"),
    (
        "spread",
        &[Backend::Socket, Backend::Uring],
        "applies to the socket and uring backends (afpacket: --fanout)",
    ),
    ("no_gro", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
    ("gro_always", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
    (
        "rcvbuf",
        &[Backend::Socket, Backend::Uring],
        "applies to the socket and uring backends (rings are sized with --ring-* or --xdp-ring)",
    ),
    ("join", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
];

/// Options that belong to a sink, and the sink they need.
pub(super) const SINK_RULES: &[(&str, &str)] = &[
    ("rotate_size", "needs --write"),
    ("rotate_time", "needs --write"),
    ("sink_buffer", "needs --write"),
    ("direct_io", "needs --write (a file, not -)"),
    ("writer_cpus", "needs a sink with a writer thread: --write, --blocks or --shm"),
    ("format", "needs --blocks or --shm"),
    ("raw", "needs --blocks or --shm (and --format raw)"),
    ("slot_bytes", "needs --blocks or --shm"),
    ("slots", "needs --blocks or --shm"),
    ("channels", "needs --blocks or --shm"),
    ("frames_per_second", "needs --blocks or --shm (and --format vdif)"),
    ("window", "needs --blocks or --shm"),
    ("resync_gap", "needs --blocks or --shm"),
    ("no_zero_fill", "needs --blocks or --shm"),
    ("block_queue", "needs --blocks or --shm"),
    ("group_policy", "needs --blocks or --shm (and several --threads or --queues)"),
    ("shm_slots", "needs --shm"),
    ("shm_lossless", "needs --shm"),
];

/// Options that choose or tune a network source: none applies to --read.
pub(super) const NETWORK_ONLY: &[&str] = &["backend", "threads", "netns", "batch", "plain_loop", "user"];

/// Refuses every option given that the chosen backend or sinks ignore.
pub(super) fn check_applicable(a: &CaptureArgs, m: &clap::ArgMatches) -> anyhow::Result<()> {
    if !a.read.is_empty() {
        let network = NETWORK_ONLY.iter().copied().chain(BACKEND_RULES.iter().map(|(id, ..)| *id));
        for id in network {
            if strict::given(m, id) {
                strict::usage!(
                    "--{}: --read takes packets from files, not from the network",
                    id.replace('_', "-")
                );
            }
        }
    }
    strict::refuse_inapplicable(
        m,
        &BACKEND_RULES.iter().map(|(id, _, why)| (*id, *why)).collect::<Vec<_>>(),
        |id| BACKEND_RULES.iter().any(|(rule, backends, _)| *rule == id && backends.contains(&a.backend)),
    )?;
    let assembling = a.blocks.is_some() || a.shm.is_some();
    strict::refuse_inapplicable(m, SINK_RULES, |id| match id {
        "rotate_size" | "rotate_time" | "sink_buffer" => a.write.is_some(),
        "direct_io" => a.write.as_ref().is_some_and(|p| p.as_os_str() != "-"),
        "writer_cpus" => a.write.is_some() || assembling,
        "shm_slots" | "shm_lossless" => a.shm.is_some(),
        _ => assembling,
    })?;
    if strict::given(m, "threads") && a.backend == Backend::Xdp {
        strict::usage!("--threads: --backend xdp runs one thread per queue: give --queues N");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.threads > cpus {
        strict::usage!(
            "--threads {}: this machine lets linecap use {cpus} CPUs; more receive threads than CPUs only take turns on them (give at most {cpus})",
            a.threads
        );
    }
    if strict::given(m, "verify_streams") && a.verify.is_none() {
        strict::usage!("--verify-streams needs --verify seq");
    }
    if a.verify_streams == super::VerifyStreams::Host && (a.threads > 1 || a.queues > 1) {
        strict::usage!(
            "--verify-streams host needs one receive thread: each thread sees only its share of a host's stream (the block group's presence maps count a spread stream's loss exactly)"
        );
    }
    if strict::given(m, "group_policy") && a.threads == 1 && a.queues <= 1 {
        strict::usage!(
            "--group-policy applies to several receive threads filling one block sequence (--threads N or --queues N)"
        );
    }
    if a.threads == 0 {
        strict::usage!("--threads must be positive");
    }
    Ok(())
}
