// SPDX-License-Identifier: GPL-2.0
//! Applying and undoing updates.
//!
//! Apply, under `cpus_read_lock` + `text_mutex` so no text changes meanwhile:
//! 1. check the payload, the target kernel and that update.ko holds this
//!    very payload (update.ko may be signed; the upload is not);
//! 2. run-pre match every pre function against each kallsyms candidate
//!    (and the copies in updates already applied, for stacking); exactly one
//!    must match, and the matches give every symbol's address;
//! 3. write update.ko's post relocations from those addresses, before any
//!    trampoline points at its code;
//! 4. in `stop_machine` on all CPUs: check no task's stack is inside a
//!    replaced function, then write all `jmp` trampolines; every CPU
//!    serialises. If busy: release the locks, sleep and retry.
//!
//! The trampoline goes after ENDBR and the fentry NOP (fn+9 on this
//! config), so IBT, ftrace and kprobes keep seeing the original entry:
//! a `jmp` over the fentry site breaks ftrace for the rest of the boot.
//!
//! Undo restores the saved bytes after the same stack check against the
//! new code, and only while the trampolines are still the ones written.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kernel::prelude::*;

use crate::payload::{Payload, SymbolKind, SYMBOL_LOCAL};
use crate::reloc::RelocKind;
use crate::runpre;
use crate::sys::{self, Busy, ModuleRef, Range, Snap, Stacks, TextAlias, TextLock};
use crate::uapi::{self, Abort};
use crate::x86;

/// Stack-check attempts and the sleep between them, unless userspace asks.
const DEFAULT_TRIES: u32 = 5;
const DEFAULT_RETRY_MS: u32 = 1000;
const MAX_TRIES: u32 = 100;

/// A refusal: the abort code and what it is about.
pub(crate) struct Refusal {
    pub(crate) abort: Abort,
    pub(crate) detail: KVec<u8>,
}

impl Refusal {
    fn new(abort: Abort, args: core::fmt::Arguments<'_>) -> Self {
        let mut detail = KVec::new();
        let _ = core::fmt::write(&mut DetailWriter(&mut detail), args);
        Self { abort, detail }
    }
}

impl From<kernel::alloc::AllocError> for Refusal {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Self {
            abort: Abort::OutOfMemory,
            detail: KVec::new(),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        if e == ENOMEM {
            Self {
                abort: Abort::OutOfMemory,
                detail: KVec::new(),
            }
        } else {
            Self::new(
                Abort::BadPayload,
                format_args!("kernel error {}", e.to_errno()),
            )
        }
    }
}

struct DetailWriter<'a>(&'a mut KVec<u8>);

impl core::fmt::Write for DetailWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = uapi::DETAIL_LEN
            .saturating_sub(1)
            .saturating_sub(self.0.len());
        let take = s.len().min(room);
        self.0
            .extend_from_slice(s.as_bytes().get(..take).unwrap_or(&[]), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

macro_rules! refuse {
    ($abort:expr, $($arg:tt)*) => {
        return Err(Refusal::new($abort, format_args!($($arg)*)))
    };
}

/// One trampoline: where, what was there, what ksplice wrote.
struct Trampoline {
    site: u64,
    saved: [u8; x86::JMP_REL32_LEN],
    jmp: [u8; x86::JMP_REL32_LEN],
}

/// An applied update.
pub(crate) struct Update {
    pub(crate) id: [u8; uapi::ID_MAX_LEN + 1],
    module: ModuleRef,
    trampolines: KVec<Trampoline>,
    /// The new functions: undo checks no stack is inside them.
    new_code: KVec<Range>,
    pub(crate) applied_at_ns: u64,
    pub(crate) pause_ns: u64,
    /// Names of the replaced functions, one per line (for `ksplice-view`).
    pub(crate) names: KVec<u8>,
}

impl Update {
    pub(crate) fn functions(&self) -> u32 {
        self.trampolines.len() as u32
    }

    pub(crate) fn id_is(&self, id: &[u8]) -> bool {
        let len = self
            .id
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.id.len());
        self.id.get(..len) == Some(id)
    }
}

/// All applied updates, in the order they were applied.
pub(crate) struct Registry {
    pub(crate) updates: KVec<Update>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Self {
            updates: KVec::new(),
        }
    }
}

/// Symbol addresses learnt from the live code.
struct Inferences {
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

