//! The kernel-side generator's XDP program, run by `BPF_PROG_RUN` in live
//! frames mode on a template frame: it takes the next sequence number from
//! a one-entry array map, writes the whole `seq` payload for it (number and
//! pattern, see `format::seq`), and returns XDP_TX, so the kernel transmits
//! the frame. Receivers verify every byte as with any other sender.

use super::insn::{Alu, Asm, Cond, Insn, Size, reg::*};
use super::xdp::{XDP_DROP, XDP_TX};

const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const K: u64 = 0xD6E8_FEB8_6659_FD93;

/// Builds the program for frames whose UDP payload starts at `payload_at`
/// and is `payload` bytes long (≥ 8). `map_fd`: the counter map.
pub fn seq_program(map_fd: i32, payload_at: usize, payload: usize) -> Vec<Insn> {
    let mut a = Asm::default();
    let drop = a.label();
    a.alu_reg(Alu::Mov, R6, R1);
    // r7 = counter++ (the map's single u64; runs happen on one CPU at a time).
    a.st_w(10, -4, 0);
    a.alu_reg(Alu::Mov, R2, 10);
    a.alu_imm(Alu::Add, R2, -4);
    a.ld_map_fd(R1, map_fd);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jmp_imm(Cond::Eq, R0, 0, drop);
    a.ldx_dw(R7, R0, 0);
    a.alu_reg(Alu::Mov, R8, R7);
    a.alu_imm(Alu::Add, R8, 1);
    a.stx_dw(R0, 0, R8);
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
    a.alu_imm(Alu::Mov, R0, XDP_TX);
    a.exit();
    a.place(drop);
    a.alu_imm(Alu::Mov, R0, XDP_DROP);
    a.exit();
    a.finish().expect("labels placed")
}
