//! Marks a build made as root (`cfg(linecap_root)`), so the tests that
//! need root (network namespaces, veth, BPF) are compiled as ignored, with
//! their reason, everywhere else: `cargo test` then shows them as
//! ignored instead of reporting a test that returned early as passed. CI
//! builds as root and runs them all.

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(linecap_root)");
    println!("cargo:rerun-if-changed=build.rs");
    if effective_uid() == Some(0) {
        println!("cargo:rustc-cfg=linecap_root");
    }
}