    fn get(&self, symbol: u32) -> Option<u64> {
        self.values.get(symbol as usize).copied().flatten()
    }
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

fn sprinted_size(sprinted: &[u8]) -> Option<u64> {
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

/// The address of function `index` of the payload in the live kernel.
fn match_one(
    payload: &Payload<'_>,
    index: u32,
    known: &mut Inferences,
    modules: &[&ModuleRef],
) -> Result<u64, Refusal> {
    let f = payload
        .functions
        .get(index)
        .ok_or_else(|| Refusal::new(Abort::BadPayload, format_args!("function {index}")))?;
    let name = payload.symbol_name(f.symbol);
    let code_len = f.code_len as u64;
    let mut candidates = sys::candidates(name)?;
    // Stacking: a function an earlier update replaced lives on in its module.
    for m in modules {
        if let Some((addr, size)) = m.symbol(name)? {
            if size == code_len {
                candidates.push(addr, GFP_KERNEL)?;
            }
        }
    }
    // Where another function's call site already says this one is, only
    // that copy counts: identical out-of-line copies of a static inline
    // would otherwise all match.
    if let Some(inferred) = known.get(f.symbol) {
        candidates.retain(|&mut a| a == inferred);
    }
    let mut live = KVVec::with_capacity(f.code_len as usize, GFP_KERNEL)?;
    live.resize(f.code_len as usize, 0, GFP_KERNEL)?;
    let mut buf = sys::symbol_buffer();
    let mut matched: Option<(u64, KVec<(u32, u64)>)> = None;
    let mut matches = 0u32;
    let mut first_mismatch: Option<(u64, runpre::Mismatch)> = None;
    for &addr in candidates.iter() {
        let sprinted = sys::symbol_at(addr, &mut buf);

        // kallsyms named `addr` `name`; it may print an alias. Its sizes run
        // to the next symbol, so they include alignment padding.
        if !starts_symbol(sprinted) || !sprinted_size(sprinted).is_some_and(|s| s >= code_len) {
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
        match runpre::match_function(payload, index, addr, &live, &mut sink) {
            Ok(()) if !strings_match(payload, &sink.found) => {
                first_mismatch.get_or_insert((
                    addr,
                    runpre::Mismatch::new(
                        0,
                        runpre::MismatchReason::Rejected("a string literal it uses differs"),
                    ),
                ));
            }
            Ok(()) => {
                let thunks_ok = sink.thunks.iter().all(|&(thunk, target)| {
                    thunk.accepts(sys::symbol_at(target, &mut sys::symbol_buffer()))
                });
                if !thunks_ok {
                    continue;
                }
                matches += 1;
                matched = Some((addr, sink.found));
            }
            Err(m) => {
                if sink.alloc_failed {
                    return Err(Refusal::from(kernel::alloc::AllocError));
                }
                first_mismatch.get_or_insert((addr, m));
            }
        }
    }
    match (matches, matched) {
        (1, Some((addr, found))) => {
            for (symbol, value) in found {
                if let Some(slot) = known.values.get_mut(symbol as usize) {
                    *slot = Some(value);
                }
            }
            if let Some(slot) = known.values.get_mut(f.symbol as usize) {
                if slot.is_some_and(|v| v != addr) {
                    refuse!(
                        Abort::NoMatch,
                        "{name}: matched at {addr:#x}, but its callers say elsewhere"
                    );
                }
                *slot = Some(addr);
            }
            Ok(addr)
        }
        (0, _) => match first_mismatch {
            Some((addr, m)) => refuse!(Abort::NoMatch, "{name} at {addr:#x}: {m}"),
            None => refuse!(
                Abort::NoMatch,
                "{name}: no candidate of at least {code_len} bytes in the running kernel"
            ),
        },
        (n, _) => refuse!(Abort::NoMatch, "{name}: {n} candidates match; ambiguous"),
    }
}

/// The value of payload symbol `symbol` for a post relocation.
fn resolve(payload: &Payload<'_>, symbol: u32, known: &Inferences) -> Result<u64, Refusal> {
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
    let candidates = sys::candidates(name)?;
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

/// What one stop_machine round does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Apply,
    Undo,
    /// No checks and no writes: the baseline pause for benchmarks.
    Nothing,
}

struct Stop<'a> {
    direction: Direction,
    trampolines: &'a [Trampoline],
    aliases: &'a [TextAlias],
    ranges: &'a [Range],
    snapshot: &'a [Snap],
    claimed: AtomicBool,
    done: AtomicBool,
    /// 0 written, 1 busy, 2 unreliable stack, 3 code changed.
    outcome: AtomicU32,
    busy: core::cell::UnsafeCell<Busy>,
}

const WRITTEN: u32 = 0;
const BUSY: u32 = 1;
const UNRELIABLE: u32 = 2;
const CHANGED: u32 = 3;

/// Runs on every CPU inside stop_machine. The first CPU in does the work;
/// the others wait for it. Nothing here allocates, sleeps or logs.
unsafe extern "C" fn stop_callback(data: *mut c_void) -> kernel::ffi::c_int {
    // SAFETY: `data` is the `Stop` that `commit` keeps alive across
    // stop_machine; shared access only, through atomics and `busy`.
    let stop = unsafe { &*data.cast::<Stop<'_>>() };
    if stop
        .claimed
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let outcome = leader(stop);
        stop.outcome.store(outcome, Ordering::Relaxed);
        stop.done.store(true, Ordering::Release);
    } else {
        while !stop.done.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
    // Cross-modifying code: every CPU serialises before running on.
    sys::sync_core();
    0
}

fn leader(stop: &Stop<'_>) -> u32 {
    if stop.direction == Direction::Nothing {
        return WRITTEN;
    }
    // SAFETY: Only the leader touches `busy` during stop_machine; the
    // caller reads it after stop_machine has returned.
    let busy = unsafe { &mut *stop.busy.get() };
    match sys::recheck_stacks(stop.ranges, stop.snapshot, busy) {
        Stacks::Clear => {}
        Stacks::Busy => return BUSY,
        Stacks::Unreliable => return UNRELIABLE,
    }
    let (expect, write): (fn(&Trampoline) -> &[u8; 5], fn(&Trampoline) -> &[u8; 5]) =
        match stop.direction {
            Direction::Apply => (|t| &t.saved, |t| &t.jmp),
            Direction::Undo | Direction::Nothing => (|t| &t.jmp, |t| &t.saved),
        };
    for t in stop.trampolines {
        let mut now = [0u8; 5];
        if sys::read_kernel(t.site, &mut now).is_err() || &now != expect(t) {
            return CHANGED;
        }
    }
    // COMMIT POINT: every check passed; only the writes follow.
    for (t, alias) in stop.trampolines.iter().zip(stop.aliases) {
        let _ = alias.write_atomically((t.site & 7) as usize, write(t));
    }
    WRITTEN
}

/// Checks stacks and writes the trampolines in one stop, retrying while
/// busy. Returns the pause of the successful stop.
fn commit(
    direction: Direction,
    trampolines: &[Trampoline],
    ranges: &[Range],
    tries: u32,
    retry_ms: u32,
) -> Result<u64, Refusal> {
    let mut aliases = KVec::with_capacity(trampolines.len(), GFP_KERNEL)?;
    for t in trampolines {
        // From the aligned word holding the site, so the write can be one
        // 8-byte store when the site fits in that word.
        let len = if (t.site & 7) + 5 <= 8 { 8 } else { 16 };
        aliases.push(TextAlias::map(t.site & !7, len)?, GFP_KERNEL)?;
    }
    let mut last = Busy::new();
    let mut last_outcome = BUSY;
    let mut snapshot = KVVec::new();
    for attempt in 1..=tries {
        // Walk the stacks while the machine runs; the stop then re-walks
        // only the tasks that ran since.
        let mut early = Busy::new();
        let outcome = sys::snapshot_stacks(ranges, &mut snapshot, &mut early)?;
        if !matches!(outcome, Stacks::Clear) {
            last = early;
            last_outcome = if matches!(outcome, Stacks::Busy) {
                BUSY
            } else {
                UNRELIABLE
            };
            if attempt < tries {
                sys::sleep_ms(retry_ms);
            }
            continue;
        }
        let stop = Stop {
            direction,
            trampolines,
            aliases: &aliases,
            ranges,
            snapshot: &snapshot,
            claimed: AtomicBool::new(false),
            done: AtomicBool::new(false),
            outcome: AtomicU32::new(BUSY),
            busy: core::cell::UnsafeCell::new(Busy::new()),
        };
        let pause = {
            let lock = TextLock::lock();
            let start = sys::now_ns();
            // SAFETY: `stop` outlives the call; we hold the text lock.
            unsafe { sys::stop_machine(&lock, stop_callback, (&raw const stop).cast_mut().cast()) };
            sys::now_ns().saturating_sub(start)
        };
        last_outcome = stop.outcome.load(Ordering::Relaxed);
        last = stop.busy.into_inner();
        match last_outcome {
            WRITTEN => return Ok(pause),
            CHANGED => break,
            _ => {}
        }
        if attempt < tries {
            sys::sleep_ms(retry_ms);
        }
    }
    let comm_len = last
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(last.comm.len());
    let comm = core::str::from_utf8(last.comm.get(..comm_len).unwrap_or(&[])).unwrap_or("?");
    let function = sprinted_name(last.addr);
    let function = core::str::from_utf8(&function).unwrap_or("?");
    match last_outcome {
        CHANGED => refuse!(
            Abort::CodeChanged,
            "a trampoline site changed since it was checked"
        ),
        UNRELIABLE => refuse!(
            Abort::CodeBusy,
            "stack of {comm} (pid {}) cannot be walked reliably after {tries} tries",
            last.pid
        ),
        _ => refuse!(
            Abort::CodeBusy,
            "{comm} (pid {}) is in {function} after {tries} tries",
            last.pid
        ),
    }
}

fn sprinted_name(addr: u64) -> KVec<u8> {
    let mut buf = sys::symbol_buffer();
    let mut out = KVec::new();
    let _ = out.extend_from_slice(sys::symbol_at(addr, &mut buf), GFP_KERNEL);
    out
}

fn tries_of(tries: u32, retry_ms: u32) -> (u32, u32) {
    let tries = if tries == 0 {
        DEFAULT_TRIES
    } else {
        tries.min(MAX_TRIES)
    };
    let retry_ms = if retry_ms == 0 {
        DEFAULT_RETRY_MS
    } else {
        retry_ms.min(60_000)
    };
    (tries, retry_ms)
}

fn read_module_bytes(addr: u64, len: usize) -> Result<KVVec<u8>, Refusal> {
    let mut v = KVVec::with_capacity(len, GFP_KERNEL)?;
    v.resize(len, 0, GFP_KERNEL)?;
    sys::read_kernel(addr, &mut v).map_err(|_| {
        Refusal::new(
            Abort::BadPayload,
            format_args!("cannot read update.ko memory"),
        )
    })?;
    Ok(v)
}

/// Applies the update in `payload_bytes`, carried by module `module_name`.
pub(crate) fn apply(
    registry: &mut Registry,
    payload_bytes: &[u8],
    module_name: &str,
    tries: u32,
    retry_ms: u32,
) -> Result<(u32, u64), Refusal> {
    let payload = match Payload::parse(payload_bytes) {
        Ok(p) => p,
        Err(e) => refuse!(Abort::BadPayload, "{e}"),
    };
    let id = payload.id();
    if registry.updates.iter().any(|u| u.id_is(id.as_bytes())) {
        refuse!(Abort::AlreadyApplied, "update {id} is already applied");
    }
    let running = sys::kernel_release();
    if payload.release().as_bytes() != running {
        let running = core::str::from_utf8(running).unwrap_or("?");
        refuse!(
            Abort::WrongKernel,
            "built for kernel {}, running {running}",
            payload.release()
        );
    }
    let mut build_id = [0u8; 20];
    let n = sys::build_id(&mut build_id);
    if n > 0
        && !payload.build_id().is_empty()
        && payload.build_id() != build_id.get(..n).unwrap_or(&[])
    {
        refuse!(
            Abort::WrongKernel,
            "built for another build of kernel {} (build id differs)",
            payload.release()
        );
    }

    let Some(module) = ModuleRef::get(module_name)? else {
        refuse!(Abort::ModuleNotLoaded, "module {module_name} is not loaded");
    };
    // update.ko must hold this very payload: it is what module signing covers.
    let Some((at, size)) = module.symbol("__ksplice_payload")? else {
        refuse!(Abort::BadPayload, "{module_name} is not a ksplice update");
    };
    if size != payload_bytes.len() as u64
        || !module.owns(at, size)
        || read_module_bytes(at, payload_bytes.len())?.as_slice() != payload_bytes
    {
        refuse!(
            Abort::BadPayload,
            "the uploaded payload differs from the one in {module_name}"
        );
    }
    let nplaces = payload.places.len() as usize;
    let Some((places_at, places_size)) = module.symbol("__ksplice_places")? else {
        refuse!(Abort::BadPayload, "{module_name} has no places table");
    };
    if places_size != 8 * nplaces as u64 || !module.owns(places_at, places_size) {
        refuse!(
            Abort::BadPayload,
            "{module_name}: places table does not match the payload"
        );
    }
    let raw = read_module_bytes(places_at, 8 * nplaces)?;
    let mut places = KVec::with_capacity(nplaces, GFP_KERNEL)?;
    for (i, chunk) in raw.chunks_exact(8).enumerate() {
        let addr = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let size = payload
            .places
            .get(i as u32)
            .map_or(0, |p| u64::from(p.size));
        if !module.owns(addr, size) {
            refuse!(
                Abort::BadPayload,
                "{module_name}: place {} lies outside the module",
                payload.place_name(i as u32)
            );
        }
        places.push(addr, GFP_KERNEL)?;
    }

    let lock = TextLock::lock();
    let mut known = Inferences::new(payload.symbols.len())?;
    let applied_modules: KVec<&ModuleRef> = {
        let mut v = KVec::new();
        for u in registry.updates.iter() {
            v.push(&u.module, GFP_KERNEL)?;
        }
        v
    };
    let mut addresses = KVec::with_capacity(payload.functions.len() as usize, GFP_KERNEL)?;
    for i in 0..payload.functions.len() {
        addresses.push(
            match_one(&payload, i, &mut known, &applied_modules)?,
            GFP_KERNEL,
        )?;
    }
    drop(applied_modules);
    // Every inferred variable or function must be one kallsyms knows by
    // that name (aliases included), or a function of an applied update.
    for (i, value) in known.values.iter().enumerate() {
        let (Some(value), Ok(i)) = (value, u32::try_from(i)) else {
            continue;
        };
        if payload.symbol_kind(i) == Some(SymbolKind::Section) {
            continue;
        }
        let name = payload.symbol_name(i);
        let in_update = registry.updates.iter().any(|u| {
            u.module
                .symbol(name)
                .ok()
                .flatten()
                .is_some_and(|(a, _)| a == *value)
        });
        if !in_update && !sys::candidates(name)?.iter().any(|a| a == value) {
            let mut buf = sys::symbol_buffer();
            let said = core::str::from_utf8(sys::symbol_at(*value, &mut buf)).unwrap_or("?");
            refuse!(
                Abort::NoMatch,
                "run-pre says {name} is at {value:#x}, where kallsyms has {said}"
            );
        }
    }

    // Post relocations: update.ko's code runs nowhere yet, so plain writes
    // through an alias are safe.
    for r in payload.post_relocs.iter() {
        let s = resolve(&payload, r.symbol, &known)?;
        let place = places.get(r.place as usize).copied().unwrap_or(0);
        let p = place.wrapping_add(u64::from(r.offset));
        let kind = RelocKind::from_elf(u32::from(r.kind))
            .map_err(|_| Refusal::new(Abort::BadPayload, format_args!("relocation kind")))?;
        let bytes = match kind.encode(s, r.addend, p) {
            Ok(b) => b,
            Err(e) => refuse!(Abort::BadPayload, "{}: {e}", payload.symbol_name(r.symbol)),
        };
        let width = kind.width();
        if !module.owns(p, width as u64) {
            refuse!(Abort::BadPayload, "post relocation outside {module_name}");
        }
        let alias = TextAlias::map(p, width)?;
        alias.write(0, bytes.get(..width).unwrap_or(&[]))?;
    }

    let mut trampolines = KVec::with_capacity(payload.replacements.len() as usize, GFP_KERNEL)?;
    let mut ranges = KVec::with_capacity(payload.replacements.len() as usize, GFP_KERNEL)?;
    for r in payload.replacements.iter() {
        let old = addresses.get(r.function as usize).copied().unwrap_or(0);
        let f = payload
            .functions
            .get(r.function)
            .ok_or_else(|| Refusal::new(Abort::BadPayload, format_args!("function")))?;
        let name = payload.symbol_name(f.symbol);
        let offset = match runpre::trampoline_offset(&payload, r.function) {
            Ok(o) => o,
            Err(e) => refuse!(Abort::UnsafeSite, "{name}: {e}"),
        };
        let new = places.get(r.place as usize).copied().unwrap_or(0);
        let site = old.wrapping_add(u64::from(offset));
        let mut saved = [0u8; 5];
        sys::read_kernel(site, &mut saved)?;
        let jmp = match x86::encode_jmp_rel32(site, new) {
            Ok(j) => j,
            Err(e) => refuse!(Abort::UnsafeSite, "{name}: {e}"),
        };
        trampolines.push(Trampoline { site, saved, jmp }, GFP_KERNEL)?;
        ranges.push(
            Range {
                start: old,
                end: old.wrapping_add(u64::from(f.code_len)),
            },
            GFP_KERNEL,
        )?;
        // A task in the function's `.cold` part is inside the function too.
        for reloc in payload.relocs(&f) {
            let target = payload.symbol_name(reloc.symbol);
            let cold = target
                .strip_prefix(name)
                .is_some_and(|rest| rest.split('.').any(|p| p == "cold"));
            if let (true, Some(start)) = (cold, known.get(reloc.symbol)) {
                let mut buf = sys::symbol_buffer();
                let size = sprinted_size(sys::symbol_at(start, &mut buf)).unwrap_or(0);
                if size == 0 {
                    refuse!(Abort::MissingSymbol, "{target}: size unknown");
                }
                ranges.push(
                    Range {
                        start,
                        end: start.wrapping_add(size),
                    },
                    GFP_KERNEL,
                )?;
            }
        }
    }
    drop(lock);

    let (tries, retry_ms) = tries_of(tries, retry_ms);
    let pause = commit(
        Direction::Apply,
        &trampolines,
        &ranges,
        tries,
        retry_ms,
    )?;

    let mut new_code = KVec::new();
    for (i, p) in (0u32..).zip(payload.places.iter()) {
        if p.kind == SymbolKind::Function as u8 {
            let start = places.get(i as usize).copied().unwrap_or(0);
            new_code.push(
                Range {
                    start,
                    end: start.wrapping_add(u64::from(p.size)),
                },
                GFP_KERNEL,
            )?;
        }
    }
    let mut id_buf = [0u8; uapi::ID_MAX_LEN + 1];
    for (d, s) in id_buf.iter_mut().zip(id.bytes()) {
        *d = s;
    }
    let functions = trampolines.len() as u32;
    let mut names = KVec::new();
    for r in payload.replacements.iter() {
        let symbol = payload
            .functions
            .get(r.function)
            .map_or(u32::MAX, |f| f.symbol);
        names.extend_from_slice(payload.symbol_name(symbol).as_bytes(), GFP_KERNEL)?;
        names.push(b'\n', GFP_KERNEL)?;
    }
    registry.updates.push(
        Update {
            id: id_buf,
            module,
            trampolines,
            new_code,
            applied_at_ns: sys::real_ns(),
            pause_ns: pause,
            names,
        },
        GFP_KERNEL,
    )?;
    Ok((functions, pause))
}

/// Undoes the applied update `id`.
pub(crate) fn undo(
    registry: &mut Registry,
    id: &[u8],
    tries: u32,
    retry_ms: u32,
) -> Result<(u32, u64), Refusal> {
    let Some(index) = registry.updates.iter().position(|u| u.id_is(id)) else {
        let id = core::str::from_utf8(id).unwrap_or("?");
        refuse!(Abort::NotApplied, "no update {id} is applied");
    };
    let update = registry
        .updates
        .get(index)
        .ok_or_else(|| Refusal::new(Abort::NotApplied, format_args!("gone")))?;
    // A later update stacked on this one (its trampoline is in this
    // module's code, or over the same site) must go first.
    for later in registry.updates.iter().skip(index + 1) {
        let stacked = later.trampolines.iter().any(|t| {
            update.module.owns(t.site, 5) || update.trampolines.iter().any(|o| o.site == t.site)
        });
        if stacked {
            let later_id = core::str::from_utf8(&later.id)
                .unwrap_or("?")
                .trim_end_matches('\0');
            refuse!(
                Abort::OutOfOrder,
                "undo {later_id} first: it is applied on top of this update"
            );
        }
    }
    let (tries, retry_ms) = tries_of(tries, retry_ms);
    let pause = commit(
        Direction::Undo,
        &update.trampolines,
        &update.new_code,
        tries,
        retry_ms,
    )?;
    let functions = update.functions();
    // Dropping the update releases its module reference.
    drop(
        registry
            .updates
            .remove(index)
            .map_err(|_| Refusal::new(Abort::NotApplied, format_args!("gone")))?,
    );
    Ok((functions, pause))
}

/// The pause of an empty stop_machine, run exactly like apply's.
pub(crate) fn empty_stop() -> Result<u64, Refusal> {
    commit(Direction::Nothing, &[], &[], 1, 1)
}
