//! The capture's live line on a terminal, fed by the engine's
//! [`Watcher`](linecap::capture::Watcher).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use linecap::capture::{CaptureEvent, Watcher, live_line};

/// Whether a live line is on the terminal now (so a message clears it first).
static SHOWING: AtomicBool = AtomicBool::new(false);

/// What to print before a message so that it does not run into a live line.
pub fn clear_prefix() -> &'static str {
    if SHOWING.swap(false, Ordering::Relaxed) { "\r\x1b[2K" } else { "" }
}

/// Ends the live line, if one is shown, so the summary starts on its own line.
pub fn finish() {
    if SHOWING.swap(false, Ordering::Relaxed) {
        eprintln!();
    }
}

/// The watcher for `capture`: the "capturing on" line always, the live line
/// every half second when `live` (stderr is a terminal and not `--quiet`).
pub fn watcher(live: bool) -> Watcher {
    Watcher(Arc::new(move |event: &CaptureEvent<'_>| match *event {
        CaptureEvent::Started { name, listen, description, threads } => {
            let plural = if threads == 1 { "" } else { "s" };
            eprintln!(
                "{}linecap: capturing on {listen} ({description}, {threads} thread{plural}) as '{name}'",
                clear_prefix()
            );
        }
        CaptureEvent::Progress { snapshot, pps, bps } if live => {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", live_line(snapshot, pps, bps));
            SHOWING.store(true, Ordering::Relaxed);
        }
        CaptureEvent::Progress { .. } => {}
    }))
}
