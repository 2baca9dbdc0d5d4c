//! x86-64 relocation arithmetic: writing a field for a known symbol value,
//! and the reverse, inferring the symbol value from a field's live bytes.
//!
//! Run-pre matching uses `infer`: where the pre object has a relocation, the
//! live kernel holds the linked value, so `S = field - A (+ P)`. Post code is
//! then relocated with `encode` from the inferred values.
#![forbid(unsafe_code)]

use core::fmt;

/// The relocation types compiled kernel C code uses on x86-64. The
/// discriminants are the ELF `R_X86_64_*` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RelocKind {
    /// `S + A`, 64 bits.
    Abs64 = 1,
    /// `S + A - P`, 32 bits signed.
    Pc32 = 2,
    /// `L + A - P`; for the kernel (no PLT) the same as `Pc32`.
    Plt32 = 4,
    /// `S + A`, 32 bits zero-extended.
    Abs32 = 10,
    /// `S + A`, 32 bits sign-extended.
    Abs32S = 11,
    /// `S + A - P`, 64 bits.
    Pc64 = 24,
}

/// Why a relocation cannot be written or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocError {
    /// The ELF relocation type is not one kernel C code uses.
    UnsupportedType(u32),
    /// The value does not fit the field (e.g. a call out of ±2 GiB).
    Overflow,
    /// The field lies outside the code it belongs to.
    OutOfBounds,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedType(t) => write!(f, "unsupported relocation type {t}"),
            Self::Overflow => f.write_str("relocated value does not fit its field"),
            Self::OutOfBounds => f.write_str("relocation field lies outside its code"),
        }
    }
}

impl RelocKind {
    /// Decodes an ELF `R_X86_64_*` number.
    pub const fn from_elf(r_type: u32) -> Result<Self, RelocError> {
        match r_type {
            1 => Ok(Self::Abs64),
            2 => Ok(Self::Pc32),
            4 => Ok(Self::Plt32),
            10 => Ok(Self::Abs32),
            11 => Ok(Self::Abs32S),
            24 => Ok(Self::Pc64),
            other => Err(RelocError::UnsupportedType(other)),
        }
    }

    /// Size of the field in bytes.
    pub const fn width(self) -> usize {
        match self {
            Self::Abs64 | Self::Pc64 => 8,
            Self::Pc32 | Self::Plt32 | Self::Abs32 | Self::Abs32S => 4,
        }
    }

    const fn pc_relative(self) -> bool {
        matches!(self, Self::Pc32 | Self::Plt32 | Self::Pc64)
    }

    /// The field bytes for symbol value `s`, addend `a` at address `p`.
    pub fn encode(self, s: u64, a: i64, p: u64) -> Result<[u8; 8], RelocError> {
        let mut value = s.wrapping_add(a as u64);
        if self.pc_relative() {
            value = value.wrapping_sub(p);
        }
        let fits = match self {
            Self::Abs64 | Self::Pc64 => true,
            Self::Pc32 | Self::Plt32 | Self::Abs32S => i32::try_from(value as i64).is_ok(),
            Self::Abs32 => u32::try_from(value).is_ok(),
        };
        if fits {
            Ok(value.to_le_bytes())
        } else {
            Err(RelocError::Overflow)
        }
    }

    /// Writes the field for (`s`, `a`, `p`) at `offset` of `code`.
    pub fn write(
        self,
        code: &mut [u8],
        offset: usize,
        s: u64,
        a: i64,
        p: u64,
    ) -> Result<(), RelocError> {
        let bytes = self.encode(s, a, p)?;
        let end = offset
            .checked_add(self.width())
            .ok_or(RelocError::OutOfBounds)?;
        let field = code.get_mut(offset..end).ok_or(RelocError::OutOfBounds)?;
        for (dst, src) in field.iter_mut().zip(bytes.iter()) {
            *dst = *src;
        }
        Ok(())
    }

