//! Run-pre matching: proves that a function's "pre" code (compiled from the
//! unpatched source, relocation fields zero) is the live kernel code, and
//! learns from the live bytes the address of every symbol the pre code
//! references.
//!
//! The kernel rewrites its own text at boot and at runtime (ftrace, IBT
//! sealing, retpolines, return thunks, static calls, paravirt calls, jump
//! labels, alternatives: `kernel-7.3-facts.md` §3.1). On x86-64 all of it is
//! length-preserving, so a pre offset is the live offset throughout: the
//! matcher walks the pre code one instruction at a time and compares the live
//! bytes at the same offset. What it tolerates is decided by the payload, not
//! guessed from the live bytes: a payload site (jump label, alternative), or
//! the name of the symbol a relocation points at (`__fentry__`, the thunks,
//! `__SCT__*` trampolines, `pv_ops`). Everything else must be identical, up to
//! the relocation fields, whose live values give the symbol addresses.
//!
//! Results go to a caller-provided [`Sink`]; nothing here allocates, and no
//! input makes it panic.
#![forbid(unsafe_code)]

use core::fmt;

use super::payload::{FunctionRec, Payload, RelocRec, SiteKind, SymbolKind};
use super::reloc::{RelocError, RelocKind};
use super::x86::{self, DecodeError, Insn, Kind};

/// `endbr64`, the IBT landing pad at function entry.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// What IBT sealing writes over the ENDBR of functions never called
/// indirectly (`nopl -42(%rax)`, `gen_endbr_poison`).
pub const ENDBR_POISON: [u8; 4] = [0x0f, 0x1f, 0x40, 0xd6];
/// `ret; int3 x4`: a return-thunk jump or a static tail call patched out.
pub const RET_INT3: [u8; 5] = [0xc3, 0xcc, 0xcc, 0xcc, 0xcc];
/// `cs cs cs xor %eax,%eax`: a static call to `__static_call_return0`.
pub const STATIC_CALL_XOR5RAX: [u8; 5] = [0x2e, 0x2e, 0x2e, 0x31, 0xc0];
/// `ud1 (%edx),%rdi`: a static call to `__WARN_trap`.
pub const STATIC_CALL_WARN: [u8; 5] = [0x67, 0x48, 0x0f, 0xb9, 0x3a];
/// `ds ds movb $0,(%rdi)`: a static call to the native pv spinlock unlock.
pub const STATIC_CALL_UNLOCK: [u8; 5] = [0x3e, 0x3e, 0xc6, 0x07, 0x00];
/// `lfence`, which `spectre_v2=retpoline,lfence` puts before indirect branches.
pub const LFENCE: [u8; 3] = [0x0f, 0xae, 0xe8];

const CALL_REL32: u8 = 0xe8;
const JMP_REL32: u8 = 0xe9;
const JMP_REL8: u8 = 0xeb;
const CS_PREFIX: u8 = 0x2e;
const INT3: u8 = 0xcc;
const REX_B: u8 = 0x41;
/// Bytes of a `rel32` branch displacement.
const REL32: usize = 4;

/// Names of the general-purpose registers by number, as the retpoline
/// thunks spell them (`__x86_indirect_thunk_<name>`).
pub const REGISTERS: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// The number of register `name` (`rax` 0 ... `r15` 15).
pub fn register_number(name: &str) -> Option<u8> {
    REGISTERS
        .iter()
        .position(|&r| r == name)
        .and_then(|n| u8::try_from(n).ok())
}

/// A kind of runtime code patching the kernel does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patched {
    /// The ftrace call at function entry (`call __fentry__`).
    Fentry,
    /// A `jmp __x86_return_thunk` standing for `ret`.
    ReturnThunk,
    /// A call or jump through a retpoline thunk (`__x86_indirect_thunk_*`).
    IndirectThunk,
    /// An inline static call (`call __SCT__*`).
    StaticCall,
    /// A paravirt call (`call *pv_ops+N(%rip)`).
    PvCall,
    /// A jump-label (static branch) site.
    JumpLabel,
    /// An `ALTERNATIVE()` site.
    Alternative,
}

impl Patched {
    /// The kind of patching a call or jump to symbol `name` undergoes, if any.
    pub fn of_symbol(name: &str) -> Option<Self> {
        match name {
            "__fentry__" => Some(Self::Fentry),
            "__x86_return_thunk" => Some(Self::ReturnThunk),
            "pv_ops" => Some(Self::PvCall),
            _ if name.starts_with("__x86_indirect_thunk_") => Some(Self::IndirectThunk),
            _ if name.starts_with("__SCT__") => Some(Self::StaticCall),
            _ => None,
        }
    }

    fn of_site(kind: Option<SiteKind>) -> Self {
        match kind {
            Some(SiteKind::JumpLabel) => Self::JumpLabel,
            // Unknown kinds are refused by the payload parser; treat as the
            // most general site.
            Some(SiteKind::Alternative) | None => Self::Alternative,
        }
    }
}

impl fmt::Display for Patched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fentry => "ftrace call site (__fentry__)",
            Self::ReturnThunk => "return thunk jump",
            Self::IndirectThunk => "retpoline thunk call",
            Self::StaticCall => "static call site",
            Self::PvCall => "paravirt call site",
            Self::JumpLabel => "jump-label site",
            Self::Alternative => "alternative site",
        })
    }
}

/// Which kind of kernel thunk a live branch must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThunkKind {
    /// A return thunk (what `x86_return_thunk` points at).
    Return,
    /// An indirect-branch thunk (retpoline, call depth, ITS).
    Indirect,
}

const RETURN_THUNKS: [&str; 6] = [
    "__x86_return_thunk",
    "srso_return_thunk",
    "srso_alias_return_thunk",
    "retbleed_return_thunk",
    "call_depth_return_thunk",
    "its_return_thunk",
];

impl ThunkKind {
    /// Whether `name` (the kallsyms name at the branch target, offset 0) is
    /// a thunk of this kind, for any register. Accepts the `__pi_` aliases.
    /// ITS thunks in dynamically allocated pages have no name and are not
    /// accepted. [`IndirectThunk::accepts`] also checks the register.
    pub fn accepts(self, name: &str) -> bool {
        let name = name.strip_prefix("__pi_").unwrap_or(name);
        match self {
            Self::Return => RETURN_THUNKS.contains(&name),
            Self::Indirect => (0u8..16).any(|reg| {
                [true, false]
                    .iter()
                    .any(|&call| IndirectThunk { reg, call }.accepts(name))
            }),
        }
    }
}

impl fmt::Display for ThunkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Return => "return thunk",
            Self::Indirect => "indirect-branch thunk",
        })
    }
}

/// The indirect-branch thunk a retpoline site must reach: the one for its
/// register, for a call or for a jump (`jmp` or `jcc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndirectThunk {
    /// The register, 0-15 (see [`REGISTERS`]).
    pub reg: u8,
    /// A call site rather than a jump.
    pub call: bool,
}

impl IndirectThunk {
    /// Whether `name` (the kallsyms name at the branch target, offset 0) is
    /// a thunk the kernel may have put at this site: the retpoline, ITS or
    /// (call-depth tracking) call or jump thunk for the same register. Accepts
    /// the `__pi_` aliases and, for `rax`, the `*_array` names at the same
    /// address.
    pub fn accepts(self, name: &str) -> bool {
        let name = name.strip_prefix("__pi_").unwrap_or(name);
        let Some(&reg_name) = REGISTERS.get(usize::from(self.reg)) else {
            return false;
        };
        let depth = if self.call {
            "__x86_indirect_call_thunk_"
        } else {
            "__x86_indirect_jump_thunk_"
        };
        ["__x86_indirect_thunk_", "__x86_indirect_its_thunk_", depth]
            .iter()
            .filter_map(|prefix| name.strip_prefix(prefix))
            .any(|rest| rest == reg_name || (self.reg == 0 && rest == "array"))
    }
}

impl fmt::Display for IndirectThunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "indirect-{} thunk for %{}",
            if self.call { "call" } else { "jump" },
            REGISTERS.get(usize::from(self.reg)).copied().unwrap_or("?")
        )
    }
}

/// Up to one instruction's worth of bytes, for error reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    len: u8,
    buf: [u8; x86::MAX_INSN_LEN],
}

impl Bytes {
    /// The first [`x86::MAX_INSN_LEN`] bytes of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = [0u8; x86::MAX_INSN_LEN];
        let mut len = 0u8;
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = *src;
            len = len.saturating_add(1);
        }
        Self { len, buf }
    }

    /// The bytes kept.
    pub fn as_slice(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("nothing");
        }
        for (i, b) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{self}]")
    }
}

/// Why the live code is not the pre code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MismatchReason {
    /// The payload has no function with this index.
    NoSuchFunction(u32),
    /// The live buffer is not as long as the pre code.
    LiveLength { pre: u32, live: u32 },
    /// The pre code does not decode.
    PreUndecodable(DecodeError),
    /// An instruction differs (outside any relocation field).
    BytesDiffer { pre: Bytes, live: Bytes },
    /// The live bytes of a runtime-patched spot are none of the forms the
    /// kernel writes there.
    NotPatchedForm { what: Patched, live: Bytes },
    /// The live bytes of an alternative site are not whole instructions
    /// exactly filling it.
    AlternativeNotInstructions(DecodeError),
    /// The pre code references a runtime-patched symbol in a form the
    /// kernel does not patch, or this matcher does not know.
    UnsupportedSite { what: Patched, why: &'static str },
    /// A payload site does not fit the pre code's instructions.
    BadSite(&'static str),
    /// A payload relocation does not fit the pre code's instructions.
    BadRelocation(&'static str),
    /// A relocation field cannot be read back.
    Reloc(RelocError),
    /// For sinks: the live code implies a symbol value that contradicts an
    /// earlier inference.
    Inconsistent,
    /// For sinks: a branch that must reach a kernel thunk goes elsewhere.
    NotAThunk { target: u64 },
    /// For sinks: any other refusal.
    Rejected(&'static str),
    /// The live instruction is not the pre code's branch, short or near.
    BranchDiffers { pre: Bytes, live: Bytes },
    /// A branch inside the function reaches, live, another place than the
    /// one its pre target moved to (live offsets from the function's start).
    BranchTarget { expected: u32, live: u32 },
    /// More branches are shorter live than [`MAX_RELAXED`].
    TooManyRelaxed,
}

/// Where and why the live code differs from the pre code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the function of the instruction (or field) concerned.
    pub offset: u32,
    /// What is wrong there.
    pub reason: MismatchReason,
}

impl Mismatch {
    /// A mismatch at `offset`.
    pub const fn new(offset: u32, reason: MismatchReason) -> Self {
        Self { offset, reason }
    }

    /// For sinks: the relocation at `offset` implies a value that
    /// contradicts an earlier inference.
    pub const fn inconsistent(offset: u32) -> Self {
        Self::new(offset, MismatchReason::Inconsistent)
    }
}

impl fmt::Display for MismatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchFunction(i) => write!(f, "the payload has no function {i}"),
            Self::LiveLength { pre, live } => {
                write!(f, "live code is {live} bytes, pre code {pre}")
            }
            Self::PreUndecodable(e) => write!(f, "pre code does not decode: {e}"),
            Self::BytesDiffer { pre, live } => {
                write!(f, "bytes differ (pre {pre}, live {live})")
            }
            Self::NotPatchedForm { what, live } => {
                write!(
                    f,
                    "live {live} is not what the kernel writes at this {what}"
                )
            }
            Self::AlternativeNotInstructions(e) => write!(
                f,
                "live alternative is not whole instructions filling the site: {e}"
            ),
            Self::UnsupportedSite { what, why } => write!(f, "unsupported {what}: {why}"),
            Self::BadSite(why) => write!(f, "bad payload site: {why}"),
            Self::BadRelocation(why) => write!(f, "bad payload relocation: {why}"),
            Self::Reloc(e) => write!(f, "{e}"),
            Self::Inconsistent => f.write_str("the live code contradicts an earlier inference"),
            Self::NotAThunk { target } => {
                write!(
                    f,
                    "branch target {target:#x} is not the kernel thunk expected there"
                )
            }
            Self::Rejected(why) => f.write_str(why),
            Self::BranchDiffers { pre, live } => {
                write!(f, "live {live} is not the branch {pre}, short or near")
            }
            Self::BranchTarget { expected, live } => write!(
                f,
                "a branch reaches +{live:#x} live, not +{expected:#x}, where its pre target is"
            ),
            Self::TooManyRelaxed => write!(
                f,
                "more than {MAX_RELAXED} branches are shorter live than in the pre code"
            ),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at +{:#x}: {}", self.offset, self.reason)
    }
}

/// Receives what the live code says, as the matcher finds it.
pub trait Sink {
    /// The live code implies symbol `symbol` (a payload symbol index) is at
    /// `value`. `offset` is the relocation's offset in the function, for
    /// error reports. Returning `Err` aborts the match.
    fn infer(&mut self, symbol: u32, value: u64, offset: u32) -> Result<(), Mismatch>;

    /// The live code branches to `target`, which must be a kernel thunk of
    /// `kind` (check its kallsyms name with [`ThunkKind::accepts`]).
    /// `offset` is the relocation's offset in the function.
    fn thunk(&mut self, kind: ThunkKind, target: u64, offset: u32) -> Result<(), Mismatch>;

    /// The live code of a retpoline site branches to `target`, which must be
    /// the indirect-branch thunk `thunk` describes. The default forwards to
    /// [`Sink::thunk`] with [`ThunkKind::Indirect`], which cannot check the
    /// register; override it to check with [`IndirectThunk::accepts`].
    fn indirect_thunk(
        &mut self,
        thunk: IndirectThunk,
        target: u64,
        offset: u32,
    ) -> Result<(), Mismatch> {
        let _ = thunk;
        self.thunk(ThunkKind::Indirect, target, offset)
    }
}

fn at(offset: usize) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}

