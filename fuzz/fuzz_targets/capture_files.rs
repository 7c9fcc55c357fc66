//! Any bytes as a capture file read back (`capture --read`): packets,
//! counted skips or a one-line error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = linecap::source::file::read_all(data);
});
