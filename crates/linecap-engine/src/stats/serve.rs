//! `linecap stats --serve ADDR`: the counters of every capture on this
//! machine over HTTP, in Prometheus text format, for a scraper to pull.
//! A separate process: the captures' hot paths never see a scrape.
//! `capture --metrics ADDR` runs the same server on a thread of the
//! capture's own process (its monitor side, never a receive thread),
//! exporting that capture alone: one target per capture, as exporters do.
//!
//! One thread serves every connection through `poll(2)`, each with a
//! deadline for the *whole* request (not per read): a client that sends a
//! byte a second, or connects and says nothing, is closed when its time is
//! up and holds no one else meanwhile. Connections beyond
//! [`MAX_CONNECTIONS`] close the oldest first. Request heads end with a
//! blank line in CRLF or bare LF.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Snapshot, render, stats_path};
use crate::sys;

/// Longest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// How long a client has to send its whole request and read the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; the oldest is closed to admit a new one.
pub const MAX_CONNECTIONS: usize = 1024;

/// The Prometheus exposition of every running capture's counters. A
/// finished capture's file may stay (named ones keep their final numbers
/// for `linecap stats NAME`, a killed one leaves its file): those are not
/// targets any more, so they are left out rather than exported forever.
pub fn metrics_text() -> String {
    let mut snaps = super::read_captures(None).unwrap_or_default();
    snaps.retain(|s| s.running);
    render::prometheus(&snaps)
}

/// The Prometheus exposition of one capture (`capture --metrics`): its
/// counters while it runs; after it ends, only `linecap_up 0`.
pub fn capture_metrics_text(name: &str) -> String {
    match Snapshot::read(name, &stats_path(name)) {
        Ok(s) if s.running => render::prometheus(&[s]),
        _ => format!(
            "# HELP linecap_up 1 while the capture runs (its counters file is locked by it).\n# TYPE linecap_up gauge\nlinecap_up{{capture=\"{}\"}} 0\n",
            render::escape_label(name)
        ),
    }
}

/// What an exporter serves at `/metrics`.
#[derive(Debug, Clone)]
pub enum Exported {
    /// Every running capture (`stats --serve`).
    AllRunning,
    /// One capture (`capture --metrics`).
    Capture(String),
}

impl Exported {
    fn text(&self) -> String {
        match self {
            Exported::AllRunning => metrics_text(),
            Exported::Capture(name) => capture_metrics_text(name),
        }
    }
}

/// Binds `addr` and prints where it serves (port 0 picks one).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// One client: what it sent so far, what is left to send it, its deadline.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    head: Vec<u8>,
    reply: Vec<u8>,
    sent: usize,
}

impl Conn {
    fn wants_write(&self) -> bool {
        !self.reply.is_empty()
    }

    /// Reads what is there; builds the reply once the head is complete.
    /// `Ok(false)`: the connection is finished (closed by the client).
    fn on_readable(&mut self, what: &Exported) -> io::Result<bool> {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    if let Some(end) = head_end(&self.head) {
                        self.reply = reply_to(&self.head[..end], what);
                        return Ok(true);
                    }
                    if self.head.len() > MAX_REQUEST {
                        self.reply =
                            http_reply("431 Request Header Fields Too Large", "request head too long\n");
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what the socket takes. `Ok(false)`: all sent.
    fn on_writable(&mut self) -> io::Result<bool> {
        while self.sent < self.reply.len() {
            match self.stream.write(&self.reply[self.sent..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// Answers requests for every running capture until SIGINT/SIGTERM.
pub fn serve(listener: &TcpListener) -> io::Result<()> {
    serve_until(listener, &Exported::AllRunning, &AtomicBool::new(false))
}

/// Answers requests for `what` until SIGINT/SIGTERM or `stop`.
pub fn serve_until(listener: &TcpListener, what: &Exported, stop: &AtomicBool) -> io::Result<()> {
    let mut conns: VecDeque<Conn> = VecDeque::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    while !sys::stop_requested() && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        fds.clear();
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let events = if c.wants_write() { libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
        }
        let wait = conns.iter().map(|c| c.deadline.saturating_duration_since(now)).min();
        let timeout = wait.map_or(200, |w| w.as_millis().clamp(1, 200) as i32);
        sys::packet::poll_fds(&mut fds, timeout)?;
        // Serve the ready connections (fds[1..] match conns in order), then accept.
        let mut keep = Vec::with_capacity(conns.len());
        for (c, p) in conns.drain(..).zip(&fds[1..]) {
            keep.push(step(c, p.revents, what));
        }
        conns = keep.into_iter().flatten().collect();
        if fds[0].revents & libc::POLLIN != 0 {
            accept_all(listener, &mut conns)?;
        }
    }
    Ok(())
}

/// Advances one connection by its poll events; `None` when it is done.
fn step(mut c: Conn, revents: i16, what: &Exported) -> Option<Conn> {
    if revents == 0 {
        return Some(c);
    }
    let alive = if c.wants_write() {
        c.on_writable()
    } else {
        c.on_readable(what).and_then(|open| if open && c.wants_write() { c.on_writable() } else { Ok(open) })
    };
    match alive {
        Ok(true) => Some(c),
        // A client's failure is the client's: close it, serve the others.
        Ok(false) | Err(_) => None,
    }
}

fn accept_all(listener: &TcpListener, conns: &mut VecDeque<Conn>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                if conns.len() >= MAX_CONNECTIONS {
                    conns.pop_front();
                }
                let deadline = Instant::now() + REQUEST_DEADLINE;
                conns.push_back(Conn { stream, deadline, head: Vec::new(), reply: Vec::new(), sent: 0 });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors or a connection reset before accept: try later.
            Err(_) => return Ok(()),
        }
    }
}

/// Where a request head ends (after its blank line, CRLF or bare LF).
pub fn head_end(head: &[u8]) -> Option<usize> {
    let crlf = head.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The whole reply to a complete request head.
fn reply_to(head: &[u8], what: &Exported) -> Vec<u8> {
    let (status, body) = match request_target(head) {
        Some(("GET", "/metrics")) => ("200 OK", what.text()),
        Some(("GET", "/")) => ("200 OK", "linecap exporter: counters at /metrics\n".to_string()),
        Some(("GET", _)) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        Some(_) => ("405 Method Not Allowed", "GET only\n".to_string()),
        None => ("400 Bad Request", "bad request\n".to_string()),
    };
    http_reply(status, &body)
}

fn http_reply(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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

    #[test]
    fn heads_end_with_crlf_or_bare_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn request_target_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = request_target(&bytes);
        }
    }
}