fn mismatch(offset: usize, reason: MismatchReason) -> Mismatch {
    Mismatch::new(at(offset), reason)
}

fn reloc_kind(r: &RelocRec) -> Result<RelocKind, Mismatch> {
    RelocKind::from_elf(u32::from(r.kind))
        .map_err(|e| Mismatch::new(r.offset, MismatchReason::Reloc(e)))
}

/// The relocations of one instruction with their kinds; an instruction has
/// at most two relocatable operands (displacement and immediate).
type Fields = [Option<(RelocRec, RelocKind)>; 2];

/// Whether `[rel, rel + width)` of `insn` is one of its operand fields.
fn is_operand(insn: &Insn, rel: usize, width: usize) -> bool {
    [insn.disp, insn.imm, insn.imm2, insn.branch]
        .iter()
        .flatten()
        .any(|f| usize::from(f.offset) == rel && usize::from(f.size) == width)
}

/// Whether `[rel, rel + 4)` is the rel32 displacement of a branch.
fn is_branch_field(insn: &Insn, rel: usize) -> bool {
    insn.branch
        .is_some_and(|f| usize::from(f.offset) == rel && usize::from(f.size) == REL32)
}

/// A relative branch the assembler encodes short (`rel8`) when its target
/// is near and in the same section, else near (`rel32`): `jmp` or `jcc`
/// with its condition, without prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Branch {
    Jmp,
    Jcc(u8),
}

fn branch_form(bytes: &[u8], insn: &Insn) -> Option<Branch> {
    if insn.opcode_offset != 0 || insn.branch.is_none() {
        return None;
    }
    match bytes {
        [JMP_REL8, _] | [JMP_REL32, _, _, _, _] => Some(Branch::Jmp),
        [cc @ 0x70..=0x7f, _] => Some(Branch::Jcc(cc & 0x0f)),
        [0x0f, cc @ 0x80..=0x8f, _, _, _, _] => Some(Branch::Jcc(cc & 0x0f)),
        _ => None,
    }
}

/// The most branches of one function that may be shorter live than in the
/// pre code.
pub const MAX_RELAXED: usize = 64;

/// Where the live code runs shorter than the pre code. The pre code is
/// compiled with `-ffunction-sections`, so a branch to another function (a
/// tail call to a neighbouring static function, say) is always `rel32`
/// there, while kbuild's object, with every function in one `.text`, lets
/// the assembler use `rel8` when the target is near; every later offset
/// then moves. Each entry: a pre offset, and the bytes the instruction
/// starting there is shorter live.
struct Shifts {
    at: [(u32, u8); MAX_RELAXED],
    n: usize,
    total: usize,
}

impl Shifts {
    const fn new() -> Self {
        Self {
            at: [(0, 0); MAX_RELAXED],
            n: 0,
            total: 0,
        }
    }

    fn push(&mut self, o: usize, by: usize) -> Result<(), Mismatch> {
        let slot = self
            .at
            .get_mut(self.n)
            .ok_or(mismatch(o, MismatchReason::TooManyRelaxed))?;
        *slot = (at(o), u8::try_from(by).unwrap_or(u8::MAX));
        self.n = self.n.saturating_add(1);
        self.total = self.total.saturating_add(by);
        Ok(())
    }

    /// How much earlier the pre offset `o` (an instruction boundary) is live.
    fn before(&self, o: usize) -> usize {
        self.at
            .get(..self.n)
            .unwrap_or(&[])
            .iter()
            .filter(|(start, _)| (*start as usize) < o)
            .map(|(_, by)| usize::from(*by))
            .sum()
    }
}

/// The fewest bytes the live function can have: the pre code with every
/// near `jmp` and `jcc` short.
pub fn shortest_live_len(payload: &Payload<'_>, function: u32) -> u32 {
    let Some(f) = payload.functions.get(function) else {
        return 0;
    };
    let code = payload.code(&f);
    let mut o = 0usize;
    let mut saved = 0usize;
    while let Some(Ok(insn)) = code.get(o..).filter(|r| !r.is_empty()).map(x86::decode) {
        let end = o.saturating_add(insn.size());
        if let Some(bytes) = code.get(o..end) {
            if branch_form(bytes, &insn).is_some() {
                saved = saved.saturating_add(insn.size().saturating_sub(2));
            }
        }
        o = end;
    }
    at(code.len().saturating_sub(saved))
}

/// Whether `bytes` decode as NOP instructions exactly filling them.
fn all_nops(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        match x86::decode(rest) {
            Ok(insn) if insn.kind == Kind::Nop => pos = pos.saturating_add(insn.size()),
            _ => return false,
        }
    }
    true
}

/// Whether `bytes` decode as whole instructions exactly filling them; the
/// offset and error of the first that does not.
fn whole_instructions(bytes: &[u8]) -> Result<(), (usize, DecodeError)> {
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        let insn = x86::decode(rest).map_err(|e| (pos, e))?;
        pos = pos.saturating_add(insn.size());
    }
    Ok(())
}

/// Whether `bytes` are what the kernel's `emit_indirect` writes for a
/// retpoline through `reg` (optionally after `lfence`): `[cs]* [41] ff
/// d0+r` padded with NOPs for a call, `[41] ff e0+r` padded with `int3` for
/// a jump.
fn is_emitted_indirect(bytes: &[u8], reg: u8, call: bool) -> bool {
    let mut i = 0usize;
    if bytes.starts_with(&LFENCE) {
        i = LFENCE.len();
    }
    if call {
        // emit_indirect uses up to three CS prefixes as padding.
        for _ in 0..3 {
            if bytes.get(i) == Some(&CS_PREFIX) {
                i = i.saturating_add(1);
            }
        }
    }
    if reg >= 8 {
        if bytes.get(i) != Some(&REX_B) {
            return false;
        }
        i = i.saturating_add(1);
    }
    let modrm = (if call { 0xd0 } else { 0xe0 }) | (reg & 7);
    if bytes.get(i..i.saturating_add(2)) != Some(&[0xff, modrm][..]) {
        return false;
    }
    match bytes.get(i.saturating_add(2)..) {
        Some(rest) if call => all_nops(rest),
        Some(rest) => rest.iter().all(|&b| b == INT3),
        None => false,
    }
}

/// The pre code, live code and payload of one function being matched.
struct Walk<'p, 'a, 'l> {
    payload: &'p Payload<'a>,
    code: &'a [u8],
    live: &'l [u8],
    addr: u64,
    /// How much earlier than the pre offset the live code is here.
    shift: usize,
}

/// What a jump-label site check decided.
enum Decided {
    Matched,
    /// Compare it as an ordinary instruction.
    AsInstruction,
}

