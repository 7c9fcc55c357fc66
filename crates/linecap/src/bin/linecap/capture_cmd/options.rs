//! The engine's configuration from the command line: the backend, the
//! pcap writer, the block assembly.

use super::*;

/// The smallest pcap write chunk: one record of a 64 KiB datagram with
/// its synthetic headers and pcapng framing fits.
pub(super) const MIN_CHUNK: usize = 128 << 10;

/// The pcap sink's options from `--write` and its companions.
pub(super) fn pcap_options(a: &CaptureArgs) -> anyhow::Result<Option<PcapOptions>> {
    Ok(match &a.write {
        Some(p) => {
            if p.as_os_str() == "-" {
                if a.rotate_size.is_some() || a.rotate_time.is_some() {
                    strict::usage!("--write -: a stream to standard output cannot rotate (give a file)");
                }
                sys::ignore_sigpipe();
            } else {
                check_output_dir(p)?;
            }
            let mut o = PcapOptions::new(p.clone());
            o.rotation = Rotation { max_bytes: a.rotate_size, max_age: a.rotate_time };
            o.buffer_bytes = (a.sink_buffer as usize).max(2 << 20);
            o.direct_io = a.direct_io;
            // A chunk holds the largest record (a 64 KiB datagram and its
            // headers), and at most a quarter of a rotated file, so that
            // rotation keeps every file under --rotate-size.
            o.chunk_bytes = (o.buffer_bytes / 16).clamp(MIN_CHUNK, 4 << 20);
            if let Some(max) = a.rotate_size {
                if max < 4 * MIN_CHUNK as u64 {
                    strict::usage!(
                        "--rotate-size {max} is too small: files must hold at least {} bytes (4 write chunks)",
                        4 * MIN_CHUNK
                    );
                }
                o.chunk_bytes = o.chunk_bytes.min((max / 4) as usize);
            }
            o.throttle_bytes_per_sec = a.sink_throttle;
            if let Some(f) = a.write_format {
                o.format = f;
            }
            if matches!(a.backend, Backend::Afpacket | Backend::Xdp) || !a.read.is_empty() {
                o.link = Link::Ethernet;
            }
            Some(o)
        }
        None => None,
    })
}

/// What `--read` reads: the files (globs expanded) and the filter, run
/// over each frame as the kernel would run it on an AF_PACKET socket.
pub(super) fn file_options(a: &CaptureArgs) -> anyhow::Result<linecap::source::file::FileOptions> {
    let mut inputs = Vec::new();
    for r in &a.read {
        if r == "-" {
            inputs.push(linecap::source::file::Input::Stdin);
            continue;
        }
        let paths = linecap::source::file::expand(r).map_err(|e| anyhow::anyhow!("--read: {e}"))?;
        inputs.extend(paths.into_iter().map(linecap::source::file::Input::Path));
    }
    let filter = match &a.filter {
        Some(expr) => Some(
            filter::compile(expr, filter::Target::Link)
                .map_err(|e| strict::usage_error(format!("--filter: {e}")))?,
        ),
        None => None,
    };
    Ok(linecap::source::file::FileOptions { inputs, filter })
}

/// The backend and its options.
pub(super) fn backend_config(a: &CaptureArgs) -> anyhow::Result<BackendConfig> {
    if !a.read.is_empty() {
        return Ok(BackendConfig::File(file_options(a)?));
    }
    Ok(match a.backend {
        Backend::Socket => BackendConfig::Socket(socket_options(a)?),
        Backend::Uring => BackendConfig::Uring(socket_options(a)?),
        Backend::Xdp => BackendConfig::Xdp(xdp_options(a)?),
        Backend::Afpacket => BackendConfig::AfPacket { opts: afpacket_options(a)?, fanout: a.fanout },
    })
}

/// The socket and uring backends' options.
fn socket_options(a: &CaptureArgs) -> anyhow::Result<SocketOptions> {
    Ok(SocketOptions {
        listen: a.listen,
        mode: a.mode,
        gro: !a.no_gro,
        gro_adaptive: !a.gro_always,
        batch: a.batch,
        rcvbuf: i32::try_from(a.rcvbuf).unwrap_or(i32::MAX),
        reuseport: false,
        // The capture sets the number of sockets.
        spread: match a.spread {
            super::SpreadArg::Hash => linecap_engine::source::socket::Spread::Hash,
            super::SpreadArg::SrcPort => linecap_engine::source::socket::Spread::SourcePort(0),
        },
        join: a.join,
        busy_poll: a.busy_poll,
        // Only what the sinks use: timestamps for a pcap, the
        // sender for a pcap's headers and the verifier's flows.
        timestamps: a.write.is_some(),
        sources: a.write.is_some() || a.verify.is_some(),
        filter: match (&a.filter, &a.bpf_file) {
            (Some(expr), _) => Some(
                filter::compile(expr, filter::Target::Udp { ipv6: a.listen.is_ipv6() })
                    .map_err(|e| strict::usage_error(format!("--filter: {e}")))?
                    .0,
            ),
            (None, Some(_)) => unreachable!("--bpf-file is refused for this backend"),
            (None, None) => None,
        },
    })
}

