//! `linecap blocks`: what a block file or a shared-memory ring holds.

use super::*;

#[derive(Args)]
pub(crate) struct BlocksArgs {
    #[command(subcommand)]
    action: BlocksAction,
}

#[derive(Subcommand)]
pub(crate) enum BlocksAction {
    /// Print a block's layout and loss map (FILE: the .bin or its .json
    /// sidecar; or the NAME of a shared-memory ring: its newest block).
    Inspect {
        /// Block file, or ring name.
        file: PathBuf,
        /// JSON output (the sidecar, checked against the data file).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn cmd_blocks(a: BlocksArgs) -> anyhow::Result<ExitCode> {
    let BlocksAction::Inspect { file, json } = a.action;
    let ring = linecap::sink::shmring::ring_path(&file.to_string_lossy());
    if !file.exists() && !file.to_string_lossy().contains('/') && ring.exists() {
        let r = linecap::sink::shmring::RingSnapshot::read(&ring).map_err(anyhow::Error::msg)?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_ring(&file, &r);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let side = if file.extension().is_some_and(|e| e == "json") {
        file.clone()
    } else {
        file.with_extension("json")
    };
    let (s, text, _data) = Sidecar::load(&side)
        .map_err(|e| anyhow::anyhow!("{e} (blocks are written by capture --blocks DIR)"))?;
    if json {
        println!("{text}");
    } else {
        print_block(&s);
    }
    Ok(ExitCode::SUCCESS)
}

/// A shared-memory ring's header and newest block.
fn print_ring(name: &std::path::Path, r: &linecap::sink::shmring::RingSnapshot) {
    println!(
        "ring {}: {} slots, {} channel(s) x {} slots x {} bytes, {}; writer {}",
        name.display(),
        r.nslots,
        r.layout.channels,
        r.layout.slots,
        r.layout.slot_bytes,
        if r.lossless { "lossless" } else { "lossy" },
        if r.writer_pid == 0 { "finished".to_string() } else { format!("pid {}", r.writer_pid) }
    );
    println!(
        "  published {} (write_seq {}), read_seq {}, overwritten {}, waits {}, dropped {}",
        r.published, r.write_seq, r.read_seq, r.overwritten, r.waits, r.dropped
    );
    if let Some(b) = &r.newest {
        println!(
            "  newest block {}: first seq {}, filled {}, lost {}",
            b.number, b.first_seq, b.filled, b.lost
        );
    }
}

/// A block file's sidecar, and its presence map drawn channel by channel.
fn print_block(s: &Sidecar) {
    let l = s.layout;
    println!(
        "block {} ({}): format {}, first seq {}, {} channel(s) x {} slots x {} bytes = {} bytes",
        s.number,
        s.data,
        match s.format {
            StreamFormat::Raw(r) => format!("raw {r}"),
            StreamFormat::Vdif { fps } => format!("vdif at {fps} frames/s"),
            f => f.name().to_string(),
        },
        s.first_seq,
        l.channels,
        l.slots,
        l.slot_bytes,
        l.block_bytes()
    );
    println!(
        "  filled {} of {}, lost {}{}",
        s.filled,
        l.channels * l.slots,
        s.lost,
        if s.zero_filled { " (zero-filled)" } else { " (left as they were)" }
    );
    const MAX_ROWS: usize = 64;
    if l.channels > MAX_ROWS {
        println!("  (first {MAX_ROWS} of {} channels)", l.channels);
    }
    for ch in 0..l.channels.min(MAX_ROWS) {
        println!("  ch {ch:>3} |{}| ({} slot(s) per mark)", presence_line(s, ch, 100), l.slots.div_ceil(100));
    }
}

/// One character per group of slots (at most `width`): '#' all present,
/// '.' all missing, ':' some.
fn presence_line(s: &Sidecar, ch: usize, width: usize) -> String {
    let slots = s.layout.slots;
    let per = slots.div_ceil(width);
    (0..slots.div_ceil(per))
        .map(|g| {
            let range = g * per..((g + 1) * per).min(slots);
            let n = range.clone().filter(|&i| s.is_present(ch, i)).count();
            if n == range.len() {
                '#'
            } else if n == 0 {
                '.'
            } else {
                ':'
            }
        })
        .collect()
}
