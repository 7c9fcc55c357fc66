//! The `raw` format: the user describes the packet. A header of
//! `header` bytes holds a counter (offset, width in bytes, endianness) and
//! optionally a channel field; `payload` bytes of data follow the header.
//!
//! Spec string: `header=16,counter=0:8:be,channel=8:2:be,payload=256`
//! (`counter` and `payload` required; widths 1–8 bytes; `be` or `le`).

use std::fmt;

/// One integer field of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    /// Byte offset in the packet.
    pub offset: usize,
    /// Width in bytes (1–8).
    pub width: usize,
    /// Big-endian (network order) when true.
    pub big_endian: bool,
}

impl Field {
    fn read(&self, p: &[u8]) -> Option<u64> {
        let b = p.get(self.offset..self.offset + self.width)?;
        Some(if self.big_endian {
            b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
        } else {
            b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x))
        })
    }

    fn write(&self, p: &mut [u8], v: u64) {
        for i in 0..self.width {
            let byte = (v >> (8 * i)) as u8;
            let at = if self.big_endian { self.offset + self.width - 1 - i } else { self.offset + i };
            p[at] = byte;
        }
    }

    /// Bits of the field.
    pub fn bits(&self) -> u32 {
        8 * self.width as u32
    }
}

/// A raw packet description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawSpec {
    /// Header bytes before the data.
    pub header: usize,
    /// The packet counter.
    pub counter: Field,
    /// The channel (row) field, if any.
    pub channel: Option<Field>,
    /// Data bytes after the header.
    pub payload: usize,
}

impl fmt::Display for RawSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = |b: bool| if b { "be" } else { "le" };
        write!(
            f,
            "header={},counter={}:{}:{}",
            self.header,
            self.counter.offset,
            self.counter.width,
            e(self.counter.big_endian)
        )?;
        if let Some(c) = self.channel {
            write!(f, ",channel={}:{}:{}", c.offset, c.width, e(c.big_endian))?;
        }
        write!(f, ",payload={}", self.payload)
    }
}

fn field(v: &str, what: &str) -> Result<Field, String> {
    let p: Vec<&str> = v.split(':').collect();
    let bad = || format!("{what}={v}: expected OFFSET:WIDTH:be|le, e.g. {what}=0:8:be");
    if p.len() != 3 {
        return Err(bad());
    }
    let offset = p[0].parse().map_err(|_| bad())?;
    let width: usize = p[1].parse().map_err(|_| bad())?;
    if !(1..=8).contains(&width) {
        return Err(format!("{what}={v}: width must be 1 to 8 bytes"));
    }
    let big_endian = match p[2] {
        "be" => true,
        "le" => false,
        _ => return Err(bad()),
    };
    Ok(Field { offset, width, big_endian })
}

