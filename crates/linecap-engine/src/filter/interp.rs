//! A classic-BPF interpreter for the instructions [`super::compile`] emits,
//! with the kernel's semantics (a load beyond the packet rejects it, as do
//! a jump or a fall off the program's end). It runs a filter where no
//! kernel does: over packets read back from a file (`capture --read`),
//! and in the compiler's tests.

use super::*;

/// What the kernel knows about a packet beside its bytes (its ancillary loads).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ancillary {
    /// The VLAN tag the NIC stripped, if any.
    pub vlan: Option<u16>,
    /// The packet was sent by this host.
    pub outgoing: bool,
}

/// Runs `prog` over `pkt` (a frame for [`Target::Link`]; for
/// [`Target::Udp`], the datagram from its UDP header on, with `net` the IP
/// header that `SKF_NET_OFF` loads reach). Returns the verdict: the bytes
/// to keep, 0 to drop.
pub fn run(prog: &[Insn], pkt: &[u8], net: &[u8], m: &Ancillary) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let load = |k: u32, size: usize| -> Option<u32> {
        let (buf, off) = if k >= SKF_AD_OFF {
            return match k - SKF_AD_OFF {
                SKF_AD_PKTTYPE => Some(if m.outgoing { 4 } else { 0 }),
                SKF_AD_VLAN_TAG => Some(u32::from(m.vlan.unwrap_or(0))),
                SKF_AD_VLAN_TAG_PRESENT => Some(u32::from(m.vlan.is_some())),
                _ => None,
            };
        } else if k >= SKF_NET_OFF {
            (net, (k - SKF_NET_OFF) as usize)
        } else {
            (pkt, k as usize)
        };
        let b = buf.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
    };
    loop {
        let Some(&(code, jt, jf, k)) = prog.get(pc) else { return 0 };
        pc += 1;
        match code {
            LD_W_ABS | LD_H_ABS | LD_B_ABS => {
                let size = match code {
                    LD_W_ABS => 4,
                    LD_H_ABS => 2,
                    _ => 1,
                };
                match load(k, size) {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
            LD_H_IND => match x.checked_add(k).and_then(|at| load(at, 2)) {
                Some(v) => a = v,
                None => return 0,
            },
            LDX_MSH => match pkt.get(k as usize) {
                Some(&b) => x = 4 * u32::from(b & 0x0f),
                None => return 0,
            },
            ALU_AND_K => a &= k,
            JA => pc = pc.saturating_add(k as usize),
            JEQ_K | JGT_K | JGE_K | JSET_K => {
                let c = match code {
                    JEQ_K => a == k,
                    JGT_K => a > k,
                    JGE_K => a >= k,
                    _ => a & k != 0,
                };
                pc += usize::from(if c { jt } else { jf });
            }
            RET_K => return k,
            // Not an instruction the compiler emits: refuse the packet.
            _ => return 0,
        }
    }
}
