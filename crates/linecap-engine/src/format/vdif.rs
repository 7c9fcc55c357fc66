//! VDIF (VLBI Data Interchange Format) frames: a 32-byte header (16 in
//! legacy mode) of little-endian 32-bit words, then the data.
//!
//! ```text
//! word 0: bits 0-29 seconds from the reference epoch, 30 legacy, 31 invalid
//! word 1: bits 0-23 frame number within the second, 24-29 reference epoch
//! word 2: bits 0-23 frame length in 8-byte units (header included),
//!         24-28 log2(channels), 29-31 version
//! word 3: bits 0-15 station, 16-25 thread id, 26-30 bits/sample - 1, 31 complex
//! ```
//! A frame's sequence number is `seconds × frames_per_second + frame`; its
//! thread id selects the row of a block.

/// What a VDIF frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdifHeader {
    /// Seconds from the reference epoch.
    pub seconds: u32,
    /// The frame was flagged invalid by its sender.
    pub invalid: bool,
    /// 16-byte legacy header.
    pub legacy: bool,
    /// Frame number within the second.
    pub frame: u32,
    /// Reference epoch (half-years since 2000).
    pub epoch: u8,
    /// Frame length in bytes, header included.
    pub frame_bytes: usize,
    /// Thread id.
    pub thread: u16,
    /// Station id.
    pub station: u16,
    /// Bits per sample.
    pub bits_per_sample: u8,
    /// log2 of the number of channels.
    pub log2_channels: u8,
}

impl VdifHeader {
    /// Header length in bytes.
    pub fn header_bytes(&self) -> usize {
        if self.legacy { 16 } else { 32 }
    }
}

fn word(p: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(p.get(4 * i..4 * i + 4)?.try_into().ok()?))
}

/// Parses a frame: the header and its data. `None`: too short, or the
/// frame length disagrees with the datagram.
pub fn parse(p: &[u8]) -> Option<(VdifHeader, &[u8])> {
    let (w0, w1, w2, w3) = (word(p, 0)?, word(p, 1)?, word(p, 2)?, word(p, 3)?);
    let h = VdifHeader {
        seconds: w0 & 0x3fff_ffff,
        legacy: w0 >> 30 & 1 == 1,
        invalid: w0 >> 31 == 1,
        frame: w1 & 0x00ff_ffff,
        epoch: (w1 >> 24 & 0x3f) as u8,
        frame_bytes: (w2 & 0x00ff_ffff) as usize * 8,
        log2_channels: (w2 >> 24 & 0x1f) as u8,
        station: (w3 & 0xffff) as u16,
        thread: (w3 >> 16 & 0x3ff) as u16,
        bits_per_sample: (w3 >> 26 & 0x1f) as u8 + 1,
    };
    let hb = h.header_bytes();
    if h.frame_bytes < hb || h.frame_bytes > p.len() {
        return None;
    }
    Some((h, &p[hb..h.frame_bytes]))
}

/// Writes a frame header (32 bytes, non-legacy) for the generator.
pub fn write_header(p: &mut [u8], seconds: u32, frame: u32, thread: u16, frame_bytes: usize) {
    let w = [
        seconds & 0x3fff_ffff,
        frame & 0x00ff_ffff,
        ((frame_bytes / 8) as u32 & 0x00ff_ffff) | 1 << 29, // version 1, one channel
        (u32::from(thread) & 0x3ff) << 16 | 1 << 26,        // 2 bits per sample
        0,
        0,
        0,
        0,
    ];
    for (i, v) in w.iter().enumerate() {
        p[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// A generator frame: header for frame `k` of `threads` threads at
/// `fps` frames per second per thread, then a data pattern.
pub fn encode(p: &mut [u8], k: u64, threads: u64, fps: u64) {
    let threads = threads.max(1);
    let fps = fps.max(1);
    let n = k / threads;
    let thread = (k % threads) as u16;
    write_header(p, (n / fps) as u32, (n % fps) as u32, thread, p.len());
    let seed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(thread);
    for (i, b) in p[32..].iter_mut().enumerate() {
        *b = (seed >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut p = vec![0u8; 32 + 64];
        encode(&mut p, 7 * 3 + 2, 3, 5); // frame n = 7 of thread 2: second 1, frame 2
        let (h, data) = parse(&p).unwrap();
        assert_eq!(
            (h.seconds, h.frame, h.thread, h.frame_bytes, h.legacy, h.invalid),
            (1, 2, 2, 96, false, false)
        );
        assert_eq!(h.bits_per_sample, 2);
        assert_eq!(data.len(), 64);
    }

    #[test]
    fn invalid_legacy_and_bad_lengths() {
        let mut p = vec![0u8; 96];
        write_header(&mut p, 1, 0, 0, 96);
        p[3] |= 0x80;
        assert!(parse(&p).unwrap().0.invalid);
        p[3] |= 0x40; // legacy: 16-byte header
        assert_eq!(parse(&p).unwrap().1.len(), 80);
        assert!(parse(&p[..95]).is_none(), "frame longer than the datagram");
        assert!(parse(&p[..15]).is_none());
        let mut z = vec![0u8; 32];
        write_header(&mut z, 0, 0, 0, 8);
        assert!(parse(&z).is_none(), "frame shorter than its header");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = parse(&data);
        }
    }
}
