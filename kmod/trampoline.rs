// SPDX-License-Identifier: GPL-2.0
//! Trampolines: where they go, and the `stop_machine` round that checks
//! and writes them.
//!
//! The `jmp` goes after the ENDBR and the fentry NOP (fn+9 on distro
//! configs), so IBT, ftrace and kprobes keep seeing the original entry: a
//! `jmp` over the fentry site breaks ftrace for the rest of the boot. The
//! five bytes it overwrites must be whole instructions that no branch lands
//! inside and no runtime patching touches (`runpre::trampoline_window`).
//!
//! **The round.** Every CPU enters the callback and checks its own stopper
//! thread's stack; the first in (the leader) waits for all of them, then
//! re-checks every other stack, re-reads every site, and only then passes
//! the commit point. After it nothing can fail: the leader writes each
//! site the way `text_poke_bp` does, so that a CPU running the site from
//! an NMI meanwhile never executes a torn instruction: an `int3` on the
//! first byte; every CPU serialises; the other four bytes; every CPU
//! serialises; the first byte; every CPU serialises. An NMI that meets the
//! `int3` is sent to the `jmp`'s target by ksplice's die notifier
//! ([`ksplice_int3_target`]).

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use kernel::prelude::*;

use crate::conflicts;
use crate::hooks::{self, Hooks};
use crate::payload::Payload;
use crate::refusal::{refuse, Refusal};
use crate::runpre;
use crate::stack_check::{Busy, Checker, Stacks};
use crate::sys::{self, TextAlias, TextLock};
use crate::uapi::Abort;
use crate::x86::{self, JMP_REL32_LEN};

/// Longest window: the `jmp` plus the tail of the last instruction it cuts.
const WINDOW_MAX: usize = JMP_REL32_LEN + x86::MAX_INSN_LEN;

/// The `int3` opcode.
const INT3: u8 = 0xcc;

/// One trampoline, prepared before the stop: where it goes, the original
/// bytes of its whole window, and the `jmp`.
#[derive(Clone, Copy)]
pub(crate) struct Site {
    /// The payload function it redirects.
    pub(crate) function: u32,
    /// The function's live address.
    pub(crate) func: u64,
    /// ftrace's call site of the function, if it has one.
    pub(crate) fentry: Option<u64>,
    /// Where the `jmp` goes.
    pub(crate) site: u64,
    /// The end of the window: the `jmp` and the tail of the instruction it
    /// cuts, which undo makes live again.
    pub(crate) end: u64,
    /// The original bytes of `[site, end)`.
    saved: [u8; WINDOW_MAX],
    jmp: [u8; JMP_REL32_LEN],
    /// Where the `jmp` goes to: the new function.
    pub(crate) target: u64,
}

impl Site {
    fn len(&self) -> usize {
        (self.end - self.site) as usize
    }

    /// The bytes of `[site, end)` while the update is applied or not.
    fn expected(&self, applied: bool) -> [u8; WINDOW_MAX] {
        let mut b = self.saved;
        if applied {
            for (d, s) in b.iter_mut().zip(self.jmp) {
                *d = s;
            }
        }
        b
    }

    /// Whether the live window holds what it should while the update is
    /// applied or not: undo checks the tail of the cut instruction too,
    /// because restoring the `jmp`'s bytes makes it live again.
    fn holds(&self, applied: bool) -> bool {
        let len = self.len();
        let want = self.expected(applied);
        let mut live = [0u8; WINDOW_MAX];
        let (Some(live), Some(want)) = (live.get_mut(..len), want.get(..len)) else {
            return false;
        };
        sys::read_kernel(self.site, live).is_ok() && &*live == want
    }

    /// Whether the live window still holds the `jmp` (for verify).
    pub(crate) fn holds_jmp(&self) -> bool {
        self.holds(true)
    }
}

