//! SPEAD-64-48 packets: an 8-byte header, 64-bit item pointers (big-endian;
//! bit 63 immediate, 15-bit item id, 48-bit value or address), then payload.
//!
//! Assembly uses the four standard items: heap counter (0x1), heap size
//! (0x2), heap offset (0x3) and payload length (0x4). A packet's place is
//! `heap_cnt × (heap_size / payload_len) + heap_offset / payload_len`, so a
//! heap maps to one or more slots of `payload_len` bytes; this needs every
//! packet of a heap to carry the same payload length (true of one-packet
//! heaps and of linecap's generator). Packets that do not fit that shape,
//! and stream-control packets, are reported as not data.

/// Magic byte of a SPEAD header.
pub const MAGIC: u8 = 0x53;
/// SPEAD version.
pub const VERSION: u8 = 4;
/// Item id of the heap counter.
pub const HEAP_CNT: u16 = 0x1;
/// Item id of the heap size.
pub const HEAP_SIZE: u16 = 0x2;
/// Item id of the heap offset.
pub const HEAP_OFFSET: u16 = 0x3;
/// Item id of the payload length.
pub const PAYLOAD_LEN: u16 = 0x4;
/// Item id of stream control.
pub const STREAM_CTRL: u16 = 0x6;
/// Item id linecap's generator gives its data.
pub const DATA_ITEM: u16 = 0x1000;
const ADDR_MASK: u64 = (1 << 48) - 1;

/// The standard items of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeadPacket<'a> {
    /// Heap counter.
    pub heap_cnt: u64,
    /// Heap size in bytes.
    pub heap_size: u64,
    /// Offset of this payload in the heap.
    pub heap_offset: u64,
    /// The payload.
    pub payload: &'a [u8],
    /// The packet carries a stream-control item (start/stop).
    pub control: bool,
}

/// Parses a SPEAD-64-48 packet. `None`: not SPEAD-64-48, truncated, or a
/// standard item missing.
pub fn parse(p: &[u8]) -> Option<SpeadPacket<'_>> {
    if p.len() < 8 || p[0] != MAGIC || p[1] != VERSION || p[2] != 2 || p[3] != 6 {
        return None;
    }
    let n = usize::from(u16::from_be_bytes([p[6], p[7]]));
    let items = p.get(8..8 + 8 * n)?;
    let (mut cnt, mut size, mut off, mut len, mut control) = (None, None, None, None, false);
    for it in items.chunks_exact(8) {
        let v = u64::from_be_bytes(it.try_into().ok()?);
        let immediate = v >> 63 == 1;
        let id = (v >> 48 & 0x7fff) as u16;
        let value = v & ADDR_MASK;
        match (id, immediate) {
            (HEAP_CNT, true) => cnt = Some(value),
            (HEAP_SIZE, true) => size = Some(value),
            (HEAP_OFFSET, true) => off = Some(value),
            (PAYLOAD_LEN, true) => len = Some(value as usize),
            (STREAM_CTRL, _) => control = true,
            _ => {}
        }
    }
    let start = 8 + 8 * n;
    let len = len?;
    let payload = p.get(start..start + len)?;
    Some(SpeadPacket { heap_cnt: cnt?, heap_size: size?, heap_offset: off?, payload, control })
}

impl SpeadPacket<'_> {
    /// The packet's sequence number, when the heap is made of packets of
    /// equal payload length.
    pub fn seq(&self) -> Option<u64> {
        let len = self.payload.len() as u64;
        if self.control
            || len == 0
            || !self.heap_size.is_multiple_of(len)
            || !self.heap_offset.is_multiple_of(len)
        {
            return None;
        }
        let per_heap = self.heap_size / len;
        let part = self.heap_offset / len;
        if part >= per_heap {
            return None;
        }
        self.heap_cnt.checked_mul(per_heap)?.checked_add(part)
    }
}

fn pointer(immediate: bool, id: u16, value: u64) -> [u8; 8] {
    (u64::from(immediate) << 63 | u64::from(id & 0x7fff) << 48 | value & ADDR_MASK).to_be_bytes()
}

/// Header bytes of a generator packet: the header and five item pointers
/// (the data item's pointer in a heap's first packet, a NULL padding item
/// in the others, so every packet has the same length).
pub const GEN_HEADER: usize = 8 + 8 * 5;

/// Writes generator packet `k` of a stream of heaps of `parts` packets,
/// filling all of `p` (`GEN_HEADER` + payload). Heap counters start at 1,
/// as spead2's do.
pub fn encode(p: &mut [u8], k: u64, parts: u64) {
    let payload = p.len().saturating_sub(GEN_HEADER);
    let parts = parts.max(1);
    let heap = k / parts + 1;
    let part = k % parts;
    p[..8].copy_from_slice(&[MAGIC, VERSION, 2, 6, 0, 0, 0, 5]);
    let last = if part == 0 { pointer(false, DATA_ITEM, 0) } else { pointer(true, 0, 0) };
    let items = [
        pointer(true, HEAP_CNT, heap),
        pointer(true, HEAP_SIZE, parts * payload as u64),
        pointer(true, HEAP_OFFSET, part * payload as u64),
        pointer(true, PAYLOAD_LEN, payload as u64),
        last,
    ];
    for (i, it) in items.iter().enumerate() {
        p[8 + 8 * i..16 + 8 * i].copy_from_slice(it);
    }
    for (i, b) in p[GEN_HEADER..].iter_mut().enumerate() {
        *b = pattern(heap, part * payload as u64 + i as u64);
    }
}

/// Byte `i` of heap `heap`'s payload as linecap's generator writes it.
pub fn pattern(heap: u64, i: u64) -> u8 {
    (heap.wrapping_mul(131) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_round_trip() {
        for k in 0..9u64 {
            let mut p = vec![0u8; GEN_HEADER + 100];
            encode(&mut p, k, 3);
            let s = parse(&p).unwrap();
            assert_eq!((s.heap_cnt, s.heap_size, s.heap_offset), (k / 3 + 1, 300, (k % 3) * 100));
            assert_eq!(s.payload.len(), 100);
            assert_eq!(s.seq(), Some(k + 3), "heap counters start at 1");
            assert_eq!(s.payload[5], pattern(k / 3 + 1, (k % 3) * 100 + 5));
        }
    }

    #[test]
    fn rejects_what_is_not_spead_64_48() {
        let mut p = vec![0u8; GEN_HEADER + 16];
        encode(&mut p, 0, 1);
        assert!(parse(&p).is_some());
        for (i, bad) in [(0, 0x54), (1, 3), (2, 3), (3, 5)] {
            let mut q = p.clone();
            q[i] = bad;
            assert!(parse(&q).is_none(), "byte {i}");
        }
        assert!(parse(&p[..p.len() - 1]).is_none(), "payload cut");
        let mut q = p.clone();
        q[7] = 200; // more items than bytes
        assert!(parse(&q).is_none());
        // Uneven parts give no sequence number.
        let s =
            SpeadPacket { heap_cnt: 1, heap_size: 100, heap_offset: 30, payload: &[0; 30], control: false };
        assert_eq!(s.seq(), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Some(s) = parse(&data) {
                let _ = s.seq();
            }
            let mut d = data.clone();
            if d.len() >= 8 {
                d[..4].copy_from_slice(&[MAGIC, VERSION, 2, 6]);
                if let Some(s) = parse(&d) {
                    let _ = s.seq();
                }
            }
        }
    }
}
