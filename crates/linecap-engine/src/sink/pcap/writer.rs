//! The writer thread: whole chunks to the file, rotation between chunks,
//! a failing disk cut back to the last whole record and tried again.

use super::direct::{DirectFile, Pending, cut_point};
use super::*;

pub(super) struct Output {
    file: File,
    /// The same file opened with `O_DIRECT`, while it is written that way.
    direct: Option<DirectFile>,
    /// A pipe or terminal (`--write -`): written in order, never cut back.
    stream: bool,
    written: u64,
    opened: Instant,
    index: u32,
    files: u64,
    /// Pace the page cache (see [`pace_write_back`]).
    write_back: bool,
    /// The last chunk written (offset, length), whose write-back is waited for after the next.
    last_chunk: Option<(u64, u64)>,
}

/// After a failed write, how long the writer drops chunks (counted) before
/// it tries the disk again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What every write to an output needs to know, besides its state.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    opts: &'a PcapOptions,
    rotating: bool,
    header: &'a [u8],
    counters: &'a StageCounters,
}

/// The writer's state about the disk.
pub(super) struct Health {
    /// The last error, while writing fails.
    failing: Option<io::Error>,
    /// When the disk was last tried.
    tried: Instant,
}

pub(super) fn write_loop(
    opts: PcapOptions,
    rotating: bool,
    first: File,
    consumer: Consumer,
    counters: StageCounters,
) -> io::Result<()> {
    let stream = opts.to_stdout();
    let direct = open_direct(&opts, &numbered_path(&opts.path, 0, rotating));
    let mut out = Output {
        write_back: paces_write_back(&opts, &first),
        file: first,
        direct,
        stream,
        written: 0,
        opened: Instant::now(),
        index: 0,
        files: 1,
        last_chunk: None,
    };
    let mut health = Health { failing: None, tried: Instant::now() };
    let mut throttle = Throttle { start: Instant::now(), bytes: 0 };
    counters.set(WriterIdx::Files as usize, 1);
    let header = opts.format.file_header(opts.link);
    let cx = Ctx { opts: &opts, rotating, header: &header, counters: &counters };
    match write_header(&mut out, &header) {
        Ok(()) => out.written = header.len() as u64,
        Err(e) => health.failing = Some(e),
    }
    loop {
        let mut chunk = match consumer.recv(Duration::from_millis(100)) {
            Ok(c) => c,
            Err(true) => break,
            Err(false) => {
                flush_stale(cx, &mut out, &mut health);
                continue;
            }
        };
        let fmt = opts.format;
        chunk.complete(|room, ts_ns, frame| {
            // The room is the record's length, reserved for this frame.
            if let Some(record) = room.get_mut(..fmt.record_len(frame.len())) {
                encode_frame_record(record, ts_ns, frame, frame.len() as u32, fmt);
            }
        });
        if let Some(limit) = opts.throttle_bytes_per_sec {
            throttle.wait(chunk.bytes().len(), limit);
        }
        write_chunk(cx, &mut out, &mut health, &chunk);
        flush_stale(cx, &mut out, &mut health);
        counters.add(WriterIdx::Chunks as usize, 1);
        consumer.give_back(chunk);
    }
    close_direct(cx, &mut out, &mut health);
    let _ = out.file.sync_data();
    match health.failing {
        Some(e) => Err(io::Error::new(e.kind(), format!("pcap writer: {e}"))),
        None => Ok(()),
    }
}

/// A testing aid: holds the writer to a byte rate.
pub(super) struct Throttle {
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn wait(&mut self, bytes: usize, limit: u64) {
        self.bytes += bytes as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / limit.max(1) as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
        if self.start.elapsed() > Duration::from_secs(10) {
            *self = Self { start: Instant::now(), bytes: 0 };
        }
    }
}

