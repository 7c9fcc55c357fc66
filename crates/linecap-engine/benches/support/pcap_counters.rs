//! The counters of one pcap sink for a bench round: a counters file at a
//! path of the bench's own, with the sink's queue and writer stages.

use std::path::Path;

use linecap_engine::stats::{QUEUE_COUNTERS, StageCounters, StageSpec, StatsFile, WRITER_COUNTERS};

/// The file (remove it when done) and the queue's and the writer's counters.
pub fn pcap_counters(path: &Path) -> (StatsFile, StageCounters, StageCounters) {
    let stages = [
        StageSpec { name: "pcap.queue.0".into(), counters: QUEUE_COUNTERS },
        StageSpec { name: "pcap.writer.0".into(), counters: WRITER_COUNTERS },
    ];
    let (file, mut c) = StatsFile::create_at(path, &stages, 0o600).unwrap();
    file.publish();
    let writer = c.pop().unwrap();
    let queue = c.pop().unwrap();
    (file, queue, writer)
}
