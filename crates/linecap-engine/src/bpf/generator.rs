//! The kernel-side generator's XDP program, run by `BPF_PROG_RUN` in live
//! frames mode on a template frame: it takes the next sequence number from
//! a one-entry array map, writes the whole `seq` payload for it (number and
//! pattern, see `format::seq`), and returns XDP_TX, so the kernel transmits
//! the frame. Receivers verify every byte as with any other sender.
//!
//! Pacing happens in the program, per frame: the map holds the time the
//! next frame is due (in 1/256 ns, so a 425.5 ns period stays exact); a run
//! that comes early returns XDP_DROP, which costs the kernel a recycled
//! page and nothing on the wire. The kernel's loop thus becomes a clock
//! with a resolution of one program run (tens of nanoseconds), instead of
//! bursts per syscall. A frame that is late by more than `max_lag` periods
//! does not make the generator catch up in a burst: like an FPGA, it goes
//! on at the rate, and the shortfall shows in the achieved rate.

use super::insn::{Alu, Asm, Cond, Insn, Label, Size, reg::*};
use super::xdp::{XDP_DROP, XDP_TX};

const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_KTIME_GET_NS: i32 = 5;
const K: u64 = 0xD6E8_FEB8_6659_FD93;

/// The generator's state: the value of its one-entry map, shared by the
/// program and user space (which reads `next_seq` to know what was sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenState {
    /// The sequence number of the next frame (= frames sent so far).
    pub next_seq: u64,
    /// Frames are sent while `next_seq < limit`.
    pub limit: u64,
    /// When the next frame is due, CLOCK_MONOTONIC in 1/256 ns.
    pub due_fp: u64,
    /// Time between frames in 1/256 ns; 0 = unpaced.
    pub period_fp: u64,
    /// The most a frame may be late (1/256 ns) before the schedule slips.
    pub max_lag_fp: u64,
    /// When the first frame was sent (CLOCK_MONOTONIC ns; paced runs only).
    pub first_ns: u64,
    /// When the latest frame was sent (paced runs only).
    pub last_ns: u64,
}

impl GenState {
    /// Bytes in the map value.
    pub const SIZE: usize = 56;

    /// The map value.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let words = [
            self.next_seq,
            self.limit,
            self.due_fp,
            self.period_fp,
            self.max_lag_fp,
            self.first_ns,
            self.last_ns,
        ];
        for (i, v) in words.into_iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Reads a map value.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let w = |i: usize| u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        Self {
            next_seq: w(0),
            limit: w(1),
            due_fp: w(2),
            period_fp: w(3),
            max_lag_fp: w(4),
            first_ns: w(5),
            last_ns: w(6),
        }
    }
}

/// Which numbers of a stream one generator sends: frame `i` carries
/// number `((i / run) * flows + flow) * run + i % run`, its flow's share
/// of a stream dealt over `flows` flows in runs of `run` (`send --flows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deal {
    /// Flows the stream is dealt over.
    pub flows: u32,
    /// This generator's flow.
    pub flow: u32,
    /// Consecutive numbers per turn of a flow.
    pub run: u32,
}

impl Deal {
    /// The whole stream: frame `i` carries number `i`.
    pub const WHOLE: Deal = Deal { flows: 1, flow: 0, run: 1 };
}

/// Builds the program for frames whose UDP payload starts at `payload_at`
/// and is `payload` bytes long (≥ 8). `map_fd`: the [`GenState`] map.
pub fn seq_program(map_fd: i32, payload_at: usize, payload: usize) -> Vec<Insn> {
    dealt_seq_program(map_fd, payload_at, payload, Deal::WHOLE)
}

/// [`seq_program`] for one flow's share of a dealt stream.
pub fn dealt_seq_program(map_fd: i32, payload_at: usize, payload: usize, deal: Deal) -> Vec<Insn> {
    let mut a = Asm::default();
    let drop = a.label();
    state_within_limit(&mut a, map_fd, drop);
    pace(&mut a, drop);
    take_number(&mut a, deal);
    write_payload(&mut a, payload_at, payload, drop);
    a.exit_with(XDP_TX);
    a.place(drop);
    a.exit_with(XDP_DROP);
    a.finish().expect("labels placed")
}

/// r6 = the context, r9 = &state, r7 = next_seq; past the limit, to `drop`.
fn state_within_limit(a: &mut Asm, map_fd: i32, drop: Label) {
    a.alu_reg(Alu::Mov, R6, R1);
    // r9 = &state (runs happen on one CPU at a time: plain loads and stores).
    a.st_w(10, -4, 0);
    a.alu_reg(Alu::Mov, R2, 10);
    a.alu_imm(Alu::Add, R2, -4);
    a.ld_map_fd(R1, map_fd);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jmp_imm(Cond::Eq, R0, 0, drop);
    a.alu_reg(Alu::Mov, R9, R0);
    // Done when next_seq reaches the limit.
    a.ldx_dw(R7, R9, 0);
    a.ldx_dw(R8, R9, 8);
    a.jmp_reg(Cond::Ge, R7, R8, drop);
}