impl Walk<'_, '_, '_> {
    fn decode_pre(&self, o: usize) -> Result<Insn, Mismatch> {
        let rest = self.code.get(o..).unwrap_or(&[]);
        x86::decode(rest).map_err(|e| mismatch(o, MismatchReason::PreUndecodable(e)))
    }

    /// The live offset of pre offset `o`.
    fn live_offset(&self, o: usize) -> usize {
        o.saturating_sub(self.shift)
    }

    /// The pre bytes of `[o, o + n)` and the live bytes at the same place.
    fn bytes(&self, o: usize, n: usize) -> Result<(&[u8], &[u8]), Mismatch> {
        let end = o.saturating_add(n);
        let pre = self.code.get(o..end);
        let lo = self.live_offset(o);
        let live = self.live.get(lo..lo.saturating_add(n));
        match (pre, live) {
            (Some(pre), Some(live)) => Ok((pre, live)),
            _ => Err(mismatch(
                o,
                MismatchReason::LiveLength {
                    pre: at(self.code.len()),
                    live: at(self.live.len()),
                },
            )),
        }
    }

    /// Where the `rel32` branch that ends `live` (at offset `o`) goes.
    fn rel32_target(&self, o: usize, live: &[u8]) -> u64 {
        let n = live.len();
        let rel = live
            .get(n.saturating_sub(REL32)..)
            .and_then(|b| <[u8; REL32]>::try_from(b).ok())
            .map_or(0, i32::from_le_bytes);
        self.addr
            .wrapping_add(self.live_offset(o) as u64)
            .wrapping_add(n as u64)
            .wrapping_add(i64::from(rel) as u64)
    }

    fn is_section(&self, symbol: u32) -> bool {
        self.payload.symbol_kind(symbol) == Some(SymbolKind::Section)
    }

    /// An instruction with no relocation: equal bytes, except a sealed entry
    /// ENDBR and NOPs of another encoding.
    fn plain(&self, o: usize, insn: &Insn) -> Result<(), Mismatch> {
        let (pre, live) = self.bytes(o, insn.size())?;
        if pre == live
            || (o == 0 && pre == ENDBR64 && live == ENDBR_POISON)
            || (insn.kind == Kind::Nop
                && x86::decode(live).is_ok_and(|l| l.kind == Kind::Nop && l.size() == insn.size()))
        {
            return Ok(());
        }
        Err(mismatch(
            o,
            MismatchReason::BytesDiffer {
                pre: Bytes::new(pre),
                live: Bytes::new(live),
            },
        ))
    }

    /// An instruction with relocations: a runtime-patched call or jump is
    /// matched by what the kernel writes there, anything else byte for byte
    /// outside the fields, which give the symbol values.
    fn relocated<S: Sink>(
        &self,
        o: usize,
        insn: &Insn,
        fields: &Fields,
        sink: &mut S,
    ) -> Result<(), Mismatch> {
        if let [Some(field), None] = fields {
            if self.patched(o, insn, field, sink)? {
                return Ok(());
            }
        }
        let (pre, live) = self.bytes(o, insn.size())?;
        let in_field = |i: usize| {
            fields.iter().flatten().any(|(r, kind)| {
                let start = (r.offset as usize).saturating_sub(o);
                i >= start && i < start.saturating_add(kind.width())
            })
        };
        let differs = pre
            .iter()
            .zip(live)
            .enumerate()
            .any(|(i, (p, l))| p != l && !in_field(i));
        if differs {
            return Err(mismatch(
                o,
                MismatchReason::BytesDiffer {
                    pre: Bytes::new(pre),
                    live: Bytes::new(live),
                },
            ));
        }
        for (r, kind) in fields.iter().flatten() {
            // Anonymous data has no symbol to learn; string literals are
            // reported so the caller can check their text.
            if self.is_section(r.symbol)
                && !self
                    .payload
                    .symbol_name(r.symbol)
                    .starts_with(super::payload::STRING_PREFIX)
            {
                continue;
            }
            let lo = self.live_offset(r.offset as usize);
            let value = kind
                .infer(self.live, lo, r.addend, self.addr.wrapping_add(lo as u64))
                .map_err(|e| Mismatch::new(r.offset, MismatchReason::Reloc(e)))?;
            sink.infer(r.symbol, value, r.offset)?;
        }
        Ok(())
    }

    /// A `jmp` or `jcc` of the pre code (`form`), which may be short live.
    /// With a relocation (to another function): the live branch, of either
    /// length, gives the symbol. Without one (inside the function): the
    /// target is checked once every shift is known ([`check_targets`]).
    /// Returns how many bytes shorter the live branch is. Never called for
    /// a branch to a runtime-patched symbol ([`Walk::patched`] has those).
    fn branch<S: Sink>(
        &self,
        o: usize,
        insn: &Insn,
        form: Branch,
        fields: &Fields,
        sink: &mut S,
    ) -> Result<usize, Mismatch> {
        let lo = self.live_offset(o);
        let rest = self.live.get(lo..).unwrap_or(&[]);
        let live_insn = x86::decode(rest).ok();
        let live = live_insn.and_then(|l| rest.get(..l.size())).unwrap_or(&[]);
        let pre = self
            .code
            .get(o..o.saturating_add(insn.size()))
            .unwrap_or(&[]);
        let differs = || {
            mismatch(
                o,
                MismatchReason::BranchDiffers {
                    pre: Bytes::new(pre),
                    live: Bytes::new(live),
                },
            )
        };
        let live_insn = live_insn
            .filter(|l| branch_form(live, l) == Some(form))
            .ok_or_else(differs)?;
        let shorter = insn
            .size()
            .checked_sub(live_insn.size())
            .ok_or_else(differs)?;
        match fields {
            [None, None] => Ok(shorter),
            [Some(_), None] if shorter == 0 => {
                self.relocated(o, insn, fields, sink)?;
                Ok(0)
            }
            [Some((r, kind)), None] => {
                let rel = (r.offset as usize).saturating_sub(o);
                let relaxable = is_branch_field(insn, rel)
                    && matches!(kind, RelocKind::Pc32 | RelocKind::Plt32);
                if !relaxable {
                    return Err(differs());
                }
                if !self.is_section(r.symbol) {
                    // A near branch reaches S + A + 4 (its field ends the
                    // instruction); the short one says where that is.
                    let target = live_insn
                        .branch_target(self.addr.wrapping_add(lo as u64))
                        .ok_or_else(differs)?;
                    let value = target
                        .wrapping_sub(r.addend as u64)
                        .wrapping_sub(REL32 as u64);
                    sink.infer(r.symbol, value, r.offset)?;
                }
                Ok(shorter)
            }
            _ => Err(differs()),
        }
    }

    /// Matches a call or jump to a runtime-patched symbol. `Ok(false)`: not
    /// such a site, or left unchanged; match it as an ordinary instruction.
    fn patched<S: Sink>(
        &self,
        o: usize,
        insn: &Insn,
        (r, _): &(RelocRec, RelocKind),
        sink: &mut S,
    ) -> Result<bool, Mismatch> {
        if self.is_section(r.symbol) {
            return Ok(false);
        }
        let name = self.payload.symbol_name(r.symbol);
        let Some(what) = Patched::of_symbol(name) else {
            return Ok(false);
        };
        let rel = (r.offset as usize).saturating_sub(o);
        let (pre, live) = self.bytes(o, insn.size())?;
        let not_patched_form = || {
            Err(mismatch(
                o,
                MismatchReason::NotPatchedForm {
                    what,
                    live: Bytes::new(live),
                },
            ))
        };
        let unsupported =
            |why: &'static str| Err(mismatch(o, MismatchReason::UnsupportedSite { what, why }));
        if what == Patched::PvCall {
            // Only `call *pv_ops+N(%rip)` is patched; other uses are data.
            if pre.len() != 6 || !pre.starts_with(&[0xff, 0x15]) || rel != 2 {
                return Ok(false);
            }
            if live.starts_with(&[0xff, 0x15]) {
                return Ok(false);
            }
            if (live.first() == Some(&CALL_REL32) && live.get(5) == Some(&0x90)) || all_nops(live) {
                return Ok(true);
            }
            return not_patched_form();
        }
        // The kernel patches calls and jumps, not data references.
        if !is_branch_field(insn, rel) {
            return Ok(false);
        }
        let head = pre.get(..rel).unwrap_or(&[]);
        let live_head = live.get(..rel);
        match what {
            Patched::Fentry => {
                let entry = o == 0 || (o == ENDBR64.len() && self.code.starts_with(&ENDBR64));
                if !entry || head != [CALL_REL32] {
                    return unsupported("not a call at the function entry");
                }
                if live == x86::NOP5 || matches!(live.first(), Some(&(CALL_REL32 | JMP_REL32))) {
                    return Ok(true);
                }
                not_patched_form()
            }
            Patched::ReturnThunk => {
                if head != [JMP_REL32] {
                    return unsupported("reached other than by jmp rel32");
                }
                if live == RET_INT3 {
                    return Ok(true);
                }
                if live_head == Some(head) {
                    sink.thunk(ThunkKind::Return, self.rel32_target(o, live), r.offset)?;
                    return Ok(true);
                }
                not_patched_form()
            }
            Patched::IndirectThunk => {
                let Some(reg) = name
                    .strip_prefix("__x86_indirect_thunk_")
                    .and_then(register_number)
                else {
                    return unsupported("unknown register in the thunk name");
                };
                let (call, jcc) = match head {
                    [CALL_REL32] | [CS_PREFIX, CALL_REL32] => (true, None),
                    [JMP_REL32] | [CS_PREFIX, JMP_REL32] => (false, None),
                    [0x0f, cc @ 0x80..=0x8f] => (false, Some(cc & 0x0f)),
                    _ => return unsupported("not a call, jmp or jcc rel32"),
                };
                // Unchanged, or redirected to another thunk (call depth, ITS):
                // the bytes cannot tell, so the kernel checks the target's name.
                if live_head == Some(head) {
                    let thunk = IndirectThunk { reg, call };
                    sink.indirect_thunk(thunk, self.rel32_target(o, live), r.offset)?;
                    return Ok(true);
                }
                let inlined = match jcc {
                    None => is_emitted_indirect(live, reg, call),
                    // Jcc.d32 becomes Jncc.d8 over an inline `jmp *%reg`.
                    Some(cc) => {
                        let skip = u8::try_from(live.len().saturating_sub(2)).unwrap_or(0);
                        live.get(..2) == Some(&[0x70 | (cc ^ 1), skip][..])
                            && live
                                .get(2..)
                                .is_some_and(|rest| is_emitted_indirect(rest, reg, false))
                    }
                };
                if inlined {
                    return Ok(true);
                }
                not_patched_form()
            }
            Patched::StaticCall => {
                let ok = match head {
                    [CALL_REL32] => {
                        live.first() == Some(&CALL_REL32)
                            || [
                                &x86::NOP5,
                                &STATIC_CALL_XOR5RAX,
                                &STATIC_CALL_WARN,
                                &STATIC_CALL_UNLOCK,
                            ]
                            .iter()
                            .any(|form| live == form.as_slice())
                    }
                    [JMP_REL32] => live.first() == Some(&JMP_REL32) || live == RET_INT3,
                    [0x0f, 0x80..=0x8f] => live_head == Some(head),
                    _ => return unsupported("not a call, jmp or jcc rel32"),
                };
                if ok {
                    return Ok(true);
                }
                not_patched_form()
            }
            // Handled above; sites are not symbols.
            Patched::PvCall | Patched::JumpLabel | Patched::Alternative => Ok(false),
        }
    }

    /// A jump-label site `[o, o + n)`, one instruction: the kernel NOP of its
    /// length, or its `jmp`; a NOP in the pre code may be any `jmp` live.
    fn jump_label(&self, o: usize, insn: &Insn) -> Result<Decided, Mismatch> {
        let (pre, live) = self.bytes(o, insn.size())?;
        if x86::nop(insn.size()) == Some(live) {
            return Ok(Decided::Matched);
        }
        match insn.kind {
            Kind::Nop => {
                let jmp = match live.first() {
                    Some(&JMP_REL8) => live.len() == 2,
                    Some(&JMP_REL32) => live.len() == 5,
                    _ => false,
                };
                if jmp || live == pre {
                    Ok(Decided::Matched)
                } else {
                    Err(mismatch(
                        o,
                        MismatchReason::NotPatchedForm {
                            what: Patched::JumpLabel,
                            live: Bytes::new(live),
                        },
                    ))
                }
            }
            Kind::Jmp => Ok(Decided::AsInstruction),
            _ => Err(mismatch(
                o,
                MismatchReason::UnsupportedSite {
                    what: Patched::JumpLabel,
                    why: "the pre code there is neither a jmp nor a NOP",
                },
            )),
        }
    }

    /// An alternative site `[o, end)`: whatever boot chose, as long as it is
    /// whole instructions filling the site.
    fn alternative(&self, o: usize, end: usize) -> Result<(), Mismatch> {
        let (pre, live) = self.bytes(o, end.saturating_sub(o))?;
        whole_instructions(pre).map_err(|(pos, e)| {
            mismatch(o.saturating_add(pos), MismatchReason::PreUndecodable(e))
        })?;
        whole_instructions(live).map_err(|(pos, e)| {
            mismatch(
                o.saturating_add(pos),
                MismatchReason::AlternativeNotInstructions(e),
            )
        })
    }
}

/// Takes the relocations of the instruction `insn` at `o` off `relocs`,
/// checking that each is one of its operand fields.
fn take_fields<I: Iterator<Item = RelocRec>>(
    relocs: &mut core::iter::Peekable<I>,
    o: usize,
    insn: &Insn,
) -> Result<Fields, Mismatch> {
    let end = o.saturating_add(insn.size());
    let mut fields: Fields = [None, None];
    let mut count = 0usize;
    while let Some(r) = relocs.peek().copied() {
        let start = r.offset as usize;
        if start >= end {
            break;
        }
        let kind = reloc_kind(&r)?;
        let bad = |why| Mismatch::new(r.offset, MismatchReason::BadRelocation(why));
        let rel = start
            .checked_sub(o)
            .ok_or(bad("field crosses an instruction boundary"))?;
        if !is_operand(insn, rel, kind.width()) {
            return Err(bad("field is not an operand of its instruction"));
        }
        *fields
            .get_mut(count)
            .ok_or(bad("more fields than the instruction has operands"))? = Some((r, kind));
        count = count.saturating_add(1);
        relocs.next();
    }
    Ok(fields)
}

/// Takes the relocations inside a site `[start, end)` off `relocs`: the live
/// bytes there are not the pre code's, so nothing is learnt from them.
fn skip_fields<I: Iterator<Item = RelocRec>>(
    relocs: &mut core::iter::Peekable<I>,
    start: usize,
    end: usize,
) -> Result<(), Mismatch> {
    while let Some(r) = relocs.peek().copied() {
        let offset = r.offset as usize;
        if offset >= end {
            break;
        }
        let width = reloc_kind(&r)?.width();
        if offset < start || offset.saturating_add(width) > end {
            return Err(Mismatch::new(
                r.offset,
                MismatchReason::BadRelocation("field crosses a site boundary"),
            ));
        }
        relocs.next();
    }
    Ok(())
}

/// Matches the pre code of payload function `function` against `live`, its
/// bytes in the running kernel at address `addr`. Reports what the live
/// relocation fields say to `sink`; the first difference the kernel's
/// runtime patching does not explain is the error.
pub fn match_function<S: Sink>(
    payload: &Payload<'_>,
    function: u32,
    addr: u64,
    live: &[u8],
    sink: &mut S,
) -> Result<(), Mismatch> {
    let f = payload
        .functions
        .get(function)
        .ok_or(Mismatch::new(0, MismatchReason::NoSuchFunction(function)))?;
    let code = payload.code(&f);
    if live.len() != code.len() {
        return Err(mismatch(
            live.len().min(code.len()),
            MismatchReason::LiveLength {
                pre: at(code.len()),
                live: at(live.len()),
            },
        ));
    }
    let mut walk = Walk {
        payload,
        code,
        live,
        addr,
        shift: 0,
    };
    let mut shifts = Shifts::new();
    // The trampoline's bytes are found at pre offsets: nothing may move
    // before they end.
    let fixed = trampoline_window(payload, function).map_or(0, |w| w.end as usize);
    let mut relocs = payload.relocs(&f).peekable();
    let mut sites = payload.sites_of(function).peekable();
    let mut o = 0usize;
    while o < code.len() {
        walk.shift = shifts.total;
        let insn = walk.decode_pre(o)?;
        let end = o.saturating_add(insn.size());
        if let Some(site) = sites.peek().copied() {
            let start = site.offset as usize;
            let site_end = start.saturating_add(usize::from(site.len));
            if start < end {
                if start != o {
                    return Err(mismatch(
                        start,
                        MismatchReason::BadSite("site does not start at an instruction"),
                    ));
                }
                sites.next();
                match SiteKind::from_u8(site.kind) {
                    Some(SiteKind::Alternative) => {
                        walk.alternative(o, site_end)?;
                        skip_fields(&mut relocs, o, site_end)?;
                        o = site_end;
                        continue;
                    }
                    Some(SiteKind::JumpLabel) => {
                        if site_end != end {
                            return Err(mismatch(
                                o,
                                MismatchReason::BadSite("jump-label site is not one instruction"),
                            ));
                        }
                        if let Decided::Matched = walk.jump_label(o, &insn)? {
                            skip_fields(&mut relocs, o, end)?;
                            o = end;
                            continue;
                        }
                    }
                    None => return Err(mismatch(o, MismatchReason::BadSite("unknown kind"))),
                }
            }
        }
        let fields = take_fields(&mut relocs, o, &insn)?;
        let form = code.get(o..end).and_then(|b| branch_form(b, &insn));
        let patched = |(r, _): &(RelocRec, RelocKind)| {
            !walk.is_section(r.symbol)
                && Patched::of_symbol(payload.symbol_name(r.symbol)).is_some()
        };
        match form {
            Some(form) if !fields.iter().flatten().any(patched) => {
                let shorter = walk.branch(o, &insn, form, &fields, sink)?;
                if shorter > 0 {
                    if o < fixed {
                        return Err(mismatch(
                            o,
                            MismatchReason::UnsupportedSite {
                                what: Patched::Fentry,
                                why: "a branch in the trampoline's bytes is shorter live",
                            },
                        ));
                    }
                    shifts.push(o, shorter)?;
                }
            }
            _ if matches!(fields, [Some(_), _]) => walk.relocated(o, &insn, &fields, sink)?,
            _ => walk.plain(o, &insn)?,
        }
        o = end;
    }
    check_targets(payload, function, &f, code, live, &shifts)?;
    // The parser keeps both inside the function; this is belt and braces.
    if let Some(r) = relocs.next() {
        return Err(Mismatch::new(
            r.offset,
            MismatchReason::BadRelocation("field outside the instructions"),
        ));
    }
    if let Some(s) = sites.next() {
        return Err(Mismatch::new(
            s.offset,
            MismatchReason::BadSite("site outside the instructions"),
        ));
    }
    Ok(())
}

