//! eBPF programs linecap writes itself (no clang, no libbpf on a fresh
//! machine): an instruction encoder and the XDP program that redirects the
//! capture's flow into an AF_XDP socket map and passes everything else.
//! Loading and running them is in `sys::bpf`.

pub mod generator;
pub mod insn;
pub mod xdp;
