//! eBPF programs linecap writes itself (no clang, no libbpf on a fresh
//! machine): an instruction encoder and the XDP program that redirects the
//! capture's flow into an AF_XDP socket map and passes everything else,
//! the generator of `send --backend xdp-live`, and the tcx program that
//! ends unreceived datagrams after an AF_PACKET capture's tap. Loading and
//! running them is in `sys::bpf`.

pub mod discard;
pub mod generator;
pub mod insn;
pub mod xdp;
