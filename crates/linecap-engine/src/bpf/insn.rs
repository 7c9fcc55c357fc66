//! eBPF instruction encoding: 8 bytes each, `code`, `dst:4 | src:4`, a
//! signed 16-bit offset and a signed 32-bit immediate (little-endian). A
//! 64-bit immediate load takes two slots. Jumps are counted in slots from
//! the next instruction; [`Asm`] resolves labels to those offsets.

/// One instruction slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (0-10).
    pub dst: u8,
    /// Source register (0-10).
    pub src: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcode pieces (linux/bpf_common.h, linux/bpf.h).
const LDX: u8 = 0x01;
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const LD: u8 = 0x00;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const DW: u8 = 0x18;
const K: u8 = 0x00;
const X: u8 = 0x08;

/// Load widths.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    /// 1 byte.
    B = 0x10,
    /// 2 bytes.
    H = 0x08,
    /// 4 bytes.
    W = 0x00,
}

/// ALU operations.
#[derive(Debug, Clone, Copy)]
pub enum Alu {
    /// +
    Add = 0x00,
    /// -
    Sub = 0x10,
    /// &
    And = 0x50,
    /// <<
    Lsh = 0x60,
    /// >> (logical)
    Rsh = 0x70,
    /// ^
    Xor = 0xa0,
    /// *
    Mul = 0x20,
    /// / (unsigned)
    Div = 0x30,
    /// % (unsigned)
    Mod = 0x90,
    /// =
    Mov = 0xb0,
}

/// Jump conditions.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    /// ==
    Eq = 0x10,
    /// > (unsigned)
    Gt = 0x20,
    /// >= (unsigned)
    Ge = 0x30,
    /// !=
    Ne = 0x50,
    /// & != 0
    Set = 0x40,
}

/// Registers.
pub mod reg {
    /// Return value / helper result.
    pub const R0: u8 = 0;
    /// First argument / context.
    pub const R1: u8 = 1;
    /// Second argument.
    pub const R2: u8 = 2;
    /// Third argument.
    pub const R3: u8 = 3;
    /// Scratch.
    pub const R4: u8 = 4;
    /// Scratch.
    pub const R5: u8 = 5;
    /// Callee-saved.
    pub const R6: u8 = 6;
    /// Callee-saved.
    pub const R7: u8 = 7;
    /// Callee-saved.
    pub const R8: u8 = 8;
    /// Callee-saved.
    pub const R9: u8 = 9;
    /// Frame pointer (read-only): the stack is below it.
    pub const R10: u8 = 10;
}

/// A jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

enum Item {
    Insn(Insn),
    /// A jump to a label: the instruction with its offset to fill in.
    Jump(Insn, Label),
    Place(Label),
}