/// Prepares the trampoline of every replacement of a function `wanted`
/// says: `addresses` are the live functions (by payload function),
/// `places` update.ko's.
pub(crate) fn prepare(
    payload: &Payload<'_>,
    addresses: &[u64],
    places: &[u64],
    wanted: impl Fn(u32) -> bool,
) -> Result<KVec<Site>, Refusal> {
    let mut sites = KVec::with_capacity(payload.replacements.len() as usize, GFP_KERNEL)?;
    for r in payload.replacements.iter().filter(|r| wanted(r.function)) {
        let Some(f) = payload.functions.get(r.function) else {
            refuse!(Abort::BadPayload, "replacement of function {}", r.function);
        };
        let name = payload.symbol_name(f.symbol);
        let func = addresses.get(r.function as usize).copied().unwrap_or(0);
        let window = match runpre::trampoline_window(payload, r.function) {
            Ok(w) => w,
            Err(e) => refuse!(Abort::UnsafeSite, "{name}: {e}"),
        };
        let site = func.wrapping_add(u64::from(window.start));
        let end = func.wrapping_add(u64::from(window.end));
        if sys::kprobe_blacklisted(site) {
            refuse!(
                Abort::UnsafeSite,
                "{name} is code kprobes refuses (noinstr, entry or blacklisted): no int3 may go there"
            );
        }
        if sites.iter().any(|s: &Site| s.site < end && site < s.end) {
            refuse!(Abort::BadPayload, "{name}: two replacements share one site");
        }
        let mut saved = [0u8; WINDOW_MAX];
        let Some(window_bytes) = saved.get_mut(..(end - site) as usize) else {
            refuse!(Abort::UnsafeSite, "{name}: window too long");
        };
        sys::read_kernel(site, window_bytes)?;
        let target = places.get(r.place as usize).copied().unwrap_or(0);
        let jmp = match x86::encode_jmp_rel32(site, target) {
            Ok(j) => j,
            Err(e) => refuse!(Abort::UnsafeSite, "{name}: {e}"),
        };
        sites.push(
            Site {
                function: r.function,
                func,
                fentry: window.fentry.map(|o| func.wrapping_add(u64::from(o))),
                site,
                end,
                saved,
                jmp,
                target,
            },
            GFP_KERNEL,
        )?;
    }
    Ok(sites)
}

/// Which way a round goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Apply,
    Undo,
    /// No checks and no writes: the baseline pause for benchmarks.
    Nothing,
}

/// What a round ended with.
#[derive(Clone, Copy)]
enum Outcome {
    Written,
    Busy(Busy),
    Unreliable(Busy),
    /// Site `index` no longer holds what was matched or written.
    Changed(usize),
    /// A check hook (this function) refused with this value.
    HookRefused(u64, i32),
}

/// The `(site, target)` pairs whose `int3` the die notifier resolves while
/// a round writes them; null outside the writes. The leader publishes them
/// at the commit point and clears them after the last write, and then
/// waits until every other CPU is back in its wait loop, so no NMI handler
/// still reads them when the round ends.
static INT3_SITES: AtomicPtr<(u64, u64)> = AtomicPtr::new(core::ptr::null_mut());
static INT3_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Called from the die notifier (helpers.c) on an `int3` in kernel mode,
/// possibly in NMI context: the target of the `jmp` being written at
/// `addr`, or 0 if the `int3` is not ksplice's. Takes no lock.
#[no_mangle]
pub(crate) extern "C" fn ksplice_int3_target(addr: u64) -> u64 {
    let sites = INT3_SITES.load(Ordering::Acquire);
    if sites.is_null() {
        return 0;
    }
    let count = INT3_COUNT.load(Ordering::Acquire);
    // SAFETY: The leader publishes `count` pairs before the pointer, and
    // they outlive the round; after clearing the pointer it waits for every
    // CPU to leave any NMI that may have read it (`Round::finish`).
    let sites = unsafe { core::slice::from_raw_parts(sites, count) };
    sites
        .iter()
        .find(|&&(site, _)| site == addr)
        .map_or(0, |&(_, target)| target)
}

/// Phases of the write, which the followers acknowledge.
const CHECKING: u32 = 0;
const INT3_WRITTEN: u32 = 1;
const TAIL_WRITTEN: u32 = 2;
const FIRST_WRITTEN: u32 = 3;
const DONE: u32 = 4;
const PHASES: usize = 5;

/// Shared by every CPU in the round.
struct Round<'a> {
    direction: Direction,
    sites: &'a [Site],
    aliases: &'a [TextAlias],
    targets: &'a [(u64, u64)],
    checker: Option<&'a Checker>,
    hooks: Option<&'a Hooks>,
    cpus: u32,
    claimed: AtomicBool,
    arrived: AtomicU32,
    phase: AtomicU32,
    acks: [AtomicU32; PHASES],
    outcome: UnsafeCell<Outcome>,
}

