//! Opening a capture's sources, each backend its own way, before any
//! thread starts: a bad address, a port in use or a missing interface
//! fails at once with one message.

use super::*;
use crate::source::KernelRefusal;
use crate::source::socket::Spread;

/// What the opened sources are, for messages and the report.
pub(super) struct SourceInfo {
    pub(super) backend: BackendKind,
    pub(super) mode: String,
    pub(super) listen: String,
    pub(super) description: String,
    pub(super) gro: bool,
    /// Busy polling as granted (microseconds per poll).
    pub(super) busy_poll: Option<u32>,
    /// The errno with which the kernel refused the busy polling asked for.
    pub(super) busy_poll_refused: Option<i32>,
    pub(super) buffer: i64,
    pub(super) buffer_forced: bool,
    pub(super) drop_stage: DropPlace,
}

pub(super) struct Opened {
    pub(super) sources: Vec<Box<dyn Source>>,
    pub(super) info: SourceInfo,
}

pub(super) fn open_sources(cfg: &CaptureConfig) -> crate::Result<Opened> {
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(cfg.threads);
    let info = match &cfg.backend {
        BackendConfig::Socket(o) => open_sockets(cfg, o, false, &mut sources)?,
        BackendConfig::Uring(o) => open_sockets(cfg, o, true, &mut sources)?,
        BackendConfig::Xdp(o) => open_xdp(cfg, o, &mut sources)?,
        BackendConfig::AfPacket { opts, fanout } => open_afpacket(cfg, opts, *fanout, &mut sources)?,
        BackendConfig::File(o) => open_files(cfg, o, &mut sources)?,
    };
    Ok(Opened { sources, info })
}

/// One UDP socket per thread (SO_REUSEPORT when several), read with
/// `recvmmsg` or io_uring; what they are, for messages and the report.
fn open_sockets(
    cfg: &CaptureConfig,
    o: &SocketOptions,
    uring: bool,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    let spread = match o.spread {
        Spread::SourcePort(_) => Spread::SourcePort(cfg.threads as u32),
        Spread::Hash => Spread::Hash,
    };
    let o = SocketOptions { reuseport: cfg.threads > 1, spread, ..o.clone() };
    let mut setup = None;
    for _ in 0..cfg.threads {
        let opened: std::io::Result<(Box<dyn Source>, _)> = if uring {
            UringSource::open(&o).map(|s| {
                let st = s.setup().clone();
                (Box::new(s) as Box<dyn Source>, st)
            })
        } else {
            SocketSource::open(&o).map(|s| {
                let st = s.setup().clone();
                (Box::new(s) as Box<dyn Source>, st)
            })
        };
        let (s, st) = opened.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => crate::failed!(
                "{e}: another program holds this port; stop it or choose another --listen port"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                crate::failed!("{e}: no interface has this address in this network namespace")
            }
            _ => crate::Error::from(e),
        })?;
        setup.get_or_insert(st);
        sources.push(s);
    }
    let setup = setup.expect("at least one thread");
    if o.gro && !setup.gro {
        tracing::warn!("UDP GRO is not available on this kernel; receiving plain datagrams");
    }
    if let Some(refusal) = &setup.busy_poll_refused {
        say_busy_poll_refused(refusal);
    }
    let mode = match (uring, o.mode) {
        (true, _) => "multishot",
        (false, RecvMode::Recv) => "recv",
        (false, RecvMode::Recvmmsg) => "recvmmsg",
        // recvmmsg while GRO is on, io_uring while it is off.
        (false, RecvMode::Auto) => "auto",
    };
    Ok(SourceInfo {
        backend: if uring { BackendKind::Uring } else { BackendKind::Socket },
        mode: mode.into(),
        listen: setup.local.to_string(),
        description: format!(
            "{}/{mode}{}, rcvbuf {} KiB{}{}",
            if uring { "uring" } else { "socket" },
            if setup.gro { "+gro" } else { "" },
            setup.rcvbuf / 1024,
            if setup.rcvbuf_forced { ", forced" } else { "" },
            busy_poll_note(setup.busy_poll)
        ),
        gro: setup.gro,
        busy_poll: setup.busy_poll,
        busy_poll_refused: setup.busy_poll_refused.as_ref().map(|r| r.errno),
        buffer: i64::from(setup.rcvbuf),
        buffer_forced: setup.rcvbuf_forced,
        // The kernel counts datagrams a socket filter rejects in the
        // same per-socket counter as overflows (and in UdpInErrors);
        // only udp_rcvbuf_errors, namespace-wide, tells them apart.
        drop_stage: if o.filter.is_some() {
            DropPlace::SocketOverflowOrFiltered
        } else {
            DropPlace::SocketOverflow
        },
    })
}

