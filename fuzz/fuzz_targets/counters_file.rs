//! A counters file from another process is untrusted: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = linecap::stats::Snapshot::from_bytes("fuzz", data) {
        let _ = linecap::stats::render::table(&s);
        let _ = linecap::stats::render::prometheus(&[s]);
    }
});
