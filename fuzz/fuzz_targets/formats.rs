//! Packet formats of the assembly: raw, VDIF, SPEAD and the frame decoder never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = linecap::format::l2l4::decode(data, None);
    let _ = linecap::format::vdif::parse(data);
    if let Some(s) = linecap::format::spead::parse(data) {
        let _ = s.seq();
    }
    let spec = linecap::format::raw::RawSpec::parse("header=16,counter=0:8:be,channel=8:2:le,payload=32").unwrap();
    let _ = spec.decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = linecap::format::raw::RawSpec::parse(text);
        let _ = linecap::filter::compile(text, linecap::filter::Target::Link);
    }
});
