//! x86-64 instruction length decoding and `jmp rel32` trampolines.
//!
//! Run-pre matching walks compiled "pre" code and live kernel text one
//! instruction at a time, and the trampoline writer must prove that the bytes
//! it overwrites are whole instructions. Both only need to know where each
//! instruction ends, what kind of control transfer it is, and where its
//! displacement and immediate fields lie (those are the bytes relocations
//! touch), so that is all [`decode`] works out. It covers every encoding
//! 64-bit mode defines except 3DNow!, XOP and APX, and refuses, rather than
//! guesses, anything it cannot decode with certainty. VEX and EVEX opcodes
//! are decoded for length only: undefined ones are not rejected.
#![forbid(unsafe_code)]

use core::fmt;

/// The architectural limit on instruction length.
pub const MAX_INSN_LEN: usize = 15;

/// Why [`decode`] rejected its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside the instruction.
    Truncated,
    /// The instruction would be longer than [`MAX_INSN_LEN`] bytes.
    TooLong,
    /// The encoding is undefined (raises `#UD`) in 64-bit mode.
    Invalid,
    /// A defined encoding this decoder does not handle: 3DNow!, XOP, APX,
    /// and near branches with a `66` prefix, whose length Intel and AMD
    /// disagree on.
    Unsupported,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "instruction truncated",
            Self::TooLong => "instruction longer than 15 bytes",
            Self::Invalid => "instruction invalid in 64-bit mode",
            Self::Unsupported => "instruction encoding not supported",
        })
    }
}

/// What an instruction does to control flow, as far as patching cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `call rel32`.
    Call,
    /// `jmp rel8` or `jmp rel32`.
    Jmp,
    /// A conditional relative branch: `jcc`, `loop*`, `jrcxz`, `xbegin`.
    Jcc,
    /// Near or far return, with or without an immediate.
    Ret,
    /// `call` through a register or memory (`ff /2`, `ff /3`).
    IndirectCall,
    /// `jmp` through a register or memory (`ff /4`, `ff /5`).
    IndirectJmp,
    /// `int3` (`cc`).
    Int3,
    /// `ud2`, `ud1` or `ud0`.
    Ud,
    /// Any form of `nop`: `90`, `66 90`, `0f 1f /0` with any prefixes.
    Nop,
    /// Exactly `f3 0f 1e fa`.
    Endbr64,
    /// Everything else.
    Other,
}

/// How the opcode was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Legacy prefixes, optional REX, opcode bytes.
    Legacy,
    /// Two- or three-byte VEX prefix (`c5`, `c4`).
    Vex,
    /// Four-byte EVEX prefix (`62`).
    Evex,
}

/// The opcode map the opcode byte belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Map {
    /// The one-byte map.
    Primary,
    /// `0f xx`, or VEX/EVEX map 1.
    Map0F,
    /// `0f 38 xx`, or VEX/EVEX map 2.
    Map0F38,
    /// `0f 3a xx`, or VEX/EVEX map 3.
    Map0F3A,
    /// EVEX map 5 (AVX512-FP16).
    Map5,
    /// EVEX map 6 (AVX512-FP16).
    Map6,
}

/// An instruction's opcode, without prefixes or operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opcode {
    /// How the opcode was encoded.
    pub encoding: Encoding,
    /// The map `byte` is looked up in.
    pub map: Map,
    /// The final opcode byte.
    pub byte: u8,
}

/// The legacy prefixes an instruction carries, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefixes(u16);

impl Prefixes {
    /// `66`.
    pub const OPERAND_SIZE: u16 = 1 << 0;
    /// `67`.
    pub const ADDRESS_SIZE: u16 = 1 << 1;
    /// `f0`.
    pub const LOCK: u16 = 1 << 2;
    /// `f2`.
    pub const REPNE: u16 = 1 << 3;
    /// `f3`.
    pub const REP: u16 = 1 << 4;
    /// `2e`.
    pub const CS: u16 = 1 << 5;
    /// `3e`.
    pub const DS: u16 = 1 << 6;
    /// `26`.
    pub const ES: u16 = 1 << 7;
    /// `36`.
    pub const SS: u16 = 1 << 8;
    /// `64`.
    pub const FS: u16 = 1 << 9;
    /// `65`.
    pub const GS: u16 = 1 << 10;

    /// Whether every prefix in `flags` is present.
    pub const fn contains(self, flags: u16) -> bool {
        self.0 & flags == flags
    }

    /// The raw set of `Prefixes::*` flags.
    pub const fn bits(self) -> u16 {
        self.0
    }

    const fn of_byte(byte: u8) -> Option<u16> {
        Some(match byte {
            0x66 => Self::OPERAND_SIZE,
            0x67 => Self::ADDRESS_SIZE,
            0xf0 => Self::LOCK,
            0xf2 => Self::REPNE,
            0xf3 => Self::REP,
            0x2e => Self::CS,
            0x3e => Self::DS,
            0x26 => Self::ES,
            0x36 => Self::SS,
            0x64 => Self::FS,
            0x65 => Self::GS,
            _ => return None,
        })
    }
}

/// A displacement or immediate inside an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Offset of the first byte from the start of the instruction.
    pub offset: u8,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The little-endian value, sign-extended to 64 bits.
    pub value: i64,
}

impl Field {
    /// The byte range of the field within the instruction.
    pub fn range(&self) -> core::ops::Range<usize> {
        let start = usize::from(self.offset);
        start..start.wrapping_add(usize::from(self.size))
    }
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Total length in bytes, 1 to [`MAX_INSN_LEN`].
    pub len: u8,
    /// Control-flow classification.
    pub kind: Kind,
    /// The opcode proper.
    pub opcode: Opcode,
    /// Legacy prefixes present.
    pub prefixes: Prefixes,
    /// The REX byte in effect, 0 if none.
    pub rex: u8,
    /// Offset of the first byte after the legacy and REX prefixes: the `0f`
    /// escape, VEX/EVEX prefix or one-byte opcode.
    pub opcode_offset: u8,
    /// The ModRM byte, if the opcode has one.
    pub modrm: Option<u8>,
    /// Memory displacement: from ModRM/SIB, or the absolute `moffs` of
    /// `mov` `a0`..`a3`.
    pub disp: Option<Field>,
    /// Whether `disp` is relative to the next instruction (ModRM `00 xxx 101`).
    pub rip_relative: bool,
    /// First immediate operand.
    pub imm: Option<Field>,
    /// Second immediate: the `ib` of `enter iw, ib`, `extrq` and `insertq`.
    pub imm2: Option<Field>,
    /// Displacement of a relative branch.
    pub branch: Option<Field>,
}

impl Insn {
    /// `len` as a `usize`.
    pub fn size(&self) -> usize {
        usize::from(self.len)
    }

    /// Where a relative branch at `insn_addr` goes.
    pub fn branch_target(&self, insn_addr: u64) -> Option<u64> {
        let disp = self.branch?.value;
        Some(self.next_addr(insn_addr).wrapping_add(disp as u64))
    }

    /// The RIP-relative displacement field, if the operand is RIP-relative.
    pub fn rip_disp(&self) -> Option<Field> {
        self.disp.filter(|_| self.rip_relative)
    }

    /// The address a RIP-relative memory operand at `insn_addr` refers to.
    pub fn rip_target(&self, insn_addr: u64) -> Option<u64> {
        let disp = self.rip_disp()?.value;
        let target = self.next_addr(insn_addr).wrapping_add(disp as u64);
        // A 67 prefix makes it EIP-relative.
        if self.prefixes.contains(Prefixes::ADDRESS_SIZE) {
            Some(target & 0xffff_ffff)
        } else {
            Some(target)
        }
    }

    fn next_addr(&self, insn_addr: u64) -> u64 {
        insn_addr.wrapping_add(u64::from(self.len))
    }
}

/// Reads bytes of one instruction, enforcing the 15-byte limit before the
/// end of the input so the error does not depend on how much was passed.
struct Cursor<'a> {
    code: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        let byte = *self.code.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos = self.pos.wrapping_add(1);
        Ok(byte)
    }

    fn offset(&self) -> u8 {
        // pos never exceeds MAX_INSN_LEN.
        self.pos as u8
    }

    fn field(&mut self, size: u8) -> Result<Field, DecodeError> {
        let offset = self.offset();
        let mut raw = [0u8; 8];
        for slot in raw.iter_mut().take(usize::from(size)) {
            *slot = self.byte()?;
        }
        let raw = u64::from_le_bytes(raw);
        let value = match size {
            1 => i64::from(raw as u8 as i8),
            2 => i64::from(raw as u16 as i16),
            4 => i64::from(raw as u32 as i32),
            _ => raw as i64,
        };
        Ok(Field {
            offset,
            size,
            value,
        })
    }
}

