//! `linecap doctor`: where packets were lost and what would help.

use super::*;

#[derive(Args)]
pub(crate) struct DoctorArgs {
    /// Capture to explain, running or ended (default: every running capture).
    name: Option<String>,
    /// Judge the interfaces of this network namespace (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// The findings as JSON: each with its capture, stage, counter, count, share of
    /// what was offered and the setting in force, beside the words.
    #[arg(long)]
    json: bool,
    /// Also judge the machine's history: drops since boot, since an interface came up
    /// (by default findings are about the captures' lifetimes).
    #[arg(long)]
    history: bool,
    /// For running captures, look twice this far apart to tell losses happening now (0: once).
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    interval: Duration,
}

pub(crate) fn cmd_doctor(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    // Captures' counters live in /dev/shm, shared by every namespace.
    let mut caps = stats::read_captures(a.name.as_deref()).map_err(anyhow::Error::msg)?;
    // Unnamed, doctor judges what runs now: an ended capture's losses are
    // old news unless it is named.
    let ended = if a.name.is_none() { caps.iter().filter(|c| !c.running).count() } else { 0 };
    if a.name.is_none() {
        caps.retain(|c| c.running);
    }
    let mut facts = linecap::doctor::read_global();
    if a.netns.is_some() {
        enter_netns(&a.netns)?;
        sys::remount_sysfs().map_err(|e| anyhow::anyhow!("cannot mount the namespace's sysfs: {e}"))?;
    }
    linecap::doctor::read_namespace(&mut facts);
    linecap::doctor::read_placement(&mut facts, &caps);
    let mut findings = linecap::doctor::diagnose(&facts, &caps, a.history);
    // Running captures: what they lose now, from two looks `interval` apart.
    let running = caps.iter().any(|c| c.running);
    if running && !a.interval.is_zero() {
        std::thread::sleep(a.interval);
        let later: Vec<Snapshot> =
            caps.iter().filter_map(|c| Snapshot::read(&c.name, &stats::stats_path(&c.name)).ok()).collect();
        let mut now = linecap::doctor::diagnose_now(&caps, &later, a.interval.as_secs_f64());
        now.append(&mut findings);
        now.sort_by_key(|f| f.level);
        findings = now;
    }
    if a.json {
        println!("{}", serde_json::to_string(&findings)?);
    } else {
        if caps.is_empty() {
            println!("no running capture to explain (start one, or name it); judging this machine only");
        }
        if ended > 0 {
            println!("({ended} ended capture(s) not judged: name one, e.g. linecap doctor NAME)");
        }
        print!("{}", linecap::doctor::render(&findings));
    }
    // For cron, CI and monitoring: a loss found is status 3.
    let lost = findings.iter().any(|f| f.level == linecap::doctor::Level::Loss);
    Ok(if lost { ExitCode::from(strict::exit::LOSS) } else { ExitCode::SUCCESS })
}
