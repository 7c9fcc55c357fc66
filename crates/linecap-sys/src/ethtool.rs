//! The ethtool ioctl: an interface's receive ring, GRO and TSO.

use std::ffi::CString;
use std::io;
use std::mem::size_of;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use crate::{cvt, udp_socket};

/// ethtool ioctl commands (linux/ethtool.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_STSO: u32 = 0x1f;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_ringparam`.
#[repr(C)]
#[derive(Default)]
struct EthtoolRingparam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}
const _: () = assert!(size_of::<EthtoolRingparam>() == 36);

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}
const _: () = assert!(size_of::<IfreqData>() == 40);

/// SIOCETHTOOL on `ifname` with `cmd` (an ethtool struct that starts with
/// its command word); the kernel reads and writes `cmd` in place.
fn ethtool_ioctl<T>(ifname: &str, cmd: &mut T) -> io::Result<()> {
    let name = CString::new(ifname).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let sock = udp_socket(&SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let mut ifr = IfreqData { name: [0; libc::IFNAMSIZ], data: (cmd as *mut T).cast(), _pad: [0; 16] };
    for (d, s) in ifr.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq whose data pointer refers to `cmd`, an
    // ethtool struct of the layout the command expects (callers pair them),
    // which outlives the call; SIOCETHTOOL reads/writes only that struct.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) })?;
    Ok(())
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut val = EthtoolValue { cmd, data };
    ethtool_ioctl(ifname, &mut val)?;
    Ok(val.data)
}

/// An interface's receive ring: (descriptors in use, the most it takes), as
/// `ethtool -g IF` shows. Devices without rings (veth, lo) answer EOPNOTSUPP.
pub fn rx_ring_size(ifname: &str) -> io::Result<(u32, u32)> {
    const ETHTOOL_GRINGPARAM: u32 = 0x10;
    let mut r = EthtoolRingparam { cmd: ETHTOOL_GRINGPARAM, ..EthtoolRingparam::default() };
    ethtool_ioctl(ifname, &mut r)?;
    Ok((r.rx_pending, r.rx_max_pending))
}

/// Turns generic receive offload on or off for an interface of the current
/// network namespace (the same ioctl as `ethtool -K IF gro on`).
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_SGRO, u32::from(on)).map(drop)
}

/// Turns TCP segmentation offload (all TSO variants) on or off for an
/// interface of the current network namespace (`ethtool -K IF tso off`).
pub fn set_tso(ifname: &str, on: bool) -> io::Result<()> {
    ethtool_value(ifname, ETHTOOL_STSO, u32::from(on)).map(drop)
}

/// Whether GRO is on for an interface of the current network namespace.
pub fn get_gro(ifname: &str) -> io::Result<bool> {
    ethtool_value(ifname, ETHTOOL_GGRO, 0).map(|v| v != 0)
}
