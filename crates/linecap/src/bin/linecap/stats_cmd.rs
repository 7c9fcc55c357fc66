//! `linecap stats`: the counters of running (or finished) captures, as a
//! table, JSON or Prometheus text, or served over HTTP.

use super::*;

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Capture name (all captures when omitted).
    name: Option<String>,
    /// JSON output.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text exposition format.
    #[arg(long)]
    prometheus: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    watch: bool,
    /// Serve every capture's counters over HTTP at /metrics (Prometheus), e.g. 127.0.0.1:9187, until interrupted.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["json", "prometheus", "watch", "name"])]
    serve: Option<std::net::SocketAddr>,
    /// Remove the counters files and rings of captures that ended (a named
    /// capture keeps them for `stats NAME`); running captures' stay.
    #[arg(long, conflicts_with_all = ["json", "prometheus", "watch", "name", "serve"])]
    prune: bool,
}

pub(crate) fn cmd_stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    if a.prune {
        let mut removed = 0;
        for p in stats::prune() {
            match p.outcome {
                Ok(true) => {
                    removed += 1;
                    println!("removed {}", p.file);
                }
                Ok(false) => {}
                Err(e) => eprintln!("kept {}: {e}", p.file),
            }
        }
        println!("{removed} file(s) of ended captures removed from {}", stats::stats_dir().display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(addr) = a.serve {
        let l = stats::serve::bind(addr)?;
        // The bound address (port 0 picks one), for whoever started us.
        println!("serving http://{}/metrics", l.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        stats::serve::serve(&l)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The previous round's snapshots and when they were read, for rates.
    let mut previous: Vec<Snapshot> = Vec::new();
    let mut previous_at = std::time::Instant::now();
    loop {
        let snaps = stats::read_captures(a.name.as_deref()).map_err(anyhow::Error::msg)?;
        if a.json {
            println!("{}", serde_json::to_string(&snaps)?);
        } else if a.prometheus {
            print!("{}", render::prometheus(&snaps));
        } else {
            if a.watch && sys::stdout_is_tty() {
                print!("\x1b[2J\x1b[H");
            } else if a.watch {
                println!();
            }
            if snaps.is_empty() {
                println!("no captures (counters live in {})", stats::stats_dir().display());
            }
            // Running captures first; the ended ones after, as such.
            let (running, ended): (Vec<&Snapshot>, Vec<&Snapshot>) = snaps.iter().partition(|s| s.running);
            let secs = previous_at.elapsed().as_secs_f64();
            for s in &running {
                let before = previous.iter().find(|p| p.name == s.name && p.pid == s.pid);
                print!("{}", render::table_with_rates(s, before.map(|b| (b, secs))));
            }
            if !ended.is_empty() && a.name.is_none() {
                println!("ended ({} capture(s); `linecap stats --prune` removes their files):", ended.len());
            }
            for s in &ended {
                print!("{}", render::table(s));
            }
        }
        if !a.watch || sys::stop_requested() {
            return Ok(ExitCode::SUCCESS);
        }
        // Watching one capture: its end ends the watch, and says so.
        if a.name.is_some() && snaps.iter().all(|s| !s.running) {
            println!("capture ended: these are its final counters");
            return Ok(ExitCode::SUCCESS);
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        previous = snaps;
        previous_at = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(1));
    }
}
