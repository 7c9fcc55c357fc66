//! The `bpf(2)` syscall: maps, program loading (with the verifier's log),
//! test runs and BPF links. `bpf_attr` is a union whose members are laid
//! out by the kernel's UAPI; each command fills a zeroed 128-byte buffer at
//! the documented offsets (unused bytes must stay zero), which keeps this
//! independent of headers linecap does not have.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::cvt;

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_TEST_RUN: i32 = 10;
const BPF_LINK_CREATE: i32 = 28;

/// `BPF_MAP_TYPE_ARRAY`.
pub const MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_XSKMAP`.
pub const MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
pub const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type.
pub const ATTACH_XDP: u32 = 37;
/// `BPF_PROG_TYPE_SCHED_CLS`: tc (and tcx) classifier programs.
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_TCX_INGRESS`.
pub const ATTACH_TCX_INGRESS: u32 = 46;

/// A zeroed `bpf_attr` with typed writers.
struct Attr([u64; 16]);

impl Attr {
    fn new() -> Self {
        Self([0; 16])
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: a [u64; 16] is 128 initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), 128) }
    }
    fn u32(mut self, at: usize, v: u32) -> Self {
        self.bytes()[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Self {
        self.bytes()[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(mut self, at: usize, name: &str) -> Self {
        let n = name.len().min(15);
        self.bytes()[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
    fn read_u32(&mut self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes()[at..at + 4].try_into().expect("4"))
    }
}

fn bpf(cmd: i32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a 128-byte buffer laid out for `cmd`; every pointer
    // stored in it refers to memory the caller keeps alive for the call.
    cvt(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), 128u32) })
}

fn fd(ret: i64) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn hint(e: io::Error, what: &str) -> io::Error {
    let msg = match e.raw_os_error() {
        // The verifier also asks for CAP_PERFMON (pointer arithmetic on packet
        // data) unless CAP_SYS_ADMIN is held.
        Some(libc::EPERM) => format!(
            "{what}: {e}; needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or grant them with setcap"
        ),
        _ => format!("{what}: {e}"),
    };
    io::Error::new(e.kind(), msg)
}

/// Creates a map.
pub fn map_create(map_type: u32, key: u32, value: u32, entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut a = Attr::new().u32(0, map_type).u32(4, key).u32(8, value).u32(12, entries).name(28, name);
    bpf(BPF_MAP_CREATE, &mut a).map(fd).map_err(|e| hint(e, "cannot create a BPF map"))
}

/// Sets `map[key] = value` (4-byte keys and values).
pub fn map_update_u32(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (k, v) = (key, value);
    let mut a =
        Attr::new().u32(0, map.as_raw_fd() as u32).u64(8, &raw const k as u64).u64(16, &raw const v as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Sets `map[key] = value` for any key and value sizes (they must match the map's).
pub fn map_update_bytes(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut a =
        Attr::new().u32(0, map.as_raw_fd() as u32).u64(8, key.as_ptr() as u64).u64(16, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Reads `map[key]` into `value` (sizes must match the map's).
pub fn map_lookup_bytes(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut a = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_mut_ptr() as u64);
    bpf(BPF_MAP_LOOKUP_ELEM, &mut a).map(drop)
}

/// A failed load, with the verifier's words.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// The syscall error.
    pub error: io::Error,
    /// The verifier log.
    pub log: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the kernel refused the XDP program: {}", self.error)?;
        // Without CAP_PERFMON (or CAP_SYS_ADMIN) the verifier refuses the
        // packet-pointer arithmetic every packet parser needs, "for !root".
        if self.log.contains("for !root") {
            write!(
                f,
                "; the verifier needs CAP_PERFMON (or CAP_SYS_ADMIN) besides CAP_BPF: grant it with setcap"
            )?;
        }
        write!(f, "\nverifier log:\n{}", self.log)
    }
}

/// Loads a program (`insns`: the instruction bytes). On failure the
/// verifier log is carried in the error.
pub fn prog_load(prog_type: u32, attach_type: u32, insns: &[u8], name: &str) -> Result<OwnedFd, LoadError> {
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 1 << 16];
    let load = |level: u32, log: &mut Vec<u8>| {
        let mut a = Attr::new()
            .u32(0, prog_type)
            .u32(4, (insns.len() / 8) as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, level)
            .u32(28, if level > 0 { log.len() as u32 } else { 0 })
            .u64(32, if level > 0 { log.as_mut_ptr() as u64 } else { 0 })
            .name(48, name)
            .u32(68, attach_type);
        bpf(BPF_PROG_LOAD, &mut a)
    };
    match load(0, &mut log) {
        Ok(r) => Ok(fd(r)),
        Err(_) => {
            // Load again with the log on, to say why.
            let error = match load(1, &mut log) {
                Ok(r) => return Ok(fd(r)),
                Err(e) => hint(e, "BPF_PROG_LOAD"),
            };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError { error, log: String::from_utf8_lossy(&log[..end]).into_owned() })
        }
    }
}

/// Runs an XDP program once on `frame` (`BPF_PROG_TEST_RUN`) as if it
/// arrived on receive queue 0; returns the action it chose.
pub fn xdp_test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; frame.len() + 256];
    let mut a = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut a).map_err(|e| hint(e, "BPF_PROG_TEST_RUN"))?;
    Ok(a.read_u32(4))
}