/// Operand bytes that follow the opcode (and ModRM operand, if any).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Imm {
    None,
    /// `ib`.
    Byte,
    /// `iw`.
    Word,
    /// `iz`: 2 bytes with a 66 prefix, else 4.
    WordOrDword,
    /// `iv` of `mov r, imm`: 8 bytes with REX.W.
    Full,
    /// `iw, ib` of `enter`.
    Enter,
    /// `ib, ib` of `extrq`/`insertq`.
    TwoBytes,
    /// `moffs` of `mov` `a0`..`a3`: an 8-byte address (4 with 67).
    Moffs,
    /// `rel8`.
    Rel8,
    /// `rel32`.
    Rel32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ModrmUse {
    None,
    /// An ordinary ModRM byte, possibly followed by SIB and displacement.
    Operand,
    /// `mov` to/from control and debug registers: the mod bits are ignored
    /// and no SIB or displacement follows.
    RegistersOnly,
}

#[derive(Clone, Copy)]
struct Form {
    modrm: ModrmUse,
    imm: Imm,
}

const fn plain(imm: Imm) -> Form {
    Form {
        modrm: ModrmUse::None,
        imm,
    }
}

const fn with_modrm(imm: Imm) -> Form {
    Form {
        modrm: ModrmUse::Operand,
        imm,
    }
}

/// The one-byte map, for bytes that are not prefixes or escapes.
fn primary_form(op: u8) -> Result<Form, DecodeError> {
    Ok(match op {
        // The ALU block: `op r/m, r`, `op r, r/m` and `op al/eax, imm`;
        // x6/x7 (push/pop segment, BCD) are invalid in 64-bit mode.
        0x00..=0x3f => match op & 7 {
            0..=3 => with_modrm(Imm::None),
            4 => plain(Imm::Byte),
            5 => plain(Imm::WordOrDword),
            _ => return Err(DecodeError::Invalid),
        },
        0x50..=0x5f => plain(Imm::None),
        0x63 => with_modrm(Imm::None),
        0x68 => plain(Imm::WordOrDword),
        0x69 => with_modrm(Imm::WordOrDword),
        0x6a => plain(Imm::Byte),
        0x6b => with_modrm(Imm::Byte),
        0x6c..=0x6f => plain(Imm::None),
        0x70..=0x7f => plain(Imm::Rel8),
        0x80 | 0x83 => with_modrm(Imm::Byte),
        0x81 => with_modrm(Imm::WordOrDword),
        0x84..=0x8f => with_modrm(Imm::None),
        0x90..=0x99 | 0x9b..=0x9f => plain(Imm::None),
        0xa0..=0xa3 => plain(Imm::Moffs),
        0xa4..=0xa7 | 0xaa..=0xaf => plain(Imm::None),
        0xa8 => plain(Imm::Byte),
        0xa9 => plain(Imm::WordOrDword),
        0xb0..=0xb7 => plain(Imm::Byte),
        0xb8..=0xbf => plain(Imm::Full),
        0xc0 | 0xc1 | 0xc6 => with_modrm(Imm::Byte),
        0xc7 => with_modrm(Imm::WordOrDword),
        0xc2 | 0xca => plain(Imm::Word),
        0xc3 | 0xc9 | 0xcb | 0xcc | 0xcf => plain(Imm::None),
        0xc8 => plain(Imm::Enter),
        0xcd => plain(Imm::Byte),
        0xd0..=0xd3 | 0xd8..=0xdf => with_modrm(Imm::None),
        0xd7 => plain(Imm::None),
        0xe0..=0xe3 | 0xeb => plain(Imm::Rel8),
        0xe4..=0xe7 => plain(Imm::Byte),
        0xe8 | 0xe9 => plain(Imm::Rel32),
        0xec..=0xef | 0xf1 | 0xf4 | 0xf5 | 0xf8..=0xfd => plain(Imm::None),
        // Group 3: only test (/0, /1) has an immediate, fixed up later.
        0xf6 | 0xf7 | 0xfe | 0xff => with_modrm(Imm::None),
        // APX's REX2 prefix where the CPU has APX, aad where it has not.
        0xd5 => return Err(DecodeError::Unsupported),
        // 60-62 (pusha, popa, bound), 82, 9a (far call), ce (into),
        // d4 (aam), d6 (salc), ea (far jmp).
        _ => return Err(DecodeError::Invalid),
    })
}

/// The two-byte `0f` map of legacy encodings.
fn map0f_form(op: u8, prefixes: Prefixes) -> Result<Form, DecodeError> {
    Ok(match op {
        0x00..=0x03 | 0x0d | 0x10..=0x1f => with_modrm(Imm::None),
        0x05..=0x09 | 0x0b | 0x30..=0x35 | 0x37 | 0x77 => plain(Imm::None),
        // femms and 3DNow!.
        0x0e | 0x0f => return Err(DecodeError::Unsupported),
        0x20..=0x23 => Form {
            modrm: ModrmUse::RegistersOnly,
            imm: Imm::None,
        },
        0x28..=0x2f | 0x40..=0x6f | 0x74..=0x76 | 0x79 | 0x7c..=0x7f => with_modrm(Imm::None),
        0x70..=0x73 => with_modrm(Imm::Byte),
        // AMD SSE4a extrq/insertq carry two immediates; vmread has none.
        0x78 if prefixes.contains(Prefixes::OPERAND_SIZE) || prefixes.contains(Prefixes::REPNE) => {
            with_modrm(Imm::TwoBytes)
        }
        0x78 => with_modrm(Imm::None),
        0x80..=0x8f => plain(Imm::Rel32),
        0x90..=0x9f => with_modrm(Imm::None),
        0xa0..=0xa2 | 0xa8..=0xaa | 0xc8..=0xcf => plain(Imm::None),
        0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => with_modrm(Imm::Byte),
        // a6/a7: VIA PadLock, register forms only (checked later).
        0xa3 | 0xa5..=0xa7 | 0xab | 0xad..=0xb7 | 0xb9 | 0xbb..=0xc1 | 0xc3 | 0xc7 => {
            with_modrm(Imm::None)
        }
        // popcnt; without f3 it is IA-64 jmpe.
        0xb8 if prefixes.contains(Prefixes::REP) => with_modrm(Imm::None),
        0xd0..=0xff => with_modrm(Imm::None),
        // 04, 0a, 0c, 24-27, 36, 39, 3b-3f, 7a, 7b, b8 without f3.
        _ => return Err(DecodeError::Invalid),
    })
}

/// VEX and EVEX opcodes: all take ModRM except vzeroupper/vzeroall; the
/// immediates follow the legacy `0f` map, and every `0f 3a` opcode has one.
fn vex_form(map: Map, op: u8) -> Form {
    match map {
        Map::Map0F if op == 0x77 => plain(Imm::None),
        Map::Map0F if matches!(op, 0x70..=0x73 | 0xc2 | 0xc4..=0xc6) => with_modrm(Imm::Byte),
        Map::Map0F3A => with_modrm(Imm::Byte),
        _ => with_modrm(Imm::None),
    }
}

/// Decodes the instruction at the start of `code`.
pub fn decode(code: &[u8]) -> Result<Insn, DecodeError> {
    let mut cur = Cursor { code, pos: 0 };
    let mut prefixes = Prefixes::default();
    let mut rex = 0u8;
    let first = loop {
        let byte = cur.byte()?;
        if let Some(flag) = Prefixes::of_byte(byte) {
            prefixes.0 |= flag;
            // A REX byte counts only right before the opcode.
            rex = 0;
        } else if byte & 0xf0 == 0x40 {
            rex = byte;
        } else {
            break byte;
        }
    };
    let opcode_offset = cur.offset().wrapping_sub(1);

    let (opcode, form) = match first {
        0x0f => {
            let second = cur.byte()?;
            match second {
                0x38 => (legacy(Map::Map0F38, cur.byte()?), with_modrm(Imm::None)),
                0x3a => (legacy(Map::Map0F3A, cur.byte()?), with_modrm(Imm::Byte)),
                _ => (legacy(Map::Map0F, second), map0f_form(second, prefixes)?),
            }
        }
        // In 64-bit mode these are always VEX/EVEX, never les/lds/bound.
        0xc4 | 0xc5 | 0x62 => {
            // VEX and EVEX encode these themselves; #UD if also present.
            let clashing =
                Prefixes::OPERAND_SIZE | Prefixes::LOCK | Prefixes::REP | Prefixes::REPNE;
            if rex != 0 || prefixes.0 & clashing != 0 {
                return Err(DecodeError::Invalid);
            }
            let opcode = vex_opcode(&mut cur, first)?;
            (opcode, vex_form(opcode.map, opcode.byte))
        }
        _ => (legacy(Map::Primary, first), primary_form(first)?),
    };

    let mut insn = Insn {
        len: 0,
        kind: Kind::Other,
        opcode,
        prefixes,
        rex,
        opcode_offset,
        modrm: None,
        disp: None,
        rip_relative: false,
        imm: None,
        imm2: None,
        branch: None,
    };

    let mut imm = form.imm;
    if form.modrm != ModrmUse::None {
        let modrm = cur.byte()?;
        insn.modrm = Some(modrm);
        imm = check_group(opcode, modrm, imm)?;
        if form.modrm == ModrmUse::Operand {
            decode_memory_operand(&mut cur, modrm, &mut insn)?;
        }
    }
    decode_immediates(&mut cur, imm, &mut insn)?;

    insn.len = cur.offset();
    insn.kind = classify(&insn, code);
    Ok(insn)
}

