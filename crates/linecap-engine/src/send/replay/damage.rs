//! `--drop/--reorder/--duplicate` on a replayed stream.

use super::out::Output;
use crate::packet::Packet;
use crate::send::impair::{Fate, Impairer, Impairments};

/// A packet held back by `--reorder`, copied out of the file's buffer.
struct HeldPacket {
    seq: u64,
    /// The frame (when the file had one) or the payload.
    bytes: Vec<u8>,
    /// Where the payload starts in `bytes`.
    payload_at: usize,
    has_frame: bool,
    ts_ns: u64,
}

impl HeldPacket {
    fn packet(&self) -> Packet<'_> {
        Packet {
            data: &self.bytes[self.payload_at..],
            ts_ns: self.ts_ns,
            src: None,
            frame: self.has_frame.then_some(&self.bytes[..]),
            wire_len: self.bytes.len() as u32,
            is_udp: true,
            is_segment: false,
        }
    }
}

/// `--drop/--reorder/--duplicate` on a replayed stream: the impairer
/// decides each packet's fate in file order (its number is its place in
/// the replay); held packets wait here as copies.
pub(super) struct Damage {
    pub(super) imp: Impairer,
    held: Vec<HeldPacket>,
}

impl Damage {
    pub(super) fn new(cfg: Impairments) -> Self {
        Damage { imp: Impairer::new(cfg, 0), held: Vec::new() }
    }

    pub(super) fn push(
        &mut self,
        out: &mut dyn Output,
        p: &Packet<'_>,
        due: Option<u64>,
    ) -> crate::Result<()> {
        self.release(out, u64::MAX)?;
        let seq = self.imp.next_fresh();
        match self.imp.fate(u64::MAX) {
            Fate::Dropped => {}
            Fate::Held => {
                let (bytes, payload_at) = match p.frame {
                    Some(f) => {
                        let at = (p.data.as_ptr() as usize).saturating_sub(f.as_ptr() as usize).min(f.len());
                        (f.to_vec(), at)
                    }
                    None => (p.data.to_vec(), 0),
                };
                let has_frame = p.frame.is_some();
                self.held.push(HeldPacket { seq, bytes, payload_at, has_frame, ts_ns: p.ts_ns });
            }
            Fate::Sent { copy } => {
                out.push(p, due)?;
                self.imp.sent(seq, false);
                if copy {
                    out.push(p, due)?;
                    self.imp.sent(seq, true);
                }
            }
        }
        Ok(())
    }

    /// Sends the held packets whose turn came (`remaining` 0: all of them).
    pub(super) fn release(&mut self, out: &mut dyn Output, remaining: u64) -> crate::Result<()> {
        while let Some((seq, copy)) = self.imp.release(remaining) {
            let Some(i) = self.held.iter().position(|h| h.seq == seq) else { continue };
            let h = self.held.swap_remove(i);
            out.push(&h.packet(), None)?;
            self.imp.sent(seq, false);
            if copy {
                out.push(&h.packet(), None)?;
                self.imp.sent(seq, true);
            }
        }
        Ok(())
    }
}
