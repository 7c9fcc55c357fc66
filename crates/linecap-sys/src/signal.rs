//! Signals: a stop flag SIGINT/SIGTERM set (captures flush and close their
//! books), and SIGPIPE's disposition.

use std::io;
use std::mem::zeroed;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::cvt;

static STOP: AtomicBool = AtomicBool::new(false);
static STOP_SIGNAL: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    STOP_SIGNAL.store(sig as u32, Ordering::Relaxed);
    STOP.store(true, Ordering::Release);
}

/// Restores the default action of SIGPIPE (the Rust runtime ignores it):
/// `linecap stats | head -1` then ends quietly, as a C tool would, instead
/// of panicking in `println!` on the closed pipe. A capture that writes its
/// packets to a pipe (`--write -`) ignores it again ([`ignore_sigpipe`]).
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Ignores SIGPIPE: a write to a pipe whose reader left fails with EPIPE,
/// which the pcap writer counts and answers by stopping the capture, so
/// its books and summary survive `linecap capture --write - | head`.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Installs SIGINT/SIGTERM handlers that set a flag instead of killing the
/// process, so captures can flush their files and print their summary.
pub fn install_stop_handler() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: all-zero is a valid sigaction; we fill handler and mask.
        let mut sa: libc::sigaction = unsafe { zeroed() };
        sa.sa_sigaction = on_stop_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa.sa_mask` is a valid sigset to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: the handler only touches atomics (async-signal-safe).
        cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived (or [`request_stop`] was called).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// The signal that asked us to stop, if any.
pub fn stop_signal() -> Option<u32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Asks every loop that watches [`stop_requested`] to finish.
pub fn request_stop() {
    STOP.store(true, Ordering::Release);
}
