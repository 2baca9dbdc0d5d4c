// SPDX-License-Identifier: GPL-2.0
//! Run-pre matching against the live kernel, and what it resolves.
//!
//! Each pre function of the payload is compared, instruction by instruction
//! (`runpre`, pure and host-tested), with the live code at every kallsyms
//! candidate of its name and at the copies in updates already applied
//! (stacking). Exactly one candidate may match. The relocation fields of the
//! matched code give the address of every symbol they name; those
//! inferences, checked against kallsyms, then resolve the update's post
//! relocations, which are written into update.ko before any trampoline
//! points at its code.
//!
//! A function of a loadable module is looked for only in that module's
//! kallsyms. A module that is not loaded is matched when it loads
//! ([`Targets`] says which objects are there).

use kernel::prelude::*;

use crate::payload::{Payload, SymbolKind, SYMBOL_LOCAL};
use crate::refusal::{refuse, Refusal};
use crate::reloc::RelocKind;
use crate::runpre;
use crate::sys::{self, ModuleLookup, ModuleRef, TextAlias};
use crate::uapi::Abort;
use crate::x86;

/// Where each object of a payload is during one operation: vmlinux, a
/// loaded module (held), or a module that is not loaded.
pub(crate) struct Targets {
    /// By object number: 0 is vmlinux.
    list: KVec<Target>,
}

enum Target {
    Kernel,
    Module(ModuleRef),
    Absent,
}

impl Targets {
    /// Looks up every module the payload names. One being loaded or
    /// unloaded right now is refused: whether its notifier has already run
    /// cannot be known.
    pub(crate) fn find(payload: &Payload<'_>) -> Result<Self, Refusal> {
        Self::find_with(payload, None)
    }

    /// As [`Self::find`], with `coming` the module whose notifier runs.
    pub(crate) fn find_with(
        payload: &Payload<'_>,
        coming: Option<&ModuleRef>,
    ) -> Result<Self, Refusal> {
        let mut list = KVec::with_capacity(payload.objects.len() as usize + 1, GFP_KERNEL)?;
        list.push(Target::Kernel, GFP_KERNEL)?;
        for object in 1..=payload.objects.len() {
            let name = payload.object_name(object).unwrap_or("?");
            let target = match coming {
                Some(m) if m.name() == name.as_bytes() => Target::Module(m.clone_ref()),
                _ => match ModuleRef::lookup(name)? {
                    ModuleLookup::Live(m) => Target::Module(m),
                    ModuleLookup::Absent => Target::Absent,
                    ModuleLookup::Changing => refuse!(
                        Abort::ModuleChanging,
                        "module {name} is being loaded or unloaded"
                    ),
                },
            };
            list.push(target, GFP_KERNEL)?;
        }
        Ok(Self { list })
    }

    /// Whether the code of `object` is in memory now.
    pub(crate) fn loaded(&self, object: u16) -> bool {
        matches!(
            self.list.get(object as usize),
            Some(Target::Kernel | Target::Module(_))
        )
    }

    /// The loaded module of `object`, if it is one.
    pub(crate) fn module(&self, object: u16) -> Option<&ModuleRef> {
        match self.list.get(object as usize) {
            Some(Target::Module(m)) => Some(m),
            _ => None,
        }
    }

    /// Every address kallsyms has for `name` in `object`; `None` if the
    /// object is not loaded.
    fn candidates(&self, object: u16, name: &str) -> Result<Option<KVec<u64>>, Refusal> {
        Ok(match self.list.get(object as usize) {
            Some(Target::Kernel) => Some(sys::candidates(name)?),
            Some(Target::Module(m)) => Some(m.candidates(name)?),
            _ => None,
        })
    }
}

/// An applied update whose module may hold live copies of functions.
pub(crate) struct Applied<'a> {
    pub(crate) id: &'a str,
    pub(crate) module: &'a ModuleRef,
}

/// Symbol addresses learnt from the live code, by payload symbol index.
pub(crate) struct Inferences {
    values: KVec<Option<u64>>,
}

impl Inferences {
    fn new(n: u32) -> Result<Self, Refusal> {
        let mut values = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for _ in 0..n {
            values.push(None, GFP_KERNEL)?;
        }
        Ok(Self { values })
    }

    pub(crate) fn get(&self, symbol: u32) -> Option<u64> {
        self.values.get(symbol as usize).copied().flatten()
    }

    fn set(&mut self, symbol: u32, value: u64) {
        if let Some(slot) = self.values.get_mut(symbol as usize) {
            *slot = Some(value);
        }
    }
}

