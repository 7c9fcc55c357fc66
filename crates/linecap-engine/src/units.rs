//! Parsing of the quantities users type: rates (`5.12Gbit`, `2.35Mpps`,
//! `100000`), sizes (`64M`, `1GiB`) and durations (`5s`, `250ms`, `2m`).

use std::time::Duration;

/// A requested send rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as possible.
    Unlimited,
    /// Packets per second.
    Pps(f64),
    /// Payload bits per second (UDP payload, as an FPGA's data rate is quoted:
    /// 272-byte payloads at 5.12 Gbit/s are 2.353 Mpps).
    Bits(f64),
}

impl Rate {
    /// Packets per second for a payload size (`None`: unlimited).
    pub fn pps(&self, payload: usize) -> Option<f64> {
        match *self {
            Rate::Unlimited => None,
            Rate::Pps(p) => Some(p),
            Rate::Bits(b) => Some(b / (payload.max(1) as f64 * 8.0)),
        }
    }
}

fn split_number(s: &str) -> Result<(f64, String), String> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v: f64 = num.parse().map_err(|_| format!("'{s}' does not start with a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a non-negative number"));
    }
    Ok((v, unit.trim().to_ascii_lowercase()))
}

fn si(prefix: &str) -> Option<f64> {
    Some(match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => return None,
    })
}

/// Parses a rate. One convention for every rate and size linecap reads:
/// SI prefixes (`k` 10^3, `M` 10^6, `G` 10^9, `T` 10^12), `bit`/`bps`/`b/s`
/// for bits, `B`/`Bps`/`B/s` for bytes (`MB/s` is megabytes, not
/// megabits), `pps` or nothing for packets. Rates in bits or bytes are of
/// UDP payload. `max` is unpaced; zero is refused (it would send nothing).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("max") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate::Unlimited);
    }
    let (v, _) = split_number(t)?;
    let unit = t[t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len())..].trim();
    if v == 0.0 {
        return Err(format!("rate '{s}' must be positive (`max` is unpaced)"));
    }
    let unit = unit.replace("/s", "ps");
    let prefix =
        |p: &str| si(&p.to_ascii_lowercase()).ok_or_else(|| format!("unknown unit prefix in rate '{s}'"));
    for suffix in ["bitps", "bits", "bit", "bps"] {
        if let Some(p) = unit.strip_suffix(suffix) {
            return Ok(Rate::Bits(v * prefix(p)?));
        }
    }
    for suffix in ["Bps", "B"] {
        if let Some(p) = unit.strip_suffix(suffix) {
            return Ok(Rate::Bits(v * 8.0 * prefix(p)?));
        }
    }
    let p = unit.strip_suffix("pps").or_else(|| unit.strip_suffix("PPS")).unwrap_or(&unit);
    let m = si(&p.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown rate unit in '{s}' (use e.g. 2.35Mpps, 5.12Gbit or 640MB/s)"))?;
    Ok(Rate::Pps(v * m))
}

/// Parses a byte size: `NkB`/`NMB`/`NGB` are SI (10^3, 10^6, 10^9 bytes);
/// `NKiB`/`NMiB`/`NGiB` and the bare `NK`/`NM`/`NG` are binary (2^10, 2^20,
/// 2^30: buffers and rings are made of pages). A lowercase `b` is bits and
/// is refused: sizes are bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (v, unit) = split_number(s)?;
    if s.trim().ends_with('b') && !unit.ends_with("ib") {
        return Err(format!("'{s}': a lowercase b means bits; sizes are in bytes (B), e.g. 64MB or 64MiB"));
    }
    let m: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        _ => return Err(format!("unknown size unit in '{s}' (use e.g. 64M or 1G)")),
    };
    Ok((v * m) as u64)
}

/// Parses a duration: `N` (seconds), `Ns`, `Nms`, `Nus`, `Nm`, `Nh`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (v, unit) = split_number(s)?;
    let secs = match unit.as_str() {
        "" | "s" | "sec" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!("unknown duration unit in '{s}' (use e.g. 5s or 250ms)"));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration '{s}' is too long"))
}

/// A rate for people: scaled to the SI prefix that keeps three or four
/// significant digits (`812 kpps`, `2.353 Mpps`, `5.12 Gb/s`); `unit` is
/// the unit without prefix (`pps`, `b/s`, `B/s`).
pub fn si_scaled(v: f64, unit: &str) -> String {
    let (scaled, prefix) = match v.abs() {
        a if a >= 1e12 => (v / 1e12, "T"),
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = match scaled.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ if prefix.is_empty() => 0,
        _ => 3,
    };
    format!("{scaled:.digits$} {prefix}{unit}")
}

/// Parses a CPU list as the kernel writes them (`1`, `2,3`, `0-3,6`).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{t}' in '{s}' is not a CPU number (e.g. 1, 2,3 or 0-3,6)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("'{part}': a range goes from the lower CPU to the higher"));
                }
                if b - a > 4096 {
                    return Err(format!("'{part}': more CPUs than a machine has"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100000").unwrap(), Rate::Pps(100000.0));
        assert_eq!(parse_rate("2.35Mpps").unwrap(), Rate::Pps(2.35e6));
        assert_eq!(parse_rate("500k").unwrap(), Rate::Pps(5e5));
        assert_eq!(parse_rate("5.12Gbit").unwrap(), Rate::Bits(5.12e9));
        assert_eq!(parse_rate("10Mb/s").unwrap(), Rate::Bits(1e7));
        assert_eq!(parse_rate("10Mbps").unwrap(), Rate::Bits(1e7));
        assert_eq!(parse_rate("640MB/s").unwrap(), Rate::Bits(640e6 * 8.0), "MB/s is megabytes");
        assert_eq!(parse_rate("1GBps").unwrap(), Rate::Bits(8e9));
        assert_eq!(parse_rate("max").unwrap(), Rate::Unlimited);
        assert!(parse_rate("0").unwrap_err().contains("must be positive"));
        assert!(parse_rate("0Mpps").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5Xpps").is_err());
        let pps = Rate::Bits(5.12e9).pps(272).unwrap();
        assert!((pps - 2_352_941.0).abs() < 1.0);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC*") {
            let _ = parse_rate(&text);
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
        }
    }

    #[test]
    fn rates_for_people_scale_their_prefix() {
        assert_eq!(si_scaled(0.0, "pps"), "0 pps");
        assert_eq!(si_scaled(950.0, "pps"), "950 pps");
        assert_eq!(si_scaled(812_400.0, "pps"), "812 kpps");
        assert_eq!(si_scaled(2_352_941.0, "pps"), "2.353 Mpps");
        assert_eq!(si_scaled(5.12e9, "b/s"), "5.120 Gb/s");
        assert_eq!(si_scaled(12_500.0, "pps"), "12.5 kpps");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1kB").unwrap(), 1000);
        assert_eq!(parse_size("272").unwrap(), 272);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert!(parse_size("64Mb").unwrap_err().contains("bits"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("3 apples").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }
}