// SAFETY: `outcome` is written by the leader only and read after the stop.
unsafe impl Sync for Round<'_> {}

impl Round<'_> {
    /// The leader moves every CPU to `phase` and waits until each has
    /// serialised its instruction stream.
    fn sync_all(&self, phase: u32) {
        self.phase.store(phase, Ordering::Release);
        sys::sync_core();
        if let Some(acks) = self.acks.get(phase as usize) {
            while acks.load(Ordering::Acquire) + 1 < self.cpus {
                core::hint::spin_loop();
            }
        }
    }

    fn follow(&self) {
        let mut seen = CHECKING;
        loop {
            let phase = self.phase.load(Ordering::Acquire);
            if phase != seen {
                sys::sync_core();
                if let Some(acks) = self.acks.get(phase as usize) {
                    acks.fetch_add(1, Ordering::AcqRel);
                }
                seen = phase;
            }
            if phase == DONE {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Ends the round: unpublishes the `int3` targets, then waits until
    /// every other CPU has acknowledged, which it does from its wait loop,
    /// outside any NMI that may have read them.
    fn finish(&self) {
        INT3_SITES.store(core::ptr::null_mut(), Ordering::Release);
        self.sync_all(DONE);
    }

    /// The leader's checks; then, past the commit point, the writes.
    fn lead(&self) -> Outcome {
        if self.direction == Direction::Nothing {
            return Outcome::Written;
        }
        while self.arrived.load(Ordering::Acquire) < self.cpus {
            core::hint::spin_loop();
        }
        if let Some(checker) = self.checker {
            match checker.recheck() {
                Stacks::Clear => {}
                Stacks::Busy(b) => return Outcome::Busy(b),
                Stacks::Unreliable(b) => return Outcome::Unreliable(b),
            }
        }
        let applying = self.direction == Direction::Apply;
        if let Some(i) = self.sites.iter().position(|s| !s.holds(!applying)) {
            return Outcome::Changed(i);
        }
        let (check, act) = if applying {
            (hooks::Kind::CheckApply, hooks::Kind::Apply)
        } else {
            (hooks::Kind::CheckUndo, hooks::Kind::Undo)
        };
        if let Some((func, rc)) = self.hooks.and_then(|h| h.check(check)) {
            return Outcome::HookRefused(func, rc);
        }
        // COMMIT POINT: every check passed; only infallible writes follow.
        INT3_COUNT.store(self.targets.len(), Ordering::Release);
        INT3_SITES.store(self.targets.as_ptr().cast_mut(), Ordering::Release);
        // Every CPU must see the targets before it can meet an int3; the
        // writes below must not be moved above the publication.
        fence(Ordering::SeqCst);
        if let Some(hooks) = self.hooks {
            hooks.act(act);
        }
        self.write(|s| if applying { s.jmp } else { first5(&s.saved) });
        Outcome::Written
    }

    /// Writes each site's new first five bytes, `int3` first.
    fn write(&self, new: impl Fn(&Site) -> [u8; JMP_REL32_LEN]) {
        let pairs = || self.sites.iter().zip(self.aliases);
        for (_, alias) in pairs() {
            alias.write_byte(0, INT3);
        }
        self.sync_all(INT3_WRITTEN);
        for (site, alias) in pairs() {
            for (i, &b) in new(site).iter().enumerate().skip(1) {
                alias.write_byte(i, b);
            }
        }
        self.sync_all(TAIL_WRITTEN);
        for (site, alias) in pairs() {
            alias.write_byte(0, new(site)[0]);
        }
        // No CPU may still fetch a stale int3 once its target is withdrawn.
        self.sync_all(FIRST_WRITTEN);
    }
}

fn first5(window: &[u8; WINDOW_MAX]) -> [u8; JMP_REL32_LEN] {
    let mut b = [0u8; JMP_REL32_LEN];
    for (d, s) in b.iter_mut().zip(window.iter()) {
        *d = *s;
    }
    b
}

/// Runs on every CPU inside stop_machine. Nothing here allocates, sleeps
/// or logs.
unsafe extern "C" fn round_callback(data: *mut c_void) -> kernel::ffi::c_int {
    // SAFETY: `data` is the `Round` that `commit` keeps alive across
    // stop_machine; shared access only, through atomics and `outcome`.
    let round = unsafe { &*data.cast::<Round<'_>>() };
    if let Some(checker) = round.checker {
        checker.check_current();
    }
    round.arrived.fetch_add(1, Ordering::AcqRel);
    if round
        .claimed
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let outcome = round.lead();
        // SAFETY: Only the leader writes `outcome`; `commit` reads it after
        // stop_machine returns.
        unsafe { *round.outcome.get() = outcome };
        round.finish();
    } else {
        round.follow();
    }
    // Cross-modifying code: every CPU serialises before running on.
    sys::sync_core();
    0
}

/// Writes the trampolines of a module that is being loaded: its code has
/// never run (its init has not been called, nothing can reach it yet), so
/// no stop is needed. Refuses, writing nothing, if a site no longer holds
/// what was matched or another text user is in the way. The caller holds
/// the text lock.
pub(crate) fn write_unstarted(lock: &TextLock, sites: &[Site]) -> Result<(), Refusal> {
    conflicts::check_probes(lock, sites)?;
    if let Some((i, _)) = conflicts::find_owner(lock, sites) {
        let at = sites.get(i).map_or(0, |s| s.func);
        let mut buf = sys::symbol_buffer();
        let name = core::str::from_utf8(sys::symbol_at(at, &mut buf)).unwrap_or("?");
        refuse!(
            Abort::FtraceConflict,
            "{name} is redirected by another ftrace user (livepatch, or an IPMODIFY ftrace_ops)"
        );
    }
    let mut aliases = KVec::with_capacity(sites.len(), GFP_KERNEL)?;
    for s in sites {
        if !s.holds(false) {
            refuse!(
                Abort::CodeChanged,
                "the code at {:#x} changed after it was matched",
                s.site
            );
        }
        aliases.push(TextAlias::map(s.site, JMP_REL32_LEN)?, GFP_KERNEL)?;
    }
    // Past every check: only writes follow.
    for (s, alias) in sites.iter().zip(aliases.iter()) {
        for (i, &b) in s.jmp.iter().enumerate() {
            alias.write_byte(i, b);
        }
    }
    sys::sync_all_cpus();
    Ok(())
}

/// How often and how long to retry a busy stack check.
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) tries: u32,
    pub(crate) retry_ms: u32,
}