/// The outcome of matching every pre function.
pub(crate) struct Matched {
    /// Live address of each payload function.
    pub(crate) addresses: KVec<u64>,
    /// Every symbol address the matched code revealed.
    pub(crate) known: Inferences,
    /// Indices (into the `applied` list given to [`match_all`]) of the
    /// updates whose modules a matched or inferred address lies in: this
    /// update depends on them staying applied and loaded.
    pub(crate) depends_on: KVec<usize>,
}

/// Collects one candidate's inferences; thunk targets are checked later.
struct CandidateSink<'a> {
    known: &'a Inferences,
    found: KVec<(u32, u64)>,
    thunks: KVec<(Thunk, u64)>,
    alloc_failed: bool,
}

impl runpre::Sink for CandidateSink<'_> {
    fn infer(
        &mut self,
        symbol: u32,
        value: u64,
        offset: u32,
    ) -> core::result::Result<(), runpre::Mismatch> {
        let earlier = self
            .known
            .get(symbol)
            .or_else(|| self.found.iter().find(|f| f.0 == symbol).map(|f| f.1));
        if earlier.is_some_and(|v| v != value) {
            return Err(runpre::Mismatch::inconsistent(offset));
        }
        if self.found.push((symbol, value), GFP_KERNEL).is_err() {
            self.alloc_failed = true;
            return Err(runpre::Mismatch::inconsistent(offset));
        }
        Ok(())
    }

    fn thunk(
        &mut self,
        kind: runpre::ThunkKind,
        target: u64,
        offset: u32,
    ) -> core::result::Result<(), runpre::Mismatch> {
        self.push_thunk(Thunk::Any(kind), target, offset)
    }

    fn indirect_thunk(
        &mut self,
        thunk: runpre::IndirectThunk,
        target: u64,
        offset: u32,
    ) -> core::result::Result<(), runpre::Mismatch> {
        self.push_thunk(Thunk::Indirect(thunk), target, offset)
    }
}

impl CandidateSink<'_> {
    fn push_thunk(
        &mut self,
        thunk: Thunk,
        target: u64,
        offset: u32,
    ) -> core::result::Result<(), runpre::Mismatch> {
        if self.thunks.push((thunk, target), GFP_KERNEL).is_err() {
            self.alloc_failed = true;
            return Err(runpre::Mismatch::inconsistent(offset));
        }
        Ok(())
    }

    /// The first thunk target kallsyms does not name as an acceptable thunk.
    fn rejected_thunk(&self) -> Option<u64> {
        let mut buf = sys::symbol_buffer();
        self.thunks
            .iter()
            .find(|&&(thunk, target)| !thunk.accepts(sys::symbol_at(target, &mut buf)))
            .map(|&(_, target)| target)
    }
}

/// A kernel thunk a live branch must reach; checked by kallsyms name.
#[derive(Clone, Copy)]
enum Thunk {
    Any(runpre::ThunkKind),
    Indirect(runpre::IndirectThunk),
}

impl Thunk {
    /// Whether `sprinted` ("name+0x0/0xsize") names an acceptable thunk.
    fn accepts(self, sprinted: &[u8]) -> bool {
        let Some(plus) = sprinted.iter().position(|&b| b == b'+') else {
            return false;
        };
        let (Some(name), Some(rest)) = (sprinted.get(..plus), sprinted.get(plus..)) else {
            return false;
        };
        let Ok(name) = core::str::from_utf8(name) else {
            return false;
        };
        rest.starts_with(b"+0x0/")
            && match self {
                Self::Any(kind) => kind.accepts(name),
                Self::Indirect(thunk) => thunk.accepts(name),
            }
    }
}

/// Whether `sprinted` ("name+0xoff/0xsize [module]") is at offset 0.
fn starts_symbol(sprinted: &[u8]) -> bool {
    sprinted.windows(5).any(|w| w == b"+0x0/")
}

/// The size in "name+0xoff/0xsize [module]".
pub(crate) fn sprinted_size(sprinted: &[u8]) -> Option<u64> {
    let slash = sprinted.iter().position(|&b| b == b'/')?;
    let hex = sprinted.get(slash + 1..)?.strip_prefix(b"0x")?;
    let end = hex
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    let mut v = 0u64;
    for &b in hex.get(..end)? {
        v = v
            .checked_mul(16)?
            .checked_add(u64::from((b as char).to_digit(16)?))?;
    }
    Some(v)
}