/// Unpaced, nothing; paced, an early run goes to `drop`, and the schedule
/// moves one period on (slipping when late by more than max_lag).
fn pace(a: &mut Asm, drop: Label) {
    let send = a.label();
    let on_time = a.label();
    // Unpaced (period 0): no clock read at all, the frame goes.
    a.ldx_dw(R8, R9, 24);
    a.jmp_imm(Cond::Eq, R8, 0, send);
    // Paced: r0 = now (ns), r3 = now in 1/256 ns; early runs drop.
    a.call(BPF_FUNC_KTIME_GET_NS);
    a.alu_reg(Alu::Mov, R3, R0);
    a.alu_imm(Alu::Lsh, R3, 8);
    a.ldx_dw(R1, R9, 16);
    a.jmp_reg(Cond::Gt, R1, R3, drop);
    // Late by more than max_lag: the schedule slips to now - max_lag.
    a.alu_reg(Alu::Mov, R2, R3);
    a.alu_reg(Alu::Sub, R2, R1);
    a.ldx_dw(R4, R9, 32);
    a.jmp_reg(Cond::Ge, R4, R2, on_time);
    a.alu_reg(Alu::Mov, R1, R3);
    a.alu_reg(Alu::Sub, R1, R4);
    a.place(on_time);
    a.alu_reg(Alu::Add, R1, R8);
    a.stx_dw(R9, 16, R1);
    // Send times of the first and the latest frame, for the report.
    let not_first = a.label();
    a.stx_dw(R9, 48, R0);
    a.jmp_imm(Cond::Ne, R7, 0, not_first);
    a.stx_dw(R9, 40, R0);
    a.place(not_first);
    a.place(send);
}

/// next_seq++, and r7 = the number this frame carries.
fn take_number(a: &mut Asm, deal: Deal) {
    // r7 = next_seq++.
    a.alu_reg(Alu::Mov, R8, R7);
    a.alu_imm(Alu::Add, R8, 1);
    a.stx_dw(R9, 0, R8);
    if deal != Deal::WHOLE {
        // r7 = this flow's i-th number: ((i / run) * flows + flow) * run + i % run.
        let run = deal.run.max(1) as i32;
        a.alu_reg(Alu::Mov, R8, R7);
        a.alu_imm(Alu::Div, R8, run);
        a.alu_imm(Alu::Mul, R8, deal.flows as i32);
        a.alu_imm(Alu::Add, R8, deal.flow as i32);
        a.alu_imm(Alu::Mul, R8, run);
        a.alu_imm(Alu::Mod, R7, run);
        a.alu_reg(Alu::Add, R7, R8);
    }
}

/// The `seq` payload of number r7: the number, then its pattern words.
fn write_payload(a: &mut Asm, payload_at: usize, payload: usize, drop: Label) {
    // Packet pointers, bounds-checked over the whole payload.
    a.ldx(Size::W, R2, R6, 0);
    a.ldx(Size::W, R3, R6, 4);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, (payload_at + payload) as i32);
    a.jmp_reg(Cond::Gt, R4, R3, drop);
    // Sequence number, little-endian.
    a.stx_dw(R2, payload_at as i16, R7);
    // base = splitmix64(seq) in r8.
    a.alu_reg(Alu::Mov, R8, R7);
    a.ld_imm64(R9, 0x9E37_79B9_7F4A_7C15);
    a.alu_reg(Alu::Add, R8, R9);
    for (shift, mul) in [(30, 0xBF58_476D_1CE4_E5B9u64), (27, 0x94D0_49BB_1331_11EB)] {
        a.alu_reg(Alu::Mov, R9, R8);
        a.alu_imm(Alu::Rsh, R9, shift);
        a.alu_reg(Alu::Xor, R8, R9);
        a.ld_imm64(R9, mul);
        a.alu_reg(Alu::Mul, R8, R9);
    }
    a.alu_reg(Alu::Mov, R9, R8);
    a.alu_imm(Alu::Rsh, R9, 31);
    a.alu_reg(Alu::Xor, R8, R9);
    // Pattern words: base ^ (k + 1) * K; a partial last word byte by byte.
    let words = (payload - 8) / 8;
    for k in 0..words {
        a.ld_imm64(R9, (k as u64 + 1).wrapping_mul(K));
        a.alu_reg(Alu::Xor, R9, R8);
        a.stx_dw(R2, (payload_at + 8 + 8 * k) as i16, R9);
    }
    let rest = (payload - 8) % 8;
    if rest > 0 {
        a.ld_imm64(R9, (words as u64 + 1).wrapping_mul(K));
        a.alu_reg(Alu::Xor, R9, R8);
        for i in 0..rest {
            a.stx(Size::B, R2, (payload_at + 8 + 8 * words + i) as i16, R9);
            a.alu_imm(Alu::Rsh, R9, 8);
        }
    }
}