/// Writes one chunk, or as many of its whole records as the disk takes.
/// While the disk fails, chunks are dropped (counted) and the disk is
/// tried again every [`RETRY_AFTER`]; writing resumes when it takes data.
pub(super) fn write_chunk(cx: Ctx<'_>, out: &mut Output, health: &mut Health, chunk: &Chunk) {
    let Ctx { opts, rotating, header, counters } = cx;
    let drop_all = |from: usize| {
        counters.add(WriterIdx::WriteErrorDrops as usize, chunk.packets - from as u64);
        let lost: u64 = chunk.payloads[from.min(chunk.payloads.len())..].iter().map(|&l| u64::from(l)).sum();
        counters.add(WriterIdx::WriteErrorBytes as usize, lost);
    };
    if health.failing.is_some() && health.tried.elapsed() < RETRY_AFTER {
        drop_all(0);
        return;
    }
    health.tried = Instant::now();
    let file_ok = out.written >= header.len() as u64;
    if !out.stream
        && (rotating && (needs_rotation(&opts.rotation, out, chunk.bytes().len(), header.len()) || !file_ok)
            || !file_ok && health.failing.is_some())
    {
        // The file being left gets what is staged for it first.
        close_direct(cx, out, health);
        match rotate(cx, out) {
            Ok(()) => counters.set(WriterIdx::Files as usize, out.files),
            Err(e) => {
                fail(cx, out, health, e);
                drop_all(0);
                return;
            }
        }
    }
    if out.direct.is_some() {
        write_direct(cx, out, health, chunk);
        return;
    }
    let (done, err) = write_at_most(&out.file, chunk.bytes(), out.written, out.stream);
    if err.is_none() && out.write_back {
        pace_write_back(out, chunk.bytes().len() as u64);
    }
    let (keep_bytes, keep_records) = if err.is_none() {
        (chunk.bytes().len(), chunk.packets as usize)
    } else {
        whole_records(opts.format, chunk.bytes(), done)
    };
    if err.is_some() && !out.stream {
        // Cut the file back to its last whole record so it stays readable.
        let _ = out.file.set_len(out.written + keep_bytes as u64);
    }
    out.written += keep_bytes as u64;
    counters.add(WriterIdx::Packets as usize, keep_records as u64);
    counters.add(WriterIdx::Bytes as usize, keep_bytes as u64);
    match err {
        None => {
            if health.failing.take().is_some() {
                counters.add(WriterIdx::Resumed as usize, 1);
                tracing::warn!(
                    "pcap writing to {} resumed ({} packets dropped meanwhile, counted)",
                    numbered_path(&opts.path, out.index, rotating).display(),
                    counters.get(WriterIdx::WriteErrorDrops as usize)
                );
            }
        }
        Some(e) if out.stream && e.kind() == io::ErrorKind::BrokenPipe => {
            // Whoever read the stream is gone (`| head`): nothing more can
            // be delivered, so the capture ends, its books whole.
            if health.failing.is_none() {
                tracing::warn!("the reader of standard output closed the pipe: the capture stops");
                crate::sys::request_stop();
            }
            health.failing = Some(e);
            drop_all(keep_records);
        }
        Some(e) => {
            fail(cx, out, health, e);
            drop_all(keep_records);
        }
    }
}

/// Records a write error (said once per failing spell).
pub(super) fn fail(cx: Ctx<'_>, out: &Output, health: &mut Health, e: io::Error) {
    let Ctx { opts, rotating, .. } = cx;
    if health.failing.is_none() {
        tracing::warn!(
            "pcap write to {} failed: {e}; packets are dropped and counted, and the disk is tried again every second (free space or choose another --write path)",
            numbered_path(&opts.path, out.index, rotating).display()
        );
    }
    health.failing = Some(e);
}