/// The AF_XDP backend's options.
fn xdp_options(a: &CaptureArgs) -> anyhow::Result<XdpOptions> {
    let Some(iface) = &a.iface else {
        strict::usage!("--backend xdp needs --iface IF (see 'ip link')");
    };
    if !a.xdp_ring.is_power_of_two() {
        strict::usage!("--xdp-ring must be a power of two");
    }
    if !(1..=256).contains(&a.queues) {
        strict::usage!("--queues must be 1 to 256");
    }
    Ok(XdpOptions {
        iface: iface.clone(),
        queue: a.queue,
        listen: a.listen,
        ring: a.xdp_ring,
        frame_size: 2048,
        batch: a.batch,
        busy_poll: a.busy_poll,
        queues: a.queues,
        force: a.force,
        parsed_lane: true,
        lend_frames: if a.write.is_some() { LEND_FRAMES } else { 0 },
    })
}

/// Spare UMEM frames (32 MiB of locked memory at 2 KiB a frame) for a pcap
/// writer that encodes frames on its own thread: what it holds at once is
/// its rate times its delay, not a multiple of the ring, so the count is
/// fixed (a chunk holds at most a quarter of it, about 1.3 MiB of
/// 272-byte payloads, and the writer has two or three chunks in hand at
/// 2.35 Mpps). When they run out the receive thread copies, as without them.
const LEND_FRAMES: u32 = 16_384;

/// The AF_PACKET backend's ring and filter.
fn afpacket_options(a: &CaptureArgs) -> anyhow::Result<AfPacketOptions> {
    let Some(iface) = &a.iface else {
        strict::usage!("--backend afpacket needs --iface IF (see 'ip link')");
    };
    let mut opts = AfPacketOptions::new(iface);
    opts.ring.block_size = u32::try_from(a.ring_block_size).unwrap_or(u32::MAX);
    opts.ring.block_nr = a.ring_blocks;
    opts.ring.retire_ms = a.retire_ms;
    linecap::source::afpacket::check_ring(&opts.ring).map_err(strict::usage_error)?;
    if let Some(dst) = a.discard_unreceived {
        linecap::source::afpacket::check_discard(dst)
            .map_err(|e| strict::usage_error(format!("--discard-unreceived {dst}: {e}")))?;
        opts.discard_unreceived = Some(dst);
    }
    opts.filter = match (&a.filter, &a.bpf_file) {
        (Some(expr), _) => {
            Some(filter::compile_inbound(expr).map_err(|e| strict::usage_error(format!("--filter: {e}")))?.0)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --bpf-file {}", path.display()))?;
            let prog = filter::ddd::parse(&text)
                .map_err(|e| strict::usage_error(format!("--bpf-file {}: {e}", path.display())))?;
            Some(filter::inbound(&prog).0)
        }
        (None, None) => None,
    };
    Ok(opts)
}

/// The block sink's options from `--blocks` or `--shm` and the layout.
pub(super) fn block_options(a: &CaptureArgs) -> anyhow::Result<Option<BlockSinkOptions>> {
    Ok(match (&a.blocks, &a.shm) {
        (None, None) => None,
        (dir, shm) => {
            let format = match a.format {
                StreamKind::Seq => StreamFormat::Seq,
                StreamKind::Raw => {
                    let spec = a
                        .raw
                        .as_deref()
                        .ok_or_else(|| strict::usage_error("--format raw needs --raw SPEC"))?;
                    StreamFormat::Raw(
                        RawSpec::parse(spec).map_err(|e| strict::usage_error(format!("--raw: {e}")))?,
                    )
                }
                StreamKind::Vdif => StreamFormat::Vdif { fps: a.frames_per_second.max(1) },
                StreamKind::Spead => StreamFormat::Spead,
                StreamKind::SpeadHeap => StreamFormat::SpeadHeap,
            };
            let slot_bytes = match format {
                StreamFormat::Raw(spec) => spec.payload,
                _ => a.slot_bytes,
            };
            let layout = Layout::new(slot_bytes, a.slots, a.channels).map_err(strict::usage_error)?;
            let output = match (dir, shm) {
                (Some(d), _) => BlockOutput::Dir(d.clone()),
                (None, Some(name)) => BlockOutput::Shm(RingOptions {
                    name: name.clone(),
                    slots: a.shm_slots,
                    lossless: a.shm_lossless,
                    mode: a.file_mode,
                    keep: a.name.is_some(),
                }),
                (None, None) => unreachable!("matched above"),
            };
            Some(BlockSinkOptions {
                output,
                layout,
                assembler: AsmOptions {
                    window: a.window,
                    resync_gap: a.resync_gap,
                    zero_fill: !a.no_zero_fill,
                    pool: a.window + a.block_queue + 2,
                },
                format,
                queue: a.block_queue,
                // The capture sets it for sources that can wait (files).
                wait_for_writer: false,
                policy: match a.group_policy {
                    super::GroupPolicy::Lossy => linecap_engine::assemble::group::Policy::Lossy,
                    super::GroupPolicy::Lossless => linecap_engine::assemble::group::Policy::Lossless,
                },
            })
        }
    })
}

pub(super) fn check_output_dir(p: &std::path::Path) -> anyhow::Result<()> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!("output folder {} does not exist: create it or choose another --write path", dir.display());
    }
    let probe = dir.join(format!(".linecap-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("output folder {} is not writable ({e}): choose another --write path", dir.display()),
    }
}
