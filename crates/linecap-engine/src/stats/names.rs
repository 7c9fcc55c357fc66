//! The counters of each stage, by name and by index: the names stored in
//! the counters file, the typed indexes code uses, and the checks that
//! the two agree.

/// Counters of a receive thread (`rx.N`).
pub const RX_COUNTERS: &[&str] = &[
    "packets",
    "bytes",
    "datagrams",
    "syscalls",
    "truncated",
    "kernel_drops",
    "cpu_user_ns",
    "cpu_sys_ns",
    "ring_freezes",
    "losing_blocks",
    "ring_full_drops",
    "no_buffer_drops",
    "poll_gaps",
    "poll_gap_ns",
    "gro_on",
    "gro_switches",
    "fill_ring_empty",
    "filtered",
];
/// Index into [`RX_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum RxIdx {
    Packets,
    Bytes,
    Datagrams,
    Syscalls,
    Truncated,
    KernelDrops,
    CpuUserNs,
    CpuSysNs,
    RingFreezes,
    LosingBlocks,
    RingFullDrops,
    NoBufferDrops,
    PollGaps,
    PollGapNs,
    GroOn,
    GroSwitches,
    FillRingEmpty,
    Filtered,
}

/// Counters of the `seq` verifier (`verify.N`).
pub const VERIFY_COUNTERS: &[&str] = &[
    "packets",
    "valid",
    "corrupt",
    "malformed",
    "duplicates",
    "reordered",
    "missing",
    "too_old",
    "flows",
    "not_udp",
    "out_of_window",
    "resyncs",
];
/// Index into [`VERIFY_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum VerifyIdx {
    Packets,
    Valid,
    Corrupt,
    Malformed,
    Duplicates,
    Reordered,
    Missing,
    TooOld,
    Flows,
    NotUdp,
    OutOfWindow,
    Resyncs,
}

/// Counters of the hand-off into a threaded sink (`<sink>.queue.N`), written by the rx thread.
pub const QUEUE_COUNTERS: &[&str] =
    &["packets", "bytes", "ring_full_drops", "chunks", "ring_full_bytes", "lent"];
/// Index into [`QUEUE_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum QueueIdx {
    Packets,
    Bytes,
    RingFullDrops,
    Chunks,
    RingFullBytes,
    Lent,
}

/// Counters of a sink's writer thread (`<sink>.writer.N`).
pub const WRITER_COUNTERS: &[&str] =
    &["packets", "bytes", "files", "write_error_drops", "chunks", "write_error_bytes", "resumed"];
/// Index into [`WRITER_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum WriterIdx {
    Packets,
    Bytes,
    Files,
    WriteErrorDrops,
    Chunks,
    WriteErrorBytes,
    Resumed,
}

/// Counters of a block sink (`blocks.N`): the assembler's and the writer's.
pub const BLOCKS_COUNTERS: &[&str] = &[
    "packets",
    "placed",
    "duplicates",
    "late",
    "malformed",
    "bad_channel",
    "no_buffer",
    "resyncs",
    "blocks",
    "slots_lost",
    "written",
    "dropped_blocks",
    "write_errors",
    "wraps",
    "dropped_packets",
    "ring_overwritten",
    "ring_waits",
    "ring_dropped",
    "invalid",
    "out_of_window",
    "group_forced",
    "group_waits",
    "members_left",
];
/// Index into [`BLOCKS_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum BlocksIdx {
    Packets,
    Placed,
    Duplicates,
    Late,
    Malformed,
    BadChannel,
    NoBuffer,
    Resyncs,
    Blocks,
    SlotsLost,
    Written,
    DroppedBlocks,
    WriteErrors,
    Wraps,
    DroppedPackets,
    RingOverwritten,
    RingWaits,
    RingDropped,
    Invalid,
    OutOfWindow,
    GroupForced,
    GroupWaits,
    MembersLeft,
}

/// Counters of a UDP relay (`relay.N`).
pub const RELAY_COUNTERS: &[&str] =
    &["offered", "relayed", "dropped", "errors", "not_udp", "syscalls", "messages"];
