//! The `seq` payload checker and the sequence tracker never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use linecap::format::seq;
use linecap::sink::verify::SeqTracker;

fuzz_target!(|data: &[u8]| {
    let mut t = SeqTracker::default();
    // Whole input as one payload, then as a stream of 16-byte payloads.
    t.record(seq::check(data));
    for chunk in data.chunks(16) {
        t.record(seq::check(chunk));
    }
    let c = t.counts();
    assert!(c.valid + c.corrupt + c.malformed == c.packets);
});
