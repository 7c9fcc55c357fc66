//! A counters file from another process is untrusted: parsing, rendering
//! and the doctor's diagnosis never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = linecap::stats::Snapshot::from_bytes("fuzz", data) {
        let _ = linecap::stats::render::table(&s);
        let _ = linecap::stats::render::prometheus(std::slice::from_ref(&s));
        // And the doctor's judgement of whatever it says.
        let facts = linecap::doctor::SystemFacts { rmem_max: Some(1), ..Default::default() };
        let _ = linecap::doctor::render(&linecap::doctor::diagnose(&facts, &[s], true));
    }
});