impl Retry {
    const DEFAULT_TRIES: u32 = 5;
    const DEFAULT_RETRY_MS: u32 = 1000;
    /// The longest a caller may ask to wait in all, so an operation ends.
    const MAX_TOTAL_MS: u64 = 5 * 60 * 1000;

    /// From the request: 0 means the default; the total wait is bounded.
    pub(crate) fn new(tries: u32, retry_ms: u32) -> Self {
        let tries = if tries == 0 { Self::DEFAULT_TRIES } else { tries.min(1000) };
        let retry_ms = if retry_ms == 0 {
            Self::DEFAULT_RETRY_MS
        } else {
            retry_ms
        };
        let most = (Self::MAX_TOTAL_MS / u64::from(tries.max(1))) as u32;
        Self {
            tries,
            retry_ms: retry_ms.min(most.max(1)),
        }
    }
}

/// Checks stacks and writes the trampolines in one stop, retrying while a
/// stack is busy. Just before each stop, under the text lock, it refuses
/// if another text user is in the way (`conflicts`). Returns the pause of
/// the stop that committed.
pub(crate) fn commit(
    direction: Direction,
    sites: &[Site],
    mut checker: Option<&mut Checker>,
    hooks: Option<&Hooks>,
    retry: Retry,
) -> Result<u64, Refusal> {
    let mut targets = KVec::with_capacity(sites.len(), GFP_KERNEL)?;
    for s in sites {
        targets.push((s.site, s.target), GFP_KERNEL)?;
    }
    attempts(direction, sites, &mut checker, hooks, retry, &targets)
}

