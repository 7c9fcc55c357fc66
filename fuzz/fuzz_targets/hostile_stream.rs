//! Crafted packets of every format (valid headers, hostile fields) into the
//! assembler, and forged sidecars into `blocks inspect`'s parser: no
//! panic, and every packet accounted for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for f in linecap::format::craft::formats() {
        let c = linecap::format::craft::assemble(&f, data);
        assert_eq!(c.packets, c.accounted(), "{f:?}: {c:?}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = linecap::sink::blocks::Sidecar::parse(text);
    }
});