/// Index into [`RELAY_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum RelayIdx {
    Offered,
    Relayed,
    Dropped,
    Errors,
    NotUdp,
    Syscalls,
    Messages,
}
const _: () = assert!(RelayIdx::Messages as usize + 1 == RELAY_COUNTERS.len());

/// Kernel counters read beside ours (deltas since the capture started).
pub const KERNEL_COUNTERS: &[&str] = &[
    "udp_rcvbuf_errors",
    "udp_in_errors",
    "udp_csum_errors",
    "udp_no_ports",
    "iface_rx_dropped",
    "softnet_dropped",
];
/// Index into [`KERNEL_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum KernelIdx {
    UdpRcvbufErrors,
    UdpInErrors,
    UdpCsumErrors,
    UdpNoPorts,
    IfaceRxDropped,
    SoftnetDropped,
}

/// The capture's settings as the kernel granted them (`settings`), written
/// once when its sources are open, so that `doctor` can name the current
/// value beside a fix ("your receive buffer is 128 KiB").
pub const SETTINGS_COUNTERS: &[&str] = &[
    "rcvbuf_bytes",
    "rcvbuf_forced",
    "filter",
    "gro",
    "busy_poll_ns",
    "busy_poll_refused",
    "threads",
    "cpu_mask",
    "ring_bytes",
    "port",
];
/// Index into [`SETTINGS_COUNTERS`].
#[derive(Clone, Copy)]
#[allow(missing_docs)] // the names are in the array above
pub enum SettingsIdx {
    RcvbufBytes,
    RcvbufForced,
    Filter,
    Gro,
    BusyPollNs,
    BusyPollRefused,
    Threads,
    CpuMask,
    RingBytes,
    Port,
}

/// A counter of one kind of stage, named by its index enum: the engine
/// reads its own counters through these, so a misspelt counter does not
/// compile (reading by name would silently give 0).
pub trait Counter: Copy {
    /// The prefix of the stages that carry it (`rx.` matches `rx.0`, `rx.1`).
    const STAGE: &'static str;
    /// The names of the stage kind's counters, in file order.
    const NAMES: &'static [&'static str];
    /// Its position in the stage.
    fn index(self) -> usize;
    /// Its name.
    fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

macro_rules! counter_kind {
    ($idx:ty, $stage:literal, $names:expr) => {
        impl Counter for $idx {
            const STAGE: &'static str = $stage;
            const NAMES: &'static [&'static str] = $names;
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
counter_kind!(RxIdx, "rx.", RX_COUNTERS);
counter_kind!(VerifyIdx, "verify.", VERIFY_COUNTERS);
counter_kind!(QueueIdx, "pcap.queue.", QUEUE_COUNTERS);
counter_kind!(WriterIdx, "pcap.writer.", WRITER_COUNTERS);
counter_kind!(BlocksIdx, "blocks.", BLOCKS_COUNTERS);
counter_kind!(RelayIdx, "relay.", RELAY_COUNTERS);
counter_kind!(KernelIdx, "kernel", KERNEL_COUNTERS);
counter_kind!(SettingsIdx, "settings", SETTINGS_COUNTERS);

// Each index enum must cover its name array exactly (last variant = len - 1).
const _: () = assert!(RxIdx::Filtered as usize + 1 == RX_COUNTERS.len());
const _: () = assert!(VerifyIdx::Resyncs as usize + 1 == VERIFY_COUNTERS.len());
const _: () = assert!(QueueIdx::Lent as usize + 1 == QUEUE_COUNTERS.len());
const _: () = assert!(WriterIdx::Resumed as usize + 1 == WRITER_COUNTERS.len());
const _: () = assert!(KernelIdx::SoftnetDropped as usize + 1 == KERNEL_COUNTERS.len());
const _: () = assert!(SettingsIdx::Port as usize + 1 == SETTINGS_COUNTERS.len());
const _: () = assert!(BlocksIdx::MembersLeft as usize + 1 == BLOCKS_COUNTERS.len());