/// Writes `buf` at `at` (a stream: where it stands) until done or an
/// error: (bytes written, the error).
pub(super) fn write_at_most(file: &File, buf: &[u8], at: u64, stream: bool) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < buf.len() {
        let wrote =
            if stream { (&*file).write(&buf[done..]) } else { file.write_at(&buf[done..], at + done as u64) };
        match wrote {
            Ok(0) => return (done, Some(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The longest prefix of whole records within the first `limit` bytes of a
/// chunk: (bytes, records). Reads only the records' own length fields.
pub fn whole_records(fmt: FileFormat, buf: &[u8], limit: usize) -> (usize, usize) {
    let (mut at, mut n) = (0usize, 0usize);
    loop {
        let len = match fmt {
            FileFormat::Pcap => {
                buf.get(at + 8..at + 12).map(|b| 16 + u32::from_le_bytes(b.try_into().expect("4")) as usize)
            }
            FileFormat::Pcapng => {
                buf.get(at + 4..at + 8).map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
            }
        };
        match len {
            Some(len) if len > 0 && at + len <= limit.min(buf.len()) => {
                at += len;
                n += 1;
            }
            _ => return (at, n),
        }
    }
}

pub(super) fn needs_rotation(r: &Rotation, out: &Output, next: usize, header: usize) -> bool {
    let too_big = r.max_bytes.is_some_and(|m| out.written > header as u64 && out.written + next as u64 > m);
    let too_old = r.max_age.is_some_and(|a| out.opened.elapsed() >= a);
    too_big || too_old
}

/// Starts the next file, or rewrites the header of the current one when it
/// never made it to disk (no file is left without one). `out` changes only
/// on success.
pub(super) fn rotate(cx: Ctx<'_>, out: &mut Output) -> io::Result<()> {
    let Ctx { opts, rotating, header, .. } = cx;
    if !rotating || out.written < header.len() as u64 {
        out.file.set_len(0)?;
        out.file.write_all_at(header, 0)?;
        out.written = header.len() as u64;
        return Ok(());
    }
    let _ = out.file.sync_data();
    let path = numbered_path(&opts.path, out.index + 1, true);
    let file = crate::sink::create_output_file(&path)?;
    let direct = open_direct(opts, &path);
    let mut next = Output {
        write_back: paces_write_back(opts, &file),
        file,
        direct,
        stream: false,
        written: header.len() as u64,
        opened: Instant::now(),
        index: out.index + 1,
        files: out.files + 1,
        last_chunk: None,
    };
    if let Err(e) = write_header(&mut next, header) {
        drop(next);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    *out = next;
    Ok(())
}

/// Whether writes to `file` pace the page cache: a file on a disk (not a
/// pipe, not tmpfs), unless the options say no.
fn paces_write_back(opts: &PcapOptions, file: &File) -> bool {
    opts.write_back && !opts.to_stdout() && !crate::sys::on_tmpfs(file).unwrap_or(true)
}

/// After a chunk of `len` bytes was written at `out.written`: its
/// write-back starts now, and the previous chunk's is waited for and its
/// pages dropped. The disk is kept busy with one chunk while the next is
/// written, and the page cache holds two chunks, not gigabytes that the
/// kernel would flush later in a burst (measured: 806 against 575 MB/s,
/// docs/BENCHMARKS.md).
fn pace_write_back(out: &mut Output, len: u64) {
    let _ = crate::sys::write_back(&out.file, out.written, len, false);
    if let Some((at, n)) = out.last_chunk.replace((out.written, len)) {
        let _ = crate::sys::write_back(&out.file, at, n, true);
    }
}

/// The file at `path` opened for direct writes, when the options ask for
/// it and its file system takes them.
fn open_direct(opts: &PcapOptions, path: &Path) -> Option<DirectFile> {
    (opts.direct_io && !opts.to_stdout()).then(|| DirectFile::open(path)).flatten()
}

/// A new file's header: staged for a direct file, else written now.
fn write_header(out: &mut Output, header: &[u8]) -> io::Result<()> {
    match &mut out.direct {
        Some(d) => d.append(header),
        None => write_at_most(&out.file, header, 0, out.stream).1.map_or(Ok(()), Err),
    }
}

/// Stages a chunk in the direct file; counts the chunks that reached the
/// disk, or on a failed write gives direct writing up for this file.
fn write_direct(cx: Ctx<'_>, out: &mut Output, health: &mut Health, chunk: &Chunk) {
    let counters = cx.counters;
    let d = out.direct.as_mut().expect("checked by the caller");
    let payload = chunk.payloads.iter().map(|&l| u64::from(l)).sum();
    let staged = d.append_chunk(chunk.bytes(), chunk.packets, payload);
    out.written = d.len();
    count_written(d.take_written(), counters);
    if let Err(e) = staged {
        direct_failed(cx, out, health, e);
    } else if health.failing.take().is_some() {
        counters.add(WriterIdx::Resumed as usize, 1);
    }
}

/// How long staged bytes may wait for more before they go to the disk.
const STAGE_MAX_WAIT: Duration = Duration::from_secs(1);

/// While chunks come slowly: staged whole blocks that waited
/// [`STAGE_MAX_WAIT`] go to the disk.
fn flush_stale(cx: Ctx<'_>, out: &mut Output, health: &mut Health) {
    let Some(d) = out.direct.as_mut() else { return };
    match d.write_if_stale(STAGE_MAX_WAIT) {
        Ok(()) => count_written(d.take_written(), cx.counters),
        Err(e) => direct_failed(cx, out, health, e),
    }
}

/// A direct write failed: the file is cut back and goes on with ordinary
/// writes, and the failure is recorded (said once).
fn direct_failed(cx: Ctx<'_>, out: &mut Output, health: &mut Health, e: io::Error) {
    give_up_direct(cx, out);
    fail(cx, out, health, e);
}

fn count_written(written: impl Iterator<Item = Pending>, counters: &StageCounters) {
    for p in written {
        counters.add(WriterIdx::Packets as usize, p.packets);
        counters.add(WriterIdx::Bytes as usize, p.bytes);
    }
}

/// After a failed direct write: the file is cut back to the end of the
/// last chunk wholly on the disk (to nothing, header included, when the
/// header did not get there), the chunks after it are counted as dropped,
/// and the file goes on with ordinary writes.
fn give_up_direct(cx: Ctx<'_>, out: &mut Output) {
    let (header, counters) = (cx.header.len(), cx.counters);
    let Some(mut d) = out.direct.take() else { return };
    // Writes still in flight land before the file is cut, not after.
    d.settle();
    let on_disk = d.on_disk();
    count_written(d.take_written(), counters);
    let pending = d.take_pending();
    let first_start = pending.first().map_or(d.len(), |p| p.end - p.bytes);
    let cut = if on_disk < header as u64 { 0 } else { cut_point(&pending, on_disk, first_start) };
    for p in &pending {
        if p.end <= cut {
            count_written(std::iter::once(*p), counters);
        } else {
            counters.add(WriterIdx::WriteErrorDrops as usize, p.packets);
            counters.add(WriterIdx::WriteErrorBytes as usize, p.payload);
        }
    }
    let _ = out.file.set_len(cut);
    out.written = cut;
}

/// At the end of a file: what is staged goes to the disk (the tail through
/// the ordinary descriptor), or, failing that, the file is cut back.
pub(super) fn close_direct(cx: Ctx<'_>, out: &mut Output, health: &mut Health) {
    let Some(d) = out.direct.as_mut() else { return };
    match d.finish(&out.file) {
        Ok(()) => {
            count_written(d.take_written(), cx.counters);
            out.direct = None;
        }
        Err(e) => direct_failed(cx, out, health, e),
    }
}