const fn legacy(map: Map, byte: u8) -> Opcode {
    Opcode {
        encoding: Encoding::Legacy,
        map,
        byte,
    }
}

/// Parses a VEX (`c4`, `c5`) or EVEX (`62`) prefix and the opcode after it.
fn vex_opcode(cur: &mut Cursor<'_>, first: u8) -> Result<Opcode, DecodeError> {
    let (encoding, map) = match first {
        0xc5 => {
            cur.byte()?;
            (Encoding::Vex, Map::Map0F)
        }
        0xc4 => {
            let map = match cur.byte()? & 0x1f {
                1 => Map::Map0F,
                2 => Map::Map0F38,
                3 => Map::Map0F3A,
                0 => return Err(DecodeError::Invalid),
                // Newer maps (e.g. 7 for urdmsr) have their own immediates.
                _ => return Err(DecodeError::Unsupported),
            };
            cur.byte()?;
            (Encoding::Vex, map)
        }
        _ => {
            let p0 = cur.byte()?;
            // Bit 3 is APX's B4; map 4 is APX, map 7 has imm32 forms.
            if p0 & 0x08 != 0 {
                return Err(DecodeError::Unsupported);
            }
            let map = match p0 & 0x07 {
                1 => Map::Map0F,
                2 => Map::Map0F38,
                3 => Map::Map0F3A,
                5 => Map::Map5,
                6 => Map::Map6,
                0 => return Err(DecodeError::Invalid),
                _ => return Err(DecodeError::Unsupported),
            };
            // P1 bit 2 is fixed to 1 except as APX's X4.
            if cur.byte()? & 0x04 == 0 {
                return Err(DecodeError::Unsupported);
            }
            cur.byte()?;
            (Encoding::Evex, map)
        }
    };
    Ok(Opcode {
        encoding,
        map,
        byte: cur.byte()?,
    })
}

/// Checks the ModRM-dependent validity of group opcodes and returns the
/// immediate that `modrm` selects.
fn check_group(opcode: Opcode, modrm: u8, imm: Imm) -> Result<Imm, DecodeError> {
    if opcode.encoding != Encoding::Legacy {
        return Ok(imm);
    }
    let register_form = modrm >> 6 == 3;
    let reg = (modrm >> 3) & 7;
    let invalid = match (opcode.map, opcode.byte) {
        (Map::Primary, 0x8d) => register_form,
        (Map::Primary, 0x8f) if reg != 0 => {
            // XOP uses map select 8 and up where pop has its ModRM.
            return Err(if modrm & 0x1f >= 8 {
                DecodeError::Unsupported
            } else {
                DecodeError::Invalid
            });
        }
        // xbegin rel32; c6 f8 (xabort ib) keeps its immediate.
        (Map::Primary, 0xc7) if modrm == 0xf8 => return Ok(Imm::Rel32),
        (Map::Primary, 0xc6 | 0xc7) => reg != 0 && modrm != 0xf8,
        (Map::Primary, 0xf6) if reg < 2 => return Ok(Imm::Byte),
        (Map::Primary, 0xf7) if reg < 2 => return Ok(Imm::WordOrDword),
        (Map::Primary, 0xfe) => reg >= 2,
        // Far call and far jmp need a memory operand; /7 is undefined.
        (Map::Primary, 0xff) => reg == 7 || (register_form && (reg == 3 || reg == 5)),
        (Map::Map0F, 0x00) => reg >= 6,
        (Map::Map0F, 0xa6 | 0xa7) => !register_form,
        (Map::Map0F, 0xba) => reg < 4,
        // MMX/SSE shifts by immediate: register operand, /2, /4, /6 (and
        // /3, /7 for 0f 73).
        (Map::Map0F, 0x71 | 0x72) => !register_form || !matches!(reg, 2 | 4 | 6),
        (Map::Map0F, 0x73) => !register_form || !matches!(reg, 2 | 3 | 6 | 7),
        _ => false,
    };
    if invalid {
        Err(DecodeError::Invalid)
    } else {
        Ok(imm)
    }
}

/// Reads the SIB byte and displacement a memory ModRM operand brings.
fn decode_memory_operand(
    cur: &mut Cursor<'_>,
    modrm: u8,
    insn: &mut Insn,
) -> Result<(), DecodeError> {
    let mode = modrm >> 6;
    let rm = modrm & 7;
    let mut disp_size = match mode {
        0 => 0,
        1 => 1,
        2 => 4,
        _ => return Ok(()),
    };
    if rm == 4 {
        let sib = cur.byte()?;
        // Base 101 with mod 00 means "no base, disp32".
        if mode == 0 && sib & 7 == 5 {
            disp_size = 4;
        }
    } else if mode == 0 && rm == 5 {
        disp_size = 4;
        insn.rip_relative = true;
    }
    if disp_size != 0 {
        insn.disp = Some(cur.field(disp_size)?);
    }
    Ok(())
}

fn decode_immediates(cur: &mut Cursor<'_>, imm: Imm, insn: &mut Insn) -> Result<(), DecodeError> {
    let prefixes = insn.prefixes;
    let rex_w = insn.rex & 0x08 != 0;
    let operand_16 = prefixes.contains(Prefixes::OPERAND_SIZE) && !rex_w;
    let size = match imm {
        Imm::None => return Ok(()),
        Imm::Byte | Imm::TwoBytes => 1,
        Imm::Word | Imm::Enter => 2,
        Imm::WordOrDword if operand_16 => 2,
        Imm::WordOrDword => 4,
        Imm::Full if rex_w => 8,
        Imm::Full if operand_16 => 2,
        Imm::Full => 4,
        Imm::Moffs => {
            let size = if prefixes.contains(Prefixes::ADDRESS_SIZE) {
                4
            } else {
                8
            };
            insn.disp = Some(cur.field(size)?);
            return Ok(());
        }
        Imm::Rel8 | Imm::Rel32 => {
            // 66 truncates the target to 16 bits on AMD only.
            if prefixes.contains(Prefixes::OPERAND_SIZE) {
                return Err(DecodeError::Unsupported);
            }
            let size = if imm == Imm::Rel8 { 1 } else { 4 };
            insn.branch = Some(cur.field(size)?);
            return Ok(());
        }
    };
    insn.imm = Some(cur.field(size)?);
    if matches!(imm, Imm::Enter | Imm::TwoBytes) {
        insn.imm2 = Some(cur.field(1)?);
    }
    Ok(())
}

fn classify(insn: &Insn, code: &[u8]) -> Kind {
    let opcode = insn.opcode;
    if opcode.encoding != Encoding::Legacy {
        return Kind::Other;
    }
    let prefixes = insn.prefixes;
    let reg = insn.modrm.map(|modrm| (modrm >> 3) & 7);
    match (opcode.map, opcode.byte) {
        (Map::Primary, 0xe8) => Kind::Call,
        (Map::Primary, 0xe9 | 0xeb) => Kind::Jmp,
        (Map::Primary, 0x70..=0x7f | 0xe0..=0xe3) | (Map::Map0F, 0x80..=0x8f) => Kind::Jcc,
        (Map::Primary, 0xc7) if insn.branch.is_some() => Kind::Jcc,
        (Map::Primary, 0xc2 | 0xc3 | 0xca | 0xcb) => Kind::Ret,
        (Map::Primary, 0xff) => match reg {
            Some(2 | 3) => Kind::IndirectCall,
            Some(4 | 5) => Kind::IndirectJmp,
            _ => Kind::Other,
        },
        (Map::Primary, 0xcc) => Kind::Int3,
        (Map::Map0F, 0x0b | 0xb9 | 0xff) => Kind::Ud,
        // With REX.B it is xchg with r8; f3 makes it pause.
        (Map::Primary, 0x90)
            if insn.rex & 0x01 == 0 && prefixes.0 & (Prefixes::LOCK | Prefixes::REP) == 0 =>
        {
            Kind::Nop
        }
        (Map::Map0F, 0x1f) if reg == Some(0) && !prefixes.contains(Prefixes::LOCK) => Kind::Nop,
        // Only the exact encoding is an end-branch marker.
        (Map::Map0F, 0x1e) if code.get(..4) == Some(&[0xf3, 0x0f, 0x1e, 0xfa][..]) => Kind::Endbr64,
        _ => Kind::Other,
    }
}

/// Decodes `code` instruction by instruction, yielding each instruction's
/// offset; stops after the first error.
pub fn instructions(code: &[u8]) -> Instructions<'_> {
    Instructions {
        code,
        offset: 0,
        failed: false,
    }
}

/// Iterator returned by [`instructions`].
#[derive(Clone, Debug)]
pub struct Instructions<'a> {
    code: &'a [u8],
    offset: usize,
    failed: bool,
}

