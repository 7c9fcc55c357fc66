//! `linecap stats --serve ADDR`: the counters of every capture on this
//! machine over HTTP, in Prometheus text format, for a scraper to pull.
//! A separate process: the captures' hot paths never see a scrape. One
//! request at a time (a scrape is a few kilobytes), each bounded in size
//! and time, so a slow or hostile client cannot hold the exporter.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::{Snapshot, list_names, render, stats_path};
use crate::sys;

/// Longest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus exposition of every running capture's counters. A
/// finished capture's file may stay (named ones keep their final numbers
/// for `linecap stats NAME`, a killed one leaves its file): those are not
/// targets any more, so they are left out rather than exported forever.
pub fn metrics_text() -> String {
    let snaps: Vec<Snapshot> = list_names()
        .iter()
        .filter_map(|n| Snapshot::read(n, &stats_path(n)).ok())
        .filter(|s| s.pid != 0 && crate::sys::shm::process_alive(s.pid))
        .collect();
    render::prometheus(&snaps)
}

/// Binds `addr` and prints where it serves (port 0 picks one).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Answers requests until SIGINT/SIGTERM.
pub fn serve(listener: &TcpListener) -> io::Result<()> {
    while !sys::stop_requested() {
        match listener.accept() {
            Ok((stream, _)) => {
                // A client's failure is the client's: log it, serve the next.
                if let Err(e) = answer(stream) {
                    eprintln!("linecap stats --serve: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sys::packet::poll_in(listener, 200)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn answer(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let (status, body) = match request_target(&head) {
        Some(("GET", "/metrics")) => ("200 OK", metrics_text()),
        Some(("GET", "/")) => ("200 OK", "linecap exporter: counters at /metrics\n".to_string()),
        Some(("GET", _)) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        Some(_) => ("405 Method Not Allowed", "GET only\n".to_string()),
        None => ("400 Bad Request", "bad request\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())
}

/// Reads up to the blank line that ends an HTTP request head.
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
    }
    Ok(head)
}

/// Method and path of a request line (`GET /metrics HTTP/1.1`); the query
/// string is ignored (Prometheus may add one).
pub fn request_target(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/") || parts.next().is_some() {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(request_target(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(("GET", "/metrics")));
        assert_eq!(request_target(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Some(("GET", "/metrics")));
        assert_eq!(request_target(b"POST / HTTP/1.1\r\n\r\n"), Some(("POST", "/")));
        assert_eq!(request_target(b"garbage\r\n\r\n"), None);
        assert_eq!(request_target(b"GET / FTP/1 extra\r\n"), None);
        assert_eq!(request_target(&[0xff, 0xfe, b' ', b'/']), None);
        assert_eq!(request_target(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn request_target_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = request_target(&bytes);
        }
    }
}
