//! Reads `tcpdump -ddd` output: a count on the first line, then one
//! instruction per line as four decimal numbers `code jt jf k`.

use super::{Insn, MAX_INSNS, Program};

/// Parses `tcpdump -ddd` text; the error names the line and what is wrong.
pub fn parse(text: &str) -> Result<Program, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or("empty BPF file: expected `tcpdump -ddd` output")?;
    let n: usize = first
        .trim()
        .parse()
        .map_err(|_| format!("line 1: expected the instruction count, found '{}'", first.trim()))?;
    if n == 0 || n > MAX_INSNS {
        return Err(format!("line 1: instruction count {n} must be between 1 and {MAX_INSNS}"));
    }
    let mut prog: Vec<Insn> = Vec::with_capacity(n);
    for (i, line) in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || {
            format!("line {}: expected 'code jt jf k' (four decimal numbers), found '{}'", i + 1, line.trim())
        };
        if f.len() != 4 {
            return Err(bad());
        }
        let code = f[0].parse::<u16>().map_err(|_| bad())?;
        let jt = f[1].parse::<u8>().map_err(|_| bad())?;
        let jf = f[2].parse::<u8>().map_err(|_| bad())?;
        let k = f[3].parse::<u32>().map_err(|_| bad())?;
        prog.push((code, jt, jf, k));
    }
    if prog.len() != n {
        return Err(format!("the first line announces {n} instructions but {} follow", prog.len()));
    }
    Ok(Program(prog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_output() {
        let t = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n";
        let p = parse(t).unwrap();
        assert_eq!(p.0, vec![(40, 0, 0, 12), (21, 0, 1, 2048), (6, 0, 0, 262144), (6, 0, 0, 0)]);
    }

    #[test]
    fn malformed_files_say_where() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("x\n").unwrap_err().contains("line 1"));
        assert!(parse("2\n6 0 0 0\n").unwrap_err().contains("announces 2"));
        assert!(parse("1\n6 0 0\n").unwrap_err().contains("line 2"));
        assert!(parse("1\n6 0 300 0\n").unwrap_err().contains("line 2"));
        assert!(parse("99999\n").unwrap_err().contains("between 1"));
    }
}