    /// Infers the symbol value `S` from a field read at `offset` of `code`,
    /// which lives at address `p`, given the addend `a`.
    pub fn infer(self, code: &[u8], offset: usize, a: i64, p: u64) -> Result<u64, RelocError> {
        let end = offset
            .checked_add(self.width())
            .ok_or(RelocError::OutOfBounds)?;
        let field = code.get(offset..end).ok_or(RelocError::OutOfBounds)?;
        let mut raw = [0u8; 8];
        for (dst, src) in raw.iter_mut().zip(field.iter()) {
            *dst = *src;
        }
        let value = match self {
            Self::Abs64 | Self::Pc64 => u64::from_le_bytes(raw),
            // Sign-extend the 32-bit fields that the CPU sign-extends.
            Self::Pc32 | Self::Plt32 | Self::Abs32S => {
                i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])) as u64
            }
            Self::Abs32 => u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
        };
        let mut s = value.wrapping_sub(a as u64);
        if self.pc_relative() {
            s = s.wrapping_add(p);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_rel32_round_trips_through_encode_and_infer() {
        // call foo at 0xffffffff81000010: field at +1, A = -4.
        let p = 0xffff_ffff_8100_0011;
        let s = 0xffff_ffff_8123_4560;
        let mut code = [0xe8, 0, 0, 0, 0];
        RelocKind::Plt32.write(&mut code, 1, s, -4, p).unwrap();
        assert_eq!(RelocKind::Plt32.infer(&code, 1, -4, p).unwrap(), s);
        // The CPU's view: target = next insn + rel32.
        let rel = i32::from_le_bytes([code[1], code[2], code[3], code[4]]);
        assert_eq!((p + 4).wrapping_add(rel as i64 as u64), s);
    }

    #[test]
    fn backward_pc32_sign_extends() {
        let p = 0xffff_ffff_a000_0000;
        let s = 0xffff_ffff_8100_0000;
        let mut code = [0u8; 4];
        RelocKind::Pc32.write(&mut code, 0, s, -4, p).unwrap();
        assert_eq!(RelocKind::Pc32.infer(&code, 0, -4, p).unwrap(), s);
    }

    #[test]
    fn calls_beyond_2gib_are_refused() {
        let mut code = [0u8; 4];
        let err = RelocKind::Pc32
            .write(&mut code, 0, 0x1_0000_0000, 0, 0)
            .unwrap_err();
        assert_eq!(err, RelocError::Overflow);
        assert_eq!(code, [0; 4], "a refused write must not touch the code");
    }

    #[test]
    fn abs32s_holds_kernel_addresses_and_abs32_does_not() {
        let s = 0xffff_ffff_8200_0000u64;
        let mut code = [0u8; 4];
        RelocKind::Abs32S.write(&mut code, 0, s, 8, 0).unwrap();
        assert_eq!(RelocKind::Abs32S.infer(&code, 0, 8, 0).unwrap(), s);
        assert_eq!(RelocKind::Abs32.encode(s, 0, 0), Err(RelocError::Overflow));
    }

    #[test]
    fn abs64_and_pc64_round_trip() {
        let mut code = [0u8; 10];
        RelocKind::Abs64
            .write(&mut code, 2, 0xffff_ffff_8100_1234, 16, 0)
            .unwrap();
        assert_eq!(
            RelocKind::Abs64.infer(&code, 2, 16, 0).unwrap(),
            0xffff_ffff_8100_1234
        );
        RelocKind::Pc64
            .write(&mut code, 2, 0x1000, 0, 0x5000)
            .unwrap();
        assert_eq!(RelocKind::Pc64.infer(&code, 2, 0, 0x5000).unwrap(), 0x1000);
    }

    #[test]
    fn fields_outside_the_code_are_errors_not_panics() {
        let mut code = [0u8; 4];
        assert_eq!(
            RelocKind::Pc32.write(&mut code, 1, 0, 0, 0),
            Err(RelocError::OutOfBounds)
        );
        assert_eq!(
            RelocKind::Pc32.infer(&code, usize::MAX, 0, 0),
            Err(RelocError::OutOfBounds)
        );
        assert_eq!(RelocKind::from_elf(9), Err(RelocError::UnsupportedType(9)));
    }
}