/// Every `jmp` and `jcc` inside the function (no relocation) reaches, live,
/// the place its pre target moved to: with shifts, a displacement differs
/// from the pre code's, so it is compared by where it lands. The walk has
/// checked that each such live instruction is the same branch.
fn check_targets(
    payload: &Payload<'_>,
    function: u32,
    f: &FunctionRec,
    code: &[u8],
    live: &[u8],
    shifts: &Shifts,
) -> Result<(), Mismatch> {
    let mut relocs = payload.relocs(f).peekable();
    let mut sites = payload.sites_of(function).peekable();
    let mut o = 0usize;
    while o < code.len() {
        let insn = x86::decode(code.get(o..).unwrap_or(&[]))
            .map_err(|e| mismatch(o, MismatchReason::PreUndecodable(e)))?;
        let end = o.saturating_add(insn.size());
        // Alternatives are whatever boot chose; their bytes are not compared.
        if let Some(site) = sites.peek().copied() {
            let start = site.offset as usize;
            if start < end {
                sites.next();
                if SiteKind::from_u8(site.kind) == Some(SiteKind::Alternative) {
                    o = start.saturating_add(usize::from(site.len)).max(end);
                    continue;
                }
            }
        }
        let mut relocated = false;
        while relocs.peek().is_some_and(|r| (r.offset as usize) < end) {
            relocs.next();
            relocated = true;
        }
        let form = code.get(o..end).and_then(|b| branch_form(b, &insn));
        if let (Some(form), false) = (form, relocated) {
            let lo = o.saturating_sub(shifts.before(o));
            let rest = live.get(lo..).unwrap_or(&[]);
            // A jump-label site may be a NOP live: the walk accepted that.
            if let Ok(l) = x86::decode(rest) {
                let same = rest.get(..l.size()).and_then(|b| branch_form(b, &l)) == Some(form);
                if same {
                    let pre_target = insn.branch_target(o as u64).unwrap_or(0) as i64;
                    let live_target = l.branch_target(lo as u64).unwrap_or(0) as i64;
                    let inside = usize::try_from(pre_target).is_ok_and(|t| t <= code.len());
                    let want = if inside {
                        let t = pre_target as usize;
                        t.saturating_sub(shifts.before(t)) as i64
                    } else {
                        // Leaving the function without a relocation: only
                        // where nothing moved.
                        pre_target - shifts.total as i64
                    };
                    if live_target != want || (!inside && shifts.total > 0) {
                        return Err(mismatch(
                            o,
                            MismatchReason::BranchTarget {
                                expected: u32::try_from(want).unwrap_or(u32::MAX),
                                live: u32::try_from(live_target).unwrap_or(u32::MAX),
                            },
                        ));
                    }
                }
            }
        }
        o = end;
    }
    Ok(())
}

/// Why no trampoline can be written into a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteError {
    /// The payload has no function with this index.
    NoSuchFunction(u32),
    /// The function is shorter than the bytes the `jmp` needs.
    TooShort { len: u32, need: u32 },
    /// The pre code does not decode at `offset`.
    Undecodable { offset: u32, error: DecodeError },
    /// The trampoline would start inside an instruction.
    NotAnInstruction { offset: u32 },
    /// A branch of the function lands inside the overwritten instructions.
    BranchInto { from: u32, target: u32 },
    /// A relocation in the payload (a `.cold` part, say) refers to an offset
    /// inside the overwritten instructions.
    ReferenceInto { target: u32 },
    /// The overwritten instructions include one the kernel patches at runtime.
    RuntimePatched { offset: u32, what: Patched },
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchFunction(i) => write!(f, "the payload has no function {i}"),
            Self::TooShort { len, need } => write!(
                f,
                "function is {len} bytes, a trampoline there needs {need}"
            ),
            Self::Undecodable { offset, error } => {
                write!(f, "pre code does not decode at +{offset:#x}: {error}")
            }
            Self::NotAnInstruction { offset } => {
                write!(f, "+{offset:#x} is not the start of an instruction")
            }
            Self::BranchInto { from, target } => write!(
                f,
                "the branch at +{from:#x} lands at +{target:#x}, inside the trampoline"
            ),
            Self::ReferenceInto { target } => write!(
                f,
                "a relocation refers to +{target:#x}, inside the trampoline"
            ),
            Self::RuntimePatched { offset, what } => {
                write!(
                    f,
                    "the trampoline would overwrite the {what} at +{offset:#x}"
                )
            }
        }
    }
}

/// Whether the instruction at `o` is the `call __fentry__` site.
fn is_fentry_call(payload: &Payload<'_>, f: &FunctionRec, code: &[u8], o: usize) -> bool {
    let call = code
        .get(o..)
        .and_then(|rest| x86::decode(rest).ok())
        .is_some_and(|insn| {
            insn.kind == Kind::Call && insn.size() == x86::JMP_REL32_LEN && insn.opcode_offset == 0
        });
    call && payload.relocs(f).any(|r| {
        r.offset as usize == o.saturating_add(1)
            && payload.symbol_kind(r.symbol) != Some(SymbolKind::Section)
            && payload.symbol_name(r.symbol) == "__fentry__"
    })
}

/// The bytes of a function a trampoline affects, as offsets from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The `call __fentry__` site, where ftrace's record of the function
    /// is, if the function has one.
    pub fentry: Option<u32>,
    /// Where the 5-byte `jmp` goes.
    pub start: u32,
    /// The end of the last original instruction the `jmp` overlaps: the
    /// `jmp` overwrites `[start, start + 5)`, and `[start + 5, end)` is the
    /// tail of an instruction it cut, which no one may probe or change while
    /// the update is applied, because undo makes those bytes live again.
    pub end: u32,
}

