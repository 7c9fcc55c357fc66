//! The `seq` payload: a little-endian 64-bit sequence number followed by a
//! pattern derived from it, so a receiver can check every byte.
//!
//! Word `k` of the pattern (bytes `8 + 8k ..`) is `mix(seq) ^ (k+1) * K`,
//! written little-endian; a last partial word is truncated. A payload is
//! checked when it carries at least one whole pattern word (16 bytes):
//! any 8 bytes would otherwise pass as a valid sequence number.

/// Smallest `seq` payload: the sequence number alone (what a generator
/// may send; the verifier wants [`MIN_CHECKED_LEN`]).
pub const MIN_LEN: usize = 8;

/// Smallest payload the verifier calls valid: the sequence number and one
/// whole pattern word, so a bare 8-byte number (any 8 bytes) is not enough.
pub const MIN_CHECKED_LEN: usize = 16;

const K: u64 = 0xD6E8_FEB8_6659_FD93;

#[inline]
fn mix(seq: u64) -> u64 {
    // splitmix64 finaliser: every bit of seq affects every bit of the pattern.
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn word(base: u64, k: usize) -> u64 {
    base ^ ((k as u64 + 1).wrapping_mul(K))
}

/// Writes the `seq` payload for `seq` into all of `buf` (at least 8 bytes;
/// a shorter buffer gets the truncated sequence number only).
pub fn fill(buf: &mut [u8], seq: u64) {
    let bytes = seq.to_le_bytes();
    let n = buf.len().min(MIN_LEN);
    buf[..n].copy_from_slice(&bytes[..n]);
    if buf.len() <= MIN_LEN {
        return;
    }
    let base = mix(seq);
    let mut chunks = buf[MIN_LEN..].chunks_exact_mut(8);
    let mut k = 0;
    for c in &mut chunks {
        c.copy_from_slice(&word(base, k).to_le_bytes());
        k += 1;
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    rest.copy_from_slice(&word(base, k).to_le_bytes()[..n]);
}

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Sequence number and every pattern byte are right.
    Valid(u64),
    /// The pattern does not match the sequence number it carries.
    Corrupt(u64),
    /// Too short to carry a sequence number and one pattern word.
    Malformed,
}

/// Reads the sequence number of a payload without checking the pattern.
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    payload.get(..MIN_LEN).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Checks a payload: never panics, whatever the input.
pub fn check(payload: &[u8]) -> Check {
    if payload.len() < MIN_CHECKED_LEN {
        return Check::Malformed;
    }
    let Some(seq) = seq_of(payload) else {
        return Check::Malformed;
    };
    let base = mix(seq);
    let mut chunks = payload[MIN_LEN..].chunks_exact(8);
    let mut k = 0;
    for c in &mut chunks {
        if u64::from_le_bytes(c.try_into().expect("8 bytes")) != word(base, k) {
            return Check::Corrupt(seq);
        }
        k += 1;
    }
    let rest = chunks.remainder();
    if rest != &word(base, k).to_le_bytes()[..rest.len()] {
        return Check::Corrupt(seq);
    }
    Check::Valid(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_all_small_sizes() {
        for len in MIN_CHECKED_LEN..300 {
            let mut buf = vec![0u8; len];
            fill(&mut buf, 12345 + len as u64);
            assert_eq!(check(&buf), Check::Valid(12345 + len as u64), "len {len}");
        }
    }

    #[test]
    fn golden_bytes() {
        let mut buf = [0u8; 20];
        fill(&mut buf, 1);
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        // The pattern is part of the wire format: pin it.
        let w0 = mix(1) ^ K;
        assert_eq!(&buf[8..16], &w0.to_le_bytes());
        let w1 = mix(1) ^ K.wrapping_mul(2);
        assert_eq!(&buf[16..20], &w1.to_le_bytes()[..4]);
    }

    #[test]
    fn short_is_malformed() {
        assert_eq!(check(&[]), Check::Malformed);
        assert_eq!(check(&[1, 2, 3, 4, 5, 6, 7]), Check::Malformed);
        // A bare number proves nothing: any 8 bytes would pass.
        assert_eq!(check(&5u64.to_le_bytes()), Check::Malformed);
        let mut b = [0u8; 15];
        fill(&mut b, 5);
        assert_eq!(check(&b), Check::Malformed);
    }

    proptest! {
        #[test]
        fn any_bit_flip_is_caught(seq in any::<u64>(), len in 16usize..400, bit in any::<usize>()) {
            let mut buf = vec![0u8; len];
            fill(&mut buf, seq);
            let bit = bit % ((len - 8) * 8) + 64;
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(check(&buf), Check::Corrupt(seq));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = check(&data);
        }
    }
}
