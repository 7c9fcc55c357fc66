//! Options are strict: one that does not apply to the chosen backend or
//! sink is a usage error naming what it needs (a silently ignored option
//! is a capture that does not do what its operator thinks), and errors in
//! what was typed exit with status 2, distinct from runtime failures (1).

use std::net::SocketAddr;

use clap::ArgMatches;
use clap::parser::ValueSource;

/// An error in what the user typed: the process exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A [`Usage`] error, for `map_err`.
pub fn usage_error(message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Usage(message.to_string()))
}

/// Returns early with a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::strict::Usage(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// Exit statuses, as `--help` and the README document them.
pub mod exit {
    // 0: done as asked (ExitCode::SUCCESS).
    /// Something failed while running (an interface, a privilege, a disk).
    pub const RUNTIME: u8 = 1;
    /// What was typed is wrong (clap's own errors use 2 as well).
    pub const USAGE: u8 = 2;
    /// The capture ran, but lost more than `--max-loss` allows.
    pub const LOSS: u8 = 3;
}

/// The status for an error: 2 if any cause in its chain is a usage error
/// (ours, or a configuration the engine or the testbed refused).
pub fn status_of(e: &anyhow::Error) -> u8 {
    let usage = |c: &(dyn std::error::Error + 'static)| {
        c.is::<Usage>()
            || matches!(
                c.downcast_ref::<linecap::EngineError>(),
                Some(linecap::EngineError::InvalidConfig(_))
            )
    };
    if e.chain().any(usage) { exit::USAGE } else { exit::RUNTIME }
}

/// Whether the user typed option `id` (not its default).
pub fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Each option the user gave that `applies` refuses, with the reason.
pub fn refuse_inapplicable(
    m: &ArgMatches,
    rules: &[(&str, &str)],
    applies: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    for (id, needs) in rules {
        if given(m, id) && !applies(id) {
            usage!("--{} {needs}", id.replace('_', "-"));
        }
    }
    Ok(())
}

/// The CPUs this process may run on (`sched_getaffinity`), or all the
/// machine has online.
fn usable_cpus() -> Vec<usize> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    parse_cpu_list(online.trim()).unwrap_or_default()
}

pub use linecap::units::parse_cpu_list;

/// A `--cpus` value, in the order threads take them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpus(pub Vec<usize>);

/// A `--cpus` value: a CPU list whose every CPU exists on this machine.
pub fn parse_cpus(s: &str) -> Result<Cpus, String> {
    let cpus = parse_cpu_list(s)?;
    if cpus.is_empty() {
        return Err("name at least one CPU (e.g. 1, 2,3 or 0-3,6)".into());
    }
    let online = usable_cpus();
    if let Some(c) = cpus.iter().find(|c| !online.is_empty() && !online.contains(c)) {
        return Err(format!(
            "CPU {c} does not exist here (online: {}; see lscpu)",
            std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default().trim()
        ));
    }
    Ok(Cpus(cpus))
}

/// A whole number of at least 1; `too_small` says what 0 or less would mean.
fn at_least_one(s: &str, too_small: impl FnOnce() -> String) -> Result<i128, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v < 1 => Err(too_small()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// A count that must be at least 1 (`--count 0` would mean nothing to do;
/// unbounded is the default).
pub fn parse_positive(s: &str) -> Result<u64, String> {
    let v = at_least_one(s, || format!("{s} must be positive (leave the option out for no limit)"))?;
    u64::try_from(v).map_err(|_| format!("{s} is too large"))
}

/// Messages or frames per batch: at least 1 (0 was taken as 1 before).
pub fn parse_batch(s: &str) -> Result<usize, String> {
    let v = at_least_one(s, || {
        format!("{s}: a batch must hold at least 1 (leave the option out for the default)")
    })?;
    usize::try_from(v).map_err(|_| format!("{s} is too large"))
}

/// Microseconds per busy poll: at least 1 (0 would spin without polling
/// the device) and no more than the kernel takes (a C `int`).
pub fn parse_busy_poll(s: &str) -> Result<u32, String> {
    let v = at_least_one(s, || {
        format!(
            "{s} would spin without polling the device: give 1 or more microseconds, or leave the option out"
        )
    })?;
    i32::try_from(v).map(|v| v as u32).map_err(|_| format!("{s} is more microseconds than the kernel takes"))
}

/// An address and port as people type them: `198.18.0.2:9000`,
/// `[::1]:9000`, `host.example:9000`, or `:9000` for `unspecified`'s
/// address (all addresses to listen on, this machine to send to). A host
/// name resolves once, IPv4 first.
fn parse_addr(s: &str, unspecified: std::net::IpAddr) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Some(port) = t.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("'{s}': the port is a number from 1 to 65535"))?;
        return Ok(SocketAddr::new(unspecified, port));
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !t.contains(':') {
        return Err(format!("'{s}' needs a port, e.g. {t}:9000"));
    }
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(t)
        .map_err(|e| format!("cannot resolve '{s}': {e}"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// A `--listen` address (`:9000` listens on every address).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, std::net::Ipv4Addr::UNSPECIFIED.into())
}

/// A destination (`:9000` is this machine).
pub fn parse_destination(s: &str) -> Result<SocketAddr, String> {
    parse_addr(s, std::net::Ipv4Addr::LOCALHOST.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_take_ranges_and_refuse_nonsense() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("2,3").unwrap(), vec![2, 3]);
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("0-999999").is_err());
        assert_eq!(parse_cpus("0").unwrap(), Cpus(vec![0]), "CPU 0 exists everywhere");
        assert!(parse_cpus("100000").unwrap_err().contains("does not exist"));
    }

    #[test]
    fn addresses_as_people_type_them() {
        assert_eq!(parse_listen(":9000").unwrap(), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(parse_destination(":9000").unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(parse_destination("localhost:9000").unwrap().port(), 9000);
        assert_eq!(parse_destination("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_destination("198.18.0.2").unwrap_err().contains("needs a port"));
        assert!(parse_destination(":x").is_err());
    }

    #[test]
    fn counts_are_positive() {
        assert_eq!(parse_positive("5").unwrap(), 5);
        assert!(parse_positive("0").unwrap_err().contains("must be positive"));
        assert!(parse_positive("-1").unwrap_err().contains("must be positive"));
        assert!(parse_positive("x").is_err());
    }

    #[test]
    fn batches_hold_one_or_more() {
        assert_eq!(parse_batch("64").unwrap(), 64);
        assert!(parse_batch("0").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn busy_poll_time_is_one_microsecond_to_what_the_kernel_takes() {
        assert_eq!(parse_busy_poll("20").unwrap(), 20);
        assert_eq!(parse_busy_poll("2147483647").unwrap(), i32::MAX as u32);
        assert!(parse_busy_poll("0").unwrap_err().contains("spin without polling"));
        assert!(parse_busy_poll("2147483648").unwrap_err().contains("than the kernel takes"));
        assert!(parse_busy_poll("-3").is_err() && parse_busy_poll("x").is_err());
    }
}