impl RawSpec {
    /// Parses a spec string and checks that the fields fit the header.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (mut header, mut counter, mut channel, mut payload) = (0usize, None, None, None);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}': expected key=value"))?;
            match k {
                "header" => header = v.parse().map_err(|_| format!("header={v}: expected a byte count"))?,
                "counter" => counter = Some(field(v, "counter")?),
                "channel" => channel = Some(field(v, "channel")?),
                "payload" => {
                    payload = Some(v.parse().map_err(|_| format!("payload={v}: expected a byte count"))?)
                }
                _ => return Err(format!("unknown key '{k}' (header, counter, channel, payload)")),
            }
        }
        let counter = counter.ok_or("the raw format needs counter=OFFSET:WIDTH:be|le")?;
        let payload: usize = payload.ok_or("the raw format needs payload=BYTES")?;
        if payload == 0 {
            return Err("payload must be at least 1 byte".into());
        }
        for (f, what) in [(Some(counter), "counter"), (channel, "channel")] {
            if let Some(f) = f
                && f.offset + f.width > header
            {
                return Err(format!(
                    "the {what} field (bytes {}..{}) does not fit the {header}-byte header",
                    f.offset,
                    f.offset + f.width
                ));
            }
        }
        Ok(Self { header, counter, channel, payload })
    }

    /// Bytes of a whole packet.
    pub fn packet_len(&self) -> usize {
        self.header + self.payload
    }

    /// Decodes a packet: (counter, channel, data). `None`: shorter than the description.
    pub fn decode<'a>(&self, p: &'a [u8]) -> Option<(u64, u64, &'a [u8])> {
        if p.len() < self.packet_len() {
            return None;
        }
        let counter = self.counter.read(p)?;
        let channel = match self.channel {
            Some(c) => c.read(p)?,
            None => 0,
        };
        Some((counter, channel, &p[self.header..self.header + self.payload]))
    }

    /// Writes a packet for (counter, channel) with a deterministic data
    /// pattern (the generator side of `linecap send --format raw`).
    pub fn encode(&self, p: &mut [u8], counter: u64, channel: u64) {
        p[..self.header].fill(0);
        self.counter.write(p, counter);
        if let Some(c) = self.channel {
            c.write(p, channel);
        }
        let seed = counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ channel;
        for (i, b) in p[self.header..self.header + self.payload].iter_mut().enumerate() {
            *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
}

/// Extends a counter of `bits` bits that wraps around into a 64-bit
/// sequence number, choosing the value nearest to the previous one.
#[derive(Debug, Clone, Copy)]
pub struct Unwrap {
    bits: u32,
    last: Option<u64>,
    /// Times the counter wrapped forward.
    pub wraps: u64,
}

impl Unwrap {
    /// For a counter of `bits` bits (64: no wrapping handled).
    pub fn new(bits: u32) -> Self {
        Self { bits: bits.clamp(1, 64), last: None, wraps: 0 }
    }

    /// The 64-bit sequence number of `counter`.
    pub fn extend(&mut self, counter: u64) -> u64 {
        if self.bits >= 64 {
            self.last = Some(counter);
            return counter;
        }
        let span = 1u64 << self.bits;
        let counter = counter & (span - 1);
        let Some(last) = self.last else {
            self.last = Some(counter);
            return counter;
        };
        let base = last & !(span - 1);
        let cand = base | counter;
        // Nearest of cand - span, cand, cand + span to `last`.
        let mut best = cand;
        let dist = |x: u64| x.abs_diff(last);
        if cand >= span && dist(cand - span) < dist(best) {
            best = cand - span;
        }
        if let Some(up) = cand.checked_add(span)
            && dist(up) < dist(best)
        {
            best = up;
        }
        if best > last && (best & !(span - 1)) > base {
            self.wraps += 1;
        }
        if best > last {
            self.last = Some(best);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_and_errors() {
        let s = RawSpec::parse("header=16,counter=0:8:be,channel=8:2:le,payload=256").unwrap();
        assert_eq!(s.to_string(), "header=16,counter=0:8:be,channel=8:2:le,payload=256");
        assert_eq!(s.packet_len(), 272);
        assert!(RawSpec::parse("header=4,counter=0:8:be,payload=8").unwrap_err().contains("does not fit"));
        assert!(RawSpec::parse("header=8,payload=8").unwrap_err().contains("needs counter"));
        assert!(RawSpec::parse("header=8,counter=0:9:be,payload=8").unwrap_err().contains("1 to 8"));
        assert!(RawSpec::parse("header=8,counter=0:8:xx,payload=8").is_err());
        assert!(
            RawSpec::parse("header=8,counter=0:8:be,payload=8,bogus=1").unwrap_err().contains("unknown key")
        );
    }

    #[test]
    fn encode_decode() {
        let s = RawSpec::parse("header=12,counter=2:4:be,channel=8:1:le,payload=20").unwrap();
        let mut p = vec![0u8; 32];
        s.encode(&mut p, 0xdead_beef, 3);
        let (c, ch, d) = s.decode(&p).unwrap();
        assert_eq!((c, ch, d.len()), (0xdead_beef, 3, 20));
        assert_eq!(&p[2..6], &[0xde, 0xad, 0xbe, 0xef]);
        assert!(s.decode(&p[..31]).is_none(), "short packet");
    }

    #[test]
    fn unwrap_16_bit_counter() {
        let mut u = Unwrap::new(16);
        let mut got = Vec::new();
        for s in 65_530u64..65_545 {
            got.push(u.extend(s & 0xffff));
        }
        assert_eq!(got, (65_530..65_545).collect::<Vec<_>>());
        assert_eq!(u.wraps, 1);
        // A reordered packet from before the wrap stays before it.
        assert_eq!(u.extend(65_535), 65_535);
        assert_eq!(u.wraps, 1);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let s = RawSpec::parse("header=16,counter=0:8:be,channel=8:2:be,payload=32").unwrap();
            let _ = s.decode(&data);
        }

        #[test]
        fn unwrap_follows_a_jittered_stream(start in 0u64..1_000_000, jitter in proptest::collection::vec(0u64..50, 1..500)) {
            // The first counter fixes the origin; every later value must be
            // that origin plus the true distance (steps < half the span).
            let mut u = Unwrap::new(12);
            let first = u.extend(start & 0xfff);
            let mut s = start;
            for j in jitter {
                s += j;
                proptest::prop_assert_eq!(u.extend(s & 0xfff), first + (s - start));
            }
        }
    }
}
