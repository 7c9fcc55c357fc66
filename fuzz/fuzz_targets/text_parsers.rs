//! /proc text, tool output, HTTP request lines and user-typed quantities
//! never panic a parser.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = linecap::stats::kernel::parse_snmp_udp(&text);
    let _ = linecap::stats::kernel::parse_net_dev(&text);
    let _ = linecap::stats::kernel::parse_softnet_dropped(&text);
    let _ = linecap::bench::peers::parse_tcpdump_stats(&text);
    let _ = linecap::units::parse_rate(&text);
    let _ = linecap::units::parse_size(&text);
    let _ = linecap::units::parse_duration(&text);
    let _ = linecap::doctor::parse_softnet(&text);
    let _ = linecap::stats::serve::request_target(data);
});