/// A small assembler with labels.
#[derive(Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    /// A new label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Places a label here.
    pub fn place(&mut self, l: Label) {
        self.items.push(Item::Place(l));
    }

    fn push(&mut self, i: Insn) {
        self.items.push(Item::Insn(i));
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: Size, dst: u8, src: u8, off: i16) {
        self.push(Insn { code: LDX | MEM | size as u8, dst, src, off, imm: 0 });
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: u8, imm: i32) {
        self.push(Insn { code: ALU64 | K | op as u8, dst, src: 0, off: 0, imm });
    }

    /// `dst = htobe16(dst)`: the low 16 bits byte-swapped on this
    /// little-endian host, the rest cleared (BPF_END, to big-endian).
    pub fn to_be16(&mut self, dst: u8) {
        const ALU: u8 = 0x04;
        const END: u8 = 0xd0;
        const TO_BE: u8 = 0x08;
        self.push(Insn { code: ALU | END | TO_BE, dst, src: 0, off: 0, imm: 16 });
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: u8, src: u8) {
        self.push(Insn { code: ALU64 | X | op as u8, dst, src, off: 0, imm: 0 });
    }

    /// `if dst cond imm goto l`.
    pub fn jmp_imm(&mut self, cond: Cond, dst: u8, imm: i32, l: Label) {
        self.items.push(Item::Jump(Insn { code: JMP | K | cond as u8, dst, src: 0, off: 0, imm }, l));
    }

    /// `if dst cond src goto l`.
    pub fn jmp_reg(&mut self, cond: Cond, dst: u8, src: u8, l: Label) {
        self.items.push(Item::Jump(Insn { code: JMP | X | cond as u8, dst, src, off: 0, imm: 0 }, l));
    }

    /// `if (u32)dst cond imm goto l`: compares the low 32 bits, so a
    /// 32-bit field loaded from a packet meets a constant with its top bit
    /// set (a 64-bit compare would sign-extend the constant).
    pub fn jmp32_imm(&mut self, cond: Cond, dst: u8, imm: u32, l: Label) {
        let insn = Insn { code: JMP32 | K | cond as u8, dst, src: 0, off: 0, imm: imm as i32 };
        self.items.push(Item::Jump(insn, l));
    }

    /// `goto l`.
    pub fn ja(&mut self, l: Label) {
        self.items.push(Item::Jump(Insn { code: JMP, dst: 0, src: 0, off: 0, imm: 0 }, l));
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: Size, dst: u8, off: i16, src: u8) {
        self.push(Insn { code: 0x03 | MEM | size as u8, dst, src, off, imm: 0 });
    }

    /// `*(u64 *)(dst + off) = src`.
    pub fn stx_dw(&mut self, dst: u8, off: i16, src: u8) {
        self.push(Insn { code: 0x03 | MEM | DW, dst, src, off, imm: 0 });
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub fn st_w(&mut self, dst: u8, off: i16, imm: i32) {
        self.push(Insn { code: 0x02 | MEM | Size::W as u8, dst, src: 0, off, imm });
    }

    /// `dst = *(u64 *)(src + off)`.
    pub fn ldx_dw(&mut self, dst: u8, src: u8, off: i16) {
        self.push(Insn { code: LDX | MEM | DW, dst, src, off, imm: 0 });
    }

    /// `dst = imm64` (two slots).
    pub fn ld_imm64(&mut self, dst: u8, v: u64) {
        self.push(Insn { code: LD | IMM | DW, dst, src: 0, off: 0, imm: v as u32 as i32 });
        self.push(Insn { code: 0, dst: 0, src: 0, off: 0, imm: (v >> 32) as u32 as i32 });
    }

    /// `dst = map(fd)`: a 64-bit immediate load of a map file descriptor
    /// (`BPF_PSEUDO_MAP_FD`), two slots.
    pub fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.push(Insn { code: LD | IMM | DW, dst, src: 1, off: 0, imm: fd });
        self.push(Insn { code: 0, dst: 0, src: 0, off: 0, imm: 0 });
    }

    /// `call helper`.
    pub fn call(&mut self, helper: i32) {
        self.push(Insn { code: JMP | 0x80, dst: 0, src: 0, off: 0, imm: helper });
    }

    /// `return value`: the program's verdict.
    pub fn exit_with(&mut self, value: i32) {
        self.alu_imm(Alu::Mov, reg::R0, value);
        self.exit();
    }

    /// `return r0`.
    pub fn exit(&mut self) {
        self.push(Insn { code: JMP | 0x90, dst: 0, src: 0, off: 0, imm: 0 });
    }

    /// Resolves labels into the final instructions.
    pub fn finish(self) -> Result<Vec<Insn>, String> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut n = 0usize;
        for it in &self.items {
            match it {
                Item::Place(l) => pos[l.0] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        for it in self.items {
            match it {
                Item::Place(_) => {}
                Item::Insn(i) => out.push(i),
                Item::Jump(mut i, l) => {
                    let target = pos[l.0];
                    if target == usize::MAX {
                        return Err("jump to a label that was never placed".into());
                    }
                    let rel = target as i64 - out.len() as i64 - 1;
                    i.off = i16::try_from(rel).map_err(|_| "jump out of range".to_string())?;
                    out.push(i);
                }
            }
        }
        Ok(out)
    }
}

/// The bytes of a program.
pub fn to_bytes(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.to_bytes()).collect()
}
