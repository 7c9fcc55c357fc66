//! Where the capture's other threads run: away from the receive cores.
//!
//! A writer that shares a core with a receive thread (and, on a host with
//! threaded NAPI or interrupts steered there, with the kernel's receive
//! work) takes its time from the receive path: on a busy receive core that
//! time is packets. The writers are started with the CPUs the capture may
//! use minus the receive threads' (`--writer-cpus` names others), and the
//! thread that watches the capture (the caller of `capture::run`) moves
//! there while it watches.

use super::*;

/// The CPUs for the sinks' writer threads: those the configuration names,
/// else every CPU this thread may use but the receive threads'; empty
/// (no placement) when that leaves none.
pub(super) fn writer_cpus(cfg: &CaptureConfig) -> Vec<usize> {
    if !cfg.writer_cpus.is_empty() {
        return cfg.writer_cpus.clone();
    }
    let Ok(allowed) = sys::allowed_cpus() else {
        return Vec::new();
    };
    allowed.into_iter().filter(|c| !cfg.cpus.contains(c)).collect()
}

/// The calling thread runs on some CPUs while this lives, so the threads
/// it starts meanwhile (the sinks' writers) inherit them; dropped, it may
/// run where it could before.
pub(super) struct PlacedOn {
    before: Option<Vec<usize>>,
}

impl PlacedOn {
    /// Places the calling thread on `cpus` (nothing when empty; a refusal
    /// is said once and the writers run anywhere).
    pub(super) fn new(cpus: &[usize]) -> Self {
        let before = match sys::allowed_cpus() {
            Ok(before) if !cpus.is_empty() && before != cpus => before,
            _ => return PlacedOn { before: None },
        };
        match sys::set_cpus(0, cpus) {
            Ok(()) => PlacedOn { before: Some(before) },
            Err(e) => {
                tracing::warn!(
                    "cannot keep the writer and watching threads on CPUs {cpus:?}: {e}; they run anywhere"
                );
                PlacedOn { before: None }
            }
        }
    }
}

impl Drop for PlacedOn {
    fn drop(&mut self) {
        if let Some(before) = &self.before {
            let _ = sys::set_cpus(0, before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_avoid_the_receive_cpus_unless_told_where_to_run() {
        let allowed = sys::allowed_cpus().unwrap();
        let mut cfg = CaptureConfig::new(
            "place-test",
            BackendConfig::Socket(SocketOptions::new("127.0.0.1:9".parse().unwrap())),
        );
        cfg.cpus = vec![allowed[0]];
        let w = writer_cpus(&cfg);
        assert!(!w.contains(&allowed[0]));
        assert_eq!(w.len(), allowed.len() - 1);
        cfg.writer_cpus = vec![allowed[0]];
        assert_eq!(writer_cpus(&cfg), vec![allowed[0]]);
    }

    #[test]
    fn threads_started_while_placed_run_there_and_the_placement_ends_with_it() {
        std::thread::spawn(|| {
            let allowed = sys::allowed_cpus().unwrap();
            let last = *allowed.last().unwrap();
            let placed = PlacedOn::new(&[last]);
            let child = std::thread::spawn(|| sys::allowed_cpus().unwrap()).join().unwrap();
            assert_eq!(child, vec![last]);
            drop(placed);
            assert_eq!(sys::allowed_cpus().unwrap(), allowed);
        })
        .join()
        .unwrap();
    }
}