/// One AF_XDP socket and thread per queue.
fn open_xdp(
    cfg: &CaptureConfig,
    o: &XdpOptions,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    crate::ensure_valid!(
        cfg.threads == o.queues.max(1) as usize,
        "--backend xdp runs one thread per queue (--queues {}, --threads {})",
        o.queues,
        cfg.threads
    );
    let all = XdpSource::open_all(o)?;
    let mode = all[0].mode();
    let busy_poll_refused = all[0].busy_poll_refused().map(|r| {
        say_busy_poll_refused(r);
        r.errno
    });
    let busy_poll = o.busy_poll.filter(|_| all[0].busy_polls());
    sources.extend(all.into_iter().map(|s| Box::new(s) as Box<dyn Source>));
    Ok(SourceInfo {
        backend: BackendKind::Xdp,
        mode: format!(
            "{}, {}",
            if mode.zero_copy { "zero-copy" } else { "copy" },
            if mode.native { "native" } else { "generic" }
        ),
        listen: if o.queues > 1 {
            format!(
                "interface {} queues {}-{} port {}",
                o.iface,
                o.queue,
                o.queue + o.queues - 1,
                o.listen.port()
            )
        } else {
            format!("interface {} queue {} port {}", o.iface, o.queue, o.listen.port())
        },
        description: format!(
            "xdp/{} {} XDP, {} ring entries{}{}",
            if mode.zero_copy { "zero-copy" } else { "copy-mode" },
            if mode.native { "native" } else { "generic" },
            o.ring,
            if o.lend_frames > 0 {
                format!(", {} spare frames for the writer", o.lend_frames)
            } else {
                String::new()
            },
            busy_poll_note(busy_poll)
        ),
        gro: false,
        busy_poll,
        busy_poll_refused,
        buffer: i64::from(o.ring) * i64::from(o.frame_size) * i64::from(o.queues.max(1)),
        buffer_forced: false,
        drop_stage: DropPlace::XskInvalidDescs,
    })
}

/// Busy polling the kernel refused: said once per capture (not per
/// socket), and the capture goes on waiting in the kernel.
fn say_busy_poll_refused(refusal: &KernelRefusal) {
    tracing::warn!("receiving without busy polling: the kernel refused it ({})", refusal.why);
}

/// The startup line's mention of busy polling, where it is on.
fn busy_poll_note(busy_poll: Option<u32>) -> String {
    busy_poll.map(|us| format!(", busy polling {us} µs")).unwrap_or_default()
}

/// One TPACKET_V3 ring per thread, in one fanout group when several.
fn open_afpacket(
    cfg: &CaptureConfig,
    opts: &AfPacketOptions,
    fanout: FanoutMode,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    // Fanout group ids are per network namespace; the pid keeps
    // concurrent captures apart.
    let group = (std::process::id() & 0xffff) as u16;
    for t in 0..cfg.threads {
        let mut o = opts.clone();
        if cfg.threads > 1 {
            o.fanout = Some((group, fanout));
        }
        // One discard program for the interface, held by the first ring.
        if t > 0 {
            o.discard_unreceived = None;
        }
        sources.push(Box::new(AfPacketSource::open(&o)?));
    }
    let ring = u64::from(opts.ring.block_size) * u64::from(opts.ring.block_nr);
    Ok(SourceInfo {
        backend: BackendKind::AfPacket,
        mode: "tpacket_v3".into(),
        listen: format!("interface {}", opts.iface),
        description: format!(
            "afpacket/tpacket_v3, {} blocks of {} KiB, retire {} ms{}{}{}",
            opts.ring.block_nr,
            opts.ring.block_size / 1024,
            opts.ring.retire_ms,
            if cfg.threads > 1 { format!(", fanout {fanout:?}").to_lowercase() } else { String::new() },
            if opts.filter.is_some() { ", filtered" } else { "" },
            opts.discard_unreceived
                .map(|d| format!(", unreceived datagrams to {d} end after the tap"))
                .unwrap_or_default()
        ),
        gro: false,
        busy_poll: None,
        busy_poll_refused: None,
        buffer: ring as i64,
        buffer_forced: false,
        drop_stage: DropPlace::PacketRingDropped,
    })
}

/// The files to read back, by one thread (their order is the packets' order).
fn open_files(
    cfg: &CaptureConfig,
    opts: &crate::source::file::FileOptions,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    crate::ensure_valid!(cfg.threads == 1, "--read: files are read by one thread (no --threads)");
    sources.push(Box::new(crate::source::file::FileSource::open(opts.clone())?));
    let inputs = opts.inputs.as_slice();
    let listen = match inputs {
        [one] => format!("{one}"),
        [first, ..] => format!("{first} and {} more", inputs.len() - 1),
        [] => String::new(),
    };
    Ok(SourceInfo {
        backend: BackendKind::File,
        mode: "read".into(),
        listen,
        description: format!("{} file(s) read back", inputs.len()),
        gro: false,
        busy_poll: None,
        busy_poll_refused: None,
        buffer: 0,
        buffer_forced: false,
        drop_stage: DropPlace::FileRecordsSkipped,
    })
}
