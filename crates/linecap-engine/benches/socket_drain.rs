//! `cargo bench -p linecap-engine --bench socket_drain`: the receive
//! thread's own cost, without the network's. A loopback UDP socket is
//! filled with 20,000 datagrams of 272 bytes, then drained on one core by
//! linecap's socket source (`recvmmsg` of 64, no GRO: what the default
//! capture reads with once GRO goes off) or by the plain loop a user
//! writes (the same `recvmmsg` of 64 into 2 KiB buffers, nothing done but
//! counting). Both read identical queues of identical sockets, so the
//! difference is what linecap does around the system call and what that
//! does to the kernel's copy. Rounds interleaved; medians.

use std::net::SocketAddr;
use std::time::Instant;

use linecap_engine::source::Source;
use linecap_engine::source::socket::{SocketOptions, SocketSource, open_udp_socket};
use linecap_engine::sys::mmsg::{MmsgRx, Wants};

const DATAGRAMS: usize = 20_000;
const PAYLOAD: usize = 272;
const ROUNDS: usize = 21;

fn options() -> SocketOptions {
    let mut o = SocketOptions::new("127.0.0.1:0".parse().unwrap());
    o.gro = false;
    o.gro_adaptive = false;
    o
}

/// Queues the datagrams on the socket at `to` (loopback delivers them
/// before `send` returns).
fn fill(tx: &std::net::UdpSocket, to: SocketAddr) {
    let payload = [0x5au8; PAYLOAD];
    for _ in 0..DATAGRAMS {
        tx.send_to(&payload, to).unwrap();
    }
}

/// ns per datagram to drain linecap's socket source.
fn linecap(tx: &std::net::UdpSocket, src: &mut SocketSource) -> f64 {
    fill(tx, src.setup().local);
    let t = Instant::now();
    let mut n = 0;
    while let Some(b) = src.recv_batch(true).unwrap() {
        n += std::hint::black_box(b.len());
    }
    let ns = t.elapsed().as_nanos() as f64;
    assert_eq!(n, DATAGRAMS, "every datagram queued was read");
    ns / n as f64
}

/// The plain loop: a socket and 64 buffers of 2 KiB.
struct Plain {
    fd: std::os::fd::OwnedFd,
    to: SocketAddr,
    msgs: MmsgRx,
}

/// ns per datagram to drain the plain loop's socket.
fn plain(tx: &std::net::UdpSocket, p: &mut Plain) -> f64 {
    fill(tx, p.to);
    let t = Instant::now();
    let mut n = 0;
    while let Ok(got) = p.msgs.recv(&p.fd, 64, true) {
        n += got;
    }
    let ns = t.elapsed().as_nanos() as f64;
    assert_eq!(n, DATAGRAMS, "every datagram queued was read");
    ns / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = linecap_engine::sys::pin_to_cpu(0, 0) {
        eprintln!("not pinned ({e}): figures spread more");
    }
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Opened once: each round measures the steady state, not the first
    // touch of the buffers' pages.
    let mut src = SocketSource::open(&options()).unwrap();
    let (fd, setup) = open_udp_socket(&options()).unwrap();
    let mut base_loop =
        Plain { fd, to: setup.local, msgs: MmsgRx::new(64, 2048, Wants { names: false, control: false }) };
    plain(&tx, &mut base_loop);
    linecap(&tx, &mut src);
    let (mut ours, mut base, mut ratio) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always finds a warm cache.
        let (a, b) = if round % 2 == 0 {
            let b = plain(&tx, &mut base_loop);
            (linecap(&tx, &mut src), b)
        } else {
            let a = linecap(&tx, &mut src);
            (a, plain(&tx, &mut base_loop))
        };
        ours.push(a);
        base.push(b);
        ratio.push(a / b);
    }
    let (m, b, r) = (median(&mut ours), median(&mut base), median(&mut ratio));
    println!("socket drain, {DATAGRAMS} x {PAYLOAD} B over loopback, {ROUNDS} rounds interleaved (medians)");
    println!("  plain recvmmsg loop   {b:7.1} ns/datagram");
    println!(
        "  linecap socket source {m:7.1} ns/datagram  ({r:.3}x the plain loop's time; range {:.3}-{:.3})",
        ratio[0],
        ratio[ratio.len() - 1]
    );
}
