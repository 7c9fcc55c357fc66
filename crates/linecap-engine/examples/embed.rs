//! linecap's engine inside a program of its own: receive a `seq` stream on
//! a UDP port of this machine, verify every payload, and print the books.
//! `cargo run --release -p linecap-engine --example embed`
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linecap_engine::capture::{self, BackendConfig, CaptureConfig, CaptureEvent, Watcher};
use linecap_engine::send::socket::{self as sender, SendConfig};
use linecap_engine::source::socket::SocketOptions;
use linecap_engine::units::{Rate, si_scaled};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cfg =
        CaptureConfig::new(&format!("embed-{port}"), BackendConfig::Socket(SocketOptions::new(listen)));
    cfg.verify = true;
    cfg.duration = Some(Duration::from_secs(2));
    cfg.watcher = Some(Watcher(Arc::new(|e: &CaptureEvent<'_>| {
        if let CaptureEvent::Progress { pps, .. } = e {
            eprintln!("receiving {}", si_scaled(*pps, "pps"));
        }
    })));
    let receiver = std::thread::spawn(move || capture::run(&cfg));
    std::thread::sleep(Duration::from_millis(300)); // the socket is bound
    let mut stream = SendConfig::new(listen, 272, Rate::Pps(100_000.0));
    stream.duration = Some(Duration::from_secs(1));
    let sent = sender::run(&stream)?;
    let report = receiver.join().expect("the capture thread does not panic")?;
    let verify = report.verify.unwrap_or_default();
    println!(
        "sent {}, delivered {}, kernel drops {}, missing {}",
        sent.packets,
        report.packets,
        report.total_drops(),
        verify.missing
    );
    Ok(())
}