fn attempts(
    direction: Direction,
    sites: &[Site],
    checker: &mut Option<&mut Checker>,
    hooks: Option<&Hooks>,
    retry: Retry,
    targets: &[(u64, u64)],
) -> Result<u64, Refusal> {
    let mut last = Outcome::Busy(Busy::none());
    for attempt in 1..=retry.tries {
        if attempt > 1 && !sys::sleep_ms(retry.retry_ms) {
            refuse!(Abort::Interrupted, "a fatal signal arrived while retrying");
        }
        // Walk the stacks while the machine runs; the stop then re-walks
        // only the tasks that ran since.
        if let Some(checker) = checker.as_deref_mut() {
            match checker.snapshot()? {
                Stacks::Clear => {}
                Stacks::Busy(b) => {
                    last = Outcome::Busy(b);
                    continue;
                }
                Stacks::Unreliable(b) => {
                    last = Outcome::Unreliable(b);
                    continue;
                }
            }
        }
        let lock = TextLock::lock();
        conflicts::check_probes(&lock, sites)?;
        if direction == Direction::Apply {
            if let Some((i, owner)) = conflicts::find_owner(&lock, sites) {
                drop(lock);
                let at = sites.get(i).map_or(0, |s| s.func);
                let mut buf = sys::symbol_buffer();
                let name = core::str::from_utf8(sys::symbol_at(at, &mut buf)).unwrap_or("?");
                let mut r = Refusal::new(
                    Abort::FtraceConflict,
                    format_args!("{name} is redirected by "),
                );
                let _ = conflicts::describe(owner, &mut r);
                return Err(r);
            }
        }
        // The writable aliases exist only around the stop.
        let mut aliases = KVec::with_capacity(sites.len(), GFP_KERNEL)?;
        for s in sites {
            aliases.push(TextAlias::map(s.site, JMP_REL32_LEN)?, GFP_KERNEL)?;
        }
        let round = Round {
            direction,
            sites,
            aliases: &aliases,
            targets,
            checker: checker.as_deref(),
            hooks,
            cpus: sys::num_online_cpus(),
            claimed: AtomicBool::new(false),
            arrived: AtomicU32::new(0),
            phase: AtomicU32::new(CHECKING),
            acks: [const { AtomicU32::new(0) }; PHASES],
            outcome: UnsafeCell::new(Outcome::Busy(Busy::none())),
        };
        let start = sys::now_ns();
        // SAFETY: `round` outlives the call; we hold the text lock.
        let rc = unsafe {
            sys::stop_machine(&lock, round_callback, (&raw const round).cast_mut().cast())
        };
        let pause = sys::now_ns().saturating_sub(start);
        if rc != 0 {
            refuse!(Abort::KernelError, "stop_machine failed: errno {}", -rc);
        }
        last = round.outcome.into_inner();
        drop(aliases);
        drop(lock);
        match last {
            Outcome::Written => return Ok(pause),
            Outcome::Changed(_) | Outcome::HookRefused(..) => break,
            Outcome::Busy(_) | Outcome::Unreliable(_) => {}
        }
    }
    match last {
        Outcome::Written => Ok(0),
        Outcome::Changed(i) => {
            let site = sites.get(i).map_or(0, |s| s.site);
            let mut buf = sys::symbol_buffer();
            let at = core::str::from_utf8(sys::symbol_at(site, &mut buf)).unwrap_or("?");
            refuse!(
                Abort::CodeChanged,
                "the bytes at {at} changed since they were checked"
            )
        }
        Outcome::HookRefused(func, rc) => {
            let mut buf = sys::symbol_buffer();
            let at = core::str::from_utf8(sys::symbol_at(func, &mut buf)).unwrap_or("?");
            let kind = if direction == Direction::Apply { "check_apply" } else { "check_undo" };
            refuse!(Abort::HookFailed, "{kind} hook {at} returned {rc}")
        }
        Outcome::Unreliable(b) => refuse!(
            Abort::CodeBusy,
            "the stack of {} (pid {}) cannot be walked reliably after {} tries",
            b.comm(),
            b.pid,
            retry.tries
        ),
        Outcome::Busy(b) => {
            let mut buf = sys::symbol_buffer();
            let at = core::str::from_utf8(sys::symbol_at(b.addr, &mut buf)).unwrap_or("?");
            refuse!(
                Abort::CodeBusy,
                "{} (pid {}) is in {at} after {} tries",
                b.comm(),
                b.pid,
                retry.tries
            )
        }
    }
}