impl Iterator for Instructions<'_> {
    type Item = Result<(usize, Insn), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self
            .code
            .get(self.offset..)
            .filter(|rest| !rest.is_empty())?;
        match decode(rest) {
            Ok(insn) => {
                let offset = self.offset;
                self.offset = offset.wrapping_add(insn.size());
                Some(Ok((offset, insn)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

/// The offset of the first instruction of `code`, placed at `base`, that
/// refers to an address in `targets`: a relative branch, a RIP-relative
/// operand, or an absolute address in a displacement or immediate (a
/// sign-extended 32-bit field or a 64-bit one). Undecodable code is an
/// error, never "no reference".
pub fn find_reference(
    code: &[u8],
    base: u64,
    targets: core::ops::Range<u64>,
) -> Result<Option<usize>, DecodeError> {
    for item in instructions(code) {
        let (offset, insn) = item?;
        let at = base.wrapping_add(offset as u64);
        let absolute = |f: Option<Field>| f.filter(|f| f.size >= 4).map(|f| f.value as u64);
        let refs = [
            insn.branch_target(at),
            insn.rip_target(at),
            if insn.rip_relative {
                None
            } else {
                absolute(insn.disp)
            },
            absolute(insn.imm),
        ];
        if refs.iter().flatten().any(|a| targets.contains(a)) {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// Length of the `jmp rel32` trampoline.
pub const JMP_REL32_LEN: usize = 5;
/// Opcode of `jmp rel32`.
pub const JMP_REL32_OPCODE: u8 = 0xe9;

/// Why [`encode_jmp_rel32`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The target is more than ±2 GiB from the end of the jump.
    OutOfRange,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfRange => "jump target out of rel32 range",
        })
    }
}

/// `jmp rel32` placed at `from` and landing on `to`.
pub fn encode_jmp_rel32(from: u64, to: u64) -> Result<[u8; JMP_REL32_LEN], EncodeError> {
    let next = from.wrapping_add(JMP_REL32_LEN as u64);
    // The CPU adds modulo 2^64, so the wrapped difference is exact.
    let delta = to.wrapping_sub(next) as i64;
    let rel = i32::try_from(delta).map_err(|_| EncodeError::OutOfRange)?;
    let [b0, b1, b2, b3] = rel.to_le_bytes();
    Ok([JMP_REL32_OPCODE, b0, b1, b2, b3])
}

/// The target of the `jmp rel32` that `bytes` start with, if they do,
/// when placed at `at`.
pub fn decode_jmp_rel32(bytes: &[u8], at: u64) -> Option<u64> {
    match bytes.get(..JMP_REL32_LEN)? {
        &[JMP_REL32_OPCODE, b0, b1, b2, b3] => {
            let rel = i32::from_le_bytes([b0, b1, b2, b3]);
            Some(
                at.wrapping_add(JMP_REL32_LEN as u64)
                    .wrapping_add(i64::from(rel) as u64),
            )
        }
        _ => None,
    }
}

// The kernel's `x86_nops` (BYTES_NOP1..11 of arch/x86/include/asm/nops.h, 64-bit).
/// `nop`.
pub const NOP1: [u8; 1] = [0x90];
/// `osp nop` (`xchg %ax,%ax`).
pub const NOP2: [u8; 2] = [0x66, 0x90];
/// `nopl (%rax)`.
pub const NOP3: [u8; 3] = [0x0f, 0x1f, 0x00];
/// `nopl 0x0(%rax)`.
pub const NOP4: [u8; 4] = [0x0f, 0x1f, 0x40, 0x00];
/// `nopl 0x0(%rax,%rax,1)`.
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `nopw 0x0(%rax,%rax,1)`.
pub const NOP6: [u8; 6] = [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `nopl 0x0(%rax)` with disp32.
pub const NOP7: [u8; 7] = [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00];
/// `nopl 0x0(%rax,%rax,1)` with disp32.
pub const NOP8: [u8; 8] = [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00];
/// `cs nopl 0x0(%rax,%rax,1)`.
pub const NOP9: [u8; 9] = [0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00];
/// `cs nopw 0x0(%rax,%rax,1)`.
pub const NOP10: [u8; 10] = [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00];
/// `data16 cs nopw 0x0(%rax,%rax,1)`.
pub const NOP11: [u8; 11] = [
    0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00,
];
/// Longest single-instruction NOP the kernel uses (`ASM_NOP_MAX`).
pub const NOP_MAX_LEN: usize = 11;

/// The kernel's canonical single-instruction NOP of `len` bytes, 1 to
/// [`NOP_MAX_LEN`].
pub fn nop(len: usize) -> Option<&'static [u8]> {
    Some(match len {
        1 => &NOP1,
        2 => &NOP2,
        3 => &NOP3,
        4 => &NOP4,
        5 => &NOP5,
        6 => &NOP6,
        7 => &NOP7,
        8 => &NOP8,
        9 => &NOP9,
        10 => &NOP10,
        11 => &NOP11,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(code: &[u8]) -> Insn {
        decode(code).unwrap_or_else(|err| panic!("{code:02x?}: {err}"))
    }

    fn field(offset: u8, size: u8, value: i64) -> Option<Field> {
        Some(Field {
            offset,
            size,
            value,
        })
    }

    #[test]
    fn call_rel32_reports_its_displacement_and_target() {
        let insn = ok(&[0xe8, 0x10, 0x00, 0x00, 0x00]);
        assert_eq!((insn.len, insn.kind), (5, Kind::Call));
        assert_eq!(insn.branch, field(1, 4, 0x10));
        assert_eq!(insn.branch_target(0x1000), Some(0x1015));
        assert_eq!(insn.imm, None);
    }

    #[test]
    fn cs_prefixed_call_to_a_retpoline_thunk_is_a_call() {
        let insn = ok(&[0x2e, 0xe8, 0xfb, 0xff, 0xff, 0xff]);
        assert_eq!((insn.len, insn.kind), (6, Kind::Call));
        assert!(insn.prefixes.contains(Prefixes::CS));
        assert_eq!(insn.branch, field(2, 4, -5));
        assert_eq!(insn.branch_target(0x1000), Some(0x1001));
    }

    #[test]
    fn jumps_report_their_targets_backwards_and_forwards() {
        let rel32 = ok(&[0xe9, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!((rel32.len, rel32.kind), (5, Kind::Jmp));
        assert_eq!(rel32.branch_target(0x2000), Some(0x2105));
        let rel8 = ok(&[0xeb, 0xfe]);
        assert_eq!((rel8.len, rel8.kind), (2, Kind::Jmp));
        assert_eq!(rel8.branch, field(1, 1, -2));
        assert_eq!(rel8.branch_target(0x2000), Some(0x2000));
    }

    #[test]
    fn conditional_branches_of_every_form_are_jcc() {
        for (code, len, target) in [
            (&[0x74, 0x05][..], 2, 0x1007),
            (&[0x0f, 0x85, 0xfa, 0xff, 0xff, 0xff][..], 6, 0x1000),
            (&[0xe2, 0x10][..], 2, 0x1012),             // loop
            (&[0xe3, 0x00][..], 2, 0x1002),             // jrcxz
            (&[0x67, 0xe3, 0x00][..], 3, 0x1003),       // jecxz
            (&[0x3e, 0x74, 0x00][..], 3, 0x1003),       // branch hint
            (&[0xc7, 0xf8, 0, 0, 0, 0][..], 6, 0x1006), // xbegin
        ] {
            let insn = ok(code);
            assert_eq!((insn.len, insn.kind), (len, Kind::Jcc), "{code:02x?}");
            assert_eq!(insn.branch_target(0x1000), Some(target), "{code:02x?}");
        }
    }

    #[test]
    fn branch_targets_wrap_around_the_address_space() {
        let back = ok(&[0xe9, 0xf0, 0xff, 0xff, 0xff]);
        assert_eq!(back.branch_target(0), Some(u64::MAX - 10));
        let forward = ok(&[0xeb, 0x7f]);
        assert_eq!(forward.branch_target(u64::MAX), Some(0x80));
    }

    #[test]
    fn near_branches_with_operand_size_prefix_are_refused() {
        // Intel ignores 66 here, AMD truncates to 16 bits: no single answer.
        for code in [
            &[0x66, 0xe8, 0, 0, 0, 0][..],
            &[0x66, 0xe9, 0, 0][..],
            &[0x66, 0xeb, 0][..],
            &[0x66, 0x74, 0][..],
            &[0x66, 0x0f, 0x84, 0, 0, 0, 0][..],
        ] {
            assert_eq!(decode(code), Err(DecodeError::Unsupported), "{code:02x?}");
        }
    }

    #[test]
    fn returns_are_ret() {
        for (code, len) in [
            (&[0xc3][..], 1),
            (&[0xf3, 0xc3][..], 2),
            (&[0xc2, 0x08, 0x00][..], 3),
            (&[0xcb][..], 1),
            (&[0x48, 0xcb][..], 2),
        ] {
            let insn = ok(code);
            assert_eq!((insn.len, insn.kind), (len, Kind::Ret), "{code:02x?}");
        }
        assert_eq!(ok(&[0xc2, 0x08, 0x00]).imm, field(1, 2, 8));
    }

    #[test]
    fn ret_followed_by_int3_padding_decodes_one_by_one() {
        let kinds: Vec<(usize, Kind)> = instructions(&[0xc3, 0xcc, 0xcc, 0xcc, 0xcc])
            .map(|r| r.map(|(offset, insn)| (offset, insn.kind)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            kinds,
            [
                (0, Kind::Ret),
                (1, Kind::Int3),
                (2, Kind::Int3),
                (3, Kind::Int3),
                (4, Kind::Int3)
            ]
        );
    }

    #[test]
    fn instruction_iteration_stops_after_an_error() {
        let results: Vec<_> = instructions(&[0x90, 0x06, 0x90]).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert_eq!(results[1], Err(DecodeError::Invalid));
        assert_eq!(instructions(&[]).count(), 0);
    }

    #[test]
    fn indirect_calls_and_jumps_through_registers() {
        for (code, kind) in [
            (&[0xff, 0xd0][..], Kind::IndirectCall),       // call *%rax
            (&[0x41, 0xff, 0xd3][..], Kind::IndirectCall), // call *%r11
            (&[0xff, 0xe0][..], Kind::IndirectJmp),        // jmp *%rax
            (&[0x41, 0xff, 0xe3][..], Kind::IndirectJmp),  // jmp *%r11
            (&[0x3e, 0xff, 0xe0][..], Kind::IndirectJmp),  // notrack jmp *%rax
        ] {
            let insn = ok(code);
            assert_eq!((insn.size(), insn.kind), (code.len(), kind), "{code:02x?}");
            assert_eq!(insn.branch, None);
        }
        let kinds: Vec<Kind> = instructions(&[0xff, 0xe0, 0xcc])
            .map(|r| r.unwrap().1.kind)
            .collect();
        assert_eq!(kinds, [Kind::IndirectJmp, Kind::Int3]);
    }

    #[test]
    fn indirect_call_through_pv_ops_is_rip_relative() {
        let insn = ok(&[0xff, 0x15, 0x10, 0x20, 0x30, 0x00]);
        assert_eq!((insn.len, insn.kind), (6, Kind::IndirectCall));
        assert!(insn.rip_relative);
        assert_eq!(insn.rip_disp(), field(2, 4, 0x30_2010));
        assert_eq!(insn.rip_target(0x1000), Some(0x30_3016));
        let jmp = ok(&[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!((jmp.len, jmp.kind), (6, Kind::IndirectJmp));
        // Far forms need memory; /7 is undefined.
        assert_eq!(ok(&[0xff, 0x18]).kind, Kind::IndirectCall);
        assert_eq!(ok(&[0xff, 0x28]).kind, Kind::IndirectJmp);
        assert_eq!(decode(&[0xff, 0xd8]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[0xff, 0xe8]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[0xff, 0x38]), Err(DecodeError::Invalid));
    }

    #[test]
    fn gs_relative_rip_load_has_prefix_rex_and_rip_disp() {
        let insn = ok(&[0x65, 0x48, 0x8b, 0x05, 0xf8, 0xff, 0xff, 0xff]);
        assert_eq!((insn.len, insn.kind), (8, Kind::Other));
        assert!(insn.prefixes.contains(Prefixes::GS));
        assert_eq!(insn.rex, 0x48);
        assert_eq!(insn.opcode_offset, 2);
        assert_eq!(insn.opcode, legacy(Map::Primary, 0x8b));
        assert_eq!(insn.modrm, Some(0x05));
        assert_eq!(insn.rip_disp(), field(4, 4, -8));
        assert_eq!(insn.rip_target(0x1000), Some(0x1000));
    }

    #[test]
    fn address_size_prefix_makes_rip_relative_targets_32_bit() {
        let insn = ok(&[0x67, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(insn.rip_target(0xffff_ffff_8100_0000), Some(0x8100_0007));
    }

    #[test]
    fn sib_and_displacement_forms_have_the_right_length() {
        for (code, len, disp) in [
            (&[0x8b, 0x04, 0x24][..], 3, None),                 // (%rsp)
            (&[0x8b, 0x44, 0x24, 0x08][..], 4, field(3, 1, 8)), // 8(%rsp)
            (&[0x8b, 0x84, 0x24, 0, 1, 0, 0][..], 7, field(3, 4, 0x100)), // 0x100(%rsp)
            (&[0x8b, 0x04, 0x25, 0x10, 0, 0, 0][..], 7, field(3, 4, 0x10)), // abs32, no base
            (&[0x8b, 0x45, 0x00][..], 3, field(2, 1, 0)),       // 0(%rbp)
            (&[0x41, 0x8b, 0x45, 0xf0][..], 4, field(3, 1, -16)), // -16(%r13)
            (&[0x42, 0x8b, 0x04, 0xe5, 0, 0, 0, 0][..], 8, field(4, 4, 0)), // (,%r12,8)
            (
                &[0x8b, 0x80, 0x78, 0x56, 0x34, 0x12][..],
                6,
                field(2, 4, 0x12345678),
            ),
            (&[0x8b, 0xc0][..], 2, None), // register
        ] {
            let insn = ok(code);
            assert_eq!(insn.len, len, "{code:02x?}");
            assert_eq!(insn.disp, disp, "{code:02x?}");
            assert!(!insn.rip_relative, "{code:02x?}");
        }
    }

    #[test]
    fn immediates_follow_operand_size() {
        for (code, len, imm) in [
            (
                &[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 0x88][..],
                10,
                field(2, 8, 0x8807060504030201u64 as i64),
            ),
            (&[0xb8, 1, 0, 0, 0][..], 5, field(1, 4, 1)),
            (&[0x66, 0xb8, 1, 0][..], 4, field(2, 2, 1)),
            (&[0x41, 0xb0, 0xff][..], 3, field(2, 1, -1)),
            (
                &[0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff][..],
                7,
                field(3, 4, -1),
            ),
            (&[0x66, 0xc7, 0x07, 0x34, 0x12][..], 5, field(3, 2, 0x1234)),
            // REX.W beats 66 for iz.
            (&[0x66, 0x48, 0x05, 1, 0, 0, 0][..], 7, field(3, 4, 1)),
            (&[0x48, 0x83, 0xc4, 0x10][..], 4, field(3, 1, 0x10)),
            (&[0x81, 0xc1, 0, 0, 1, 0][..], 6, field(2, 4, 0x10000)),
            (&[0x69, 0xc0, 0x10, 0, 0, 0][..], 6, field(2, 4, 0x10)),
            (&[0x6b, 0xc0, 0x08][..], 3, field(2, 1, 8)),
            (&[0x68, 0, 0, 0, 0][..], 5, field(1, 4, 0)),
            (&[0x6a, 0x01][..], 2, field(1, 1, 1)),
            (&[0xa8, 0x01][..], 2, field(1, 1, 1)),
            (&[0x66, 0xa9, 0x01, 0x00][..], 4, field(2, 2, 1)),
            (&[0xc1, 0xe0, 0x04][..], 3, field(2, 1, 4)),
            (&[0x0f, 0xba, 0xe0, 0x03][..], 4, field(3, 1, 3)), // bt $3,%eax
            (&[0x0f, 0xa4, 0xc2, 0x04][..], 4, field(3, 1, 4)), // shld
            (&[0x80, 0x3d, 0, 0, 0, 0, 0x01][..], 7, field(6, 1, 1)), // cmpb $1,x(%rip)
            (&[0x3e, 0x3e, 0xc6, 0x07, 0x00][..], 5, field(4, 1, 0)),
            (&[0xcd, 0x80][..], 2, field(1, 1, -128)),
            (&[0xe4, 0x60][..], 2, field(1, 1, 0x60)),
            (&[0xe6, 0x80][..], 2, field(1, 1, -128)),
        ] {
            let insn = ok(code);
            assert_eq!(insn.len, len, "{code:02x?}");
            assert_eq!(insn.imm, imm, "{code:02x?}");
        }
        // The rip-relative disp32 ends before the immediate.
        let cmpb = ok(&[0x80, 0x3d, 0, 0, 0, 0, 0x01]);
        assert_eq!(cmpb.rip_target(0x1000), Some(0x1007));
    }

    #[test]
    fn test_has_an_immediate_but_not_not_neg_mul_div() {
        assert_eq!(ok(&[0xf6, 0xc1, 0x01]).len, 3);
        assert_eq!(ok(&[0xf7, 0xc1, 0, 0, 0, 0]).len, 6);
        assert_eq!(ok(&[0x66, 0xf7, 0xc1, 0, 0]).len, 5);
        for reg in 2..8u8 {
            assert_eq!(ok(&[0xf7, 0xc0 | reg << 3]).len, 2);
            assert_eq!(ok(&[0xf6, 0xc0 | reg << 3]).len, 2);
        }
    }

    #[test]
    fn enter_carries_two_immediates() {
        let insn = ok(&[0xc8, 0x10, 0x00, 0x01]);
        assert_eq!(insn.len, 4);
        assert_eq!(insn.imm, field(1, 2, 0x10));
        assert_eq!(insn.imm2, field(3, 1, 1));
    }

    #[test]
    fn moffs_moves_carry_a_full_address() {
        let insn = ok(&[0x48, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(insn.len, 10);
        assert_eq!(insn.disp, field(2, 8, 0x0807060504030201));
        assert!(!insn.rip_relative);
        assert_eq!(ok(&[0x67, 0xa2, 1, 2, 3, 4]).len, 6);
    }

    #[test]
    fn every_kernel_nop_is_one_nop_instruction_of_its_length() {
        for len in 1..=NOP_MAX_LEN {
            let bytes = nop(len).unwrap();
            assert_eq!(bytes.len(), len);
            let insn = ok(bytes);
            assert_eq!((insn.size(), insn.kind), (len, Kind::Nop), "{bytes:02x?}");
        }
        assert_eq!(nop(0), None);
        assert_eq!(nop(NOP_MAX_LEN + 1), None);
        assert_eq!(NOP5, [0x0f, 0x1f, 0x44, 0x00, 0x00]);
    }

    #[test]
    fn nops_with_any_number_of_prefixes_are_nops() {
        for (code, len) in [
            (&[0x66, 0x90][..], 2),
            (&[0x48, 0x90][..], 2),
            (&[0x0f, 0x1f, 0x40, 0xd6][..], 4), // sealed ENDBR poison
            (&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0][..], 10),
            (
                &[
                    0x66, 0x66, 0x66, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0,
                ][..],
                14,
            ),
            (
                &[
                    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0,
                ][..],
                15,
            ),
            (&[0x3e, 0x0f, 0x1f, 0x00][..], 4),
        ] {
            let insn = ok(code);
            assert_eq!((insn.len, insn.kind), (len, Kind::Nop), "{code:02x?}");
        }
    }

    #[test]
    fn look_alike_nops_are_not_nops() {
        assert_eq!(ok(&[0xf3, 0x90]).kind, Kind::Other); // pause
        assert_eq!(ok(&[0x41, 0x90]).kind, Kind::Other); // xchg %eax,%r8d
        assert_eq!(ok(&[0x0f, 0x1f, 0xc8]).kind, Kind::Other); // 0f 1f /1
        assert_eq!(ok(&[0x0f, 0x18, 0x08]).kind, Kind::Other); // prefetcht0
    }

    #[test]
    fn endbr64_is_recognised_only_in_its_exact_encoding() {
        let insn = ok(&[0xf3, 0x0f, 0x1e, 0xfa]);
        assert_eq!((insn.len, insn.kind), (4, Kind::Endbr64));
        assert_eq!(ok(&[0xf3, 0x0f, 0x1e, 0xfb]).kind, Kind::Other); // endbr32
        assert_eq!(ok(&[0x3e, 0xf3, 0x0f, 0x1e, 0xfa]).kind, Kind::Other);
        assert_eq!(ok(&[0x0f, 0x1e, 0xfa]).kind, Kind::Other);
    }

    #[test]
    fn undefined_instructions_are_ud() {
        for (code, len) in [
            (&[0x0f, 0x0b][..], 2),                   // ud2
            (&[0x67, 0x48, 0x0f, 0xb9, 0x3a][..], 5), // ud1 (%edx),%rdi
            (&[0x0f, 0xb9, 0x40, 0x10][..], 4),       // ud1 0x10(%rax),%eax
            (&[0x0f, 0xff, 0xc0][..], 3),             // ud0 %eax,%eax
        ] {
            let insn = ok(code);
            assert_eq!((insn.len, insn.kind), (len, Kind::Ud), "{code:02x?}");
        }
    }

    #[test]
    fn redundant_segment_prefixes_are_part_of_the_instruction() {
        let insn = ok(&[0x2e, 0x2e, 0x2e, 0x31, 0xc0]);
        assert_eq!(
            (insn.len, insn.kind, insn.opcode_offset),
            (5, Kind::Other, 3)
        );
    }

    #[test]
    fn system_instructions_have_their_fixed_lengths() {
        for (code, len) in [
            (&[0x0f, 0x01, 0xf8][..], 3),             // swapgs
            (&[0x0f, 0x01, 0xf9][..], 3),             // rdtscp
            (&[0x0f, 0x01, 0xca][..], 3),             // clac
            (&[0x0f, 0x01, 0xcb][..], 3),             // stac
            (&[0x0f, 0x01, 0xe8][..], 3),             // serialize
            (&[0x0f, 0x01, 0xd0][..], 3),             // xgetbv
            (&[0x0f, 0x01, 0x10][..], 3),             // lgdt (%rax)
            (&[0x0f, 0x01, 0x15, 0, 0, 0, 0][..], 7), // lgdt x(%rip)
            (&[0x0f, 0x01, 0x3f][..], 3),             // invlpg (%rdi)
            (&[0x0f, 0xae, 0xe8][..], 3),             // lfence
            (&[0x0f, 0xae, 0xf0][..], 3),             // mfence
            (&[0x0f, 0xae, 0xf8][..], 3),             // sfence
            (&[0x0f, 0xae, 0x38][..], 3),             // clflush (%rax)
            (&[0x66, 0x0f, 0xae, 0x38][..], 4),       // clflushopt (%rax)
            (&[0x48, 0x0f, 0xae, 0x2f][..], 4),       // xrstor64 (%rdi)
            (&[0xf3, 0x48, 0x0f, 0xae, 0xc0][..], 5), // rdfsbase %rax
            (&[0x0f, 0xa2][..], 2),                   // cpuid
            (&[0x0f, 0x32][..], 2),                   // rdmsr
            (&[0x0f, 0x30][..], 2),                   // wrmsr
            (&[0x0f, 0x31][..], 2),                   // rdtsc
            (&[0x0f, 0x05][..], 2),                   // syscall
            (&[0x48, 0x0f, 0x07][..], 3),             // sysretq
            (&[0x48, 0xcf][..], 2),                   // iretq
            (&[0x0f, 0x09][..], 2),                   // wbinvd
            (&[0xf4][..], 1),                         // hlt
            (&[0xf1][..], 1),                         // int1
            (&[0x0f, 0x00, 0xd8][..], 3),             // ltr %ax
            (&[0x0f, 0x00, 0x2d, 0, 0, 0, 0][..], 7), // verw x(%rip)
            (&[0x0f, 0x20, 0xd8][..], 3),             // mov %cr3,%rax
            (&[0x0f, 0x22, 0x05][..], 3),             // mov %rbp,%cr0: mod ignored
            (&[0x0f, 0x21, 0x00][..], 3),             // mov %db0,%rax
            (&[0x66, 0x0f, 0x38, 0x82, 0x07][..], 5), // invpcid (%rdi),%rax
            (&[0x0f, 0xc7, 0xf8][..], 3),             // rdseed %eax
            (&[0xf3, 0x0f, 0xa6, 0xd0][..], 4),       // xsha256 (PadLock)
            (&[0x0f, 0xa7, 0xc0][..], 3),             // xstore-rng
        ] {
            let insn = ok(code);
            assert_eq!((insn.size(), insn.kind), (len, Kind::Other), "{code:02x?}");
        }
    }

    #[test]
    fn string_io_and_x87_instructions_have_their_lengths() {
        for (code, len) in [
            (&[0xf3, 0x48, 0xa5][..], 3),       // rep movsq
            (&[0xf3, 0xaa][..], 2),             // rep stos
            (&[0xf3, 0xa4][..], 2),             // rep movsb
            (&[0xa6][..], 1),                   // cmpsb
            (&[0xf3, 0x6c][..], 2),             // rep insb
            (&[0x66, 0xef][..], 2),             // out %ax,(%dx)
            (&[0xec][..], 1),                   // in (%dx),%al
            (&[0xdb, 0xe3][..], 2),             // fninit
            (&[0x9b][..], 1),                   // fwait
            (&[0xd9, 0x7c, 0x24, 0x02][..], 4), // fnstcw 2(%rsp)
            (&[0xdd, 0x05, 0, 0, 0, 0][..], 6), // fldl x(%rip)
            (&[0xde, 0xe9][..], 2),             // fsubrp
            (&[0xdf, 0xe0][..], 2),             // fnstsw %ax
            (&[0xd7][..], 1),                   // xlat
        ] {
            assert_eq!(ok(code).size(), len, "{code:02x?}");
        }
    }

    #[test]
    fn locked_read_modify_write_instructions() {
        for (code, len) in [
            (&[0xf0, 0x48, 0x0f, 0xb1, 0x17][..], 5), // lock cmpxchg %rdx,(%rdi)
            (&[0xf0, 0x0f, 0xc7, 0x0f][..], 4),       // lock cmpxchg8b (%rdi)
            (&[0xf0, 0x48, 0x0f, 0xc7, 0x0e][..], 5), // lock cmpxchg16b (%rsi)
            (&[0xf0, 0x0f, 0xc1, 0x07][..], 4),       // lock xadd
            (&[0xf0, 0x80, 0x0f, 0x01][..], 4),       // lock orb $1,(%rdi)
            (&[0xf0, 0xff, 0x05, 0, 0, 0, 0][..], 7), // lock incl x(%rip)
            (&[0xf0, 0x48, 0x0f, 0xab, 0x07][..], 5), // lock bts
        ] {
            assert_eq!(ok(code).size(), len, "{code:02x?}");
        }
        assert!(ok(&[0xf0, 0x0f, 0xc1, 0x07])
            .prefixes
            .contains(Prefixes::LOCK));
    }

    #[test]
    fn three_byte_maps_and_sse() {
        for (code, len, map) in [
            (&[0x66, 0x0f, 0x38, 0x00, 0xc1][..], 5, Map::Map0F38), // pshufb
            (&[0xf2, 0x48, 0x0f, 0x38, 0xf1, 0xc1][..], 6, Map::Map0F38), // crc32q
            (&[0x0f, 0x38, 0xf0, 0x07][..], 4, Map::Map0F38),       // movbe (%rdi),%eax
            (&[0x0f, 0x38, 0xcb, 0xca][..], 4, Map::Map0F38),       // sha256rnds2
            (&[0x66, 0x0f, 0x3a, 0x0f, 0xc1, 0x08][..], 6, Map::Map0F3A), // palignr
            (
                &[0x66, 0x0f, 0x3a, 0x16, 0x44, 0x24, 0x08, 0x01][..],
                8,
                Map::Map0F3A,
            ), // pextrd
            (&[0x66, 0x0f, 0x6f, 0x05, 0, 0, 0, 0][..], 8, Map::Map0F), // movdqa x(%rip)
            (&[0x66, 0x0f, 0x70, 0xc1, 0x1b][..], 5, Map::Map0F),   // pshufd
            (&[0x66, 0x0f, 0x73, 0xd8, 0x08][..], 5, Map::Map0F),   // psrldq
            (&[0xf3, 0x0f, 0xb8, 0xc1][..], 4, Map::Map0F),         // popcnt
            (&[0xf3, 0x48, 0x0f, 0xbc, 0xc7][..], 5, Map::Map0F),   // tzcnt
            (&[0x66, 0x0f, 0x78, 0xc0, 0x08, 0x10][..], 6, Map::Map0F), // extrq
            (&[0x0f, 0x78, 0xc0][..], 3, Map::Map0F),               // vmread
        ] {
            let insn = ok(code);
            assert_eq!(insn.size(), len, "{code:02x?}");
            assert_eq!(insn.opcode.map, map, "{code:02x?}");
        }
    }

    #[test]
    fn vex_and_evex_instructions_have_their_lengths() {
        for (code, len, encoding, map) in [
            (&[0xc5, 0xf9, 0xef, 0xc0][..], 4, Encoding::Vex, Map::Map0F), // vpxor
            (&[0xc5, 0xf8, 0x77][..], 3, Encoding::Vex, Map::Map0F),       // vzeroupper
            (
                &[0xc5, 0xfd, 0x6f, 0x05, 0, 0, 0, 0][..],
                8,
                Encoding::Vex,
                Map::Map0F,
            ),
            (
                &[0xc5, 0xf1, 0x72, 0xd0, 0x07][..],
                5,
                Encoding::Vex,
                Map::Map0F,
            ), // vpsrld $7
            (
                &[0xc4, 0xe3, 0xfb, 0xf0, 0xc0, 0x0d][..],
                6,
                Encoding::Vex,
                Map::Map0F3A,
            ), // rorx
            (
                &[0xc4, 0xe2, 0x78, 0x49, 0xc0][..],
                5,
                Encoding::Vex,
                Map::Map0F38,
            ), // tilerelease
            (
                &[0xc4, 0x62, 0xf9, 0xf7, 0xc0][..],
                5,
                Encoding::Vex,
                Map::Map0F38,
            ), // shlx
            (
                &[0x65, 0xc5, 0xf8, 0x10, 0x04, 0x25, 0, 0, 0, 0][..],
                10,
                Encoding::Vex,
                Map::Map0F,
            ),
            (
                &[0x62, 0xf1, 0x65, 0x08, 0x72, 0xc3, 0x10][..],
                7,
                Encoding::Evex,
                Map::Map0F,
            ), // vprord
            (
                &[0x62, 0x72, 0x4d, 0x28, 0x76, 0xc7][..],
                6,
                Encoding::Evex,
                Map::Map0F38,
            ), // vpermi2d
            (
                &[0x62, 0xd3, 0x6d, 0x08, 0x25, 0xc2, 0x96][..],
                7,
                Encoding::Evex,
                Map::Map0F3A,
            ), // vpternlogd
            (
                &[0x62, 0xf1, 0x7c, 0x48, 0x10, 0x40, 0x01][..],
                7,
                Encoding::Evex,
                Map::Map0F,
            ), // disp8*N
            (
                &[0x62, 0xf5, 0x7c, 0x48, 0x58, 0xc1][..],
                6,
                Encoding::Evex,
                Map::Map5,
            ), // vaddph
            (
                &[0x62, 0xf6, 0x7d, 0x48, 0x2c, 0xc1][..],
                6,
                Encoding::Evex,
                Map::Map6,
            ), // vscalefph
        ] {
            let insn = ok(code);
            assert_eq!(insn.size(), len, "{code:02x?}");
            assert_eq!(
                (insn.opcode.encoding, insn.opcode.map),
                (encoding, map),
                "{code:02x?}"
            );
            assert_eq!(insn.kind, Kind::Other);
        }
    }

    #[test]
    fn opcodes_invalid_in_64_bit_mode_are_errors() {
        for op in [
            0x06u8, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x82,
            0x9a, 0xce, 0xd4, 0xd6, 0xea,
        ] {
            let code = [op, 0xc0, 0, 0, 0, 0, 0, 0];
            assert_eq!(decode(&code), Err(DecodeError::Invalid), "{op:02x}");
        }
        // aad there, APX's REX2 where the CPU has APX.
        assert!(decode(&[0xd5, 0x0a]).is_err());
        for code in [
            &[0x0f, 0x04][..],
            &[0x0f, 0x0a][..],
            &[0x0f, 0x0c][..],
            &[0x0f, 0x24, 0xc0][..],
            &[0x0f, 0x36][..],
            &[0x0f, 0x39][..],
            &[0x0f, 0x7a, 0xc0][..],
            &[0x0f, 0xb8, 0xc0][..], // jmpe
            &[0x8d, 0xc0][..],       // lea with a register
            &[0xfe, 0xd0][..],
            &[0xc6, 0xc8, 0x00][..],
            &[0xc7, 0xc8, 0, 0, 0, 0][..],
            &[0x0f, 0x00, 0xf0][..],
            &[0x0f, 0xba, 0xc0, 0x01][..],
            &[0x0f, 0x73, 0x00, 0x01][..],
            &[0x8f, 0x20][..],
            &[0x0f, 0xa7, 0x00][..],
        ] {
            assert_eq!(decode(code), Err(DecodeError::Invalid), "{code:02x?}");
        }
    }

    #[test]
    fn vex_and_evex_leaders_are_never_les_lds_or_bound() {
        // In 64-bit mode c4/c5/62 always start VEX/EVEX; a bad map is an error.
        assert_eq!(
            decode(&[0xc4, 0x00, 0x00, 0x00, 0xc0]),
            Err(DecodeError::Invalid)
        );
        assert_eq!(
            decode(&[0x62, 0x00, 0x04, 0x00, 0x00, 0xc0]),
            Err(DecodeError::Invalid)
        );
        assert_eq!(
            decode(&[0xc5, 0x00, 0x00, 0xc0]).map(|i| i.opcode.encoding),
            Ok(Encoding::Vex)
        );
        // VEX and EVEX after REX or 66/f2/f3/f0 raise #UD.
        for prefix in [0x48u8, 0x66, 0xf2, 0xf3, 0xf0] {
            assert_eq!(
                decode(&[prefix, 0xc5, 0xf8, 0x77]),
                Err(DecodeError::Invalid)
            );
            assert_eq!(
                decode(&[prefix, 0x62, 0xf1, 0x65, 0x08, 0x72, 0xc3, 0x10]),
                Err(DecodeError::Invalid)
            );
        }
    }

    #[test]
    fn encodings_outside_the_supported_set_are_refused() {
        assert_eq!(
            decode(&[0x0f, 0x0f, 0xc1, 0x9e]),
            Err(DecodeError::Unsupported)
        ); // 3DNow!
        assert_eq!(decode(&[0x0f, 0x0e]), Err(DecodeError::Unsupported)); // femms
        assert_eq!(
            decode(&[0x8f, 0xe9, 0x78, 0xc2, 0xc0]),
            Err(DecodeError::Unsupported)
        ); // XOP
        assert_eq!(
            decode(&[0x62, 0xfc, 0x7c, 0x08, 0x00, 0xc0]),
            Err(DecodeError::Unsupported)
        ); // EVEX map 4
        assert_eq!(
            decode(&[0xc4, 0xc7, 0x7b, 0xf8, 0xc4, 0, 0, 0, 0]),
            Err(DecodeError::Unsupported)
        ); // VEX map 7
        assert_eq!(ok(&[0x8f, 0xc0]).len, 2); // pop %rax
    }

    #[test]
    fn short_input_is_truncated() {
        for code in [
            &[][..],
            &[0x66][..],
            &[0x48][..],
            &[0x0f][..],
            &[0x0f, 0x38][..],
            &[0xe8, 0, 0, 0][..],
            &[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7][..],
            &[0x8b][..],
            &[0x8b, 0x04][..],
            &[0x8b, 0x44, 0x24][..],
            &[0x8b, 0x05, 0, 0, 0][..],
            &[0xc4, 0xe2][..],
            &[0xc5, 0xf8][..],
            &[0x62, 0xf1, 0x65][..],
            &[0xc8, 0x10, 0x00][..],
        ] {
            assert_eq!(decode(code), Err(DecodeError::Truncated), "{code:02x?}");
        }
    }

    #[test]
    fn instructions_over_15_bytes_are_too_long_however_much_input_follows() {
        let mut fifteen = [0x66u8; 15];
        fifteen[14] = 0x90;
        assert_eq!(ok(&fifteen).len, 15);
        let too_many_prefixes = [0x66u8; 20];
        assert_eq!(decode(&too_many_prefixes), Err(DecodeError::TooLong));
        assert_eq!(decode(&too_many_prefixes[..15]), Err(DecodeError::TooLong));
        // 10 prefixes + a 7-byte instruction.
        let mut long = [0x2eu8; 17];
        long[10..].copy_from_slice(&[0x48, 0xc7, 0xc0, 1, 0, 0, 0]);
        assert_eq!(decode(&long), Err(DecodeError::TooLong));
        assert_eq!(decode(&long[..12]), Err(DecodeError::Truncated));
    }

    #[test]
    fn rex_before_a_legacy_prefix_is_ignored() {
        let insn = ok(&[0x48, 0x66, 0xb8, 0x01, 0x00]);
        assert_eq!((insn.len, insn.rex), (5, 0));
        // Only the last of several REX bytes counts.
        let insn = ok(&[0x40, 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((insn.len, insn.rex), (11, 0x48));
    }

    #[test]
    fn fields_lie_within_the_instruction() {
        let insn = ok(&[0x48, 0xc7, 0x84, 0x24, 0x80, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(insn.len, 12);
        assert_eq!(insn.disp.map(|f| f.range()), Some(4..8));
        assert_eq!(insn.imm.map(|f| f.range()), Some(8..12));
    }

    #[test]
    fn jmp_rel32_round_trips_through_encoder_and_decoders() {
        for (from, to) in [
            (0xffff_ffff_8100_0009u64, 0xffff_ffff_c000_1000u64),
            (0xffff_ffff_c000_1000, 0xffff_ffff_8100_0009),
            (0x1000, 0x1005),
            (u64::MAX - 2, 0x10), // wraps like the CPU does
        ] {
            let bytes = encode_jmp_rel32(from, to).unwrap();
            assert_eq!(bytes[0], JMP_REL32_OPCODE);
            assert_eq!(decode_jmp_rel32(&bytes, from), Some(to));
            let insn = ok(&bytes);
            assert_eq!((insn.size(), insn.kind), (JMP_REL32_LEN, Kind::Jmp));
            assert_eq!(insn.branch_target(from), Some(to));
        }
        assert_eq!(encode_jmp_rel32(0x1000, 0x1005), Ok([0xe9, 0, 0, 0, 0]));
    }

    #[test]
    fn jmp_rel32_reaches_exactly_2_gib_each_way() {
        let from = 0x1_0000_0000u64;
        let next = from + JMP_REL32_LEN as u64;
        let max = next + i32::MAX as u64;
        let min = next - (1u64 << 31);
        assert!(encode_jmp_rel32(from, max).is_ok());
        assert!(encode_jmp_rel32(from, min).is_ok());
        assert_eq!(
            encode_jmp_rel32(from, max + 1),
            Err(EncodeError::OutOfRange)
        );
        assert_eq!(
            encode_jmp_rel32(from, min - 1),
            Err(EncodeError::OutOfRange)
        );
        assert_eq!(
            encode_jmp_rel32(0, u64::MAX / 2),
            Err(EncodeError::OutOfRange)
        );
    }

    #[test]
    fn decode_jmp_rel32_wants_a_whole_e9() {
        assert_eq!(decode_jmp_rel32(&[0xe9, 0, 0, 0], 0), None);
        assert_eq!(decode_jmp_rel32(&[0xe8, 0, 0, 0, 0], 0), None);
        assert_eq!(decode_jmp_rel32(&[0x0f, 0x1f, 0x44, 0, 0], 0), None);
        assert_eq!(
            decode_jmp_rel32(&[0xe9, 0xfb, 0xff, 0xff, 0xff, 0xcc], 0x10),
            Some(0x10)
        );
    }

    #[test]
    fn errors_explain_themselves() {
        let errors = [
            DecodeError::Truncated,
            DecodeError::TooLong,
            DecodeError::Invalid,
            DecodeError::Unsupported,
        ];
        let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        for (i, text) in texts.iter().enumerate() {
            assert!(!text.is_empty());
            assert!(!texts[..i].contains(text));
        }
        assert!(!EncodeError::OutOfRange.to_string().is_empty());
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Bytes that steer random input into prefixes, escapes and addressing.
    const INTERESTING: &[u8] = &[
        0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x40, 0x48, 0x4f, 0x0f,
        0x38, 0x3a, 0xc4, 0xc5, 0x62, 0x8f, 0x04, 0x05, 0x44, 0x84, 0x24, 0x25, 0xe8, 0xe9, 0xeb,
        0xff, 0xf6, 0xf7, 0xc7, 0xf8, 0xb8, 0xa1, 0xc8, 0x1f, 0x01, 0xae, 0x00,
    ];

    fn check_invariants(code: &[u8]) {
        let Ok(insn) = decode(code) else { return };
        let len = insn.size();
        assert!((1..=MAX_INSN_LEN).contains(&len), "{code:02x?}");
        assert!(len <= code.len(), "{code:02x?}");
        assert!(usize::from(insn.opcode_offset) < len, "{code:02x?}");
        for f in [insn.disp, insn.imm, insn.imm2, insn.branch]
            .into_iter()
            .flatten()
        {
            assert!(f.range().end <= len, "{code:02x?}");
        }
        // Any shorter input is truncated; the exact bytes decode the same.
        assert_eq!(decode(&code[..len]), Ok(insn), "{code:02x?}");
        assert_eq!(
            decode(&code[..len - 1]),
            Err(DecodeError::Truncated),
            "{code:02x?}"
        );
    }

    #[test]
    fn a_million_random_inputs_decode_without_panicking() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 20];
        let mut decoded = 0;
        for round in 0..1_000_000u32 {
            let len = (rng.next() % 21) as usize;
            let steer = round % 2 == 1;
            for byte in buf.iter_mut().take(len) {
                let r = rng.next();
                *byte = if steer && r & 1 == 0 {
                    INTERESTING[(r >> 8) as usize % INTERESTING.len()]
                } else {
                    (r >> 32) as u8
                };
            }
            let code = &buf[..len];
            check_invariants(code);
            decoded += usize::from(decode(code).is_ok());
        }
        // Random bytes are mostly valid instructions; far fewer means a bug.
        assert!(decoded > 500_000, "only {decoded} decoded");
    }

    #[test]
    fn references_to_a_range_are_found_by_branch_rip_and_absolute_address() {
        let base = 0xffff_ffff_a000_0000u64;
        let stub = base + 0x1000..base + 0x1010;
        // nop; call stub (rel32 from +1: next is +6, so rel = 0x1000 - 6)
        let rel = (0x1000i32 - 6).to_le_bytes();
        let call = [0x90, 0xe8, rel[0], rel[1], rel[2], rel[3], 0xc3];
        assert_eq!(find_reference(&call, base, stub.clone()), Ok(Some(1)));
        // lea stub+8(%rip),%rax at +0: next is +7.
        let rel = (0x1008i32 - 7).to_le_bytes();
        let lea = [0x48, 0x8d, 0x05, rel[0], rel[1], rel[2], rel[3]];
        assert_eq!(find_reference(&lea, base, stub.clone()), Ok(Some(0)));
        // mov $stub,%rdi as a sign-extended imm32.
        let abs = ((base + 0x1004) as u32).to_le_bytes();
        let mov = [0x48, 0xc7, 0xc7, abs[0], abs[1], abs[2], abs[3]];
        assert_eq!(find_reference(&mov, base, stub.clone()), Ok(Some(0)));
        // movabs $stub,%rax.
        let mut movabs = vec![0x48, 0xb8];
        movabs.extend_from_slice(&(base + 0x100f).to_le_bytes());
        assert_eq!(find_reference(&movabs, base, stub.clone()), Ok(Some(0)));
        // A call elsewhere, and int3 padding: none.
        let rel = (0x2000i32 - 5).to_le_bytes();
        let other = [0xe8, rel[0], rel[1], rel[2], rel[3], 0xcc, 0xcc];
        assert_eq!(find_reference(&other, base, stub.clone()), Ok(None));
        // Undecodable bytes are an error, not a clean bill.
        assert!(find_reference(&[0x0f], base, stub).is_err());
    }
}