/// Whether every string literal the live code points at has the text the
/// pre code was compiled with.
fn strings_match(payload: &Payload<'_>, found: &[(u32, u64)]) -> bool {
    let mut expected = [0u8; crate::payload::NAME_MAX / 2 + 1];
    let mut live = [0u8; crate::payload::NAME_MAX / 2 + 1];
    found.iter().all(|&(symbol, addr)| {
        let Some(len) = crate::payload::string_literal(payload.symbol_name(symbol), &mut expected)
        else {
            return true;
        };
        // The text and its terminating NUL.
        let (Some(want), Some(got)) = (expected.get(..len), live.get_mut(..=len)) else {
            return false;
        };
        sys::read_kernel(addr, got).is_ok()
            && got.get(..len) == Some(want)
            && got.get(len) == Some(&0)
    })
}

/// Why the candidates of one function did not match, for the refusal.
enum Miss {
    Mismatch(u64, runpre::Mismatch),
    String(u64),
    Thunk(u64, u64),
    /// A kprobe has rewritten the candidate's code at this address.
    Probe(u64),
}

/// The address of function `index` of the payload in the live kernel.
fn match_one(
    lock: &sys::TextLock,
    payload: &Payload<'_>,
    index: u32,
    known: &mut Inferences,
    applied: &[Applied<'_>],
    targets: &Targets,
) -> Result<u64, Refusal> {
    let Some(f) = payload.functions.get(index) else {
        refuse!(Abort::BadPayload, "function {index}");
    };
    let name = payload.symbol_name(f.symbol);
    let code_len = f.code_len as u64;
    let object = payload.symbol_object(f.symbol);
    let Some(mut candidates) = targets.candidates(object, name)? else {
        refuse!(Abort::BadPayload, "{name}: its module is not loaded");
    };
    // Stacking: a function an earlier update replaced lives on in its
    // module. (Module code is not stacked on: update.rs refuses that.)
    if object == 0 {
        for a in applied {
            if let Some((addr, size)) = a.module.symbol(name)? {
                if size == code_len {
                    candidates.push(addr, GFP_KERNEL)?;
                }
            }
        }
    }
    // Where another function's call site already says this one is, only
    // that copy counts: identical out-of-line copies of a static inline
    // would otherwise all match.
    if let Some(inferred) = known.get(f.symbol) {
        candidates.retain(|&mut a| a == inferred);
    }
    // kbuild's object may have short branches where the pre code's are near.
    let shortest = u64::from(runpre::shortest_live_len(payload, index));
    let mut live = KVVec::with_capacity(f.code_len as usize, GFP_KERNEL)?;
    live.resize(f.code_len as usize, 0, GFP_KERNEL)?;
    let mut buf = sys::symbol_buffer();
    let mut matched: Option<(u64, KVec<(u32, u64)>)> = None;
    let mut matches = 0u32;
    let mut first_miss: Option<Miss> = None;
    for &addr in candidates.iter() {
        let sprinted = sys::symbol_at(addr, &mut buf);
        // kallsyms named `addr` `name`; it may print an alias. Its sizes run
        // to the next symbol, so they include alignment padding.
        if !starts_symbol(sprinted) || !sprinted_size(sprinted).is_some_and(|s| s >= shortest) {
            continue;
        }
        // A kprobe's int3 or jmp is not the kernel's code: name it rather
        // than report a mismatch.
        if let Some(probe) = (addr..addr + code_len).find(|&a| sys::kprobe_at(lock, a).is_some()) {
            first_miss.get_or_insert(Miss::Probe(probe));
            continue;
        }
        if sys::read_kernel(addr, &mut live).is_err() {
            continue;
        }
        let mut sink = CandidateSink {
            known,
            found: KVec::new(),
            thunks: KVec::new(),
            alloc_failed: false,
        };
        let result = runpre::match_function(payload, index, addr, &live, &mut sink);
        if sink.alloc_failed {
            return Err(Refusal::from(kernel::alloc::AllocError));
        }
        match result {
            Ok(()) if !strings_match(payload, &sink.found) => {
                first_miss.get_or_insert(Miss::String(addr));
            }
            Ok(()) => match sink.rejected_thunk() {
                Some(target) => {
                    first_miss.get_or_insert(Miss::Thunk(addr, target));
                }
                None => {
                    matches += 1;
                    matched = Some((addr, sink.found));
                }
            },
            Err(m) => {
                first_miss.get_or_insert(Miss::Mismatch(addr, m));
            }
        }
    }
    match (matches, matched) {
        (1, Some((addr, found))) => {
            for (symbol, value) in found {
                known.set(symbol, value);
            }
            if known.get(f.symbol).is_some_and(|v| v != addr) {
                refuse!(
                    Abort::NoMatch,
                    "{name}: matched at {addr:#x}, but its callers say elsewhere"
                );
            }
            known.set(f.symbol, addr);
            Ok(addr)
        }
        (0, _) => match first_miss {
            Some(Miss::Mismatch(addr, m)) => refuse!(Abort::NoMatch, "{name} at {addr:#x}: {m}"),
            Some(Miss::String(addr)) => refuse!(
                Abort::NoMatch,
                "{name} at {addr:#x}: a string literal it uses differs"
            ),
            Some(Miss::Thunk(addr, target)) => {
                let mut buf = sys::symbol_buffer();
                let said = core::str::from_utf8(sys::symbol_at(target, &mut buf)).unwrap_or("?");
                refuse!(
                    Abort::NoMatch,
                    "{name} at {addr:#x}: a branch reaches {said}, which is not a thunk this code may use"
                )
            }
            Some(Miss::Probe(at)) => {
                let mut buf = sys::symbol_buffer();
                let said = core::str::from_utf8(sys::symbol_at(at, &mut buf)).unwrap_or("?");
                refuse!(
                    Abort::ProbeConflict,
                    "a kprobe at {said} is in {name}, which this update must match; remove it first"
                )
            }
            None => match targets.module(object) {
                Some(m) => refuse!(
                    Abort::NoMatch,
                    "{name}: no candidate of at least {shortest} bytes in module {}",
                    core::str::from_utf8(m.name()).unwrap_or("?")
                ),
                None => refuse!(
                    Abort::NoMatch,
                    "{name}: no candidate of at least {shortest} bytes in the running kernel"
                ),
            },
        },
        (n, _) => refuse!(Abort::NoMatch, "{name}: {n} candidates match; ambiguous"),
    }
}

/// Matches the pre functions of the payload whose objects `wanted` says
/// (all loaded ones, or the one module now loading), and checks what the
/// matches revealed. Functions not matched get address 0. Needs the text
/// lock, so the code cannot change meanwhile.
pub(crate) fn match_all(
    lock: &sys::TextLock,
    payload: &Payload<'_>,
    applied: &[Applied<'_>],
    targets: &Targets,
    wanted: impl Fn(u16) -> bool,
) -> Result<Matched, Refusal> {
    let mut known = Inferences::new(payload.symbols.len())?;
    let mut addresses = KVec::with_capacity(payload.functions.len() as usize, GFP_KERNEL)?;
    for i in 0..payload.functions.len() {
        let object = payload.function_object(i);
        let addr = if wanted(object) && targets.loaded(object) {
            match_one(lock, payload, i, &mut known, applied, targets)?
        } else {
            0
        };
        addresses.push(addr, GFP_KERNEL)?;
    }
    // Every inferred variable or function must be one kallsyms knows by
    // that name (aliases included), or a function of an applied update.
    let mut depends_on = KVec::new();
    for (i, value) in known.values.iter().enumerate() {
        let (Some(value), Ok(i)) = (value, u32::try_from(i)) else {
            continue;
        };
        if let Some(owner) = applied.iter().position(|a| a.module.owns(*value, 1)) {
            if !depends_on.contains(&owner) {
                depends_on.push(owner, GFP_KERNEL)?;
            }
        }
        if payload.symbol_kind(i) == Some(SymbolKind::Section) {
            continue;
        }
        let name = payload.symbol_name(i);
        let mut in_update = false;
        for a in applied {
            in_update |= a.module.symbol(name)?.is_some_and(|(addr, _)| addr == *value);
        }
        let object = payload.symbol_object(i);
        let Some(named) = targets.candidates(object, name)? else {
            refuse!(
                Abort::NoMatch,
                "run-pre says {name} is at {value:#x}, but its module is not loaded"
            );
        };
        if !in_update && !named.iter().any(|a| a == value) {
            let mut buf = sys::symbol_buffer();
            let said = core::str::from_utf8(sys::symbol_at(*value, &mut buf)).unwrap_or("?");
            refuse!(
                Abort::NoMatch,
                "run-pre says {name} is at {value:#x}, where kallsyms has {said}"
            );
        }
    }
    Ok(Matched {
        addresses,
        known,
        depends_on,
    })
}

/// The value of payload symbol `symbol` for a post relocation.
fn resolve(
    payload: &Payload<'_>,
    symbol: u32,
    known: &Inferences,
    targets: &Targets,
) -> Result<u64, Refusal> {
    if let Some(v) = known.get(symbol) {
        return Ok(v);
    }
    let name = payload.symbol_name(symbol);
    if payload.symbol_kind(symbol) == Some(SymbolKind::Section) {
        refuse!(
            Abort::MissingSymbol,
            "{name}: anonymous data not seen by run-pre matching"
        );
    }
    // Not seen at any relocation site: only a name kallsyms has exactly once
    // is unambiguous (a global always; a static only if no other file has
    // one of that name).
    let local = payload
        .symbols
        .get(symbol)
        .is_some_and(|s| s.flags & SYMBOL_LOCAL != 0);
    let object = payload.symbol_object(symbol);
    let Some(candidates) = targets.candidates(object, name)? else {
        refuse!(
            Abort::MissingSymbol,
            "{name}: module {} is not loaded",
            payload.object_name(u32::from(object)).unwrap_or("?")
        );
    };
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => refuse!(Abort::MissingSymbol, "{name}: not in kallsyms"),
        _ if local => refuse!(
            Abort::MissingSymbol,
            "{name}: static, not seen by run-pre matching, and {} kallsyms entries share the name",
            candidates.len()
        ),
        _ => refuse!(
            Abort::MissingSymbol,
            "{name}: {} kallsyms entries",
            candidates.len()
        ),
    }
}

/// Writes update.ko's post relocations of the places serving the objects
/// `wanted` says, from the run-pre results. Nothing runs those places'
/// code yet, so plain writes through an alias are safe.
pub(crate) fn post_relocate(
    payload: &Payload<'_>,
    matched: &Matched,
    targets: &Targets,
    wanted: impl Fn(u16) -> bool,
    module: &ModuleRef,
    places: &[u64],
) -> Result<(), Refusal> {
    for r in payload.post_relocs.iter() {
        if !payload.places.get(r.place).is_some_and(|p| wanted(p.object)) {
            continue;
        }
        let s = resolve(payload, r.symbol, &matched.known, targets)?;
        let place = places.get(r.place as usize).copied().unwrap_or(0);
        let p = place.wrapping_add(u64::from(r.offset));
        let Ok(kind) = RelocKind::from_elf(u32::from(r.kind)) else {
            refuse!(Abort::BadPayload, "relocation kind {}", r.kind);
        };
        let bytes = match kind.encode(s, r.addend, p) {
            Ok(b) => b,
            Err(e) => refuse!(Abort::BadPayload, "{}: {e}", payload.symbol_name(r.symbol)),
        };
        let width = kind.width();
        if !module.owns(p, width as u64) {
            refuse!(Abort::BadPayload, "a post relocation lies outside update.ko");
        }
        let alias = TextAlias::map(p, width)?;
        alias.write(0, bytes.get(..width).unwrap_or(&[]))?;
    }
    Ok(())
}

/// Refuses if any code or data update.ko carries for the objects `wanted`
/// says still refers to the stubs that stand for not-yet-resolved symbols:
/// every such reference must have been a post relocation, now written.
pub(crate) fn check_resolved(
    payload: &Payload<'_>,
    wanted: impl Fn(u16) -> bool,
    module: &ModuleRef,
    places: &[u64],
) -> Result<(), Refusal> {
    let mut stubs = KVec::new();
    for name in ["__ksplice_unresolved", "__ksplice_unresolved_data"] {
        if let Some((addr, size)) = module.symbol(name)? {
            stubs.push(addr..addr.saturating_add(size.max(1)), GFP_KERNEL)?;
        }
    }
    if stubs.is_empty() {
        return Ok(());
    }
    for (i, p) in (0u32..).zip(payload.places.iter()) {
        if !wanted(p.object) {
            continue;
        }
        let addr = places.get(i as usize).copied().unwrap_or(0);
        let mut bytes = KVVec::with_capacity(p.size as usize, GFP_KERNEL)?;
        bytes.resize(p.size as usize, 0, GFP_KERNEL)?;
        sys::read_kernel(addr, &mut bytes)?;
        let name = payload.place_name(i);
        for stub in stubs.iter() {
            let hit = if p.kind == SymbolKind::Function as u8 {
                match x86::find_reference(&bytes, addr, stub.clone()) {
                    Ok(hit) => hit,
                    Err(e) => refuse!(Abort::BadPayload, "new code of {name} does not decode: {e}"),
                }
            } else {
                bytes
                    .chunks_exact(8)
                    .position(|w| {
                        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                        stub.contains(&v)
                    })
                    .map(|w| w * 8)
            };
            if let Some(offset) = hit {
                refuse!(
                    Abort::BadPayload,
                    "{name}+{offset:#x} still refers to an unresolved-symbol stub"
                );
            }
        }
    }
    Ok(())
}