/// Where ksplice writes its 5-byte `jmp` into the function: after the ENDBR
/// (indirect callers must still land on it) and after the ftrace call site
/// (writing over it breaks ftrace, facts §6). The overwritten instructions
/// `[start, E)` must not be runtime-patched, and no known branch may land
/// strictly inside them. Branches from outside the payload (exception-table
/// fixups, other kernel code) cannot be seen here.
pub fn trampoline_window(payload: &Payload<'_>, function: u32) -> Result<Window, SiteError> {
    let f = payload
        .functions
        .get(function)
        .ok_or(SiteError::NoSuchFunction(function))?;
    let code = payload.code(&f);
    let mut start = 0usize;
    if code.starts_with(&ENDBR64) {
        start = ENDBR64.len();
    }
    let mut fentry = None;
    if is_fentry_call(payload, &f, code, start) {
        fentry = Some(at(start));
        start = start.saturating_add(x86::JMP_REL32_LEN);
    }
    let need = start.saturating_add(x86::JMP_REL32_LEN);
    if code.len() < need {
        return Err(SiteError::TooShort {
            len: at(code.len()),
            need: at(need),
        });
    }
    let decode = |o: usize| {
        x86::decode(code.get(o..).unwrap_or(&[])).map_err(|error| SiteError::Undecodable {
            offset: at(o),
            error,
        })
    };

    // The end E of the instruction covering the jmp's last byte.
    let last = need.saturating_sub(1);
    let mut o = 0usize;
    let mut boundary = false;
    let end_of_patch = loop {
        let insn = decode(o)?;
        let end = o.saturating_add(insn.size());
        boundary |= o == start;
        if last < end {
            break end;
        }
        o = end;
    };
    if !boundary {
        return Err(SiteError::NotAnInstruction { offset: at(start) });
    }
    let inside = |target: i64| {
        i64::try_from(start).is_ok_and(|s| target > s)
            && i64::try_from(end_of_patch).is_ok_and(|e| target < e)
    };

    for site in payload.sites_of(function) {
        let site_start = site.offset as usize;
        let site_end = site_start.saturating_add(usize::from(site.len));
        if site_start < end_of_patch && site_end > start {
            return Err(SiteError::RuntimePatched {
                offset: site.offset,
                what: Patched::of_site(SiteKind::from_u8(site.kind)),
            });
        }
    }

    let mut relocs = payload.relocs(&f).peekable();
    let mut o = 0usize;
    while o < code.len() {
        let insn = decode(o)?;
        let end = o.saturating_add(insn.size());
        let mut branch_relocated = false;
        while let Some(r) = relocs.peek().copied() {
            let offset = r.offset as usize;
            if offset >= end {
                break;
            }
            relocs.next();
            let rel = offset.saturating_sub(o);
            branch_relocated |= is_branch_field(&insn, rel);
            if o < end_of_patch
                && end > start
                && payload.symbol_kind(r.symbol) != Some(SymbolKind::Section)
            {
                if let Some(what) = Patched::of_symbol(payload.symbol_name(r.symbol)) {
                    return Err(SiteError::RuntimePatched {
                        offset: at(o),
                        what,
                    });
                }
            }
        }
        if let (Some(branch), false) = (insn.branch, branch_relocated) {
            let target = i64::try_from(end)
                .ok()
                .and_then(|e| e.checked_add(branch.value));
            if let Some(target) = target.filter(|&t| inside(t)) {
                return Err(SiteError::BranchInto {
                    from: at(o),
                    target: u32::try_from(target).unwrap_or(u32::MAX),
                });
            }
        }
        o = end;
    }

    // References to this function's interior from anywhere in the payload,
    // e.g. a `.cold` part jumping back: S + A (+ 4 for a rel32 field).
    let interior = |kind: u8, addend: i64| {
        let pc32 = matches!(
            RelocKind::from_elf(u32::from(kind)),
            Ok(RelocKind::Pc32 | RelocKind::Plt32)
        );
        let target = if pc32 {
            addend.checked_add(REL32 as i64)
        } else {
            Some(addend)
        };
        target.filter(|&t| inside(t))
    };
    let pre = payload
        .pre_relocs
        .iter()
        .filter(|r| r.symbol == f.symbol)
        .map(|r| (r.kind, r.addend));
    let post = payload
        .post_relocs
        .iter()
        .filter(|r| r.symbol == f.symbol)
        .map(|r| (r.kind, r.addend));
    if let Some(target) = pre
        .chain(post)
        .find_map(|(kind, addend)| interior(kind, addend))
    {
        return Err(SiteError::ReferenceInto {
            target: u32::try_from(target).unwrap_or(u32::MAX),
        });
    }
    Ok(Window {
        fentry,
        start: at(start),
        end: at(end_of_patch),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::payload::HeaderFields;
    use super::super::writer::{PayloadWriter, SymbolSpec};
    use super::*;

    /// `(offset, symbol, symbol kind, relocation kind, addend)`.
    type R<'s> = (u32, &'s str, SymbolKind, RelocKind, i64);

    /// `call sym` / `jmp sym`: a rel32 branch field.
    fn branch(offset: u32, symbol: &str) -> R<'_> {
        (offset, symbol, SymbolKind::Function, RelocKind::Plt32, -4)
    }

    /// A RIP-relative reference to a variable.
    fn data(offset: u32, symbol: &str, addend: i64) -> R<'_> {
        (offset, symbol, SymbolKind::Object, RelocKind::Pc32, addend)
    }

    /// A payload with one function `f` (and optionally more after it).
    fn build(code: &[u8], relocs: &[R<'_>], sites: &[(u32, u16, SiteKind)]) -> Vec<u8> {
        build_many(&[("f", code, relocs, sites)])
    }

    type FnSpec<'a> = (&'a str, &'a [u8], &'a [R<'a>], &'a [(u32, u16, SiteKind)]);

    fn build_many(functions: &[FnSpec<'_>]) -> Vec<u8> {
        let mut w = PayloadWriter::default();
        let mut symbols: HashMap<String, u32> = HashMap::new();
        let mut symbol = |w: &mut PayloadWriter, unit: Option<&str>, name: &str, kind| {
            *symbols.entry(name.to_string()).or_insert_with(|| {
                w.symbol(&SymbolSpec {
                    unit,
                    name,
                    kind,
                    module: None,
                })
                .unwrap()
            })
        };
        for &(name, code, relocs, sites) in functions {
            let f = symbol(&mut w, Some("t.o"), name, SymbolKind::Function);
            let mut rs = Vec::new();
            for &(offset, sym, kind, rk, addend) in relocs {
                let index = symbol(&mut w, None, sym, kind);
                rs.push((offset, index, rk as u8, addend));
            }
            let index = w.add_function(f, code, &rs).unwrap();
            for &(offset, len, kind) in sites {
                w.add_site(index, offset, len, kind);
            }
        }
        let header = HeaderFields {
            id: "t",
            release: "7.3.4",
            build_id: &[0xab; 20],
        };
        w.finish(&header).unwrap()
    }

    /// What the matcher told the sink, with symbol names.
    #[derive(Debug, Default)]
    struct Seen {
        infers: Vec<(String, u64, u32)>,
        thunks: Vec<(ThunkKind, u64, u32)>,
        indirect: Vec<(IndirectThunk, u64, u32)>,
    }

    #[derive(Default)]
    struct Recorder {
        infers: Vec<(u32, u64, u32)>,
        thunks: Vec<(ThunkKind, u64, u32)>,
        indirect: Vec<(IndirectThunk, u64, u32)>,
    }

    impl Sink for Recorder {
        fn infer(&mut self, symbol: u32, value: u64, offset: u32) -> Result<(), Mismatch> {
            self.infers.push((symbol, value, offset));
            Ok(())
        }
        fn thunk(&mut self, kind: ThunkKind, target: u64, offset: u32) -> Result<(), Mismatch> {
            self.thunks.push((kind, target, offset));
            Ok(())
        }
        fn indirect_thunk(
            &mut self,
            thunk: IndirectThunk,
            target: u64,
            offset: u32,
        ) -> Result<(), Mismatch> {
            self.indirect.push((thunk, target, offset));
            Ok(())
        }
    }

    fn run_at(
        payload: &[u8],
        function: u32,
        addr: u64,
        live: &[u8],
    ) -> (Result<(), Mismatch>, Seen) {
        let p = Payload::parse(payload).unwrap();
        let mut r = Recorder::default();
        let result = match_function(&p, function, addr, live, &mut r);
        let seen = Seen {
            infers: r
                .infers
                .iter()
                .map(|&(s, v, o)| (p.symbol_name(s).to_string(), v, o))
                .collect(),
            thunks: r.thunks,
            indirect: r.indirect,
        };
        (result, seen)
    }

    fn run(payload: &[u8], addr: u64, live: &[u8]) -> (Result<(), Mismatch>, Seen) {
        run_at(payload, 0, addr, live)
    }

    fn reason(payload: &[u8], live: &[u8]) -> (u32, MismatchReason) {
        let m = run(payload, ADDR, live).0.unwrap_err();
        (m.offset, m.reason)
    }

    fn trampoline(payload: &[u8]) -> Result<u32, SiteError> {
        trampoline_window(&Payload::parse(payload).unwrap(), 0).map(|w| w.start)
    }

    /// Any kernel text address for the small fragments.
    const ADDR: u64 = 0xffff_ffff_8130_0000;

    fn with(base: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    }

    /// `op rel32` at `from` reaching `to` (`e8` call, `e9` jmp).
    fn rel32(op: u8, from: u64, to: u64) -> [u8; 5] {
        let mut b = x86::encode_jmp_rel32(from, to).unwrap();
        b[0] = op;
        b
    }

    // ---- The golden pairs: pre code from the kernel's .o, live code from
    // its vmlinux with boot-time patching applied by hand (facts §3, §6).

    const GOLDEN: &str = include_str!("../tests/fixtures/runpre-golden.txt");

    struct Golden {
        pre: Vec<u8>,
        addr: u64,
        vmlinux: Vec<u8>,
        relocs: Vec<(u32, u32, String, i64)>,
        sites: Vec<(u32, u16, SiteKind)>,
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn golden(name: &str) -> Golden {
        let mut g = None;
        let mut current = false;
        for line in GOLDEN.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"#") {
                current = words.get(1) == Some(&name);
                if current {
                    g = Some(Golden {
                        pre: Vec::new(),
                        addr: 0,
                        vmlinux: Vec::new(),
                        relocs: Vec::new(),
                        sites: Vec::new(),
                    });
                }
                continue;
            }
            let Some(g) = g.as_mut().filter(|_| current) else {
                continue;
            };
            match words[0] {
                "pre" => g.pre = hex(words[1]),
                "vmlinux" => {
                    g.addr = u64::from_str_radix(words[1], 16).unwrap();
                    g.vmlinux = hex(words[2]);
                }
                "reloc" => g.relocs.push((
                    u32::from_str_radix(words[1], 16).unwrap(),
                    words[2].parse().unwrap(),
                    words[3].to_string(),
                    words[4].parse().unwrap(),
                )),
                "site" => g.sites.push((
                    u32::from_str_radix(words[1], 16).unwrap(),
                    words[2].parse().unwrap(),
                    match words[3] {
                        "jump_label" => SiteKind::JumpLabel,
                        _ => SiteKind::Alternative,
                    },
                )),
                _ => {}
            }
        }
        g.unwrap_or_else(|| panic!("{name} not in the golden file"))
    }

    /// `nm vmlinux` of a symbol the golden file lists: (address, type letter).
    fn nm(name: &str) -> (u64, char) {
        GOLDEN
            .lines()
            .filter_map(|l| l.strip_prefix("symbol "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w[0] == name)
            .map(|w| {
                (
                    u64::from_str_radix(w[1], 16).unwrap(),
                    w[2].chars().next().unwrap(),
                )
            })
            .unwrap_or_else(|| panic!("{name} not in the golden file"))
    }

    impl Golden {
        fn payload(&self) -> Vec<u8> {
            let relocs: Vec<R<'_>> = self
                .relocs
                .iter()
                .map(|(offset, r_type, name, addend)| {
                    let kind = if name.starts_with('.') {
                        SymbolKind::Section
                    } else if matches!(nm(name).1, 'T' | 't' | 'W') {
                        SymbolKind::Function
                    } else {
                        SymbolKind::Object
                    };
                    let rk = RelocKind::from_elf(*r_type).unwrap();
                    (*offset, name.as_str(), kind, rk, *addend)
                })
                .collect();
            build(&self.pre, &relocs, &self.sites)
        }

        /// The vmlinux bytes with `bytes` written at `at`.
        fn live(&self, patches: &[(usize, &[u8])]) -> Vec<u8> {
            let mut live = self.vmlinux.clone();
            for &(at, bytes) in patches {
                live[at..at + bytes.len()].copy_from_slice(bytes);
            }
            live
        }

        /// The expected inferences: every relocation to a named symbol the
        /// kernel does not patch, at its `nm vmlinux` address.
        fn expected(&self, skip: &[&str]) -> Vec<(String, u64, u32)> {
            self.relocs
                .iter()
                .filter(|(_, _, name, _)| !name.starts_with('.') && !skip.contains(&name.as_str()))
                .map(|(offset, _, name, _)| (name.clone(), nm(name).0, *offset))
                .collect()
        }
    }

    const PATCHED_AWAY: [&str; 3] = [
        "__fentry__",
        "__x86_return_thunk",
        "__SCT__tp_func_fill_mg_cmtime",
    ];

    #[test]
    fn loadavg_proc_show_matches_its_booted_code_and_learns_every_symbol() {
        let g = golden("loadavg_proc_show");
        // Boot: fentry call -> NOP5; no return thunk needed -> ret; int3.
        let live = g.live(&[(4, &x86::NOP5), (0xc5, &RET_INT3)]);
        let (result, seen) = run(&g.payload(), g.addr, &live);
        result.unwrap();
        assert_eq!(seen.infers, g.expected(&PATCHED_AWAY));
        assert_eq!(seen.infers.len(), 6, "{:?}", seen.infers);
        // current_task's per-CPU alias and the bss variable are found too.
        assert!(seen
            .infers
            .contains(&("const_current_task".into(), 0xffff_ffff_81d5_5010, 0x36)));
        assert!(seen
            .infers
            .contains(&("nr_threads".into(), 0xffff_ffff_81d7_4bb8, 0x42)));
        assert!(seen.thunks.is_empty() && seen.indirect.is_empty());
    }

    #[test]
    fn loadavg_proc_show_matches_vmlinux_as_linked_with_a_return_thunk_jump() {
        let g = golden("loadavg_proc_show");
        let (result, seen) = run(&g.payload(), g.addr, &g.vmlinux);
        result.unwrap();
        assert_eq!(seen.infers, g.expected(&PATCHED_AWAY));
        // The jmp to __x86_return_thunk is reported for a name check, never
        // inferred (the live target may be any return thunk).
        assert_eq!(
            seen.thunks,
            [(ThunkKind::Return, nm("__x86_return_thunk").0, 0xc6)]
        );
    }

    #[test]
    fn fill_mg_cmtime_matches_with_its_jump_label_static_call_and_its_return_thunks() {
        let g = golden("fill_mg_cmtime");
        assert_eq!(g.sites, [(0x65, 2, SiteKind::JumpLabel)]);
        // objtool already NOPed the tracepoint's jump label in vmlinux.
        assert_eq!(&g.vmlinux[0x65..0x67], &x86::NOP2);
        // ITS: return-thunk sites in the upper half of a cache line become
        // `ret`, the others jump to its_return_thunk (cpu_wants_rethunk_at).
        let (ret_site, jmp_site) = (g.addr + 0x18, g.addr + 0xab);
        assert!(ret_site & 0x20 != 0 && jmp_site & 0x20 == 0);
        let its = nm("its_return_thunk").0;
        let static_call = rel32(0xe8, g.addr + 0xa0, nm("__traceiter_fill_mg_cmtime").0);
        let live = g.live(&[
            (4, &x86::NOP5),
            (0x18, &RET_INT3),
            (0xab, &rel32(0xe9, jmp_site, its)),
            (0xa0, &static_call),
        ]);
        let (result, seen) = run(&g.payload(), g.addr, &live);
        result.unwrap();
        let expected = g.expected(&PATCHED_AWAY);
        assert_eq!(
            expected.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            [
                "cpu_number",
                "__cpu_online_mask",
                "tracepoint_srcu",
                "__tracepoint_fill_mg_cmtime"
            ]
        );
        assert_eq!(seen.infers, expected);
        assert_eq!(seen.thunks, [(ThunkKind::Return, its, 0xac)]);

        // The tracepoint enabled: the jump label is its jmp again.
        let enabled = with(&live, 0x65, &[0xeb, 0x02]);
        run(&g.payload(), g.addr, &enabled).0.unwrap();
        // A jmp elsewhere is not what the kernel writes there.
        let (offset, why) = {
            let m = run(&g.payload(), g.addr, &with(&live, 0x65, &[0xeb, 0x03]))
                .0
                .unwrap_err();
            (m.offset, m.reason)
        };
        assert_eq!(offset, 0x65);
        assert!(matches!(why, MismatchReason::BranchTarget { .. }), "{why}");
    }

    #[test]
    fn a_live_buffer_of_another_length_is_a_mismatch_never_a_panic() {
        let g = golden("loadavg_proc_show");
        let payload = g.payload();
        for len in 0..g.vmlinux.len() {
            let m = run(&payload, g.addr, &g.vmlinux[..len]).0.unwrap_err();
            assert_eq!(
                m.reason,
                MismatchReason::LiveLength {
                    pre: 0xca,
                    live: len as u32
                }
            );
        }
        let mut longer = g.vmlinux.clone();
        longer.push(0xcc);
        assert!(run(&payload, g.addr, &longer).0.is_err());
    }

    #[test]
    fn a_changed_byte_is_reported_at_its_instruction_with_both_encodings() {
        let g = golden("loadavg_proc_show");
        // mov $0x6,%ecx -> mov $0x7,%ecx
        let live = with(&g.vmlinux, 0x0e, &[0x07]);
        let m = run(&g.payload(), g.addr, &live).0.unwrap_err();
        assert_eq!(m.offset, 0x0d);
        assert_eq!(
            m.to_string(),
            "at +0xd: bytes differ (pre b9 06 00 00 00, live b9 07 00 00 00)"
        );
        // The opcode of a relocated call is compared too.
        let live = with(&g.vmlinux, 0x2d, &[0xe9]);
        let m = run(&g.payload(), g.addr, &live).0.unwrap_err();
        assert_eq!(m.offset, 0x2d);
        assert!(matches!(m.reason, MismatchReason::BytesDiffer { .. }));
    }

    #[test]
    fn a_relocation_off_its_operand_field_is_refused() {
        let g = golden("loadavg_proc_show");
        for (from, to) in [(0x2e, 0x2d), (0x2e, 0x2f), (0x2e, 0x30)] {
            let mut bad = g.relocs.clone();
            bad.iter_mut().find(|r| r.0 == from).unwrap().0 = to;
            let payload = Golden {
                relocs: bad,
                pre: g.pre.clone(),
                vmlinux: Vec::new(),
                addr: 0,
                sites: Vec::new(),
            }
            .payload();
            let m = run(&payload, g.addr, &g.vmlinux).0.unwrap_err();
            assert_eq!(m.offset, to);
            assert!(
                matches!(m.reason, MismatchReason::BadRelocation(_)),
                "{to:#x}: {m}"
            );
        }
    }

    #[test]
    fn a_site_inside_an_instruction_is_refused() {
        let g = golden("fill_mg_cmtime");
        let mut bad = Golden {
            pre: g.pre.clone(),
            addr: 0,
            vmlinux: Vec::new(),
            relocs: g.relocs.clone(),
            sites: vec![(0x66, 1, SiteKind::JumpLabel)],
        };
        let m = run(&bad.payload(), g.addr, &g.vmlinux).0.unwrap_err();
        assert_eq!(
            (m.offset, m.reason),
            (
                0x66,
                MismatchReason::BadSite("site does not start at an instruction")
            )
        );
        // A jump-label site must be exactly its instruction.
        bad.sites = vec![(0x65, 4, SiteKind::JumpLabel)];
        let m = run(&bad.payload(), g.addr, &g.vmlinux).0.unwrap_err();
        assert!(matches!(m.reason, MismatchReason::BadSite(_)), "{m}");
    }

    #[test]
    fn a_sink_refusal_aborts_the_match_with_its_reason() {
        struct Refuse(u32);
        impl Sink for Refuse {
            fn infer(&mut self, _: u32, _: u64, offset: u32) -> Result<(), Mismatch> {
                self.0 += 1;
                if self.0 == 2 {
                    return Err(Mismatch::inconsistent(offset));
                }
                Ok(())
            }
            fn thunk(&mut self, _: ThunkKind, _: u64, _: u32) -> Result<(), Mismatch> {
                Ok(())
            }
        }
        let g = golden("loadavg_proc_show");
        let p = g.payload();
        let p = Payload::parse(&p).unwrap();
        let m = match_function(&p, 0, g.addr, &g.vmlinux, &mut Refuse(0)).unwrap_err();
        assert_eq!(m, Mismatch::inconsistent(0x36));
        assert_eq!(
            m.to_string(),
            "at +0x36: the live code contradicts an earlier inference"
        );
    }

    #[test]
    fn an_unknown_function_index_is_a_mismatch() {
        let g = golden("loadavg_proc_show");
        let m = run_at(&g.payload(), 1, g.addr, &g.vmlinux).0.unwrap_err();
        assert_eq!(m.reason, MismatchReason::NoSuchFunction(1));
        let p = g.payload();
        assert_eq!(
            trampoline_window(&Payload::parse(&p).unwrap(), 7),
            Err(SiteError::NoSuchFunction(7))
        );
    }

    #[test]
    fn pre_code_that_does_not_decode_is_a_mismatch() {
        // 06 (push %es) is invalid in 64-bit mode.
        let p = build(&[0x31, 0xc0, 0x06, 0xc3], &[], &[]);
        let (offset, why) = reason(&p, &[0x31, 0xc0, 0x06, 0xc3]);
        assert_eq!(
            (offset, why),
            (2, MismatchReason::PreUndecodable(DecodeError::Invalid))
        );
    }

    // ---- One test per tolerance rule, on real byte patterns.

    #[test]
    fn a_sealed_endbr_matches_at_the_entry_only() {
        let g = golden("loadavg_proc_show");
        let live = with(&g.vmlinux, 0, &ENDBR_POISON);
        run(&g.payload(), g.addr, &live).0.unwrap();
        // An ENDBR elsewhere (an indirect-jump target) is never sealed.
        let code = [0x31, 0xc0, 0xf3, 0x0f, 0x1e, 0xfa, 0xc3];
        let p = build(&code, &[], &[]);
        let (offset, why) = reason(&p, &with(&code, 2, &ENDBR_POISON));
        assert_eq!(offset, 2);
        assert!(matches!(why, MismatchReason::BytesDiffer { .. }));
    }

    #[test]
    fn the_fentry_site_may_be_a_nop_an_ftrace_call_or_a_direct_jmp() {
        let g = golden("loadavg_proc_show");
        let payload = g.payload();
        let at = g.addr + 4;
        for site in [
            x86::NOP5,
            rel32(0xe8, at, 0xffff_ffff_a000_0000), // ftrace trampoline
            rel32(0xe9, at, 0xffff_ffff_c000_1000), // direct-jmp ftrace ops
        ] {
            let (result, seen) = run(&payload, g.addr, &with(&g.vmlinux, 4, &site));
            result.unwrap();
            assert!(seen.infers.iter().all(|i| i.0 != "__fentry__"));
        }
        // A kprobe's int3 is not an ftrace state.
        let m = run(&payload, g.addr, &with(&g.vmlinux, 4, &[0xcc]))
            .0
            .unwrap_err();
        assert_eq!(
            m.to_string(),
            "at +0x4: live cc ed a9 e4 ff is not what the kernel writes at this \
             ftrace call site (__fentry__)"
        );
    }

    #[test]
    fn a_fentry_call_away_from_the_entry_is_unsupported() {
        let code = [0x31, 0xc0, 0xe8, 0, 0, 0, 0, 0xc3];
        let p = build(&code, &[branch(3, "__fentry__")], &[]);
        let live = with(&code, 2, &x86::NOP5);
        let (offset, why) = reason(&p, &live);
        assert_eq!(offset, 2);
        assert!(matches!(
            why,
            MismatchReason::UnsupportedSite {
                what: Patched::Fentry,
                ..
            }
        ));
    }

    #[test]
    fn a_return_thunk_site_must_be_ret_int3_or_a_jmp() {
        // hlist_del_init (fs/fs_pin.o) ends in `jmp __x86_return_thunk`.
        let code =
            hex("488b57084885d27418488b074889024885c074044889500831c048890748894708e900000000");
        let p = build(&code, &[branch(0x22, "__x86_return_thunk")], &[]);
        run(&p, ADDR, &with(&code, 0x21, &RET_INT3)).0.unwrap();
        let srso = nm("srso_return_thunk").0;
        let (result, seen) = run(
            &p,
            ADDR,
            &with(&code, 0x21, &rel32(0xe9, ADDR + 0x21, srso)),
        );
        result.unwrap();
        assert_eq!(seen.thunks, [(ThunkKind::Return, srso, 0x22)]);
        for bad in [[0xc3, 0x90, 0x90, 0x90, 0x90], [0xe8, 0, 0, 0, 0]] {
            let (offset, why) = reason(&p, &with(&code, 0x21, &bad));
            assert_eq!(offset, 0x21);
            assert!(matches!(
                why,
                MismatchReason::NotPatchedForm {
                    what: Patched::ReturnThunk,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_retpoline_call_may_become_an_inline_call_through_the_same_register() {
        // print_event_fields (kernel/trace/trace_output.o):
        // mov %r12,%rdi; call __x86_indirect_thunk_rax; mov %rax,%rbp
        let code = [0x4c, 0x89, 0xe7, 0xe8, 0, 0, 0, 0, 0x48, 0x89, 0xc5];
        let p = build(&code, &[branch(4, "__x86_indirect_thunk_rax")], &[]);
        for inline in [
            &[0x2e, 0x2e, 0x2e, 0xff, 0xd0][..], // spectre_v2=off: cs padding
            &[0x0f, 0xae, 0xe8, 0xff, 0xd0][..], // retpoline,lfence
        ] {
            let (result, seen) = run(&p, ADDR, &with(&code, 3, inline));
            result.unwrap();
            assert!(seen.infers.is_empty() && seen.indirect.is_empty());
        }
        // Unchanged or redirected (call depth, ITS): the target goes to the
        // sink with the register, for a name check.
        let thunk = nm("its_return_thunk").0; // any address; the sink decides
        let (result, seen) = run(&p, ADDR, &with(&code, 3, &rel32(0xe8, ADDR + 3, thunk)));
        result.unwrap();
        assert_eq!(
            seen.indirect,
            [(IndirectThunk { reg: 0, call: true }, thunk, 4)]
        );
        assert!(seen.infers.is_empty());
        // call *%rbx is another program.
        let (offset, why) = reason(&p, &with(&code, 3, &[0x2e, 0x2e, 0x2e, 0xff, 0xd3]));
        assert_eq!(offset, 3);
        assert!(matches!(
            why,
            MismatchReason::NotPatchedForm {
                what: Patched::IndirectThunk,
                ..
            }
        ));
    }

    #[test]
    fn a_cs_prefixed_retpoline_call_through_r10_becomes_a_rex_call() {
        // eventfs/oom_kill: cs call __x86_indirect_thunk_r10; cmpq $0,(%rbx)
        let code = [0x2e, 0xe8, 0, 0, 0, 0, 0x48, 0x83, 0x3b, 0x00];
        let p = build(&code, &[branch(2, "__x86_indirect_thunk_r10")], &[]);
        run(
            &p,
            ADDR,
            &with(&code, 0, &[0x2e, 0x2e, 0x2e, 0x41, 0xff, 0xd2]),
        )
        .0
        .unwrap();
        // lfence + cs + call *%r10 fills the 6 bytes exactly.
        run(
            &p,
            ADDR,
            &with(&code, 0, &[0x0f, 0xae, 0xe8, 0x41, 0xff, 0xd2]),
        )
        .0
        .unwrap();
        for bad in [
            [0x2e, 0x2e, 0x2e, 0x41, 0xff, 0xd3], // %r11
            [0x2e, 0x2e, 0x2e, 0x2e, 0xff, 0xd2], // %rdx: no REX.B
            [0x2e, 0x2e, 0x2e, 0x41, 0xff, 0xe2], // a jmp
        ] {
            assert!(
                matches!(
                    reason(&p, &with(&code, 0, &bad)).1,
                    MismatchReason::NotPatchedForm { .. }
                ),
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn a_retpoline_tail_jump_becomes_jmp_through_the_register_and_int3() {
        // dir_emit (fs/proc/base.o), whole: cs jmp __x86_indirect_thunk_r10.
        let code = hex("448b4f144c8b174183c90f4521c14989c8488b4f082ee900000000");
        let p = build(&code, &[branch(0x17, "__x86_indirect_thunk_r10")], &[]);
        run(
            &p,
            ADDR,
            &with(&code, 0x15, &[0x41, 0xff, 0xe2, 0xcc, 0xcc, 0xcc]),
        )
        .0
        .unwrap();
        let (result, seen) = run(
            &p,
            ADDR,
            &with(&code, 0x16, &rel32(0xe9, ADDR + 0x16, ADDR + 0x1000)),
        );
        result.unwrap();
        assert_eq!(seen.indirect.len(), 1);
        assert_eq!(
            seen.indirect[0].0,
            IndirectThunk {
                reg: 10,
                call: false
            }
        );
        // A jmp is padded with int3, never NOPs.
        let (offset, _) = reason(
            &p,
            &with(&code, 0x15, &[0x41, 0xff, 0xe2, 0x0f, 0x1f, 0x00]),
        );
        assert_eq!(offset, 0x15);
    }

    #[test]
    fn a_retpoline_jcc_becomes_an_inverted_jcc_over_an_inline_jmp() {
        // clang: jne __x86_indirect_thunk_r11; ret
        let code = [0x0f, 0x85, 0, 0, 0, 0, 0xc3];
        let p = build(&code, &[branch(2, "__x86_indirect_thunk_r11")], &[]);
        // je +4; jmp *%r11; int3 (patch_retpoline)
        run(
            &p,
            ADDR,
            &with(&code, 0, &[0x74, 0x04, 0x41, 0xff, 0xe3, 0xcc]),
        )
        .0
        .unwrap();
        let (result, seen) = run(&p, ADDR, &with(&code, 0, &[0x0f, 0x85, 0x10, 0, 0, 0]));
        result.unwrap();
        assert_eq!(
            seen.indirect[0].0,
            IndirectThunk {
                reg: 11,
                call: false
            }
        );
        // The condition must be the inverse.
        assert!(run(
            &p,
            ADDR,
            &with(&code, 0, &[0x75, 0x04, 0x41, 0xff, 0xe3, 0xcc])
        )
        .0
        .is_err());
    }

    #[test]
    fn a_sink_without_indirect_thunk_gets_the_thunk_kind() {
        #[derive(Default)]
        struct Plain(Vec<(ThunkKind, u64)>);
        impl Sink for Plain {
            fn infer(&mut self, _: u32, _: u64, _: u32) -> Result<(), Mismatch> {
                Ok(())
            }
            fn thunk(&mut self, kind: ThunkKind, target: u64, _: u32) -> Result<(), Mismatch> {
                self.0.push((kind, target));
                Ok(())
            }
        }
        let code = [0xe8, 0, 0, 0, 0, 0xc3];
        let p = build(&code, &[branch(1, "__x86_indirect_thunk_rax")], &[]);
        let p = Payload::parse(&p).unwrap();
        let mut sink = Plain::default();
        let live = with(&code, 0, &rel32(0xe8, ADDR, 0xffff_ffff_8153_7280));
        match_function(&p, 0, ADDR, &live, &mut sink).unwrap();
        assert_eq!(sink.0, [(ThunkKind::Indirect, 0xffff_ffff_8153_7280)]);
    }

    #[test]
    fn thunk_names_are_checked_by_kind_and_register() {
        assert!(ThunkKind::Return.accepts("__pi___x86_return_thunk"));
        assert!(ThunkKind::Return.accepts("its_return_thunk"));
        assert!(!ThunkKind::Return.accepts("__x86_indirect_thunk_rax"));
        assert!(ThunkKind::Indirect.accepts("__x86_indirect_call_thunk_r15"));
        assert!(!ThunkKind::Indirect.accepts("__x86_indirect_thunk_xyz"));
        let r10_call = IndirectThunk {
            reg: 10,
            call: true,
        };
        assert!(r10_call.accepts("__x86_indirect_thunk_r10"));
        assert!(r10_call.accepts("__pi___x86_indirect_thunk_r10"));
        assert!(r10_call.accepts("__x86_indirect_call_thunk_r10"));
        assert!(r10_call.accepts("__x86_indirect_its_thunk_r10"));
        assert!(!r10_call.accepts("__x86_indirect_jump_thunk_r10"));
        assert!(!r10_call.accepts("__x86_indirect_thunk_r11"));
        assert!(!r10_call.accepts("__x86_indirect_thunk_array"));
        let rax_jmp = IndirectThunk {
            reg: 0,
            call: false,
        };
        assert!(rax_jmp.accepts("__x86_indirect_thunk_array"));
        assert!(rax_jmp.accepts("__x86_indirect_jump_thunk_array"));
        assert!(!IndirectThunk {
            reg: 16,
            call: true
        }
        .accepts("__x86_indirect_thunk_rax"));
        assert_eq!(r10_call.to_string(), "indirect-call thunk for %r10");
        assert_eq!(register_number("r15"), Some(15));
        assert_eq!(register_number("eax"), None);
    }

    #[test]
    fn a_static_call_site_may_hold_any_form_the_kernel_writes_there() {
        // __rb_reserve_next (kernel/trace/ring_buffer.o): WARN via static call.
        let code = [0x48, 0x8b, 0x13, 0xe8, 0, 0, 0, 0, 0x5e];
        let p = build(&code, &[branch(4, "__SCT__WARN_trap")], &[]);
        for site in [
            STATIC_CALL_WARN,
            x86::NOP5,
            STATIC_CALL_XOR5RAX,
            STATIC_CALL_UNLOCK,
            rel32(0xe8, ADDR + 3, 0xffff_ffff_8152_de60),
        ] {
            let (result, seen) = run(&p, ADDR, &with(&code, 3, &site));
            result.unwrap();
            assert!(seen.infers.is_empty() && seen.thunks.is_empty());
        }
        // A call site never becomes a return.
        let (offset, why) = reason(&p, &with(&code, 3, &RET_INT3));
        assert_eq!(offset, 3);
        assert!(matches!(
            why,
            MismatchReason::NotPatchedForm {
                what: Patched::StaticCall,
                ..
            }
        ));
        // A static tail call: jmp, or ret for a NULL cond-call.
        let tail = [0x5b, 0xe9, 0, 0, 0, 0];
        let p = build(&tail, &[branch(2, "__SCT__preempt_schedule")], &[]);
        run(&p, ADDR, &with(&tail, 1, &RET_INT3)).0.unwrap();
        run(
            &p,
            ADDR,
            &with(&tail, 1, &rel32(0xe9, ADDR + 1, ADDR + 0x100)),
        )
        .0
        .unwrap();
        assert!(run(&p, ADDR, &with(&tail, 1, &x86::NOP5)).0.is_err());
    }

    #[test]
    fn a_static_call_trampoline_used_as_data_is_an_ordinary_reference() {
        // static_call_update() passes the trampoline's address.
        let code = [0x48, 0xc7, 0xc6, 0, 0, 0, 0, 0xc3];
        let target = 0xffff_ffff_8153_88d8u64;
        let p = build(
            &code,
            &[(
                3,
                "__SCT__tp_func_fill_mg_cmtime",
                SymbolKind::Function,
                RelocKind::Abs32S,
                0,
            )],
            &[],
        );
        let live = with(&code, 3, &(target as u32).to_le_bytes());
        let (result, seen) = run(&p, ADDR, &live);
        result.unwrap();
        assert_eq!(
            seen.infers,
            [("__SCT__tp_func_fill_mg_cmtime".into(), target, 3)]
        );
    }

    #[test]
    fn a_pv_ops_call_may_be_unchanged_a_direct_call_or_nop6() {
        // exit_mmap (mm/mmap.o): mov %rbx,%rdi; call *pv_ops+0x30(%rip); lea
        let code = [
            0x48, 0x89, 0xdf, 0xff, 0x15, 0, 0, 0, 0, 0x4c, 0x8d, 0x7c, 0x24, 0x48,
        ];
        let p = build(&code, &[data(5, "pv_ops", 0x2c)], &[]);
        let pv_ops = nm_pv_ops();
        let field = RelocKind::Pc32.encode(pv_ops, 0x2c, ADDR + 5).unwrap();
        let (result, seen) = run(&p, ADDR, &with(&code, 5, &field[..4]));
        result.unwrap();
        assert_eq!(seen.infers, [("pv_ops".into(), pv_ops, 5)]);
        let mut direct = rel32(0xe8, ADDR + 3, 0xffff_ffff_8100_1000).to_vec();
        direct.push(0x90);
        for site in [
            &direct[..],
            &x86::NOP6[..],
            &[0x0f, 0x1f, 0x44, 0x00, 0x00, 0x90][..],
        ] {
            let (result, seen) = run(&p, ADDR, &with(&code, 3, site));
            result.unwrap();
            assert!(seen.infers.is_empty());
        }
        // jmp *pv_ops(%rip) is not a paravirt patch.
        let (offset, why) = reason(&p, &with(&code, 3, &[0xff, 0x25]));
        assert_eq!(offset, 3);
        assert!(matches!(
            why,
            MismatchReason::NotPatchedForm {
                what: Patched::PvCall,
                ..
            }
        ));
    }

    /// pv_ops in the test kernel (`nm vmlinux`).
    fn nm_pv_ops() -> u64 {
        0xffff_ffff_81a3_b5e0
    }

    #[test]
    fn a_jump_label_nop_in_pre_code_may_be_any_jmp_of_its_length() {
        // clang/objtool style: the .o already has the NOP.
        let code = [0x66, 0x90, 0x31, 0xc0, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3];
        let sites = [(0, 2, SiteKind::JumpLabel), (4, 5, SiteKind::JumpLabel)];
        let p = build(&code, &[], &sites);
        run(&p, ADDR, &with(&code, 0, &[0xeb, 0x10])).0.unwrap();
        run(&p, ADDR, &with(&code, 4, &[0xe9, 0x40, 0, 0, 0]))
            .0
            .unwrap();
        // A jmp8 + int3 in a 5-byte jump label is no jump-label state.
        let (offset, why) = reason(&p, &with(&code, 4, &[0xeb, 0x03, 0xcc, 0xcc, 0xcc]));
        assert_eq!(offset, 4);
        assert!(matches!(
            why,
            MismatchReason::NotPatchedForm {
                what: Patched::JumpLabel,
                ..
            }
        ));
    }

    #[test]
    fn a_live_jmp_where_pre_code_has_an_unrelated_nop_is_a_mismatch() {
        let code = [0x66, 0x90, 0x31, 0xc0, 0xc3];
        let p = build(&code, &[], &[]);
        let (offset, why) = reason(&p, &with(&code, 0, &[0xeb, 0x10]));
        assert_eq!(offset, 0);
        assert!(matches!(why, MismatchReason::BytesDiffer { .. }));
    }

    #[test]
    fn a_nop_matches_any_single_nop_of_the_same_length() {
        let code = [0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3];
        let p = build(&code, &[], &[]);
        run(&p, ADDR, &with(&code, 0, &[0x66, 0x66, 0x66, 0x66, 0x90]))
            .0
            .unwrap();
        run(&p, ADDR, &with(&code, 0, &[0x66, 0x0f, 0x1f, 0x40, 0x00]))
            .0
            .unwrap();
        // Several NOPs are several instructions.
        assert!(run(&p, ADDR, &with(&code, 0, &[0x90; 5])).0.is_err());
    }

    #[test]
    fn an_alternative_site_accepts_any_whole_instructions_filling_it() {
        // meminfo_proc_show (fs/proc/meminfo.o): static_cpu_has() is a
        // `jmp .altinstr_aux` alternative of 5 bytes.
        let code = [0xe8, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0xba, 0x19, 0, 0, 0];
        let relocs = [
            branch(1, "show_val_kb"),
            (6, ".altinstr_aux", SymbolKind::Section, RelocKind::Pc32, -4),
        ];
        let p = build(&code, &relocs, &[(5, 5, SiteKind::Alternative)]);
        let callee = 0xffff_ffff_8140_0010u64;
        let live = with(&code, 0, &rel32(0xe8, ADDR, callee));
        for site in [
            &x86::NOP5[..],
            &[0xeb, 0x09, 0xcc, 0xcc, 0xcc][..], // jmp8 t_no + int3 fill
            &[0xe9, 0x09, 0x01, 0x00, 0x00][..],
            &[0x48, 0x89, 0xc7, 0x66, 0x90][..],
        ] {
            let (result, seen) = run(&p, ADDR, &with(&live, 5, site));
            result.unwrap();
            assert_eq!(seen.infers, [("show_val_kb".into(), callee, 1)]);
        }
        for (site, at) in [
            (&[0x0f, 0x0b, 0xff, 0xff, 0xff][..], 7), // ud2, then undecodable
            (&[0x90, 0x48, 0xb8, 0x00, 0x00][..], 6), // movabs runs past the site
        ] {
            let m = run(&p, ADDR, &with(&live, 5, site)).0.unwrap_err();
            assert_eq!(m.offset, at);
            assert!(
                matches!(m.reason, MismatchReason::AlternativeNotInstructions(_)),
                "{m}"
            );
        }
    }

    #[test]
    fn nothing_is_learnt_from_relocations_inside_an_alternative() {
        // A pv_ops call is an ALT_FLAG_DIRECT_CALL alternative in 7.3.
        let code = [0x48, 0x89, 0xdf, 0xff, 0x15, 0, 0, 0, 0, 0xc3];
        let p = build(
            &code,
            &[data(5, "pv_ops", 0x2c)],
            &[(3, 6, SiteKind::Alternative)],
        );
        let field = RelocKind::Pc32.encode(nm_pv_ops(), 0x2c, ADDR + 5).unwrap();
        let mut direct = rel32(0xe8, ADDR + 3, 0xffff_ffff_8100_1000).to_vec();
        direct.push(0x90);
        for site in [&field[..4], &direct[..]] {
            let at = if site.len() == 4 { 5 } else { 3 };
            let (result, seen) = run(&p, ADDR, &with(&code, at, site));
            result.unwrap();
            assert!(seen.infers.is_empty());
        }
    }

    #[test]
    fn a_string_literal_field_is_a_wildcard() {
        // mov $.LC0,%rsi
        let code = [0x48, 0xc7, 0xc6, 0, 0, 0, 0, 0xc3];
        let p = build(
            &code,
            &[(3, ".rodata.str", SymbolKind::Section, RelocKind::Abs32S, 8)],
            &[],
        );
        let (result, seen) = run(&p, ADDR, &with(&code, 3, &[0x4d, 0xd0, 0x83, 0x81]));
        result.unwrap();
        assert!(seen.infers.is_empty());
    }

    // ---- trampoline_window

    #[test]
    fn the_window_ends_at_the_last_instruction_the_jmp_cuts() {
        // push %r12 (2); xor %eax,%eax (2); mov $6,%ecx (5); ret.
        let body = [0x41, 0x54, 0x31, 0xc0, 0xb9, 6, 0, 0, 0, 0xc3];
        let p = entry_then(&body, &[], &[]);
        assert_eq!(
            trampoline_window(&Payload::parse(&p).unwrap(), 0),
            Ok(Window {
                fentry: Some(4),
                start: 9,
                end: 18
            })
        );
        // An instruction that ends exactly at the jmp's end leaves no tail.
        let body = [0x41, 0x54, 0x31, 0xc0, 0x90, 0xc3];
        let p = entry_then(&body, &[], &[]);
        assert_eq!(
            trampoline_window(&Payload::parse(&p).unwrap(), 0),
            Ok(Window {
                fentry: Some(4),
                start: 9,
                end: 14
            })
        );
    }

    #[test]
    fn the_trampoline_goes_after_endbr_and_the_fentry_call() {
        for name in ["loadavg_proc_show", "fill_mg_cmtime"] {
            assert_eq!(trampoline(&golden(name).payload()), Ok(9), "{name}");
        }
    }

    /// A golden function's pre code from `skip` on, relocations moved along.
    fn tail_of(name: &str, skip: usize, prefix: &[u8]) -> Vec<u8> {
        let g = golden(name);
        let shift = prefix.len() as i64 - skip as i64;
        let mut pre = prefix.to_vec();
        pre.extend_from_slice(&g.pre[skip..]);
        let relocs = g
            .relocs
            .iter()
            .filter(|r| r.0 as usize >= skip)
            .map(|r| ((r.0 as i64 + shift) as u32, r.1, r.2.clone(), r.3))
            .collect();
        Golden {
            pre,
            addr: 0,
            vmlinux: Vec::new(),
            relocs,
            sites: Vec::new(),
        }
        .payload()
    }

    #[test]
    fn without_endbr_the_trampoline_goes_after_the_fentry_call() {
        assert_eq!(trampoline(&tail_of("fill_mg_cmtime", 4, &[])), Ok(5));
    }

    #[test]
    fn a_notrace_function_gets_its_trampoline_right_after_endbr() {
        assert_eq!(
            trampoline(&tail_of("loadavg_proc_show", 9, &ENDBR64)),
            Ok(4)
        );
    }

    /// endbr; call __fentry__; then `body`.
    fn entry_then(body: &[u8], relocs: &[R<'static>], sites: &[(u32, u16, SiteKind)]) -> Vec<u8> {
        let mut code = ENDBR64.to_vec();
        code.extend_from_slice(&[0xe8, 0, 0, 0, 0]);
        code.extend_from_slice(body);
        let mut all = vec![branch(5, "__fentry__")];
        all.extend_from_slice(relocs);
        build(&code, &all, sites)
    }

    #[test]
    fn a_branch_into_the_overwritten_instructions_is_refused() {
        // 9: push %r12; 11: xor %eax,%eax; 13: mov $6,%ecx; 18: dec %ecx;
        // 20: jne 11; 22: pop %r12; 24: jmp __x86_return_thunk
        let body = |rel: u8| {
            vec![
                0x41, 0x54, 0x31, 0xc0, 0xb9, 0x06, 0, 0, 0, 0xff, 0xc9, 0x75, rel, 0x41, 0x5c,
                0xe9, 0, 0, 0, 0,
            ]
        };
        let ret = [branch(25, "__x86_return_thunk")];
        let p = entry_then(&body(0xf5), &ret, &[]);
        assert_eq!(
            trampoline(&p),
            Err(SiteError::BranchInto {
                from: 20,
                target: 11
            })
        );
        // A branch to the trampoline's first byte is fine.
        assert_eq!(trampoline(&entry_then(&body(0xf3), &ret, &[])), Ok(9));
        assert_eq!(
            SiteError::BranchInto {
                from: 20,
                target: 11
            }
            .to_string(),
            "the branch at +0x14 lands at +0xb, inside the trampoline"
        );
    }

    #[test]
    fn a_jump_label_in_the_overwritten_instructions_is_refused() {
        // 9: jmp 21 (jump label); 11: mov $0,%eax; 16: ret thunk;
        // 21: mov $1,%eax; 26: ret thunk
        let body = [
            0xeb, 0x0a, 0xb8, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0xe9, 0, 0, 0, 0,
        ];
        let ret = [
            branch(17, "__x86_return_thunk"),
            branch(27, "__x86_return_thunk"),
        ];
        let p = entry_then(&body, &ret, &[(9, 2, SiteKind::JumpLabel)]);
        assert_eq!(
            trampoline(&p),
            Err(SiteError::RuntimePatched {
                offset: 9,
                what: Patched::JumpLabel
            })
        );
        // Without the site, the same code is fine.
        assert_eq!(trampoline(&entry_then(&body, &ret, &[])), Ok(9));
    }

    #[test]
    fn a_return_thunk_in_the_overwritten_instructions_is_refused() {
        // 9: xor %eax,%eax; 11: jmp __x86_return_thunk
        let p = entry_then(
            &[0x31, 0xc0, 0xe9, 0, 0, 0, 0],
            &[branch(12, "__x86_return_thunk")],
            &[],
        );
        let err = trampoline(&p).unwrap_err();
        assert_eq!(
            err,
            SiteError::RuntimePatched {
                offset: 11,
                what: Patched::ReturnThunk
            }
        );
        assert_eq!(
            err.to_string(),
            "the trampoline would overwrite the return thunk jump at +0xb"
        );
    }

    #[test]
    fn an_ordinary_call_in_the_overwritten_instructions_is_fine() {
        // 9: call get_avenrun; 14: jmp __x86_return_thunk
        let p = entry_then(
            &[0xe8, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0],
            &[branch(10, "get_avenrun"), branch(15, "__x86_return_thunk")],
            &[],
        );
        assert_eq!(trampoline(&p), Ok(9));
    }

    #[test]
    fn a_function_too_short_for_the_jmp_is_refused() {
        let p = entry_then(&[0x31, 0xc0, 0xc3], &[], &[]);
        assert_eq!(
            trampoline(&p),
            Err(SiteError::TooShort { len: 12, need: 14 })
        );
    }

    #[test]
    fn undecodable_pre_code_gets_no_trampoline() {
        let p = entry_then(&[0x31, 0xc0, 0xb9, 6, 0, 0, 0, 0x06, 0xc3], &[], &[]);
        assert_eq!(
            trampoline(&p),
            Err(SiteError::Undecodable {
                offset: 16,
                error: DecodeError::Invalid
            })
        );
    }

    #[test]
    fn a_cold_part_jumping_back_into_the_overwritten_instructions_is_refused() {
        // f: endbr; fentry; 9: push %r12; 11: xor; 13: mov $6,%ecx; ...
        let mut f = ENDBR64.to_vec();
        f.extend_from_slice(&[
            0xe8, 0, 0, 0, 0, 0x41, 0x54, 0x31, 0xc0, 0xb9, 6, 0, 0, 0, 0xc3,
        ]);
        let f_relocs = [branch(5, "__fentry__")];
        // f.cold: jmp f+11 (the CLI names the covering function, A = 11 - 4).
        let cold = [0xe9, 0, 0, 0, 0];
        let cold_relocs = [(1, "f", SymbolKind::Function, RelocKind::Pc32, 7)];
        let p = build_many(&[
            ("f", &f, &f_relocs, &[]),
            ("f.cold", &cold, &cold_relocs, &[]),
        ]);
        assert_eq!(trampoline(&p), Err(SiteError::ReferenceInto { target: 11 }));
        // Jumping back to the first body instruction is fine.
        let cold_relocs = [(1, "f", SymbolKind::Function, RelocKind::Pc32, 5)];
        let p = build_many(&[
            ("f", &f, &f_relocs, &[]),
            ("f.cold", &cold, &cold_relocs, &[]),
        ]);
        assert_eq!(trampoline(&p), Ok(9));
    }

    // ---- Robustness

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn fuzz_iters() -> u64 {
        std::env::var("KSPLICE_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    }

    #[test]
    fn random_live_bytes_never_panic() {
        let g = golden("fill_mg_cmtime");
        let bytes = g.payload();
        let p = Payload::parse(&bytes).unwrap();
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut matched = 0u64;
        for i in 0..fuzz_iters() {
            let live: Vec<u8> = match i % 3 {
                // Entirely random: never the function.
                0 => (0..g.vmlinux.len()).map(|_| next() as u8).collect(),
                // The real code with a few bytes changed.
                1 => {
                    let mut live = g.vmlinux.clone();
                    for _ in 0..(next() % 3 + 1) {
                        let at = next() as usize % live.len();
                        live[at] = next() as u8;
                    }
                    live
                }
                // Random length.
                _ => (0..next() % 300).map(|_| next() as u8).collect(),
            };
            let mut sink = Recorder::default();
            let result = match_function(&p, 0, next(), &live, &mut sink);
            if i % 3 == 0 {
                assert!(result.is_err(), "random bytes matched: {live:02x?}");
            }
            if result.is_ok() {
                matched += 1;
            }
            let _ = result.map_err(|m| m.to_string());
        }
        eprintln!(
            "runpre live fuzz: {} inputs, {matched} matched",
            fuzz_iters()
        );
    }

    #[test]
    fn random_pre_code_and_relocations_never_panic() {
        let names = [
            "__fentry__",
            "__x86_return_thunk",
            "__x86_indirect_thunk_r11",
            "__x86_indirect_thunk_bogus",
            "__SCT__x",
            "pv_ops",
            "seq_printf",
        ];
        let seeds = [
            golden("fill_mg_cmtime").pre,
            golden("loadavg_proc_show").pre,
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0u64;
        for i in 0..fuzz_iters() {
            let mut code = seeds[(i % 2) as usize].clone();
            code.truncate((next() as usize % code.len()).max(1));
            for _ in 0..(next() % 4) {
                let at = next() as usize % code.len();
                code[at] = next() as u8;
            }
            let mut relocs: Vec<R<'_>> = Vec::new();
            let mut offset = 0u32;
            for _ in 0..(next() % 5) {
                offset += (next() % 12) as u32;
                let kind = [
                    RelocKind::Pc32,
                    RelocKind::Plt32,
                    RelocKind::Abs32S,
                    RelocKind::Abs64,
                ][(next() % 4) as usize];
                let sym_kind = if next() % 5 == 0 {
                    SymbolKind::Section
                } else {
                    SymbolKind::Function
                };
                relocs.push((
                    offset,
                    names[(next() % names.len() as u64) as usize],
                    sym_kind,
                    kind,
                    -4,
                ));
                offset += kind.width() as u32;
            }
            let mut sites = Vec::new();
            if next() % 2 == 0 {
                let kind = if next() % 2 == 0 {
                    SiteKind::JumpLabel
                } else {
                    SiteKind::Alternative
                };
                sites.push(((next() % 16) as u32, (next() % 8 + 1) as u16, kind));
            }
            let bytes = build(&code, &relocs, &sites);
            let Ok(p) = Payload::parse(&bytes) else {
                continue;
            };
            parsed += 1;
            let mut live = code.clone();
            for _ in 0..(next() % 3) {
                let at = next() as usize % live.len();
                live[at] = next() as u8;
            }
            let _ = match_function(&p, 0, next(), &live, &mut Recorder::default())
                .map_err(|m| m.to_string());
            let _ = trampoline_window(&p, 0).map_err(|e| e.to_string());
        }
        assert!(parsed > 0);
        eprintln!("runpre pre fuzz: {} inputs, {parsed} parsed", fuzz_iters());
    }

    /// `endbr; nop5 (fentry); mov %rdi,%rax; 5 bytes ...`, the prologue
    /// the relaxation tests share; the window ends at 12.
    const PROLOGUE: [u8; 12] = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0x48, 0x89, 0xf8];

    fn relaxed_payload(tail: &[u8], relocs: &[R<'_>]) -> Vec<u8> {
        let mut code = PROLOGUE.to_vec();
        code.extend_from_slice(tail);
        let mut all = vec![branch(5, "__fentry__")];
        all.extend_from_slice(relocs);
        build(&code, &all, &[])
    }

    /// The live code of a [`relaxed_payload`] function of `len` bytes: the
    /// prologue with ftrace's NOP, then `tail`, then int3 padding.
    fn relaxed_live(tail: &[u8], len: usize) -> Vec<u8> {
        let mut live = PROLOGUE.to_vec();
        live[4..9].copy_from_slice(&x86::NOP5);
        live.extend_from_slice(tail);
        live.resize(len, 0xcc);
        live
    }

    #[test]
    fn a_tail_call_the_assembler_made_short_matches_and_gives_the_callee() {
        // Pre (-ffunction-sections): test %eax,%eax; jne +0; jmp rel32 helper; ret.
        // Live (one .text): the jmp is `eb`, two bytes, to helper just before f.
        let tail = [0x85, 0xc0, 0x75, 0x05, 0xe9, 0, 0, 0, 0, 0xc3];
        let p = relaxed_payload(&tail, &[branch(17, "helper")]);
        let helper = ADDR - 0x40;
        // jne skips the short jmp (2 bytes) now, not 5; the jmp ends at 18.
        let rel8 = (helper.wrapping_sub(ADDR + 18) as i64) as i8 as u8;
        let live = relaxed_live(
            &[0x85, 0xc0, 0x75, 0x02, 0xeb, rel8, 0xc3],
            PROLOGUE.len() + tail.len(),
        );
        let (result, seen) = run(&p, ADDR, &live);
        assert_eq!(result, Ok(()));
        assert!(
            seen.infers.contains(&("helper".to_string(), helper, 17)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_branch_inside_the_function_must_land_where_its_target_moved() {
        let tail = [0x85, 0xc0, 0x75, 0x05, 0xe9, 0, 0, 0, 0, 0xc3];
        let p = relaxed_payload(&tail, &[branch(17, "helper")]);
        // jne still skips 5 bytes: past the ret, into the padding.
        let live = relaxed_live(
            &[0x85, 0xc0, 0x75, 0x05, 0xeb, 0xb0, 0xc3],
            PROLOGUE.len() + tail.len(),
        );
        let (result, _) = run(&p, ADDR, &live);
        assert_eq!(
            result.unwrap_err().reason,
            MismatchReason::BranchTarget {
                expected: 0x12,
                live: 0x15
            }
        );
    }

    #[test]
    fn a_short_branch_of_another_condition_is_a_mismatch() {
        // Pre: jne rel32 other; live: je rel8.
        let tail = [0x0f, 0x85, 0, 0, 0, 0, 0xc3];
        let p = relaxed_payload(&tail, &[branch(14, "other")]);
        let live = relaxed_live(&[0x74, 0x10, 0xc3], PROLOGUE.len() + tail.len());
        let (result, _) = run(&p, ADDR, &live);
        assert!(matches!(
            result.unwrap_err().reason,
            MismatchReason::BranchDiffers { .. }
        ));
    }

    #[test]
    fn a_short_branch_inside_the_trampoline_window_is_refused() {
        // endbr; fentry; jmp rel32 other: the jmp is the trampoline's site.
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0xc3,
        ];
        let p = build(&code, &[branch(5, "__fentry__"), branch(10, "other")], &[]);
        let mut live = code[..9].to_vec();
        live[4..9].copy_from_slice(&x86::NOP5);
        live.extend_from_slice(&[0xeb, 0x20, 0xc3]);
        live.resize(code.len(), 0xcc);
        let (result, _) = run(&p, ADDR, &live);
        assert!(matches!(
            result.unwrap_err().reason,
            MismatchReason::UnsupportedSite { .. }
        ));
    }

    #[test]
    fn a_call_to_a_thunk_is_never_taken_for_a_relaxed_branch() {
        // jmp __x86_return_thunk live as `eb`: not a form the kernel writes.
        let tail = [0xe9, 0, 0, 0, 0];
        let p = relaxed_payload(&tail, &[branch(13, "__x86_return_thunk")]);
        let live = relaxed_live(&[0xeb, 0x10], PROLOGUE.len() + tail.len());
        let (result, _) = run(&p, ADDR, &live);
        assert!(result.is_err());
    }

    #[test]
    fn the_shortest_live_length_counts_every_near_branch_short() {
        let tail = [0x0f, 0x85, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0xc3];
        let p = relaxed_payload(&tail, &[branch(14, "a"), branch(19, "b")]);
        let payload = Payload::parse(&p).unwrap();
        assert_eq!(
            shortest_live_len(&payload, 0),
            (PROLOGUE.len() + tail.len() - 4 - 3) as u32
        );
    }
}