/// Runs an XDP program once on `frame` and returns (action, output frame).
pub fn xdp_test_run_out(prog: &OwnedFd, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; frame.len() + 256];
    let mut a = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut a).map_err(|e| hint(e, "BPF_PROG_TEST_RUN"))?;
    let n = a.read_u32(12) as usize;
    out.truncate(n.min(out.len()));
    Ok((a.read_u32(4), out))
}

/// Runs an XDP program `repeat` times on `frame` in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+): frames the program returns
/// XDP_TX for are transmitted on `ifindex`, `batch` at a time.
pub fn xdp_run_live(prog: &OwnedFd, frame: &[u8], ifindex: u32, repeat: u32, batch: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let mut a = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u32(32, repeat)
        .u32(40, 24)
        .u64(48, ctx.as_ptr() as u64)
        .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
        .u32(72, batch);
    bpf(BPF_PROG_TEST_RUN, &mut a)
        .map(drop)
        .map_err(|e| hint(e, "BPF_PROG_RUN in live-frames mode (Linux 5.18+)"))
}

/// Attaches an XDP program to an interface with a BPF link: the program
/// is detached when the returned fd closes, including when the process dies.
pub fn xdp_link(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut a = Attr::new().u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, ATTACH_XDP).u32(12, flags);
    // The raw error: callers tell "another program is attached" (EEXIST,
    // EBUSY) from "no native XDP here" by its number.
    bpf(BPF_LINK_CREATE, &mut a).map(fd)
}

/// Attaches a tc program at an interface's ingress with a tcx link (Linux
/// 6.6+), after the programs already there: detached when the returned fd
/// closes, including when the process dies, so nothing is left behind.
pub fn tcx_ingress_link(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut a = Attr::new().u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, ATTACH_TCX_INGRESS);
    bpf(BPF_LINK_CREATE, &mut a)
        .map(fd)
        .map_err(|e| hint(e, "cannot attach at the interface's tcx ingress (Linux 6.6+)"))
}

/// Attaches (`prog_fd` ≥ 0) or detaches (`prog_fd` = -1) an XDP program the
/// old way, through rtnetlink (`RTM_SETLINK` with `IFLA_XDP`), as `ip link
/// set dev IF xdp ...` does. Such a program stays until someone removes
/// it; a program held by a BPF link cannot be touched this way (EBUSY).
pub fn xdp_netlink_set(ifindex: u32, prog_fd: i32, flags: u32) -> io::Result<()> {
    const RTM_SETLINK: u16 = 19;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFLA_XDP: u16 = 43;
    const NLA_F_NESTED: u16 = 0x8000;
    const IFLA_XDP_FD: u16 = 1;
    const IFLA_XDP_FLAGS: u16 = 3;
    let mut m = Vec::with_capacity(52);
    m.extend_from_slice(&52u32.to_ne_bytes());
    m.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel's
    // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&20u16.to_ne_bytes());
    m.extend_from_slice(&(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&IFLA_XDP_FD.to_ne_bytes());
    m.extend_from_slice(&prog_fd.to_ne_bytes());
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&IFLA_XDP_FLAGS.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    debug_assert_eq!(m.len(), 52);
    // SAFETY: plain syscall with constant arguments; the fd is owned below.
    let sock = cvt(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    let sock = fd(i64::from(sock));
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed sockaddr_nl is a valid "the kernel" address once its family is set.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `m` and `sa` are valid for the lengths given for the call's duration.
    cvt(unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            m.as_ptr().cast(),
            m.len(),
            0,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    })?;
    let mut ack = [0u8; 1024];
    // SAFETY: `ack` is writable for its length.
    let n = cvt(unsafe { libc::recv(sock.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) })? as usize;
    // The answer: nlmsghdr (16 bytes) of type NLMSG_ERROR, then the error (0 or -errno).
    if n < 20 || u16::from_ne_bytes([ack[4], ack[5]]) != NLMSG_ERROR {
        return Err(io::Error::other("unexpected rtnetlink answer to RTM_SETLINK"));
    }
    match i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}
