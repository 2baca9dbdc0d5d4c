// SPDX-License-Identifier: GPL-2.0
//! The registry of updates, and apply, undo, verify and release as short
//! sequences of named steps.
//!
//! An update goes **applied** -> **reversed** -> released. Reversed updates
//! stay in the registry, holding their update.ko, because something (an
//! open file whose `open` the update replaced, a timer, a work item, an RCU
//! callback) may still point into their code; releasing one is an explicit
//! step (`RELEASE`).
//!
//! Locking: `OPERATION` serialises apply, undo and release for their whole
//! duration, including the sleeps between stack-check tries (it is waited
//! for interruptibly). `REGISTRY` guards the list and is held only briefly,
//! never across a sleep, so `ksplice-view` never waits for an operation.
//! Only holders of `OPERATION` change the registry. Text is read and
//! written under the text lock (`sys::TextLock`).

use kernel::prelude::*;

use crate::conflicts;
use crate::hooks::{self, Hooks};
use crate::matching::{self, Applied};
use crate::notes;
use crate::payload::{Payload, SymbolKind};
use crate::refusal::{refuse, Refusal};
use crate::stack_check::{Checker, Range, Ranges};
use crate::sys::{self, ModuleRef, TextLock};
use crate::trampoline::{self, Direction, Retry, Site};
use crate::uapi::{self, Abort, FunctionState, UpdateState};
use crate::x86;

/// An update id, NUL-padded.
pub(crate) type Id = [u8; uapi::ID_MAX_LEN + 1];

fn id_of(s: &[u8]) -> Id {
    let mut id = [0u8; uapi::ID_MAX_LEN + 1];
    for (d, &b) in id.iter_mut().zip(s.iter().take(uapi::ID_MAX_LEN)) {
        *d = b;
    }
    id
}

fn id_str(id: &Id) -> &str {
    let len = id.iter().position(|&b| b == 0).unwrap_or(id.len());
    core::str::from_utf8(id.get(..len).unwrap_or(&[])).unwrap_or("?")
}

/// A module an update's code refers into, held while the update exists.
struct Dependency {
    id: Id,
    _module: ModuleRef,
}

/// A copy of one new function, as written, for verify.
struct NewCode {
    range: Range,
    bytes: KVVec<u8>,
}

/// One update in the registry.
pub(crate) struct Update {
    pub(crate) id: Id,
    pub(crate) state: UpdateState,
    module: ModuleRef,
    sites: KVec<Site>,
    /// The replaced functions' names, one line each, in `sites` order.
    names: KVec<u8>,
    new_code: KVec<NewCode>,
    hooks: Hooks,
    depends_on: KVec<Dependency>,
    pub(crate) applied_at_ns: u64,
    pub(crate) pause_ns: u64,
    pub(crate) reversed_at_ns: u64,
    next: Option<KBox<Update>>,
}

impl Update {
    pub(crate) fn functions(&self) -> u32 {
        self.sites.len() as u32
    }

    pub(crate) fn id_is(&self, id: &[u8]) -> bool {
        self.id.get(..id.len()) == Some(id) && self.id.get(id.len()).is_none_or(|&b| b == 0)
    }

    fn depends_on(&self, id: &Id) -> bool {
        self.depends_on.iter().any(|d| &d.id == id)
    }

    fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.names.split(|&b| b == b'\n').filter(|n| !n.is_empty())
    }

    fn new_code_ranges(&self) -> Result<Ranges, Refusal> {
        let mut ranges = Ranges::new();
        for c in self.new_code.iter() {
            ranges.push(c.range)?;
        }
        Ok(ranges)
    }
}

/// Every update, in the order applied.
pub(crate) struct Registry {
    head: Option<KBox<Update>>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Self { head: None }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Update> {
        let mut next = self.head.as_deref();
        core::iter::from_fn(move || {
            let u = next?;
            next = u.next.as_deref();
            Some(u)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }

    pub(crate) fn applied(&self) -> usize {
        self.iter().filter(|u| u.state == UpdateState::Applied).count()
    }

    fn find(&self, id: &[u8]) -> Option<&Update> {
        self.iter().find(|u| u.id_is(id))
    }

    fn find_mut(&mut self, id: &[u8]) -> Option<&mut Update> {
        let mut next = self.head.as_deref_mut();
        while let Some(u) = next {
            if u.id_is(id) {
                return Some(u);
            }
            next = u.next.as_deref_mut();
        }
        None
    }

    /// Appends an update; cannot fail (the node is already allocated).
    fn link(&mut self, node: KBox<Update>) {
        let mut slot = &mut self.head;
        while let Some(u) = slot {
            slot = &mut u.next;
        }
        *slot = Some(node);
    }

    /// Removes update `id` and returns it.
    fn unlink(&mut self, id: &[u8]) -> Option<KBox<Update>> {
        let mut slot = &mut self.head;
        loop {
            match slot {
                None => return None,
                Some(u) if u.id_is(id) => {
                    let mut node = slot.take()?;
                    *slot = node.next.take();
                    return Some(node);
                }
                Some(u) => slot = &mut u.next,
            }
        }
    }
}

/// What an operation reports back.
pub(crate) struct Done {
    pub(crate) functions: u32,
    pub(crate) pause_ns: u64,
}

/// Step 1 of apply: the payload must parse, be new, and be for this very
/// kernel (release and vmlinux build id; an unknown build id refuses,
/// since run-pre rules rely on the exact build).
fn check_target<'a>(registry: &Registry, bytes: &'a [u8]) -> Result<Payload<'a>, Refusal> {
    let payload = match Payload::parse(bytes) {
        Ok(p) => p,
        Err(e) => refuse!(Abort::BadPayload, "{e}"),
    };
    let id = payload.id();
    // A reversed update may be applied again: its update.ko is still loaded.
    if registry
        .find(id.as_bytes())
        .is_some_and(|u| u.state == UpdateState::Applied)
    {
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
    let live = running_build_id()?;
    if payload.build_id().is_empty() || live.is_empty() {
        refuse!(
            Abort::WrongKernel,
            "the build id of the running kernel or of the update is unknown"
        );
    }
    if payload.build_id() != live.as_slice() {
        refuse!(
            Abort::WrongKernel,
            "built for another build of kernel {} (build id differs)",
            payload.release()
        );
    }
    Ok(payload)
}

/// The GNU build id of the running vmlinux, from its notes in memory.
fn running_build_id() -> Result<KVec<u8>, Refusal> {
    let (start, end) = sys::symbols().notes;
    let mut out = KVec::new();
    if start == 0 || end <= start || end - start > 4096 {
        return Ok(out);
    }
    let mut notes = KVec::with_capacity((end - start) as usize, GFP_KERNEL)?;
    notes.resize((end - start) as usize, 0, GFP_KERNEL)?;
    sys::read_kernel(start, &mut notes)?;
    if let Some(id) = notes::gnu_build_id(&notes) {
        out.extend_from_slice(id, GFP_KERNEL)?;
    }
    Ok(out)
}

fn read_module(addr: u64, len: usize) -> Result<KVVec<u8>, Refusal> {
    let mut v = KVVec::with_capacity(len, GFP_KERNEL)?;
    v.resize(len, 0, GFP_KERNEL)?;
    if sys::read_kernel(addr, &mut v).is_err() {
        refuse!(Abort::BadPayload, "cannot read update.ko's memory");
    }
    Ok(v)
}

/// Step 2 of apply: update.ko must be loaded and hold this very payload
/// (what module signing covers; the upload itself is not trusted), and
/// every place it lists must lie inside it. Returns the places' addresses.
fn open_module(
    name: &str,
    payload: &Payload<'_>,
    bytes: &[u8],
) -> Result<(ModuleRef, KVec<u64>), Refusal> {
    let Some(module) = ModuleRef::get(name)? else {
        refuse!(Abort::ModuleNotLoaded, "module {name} is not loaded");
    };
    let Some((at, size)) = module.symbol("__ksplice_payload")? else {
        refuse!(Abort::BadPayload, "{name} is not a ksplice update");
    };
    if size != bytes.len() as u64
        || !module.owns(at, size)
        || read_module(at, bytes.len())?.as_slice() != bytes
    {
        refuse!(
            Abort::BadPayload,
            "the uploaded payload differs from the one in {name}"
        );
    }
    let n = payload.places.len() as usize;
    let Some((table, table_size)) = module.symbol("__ksplice_places")? else {
        refuse!(Abort::BadPayload, "{name} has no places table");
    };
    if table_size != 8 * n as u64 || !module.owns(table, table_size) {
        refuse!(
            Abort::BadPayload,
            "{name}: the places table does not match the payload"
        );
    }
    let raw = read_module(table, 8 * n)?;
    let mut places = KVec::with_capacity(n, GFP_KERNEL)?;
    for (i, chunk) in (0u32..).zip(raw.chunks_exact(8)) {
        let addr = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let size = payload.places.get(i).map_or(0, |p| u64::from(p.size));
        if !module.owns(addr, size) {
            refuse!(
                Abort::BadPayload,
                "{name}: place {} lies outside the module",
                payload.place_name(i)
            );
        }
        places.push(addr, GFP_KERNEL)?;
    }
    Ok((module, places))
}

/// The code apply's stack check guards: each replaced function, and its
/// `.cold` parts (their address must be known, or the check is refused).
fn replaced_ranges(
    payload: &Payload<'_>,
    matched: &matching::Matched,
    sites: &[Site],
) -> Result<Ranges, Refusal> {
    let mut ranges = Ranges::new();
    for s in sites {
        let Some(f) = payload.functions.get(s.function) else {
            refuse!(Abort::BadPayload, "function {}", s.function);
        };
        let name = payload.symbol_name(f.symbol);
        ranges.push(Range {
            start: s.func,
            end: s.func.wrapping_add(u64::from(f.code_len)),
        })?;
        for reloc in payload.relocs(&f) {
            let target = payload.symbol_name(reloc.symbol);
            let cold = target
                .strip_prefix(name)
                .is_some_and(|rest| rest.split('.').any(|p| p == "cold"));
            if !cold {
                continue;
            }
            let Some(start) = matched.known.get(reloc.symbol) else {
                refuse!(
                    Abort::MissingSymbol,
                    "{target}: where this part of {name} lives is unknown, so no stack check could cover it"
                );
            };
            let mut buf = sys::symbol_buffer();
            let size = matching::sprinted_size(sys::symbol_at(start, &mut buf)).unwrap_or(0);
            if size == 0 {
                refuse!(Abort::MissingSymbol, "{target}: its size is unknown");
            }
            ranges.push(Range {
                start,
                end: start.wrapping_add(size),
            })?;
        }
    }
    Ok(ranges)
}

/// A copy of every new function update.ko carries, as written.
fn copy_new_code(payload: &Payload<'_>, places: &[u64]) -> Result<KVec<NewCode>, Refusal> {
    let mut code = KVec::new();
    for (i, p) in (0u32..).zip(payload.places.iter()) {
        if p.kind != SymbolKind::Function as u8 {
            continue;
        }
        let start = places.get(i as usize).copied().unwrap_or(0);
        let range = Range {
            start,
            end: start.wrapping_add(u64::from(p.size)),
        };
        code.push(
            NewCode {
                range,
                bytes: read_module(start, p.size as usize)?,
            },
            GFP_KERNEL,
        )?;
    }
    Ok(code)
}

fn function_names(payload: &Payload<'_>, sites: &[Site]) -> Result<KVec<u8>, Refusal> {
    let mut names = KVec::new();
    for s in sites {
        let symbol = payload.functions.get(s.function).map_or(u32::MAX, |f| f.symbol);
        names.extend_from_slice(payload.symbol_name(symbol).as_bytes(), GFP_KERNEL)?;
        names.push(b'\n', GFP_KERNEL)?;
    }
    Ok(names)
}

/// Applies the update whose payload is `bytes`, carried by update.ko
/// `module_name`. The caller holds the operation lock.
pub(crate) fn apply(
        bytes: &[u8],
    module_name: &str,
    retry: Retry,
) -> Result<Done, Refusal> {
    let reg = crate::REGISTRY.lock();
    let payload = check_target(&reg, bytes)?;
    let (module, places) = open_module(module_name, &payload, bytes)?;
    let hooks = Hooks::read(&module)?;

    let lock = TextLock::lock();
    let mut applied = KVec::new();
    for u in reg.iter().filter(|u| u.state == UpdateState::Applied) {
        applied.push(
            Applied {
                id: id_str(&u.id),
                module: &u.module,
            },
            GFP_KERNEL,
        )?;
    }
    let matched = matching::match_all(&lock, &payload, &applied)?;
    let mut depends_on = KVec::new();
    for &i in matched.depends_on.iter() {
        if let Some(a) = applied.get(i) {
            depends_on.push(
                Dependency {
                    id: id_of(a.id.as_bytes()),
                    _module: a.module.clone_ref(),
                },
                GFP_KERNEL,
            )?;
        }
    }
    drop(applied);
    drop(reg);
    matching::post_relocate(&payload, &matched, &module, &places)?;
    matching::check_resolved(&payload, &module, &places)?;
    let sites = trampoline::prepare(&payload, &matched.addresses, &places)?;
    let ranges = replaced_ranges(&payload, &matched, &sites)?;
    drop(lock);

    let node = KBox::new(
        Update {
            id: id_of(payload.id().as_bytes()),
            state: UpdateState::Applied,
            names: function_names(&payload, &sites)?,
            new_code: copy_new_code(&payload, &places)?,
            hooks,
            sites,
            module,
            depends_on,
            applied_at_ns: 0,
            pause_ns: 0,
            reversed_at_ns: 0,
            next: None,
        },
        GFP_KERNEL,
    )?;
    let mut checker = Checker::new(ranges)?;
    let pause = committed(&node.hooks, hooks::Kind::PreApply, hooks::Kind::FailApply, || {
        trampoline::commit(
            Direction::Apply,
            &node.sites,
            Some(&mut checker),
            Some(&node.hooks),
            retry,
        )
    })?;
    // Applied: from here on nothing can fail.
    let _ = node.hooks.run(hooks::Kind::PostApply);
    let mut node = node;
    node.applied_at_ns = sys::real_ns();
    node.pause_ns = pause;
    let functions = node.functions();
    let old = {
        let mut reg = crate::REGISTRY.lock();
        // The reversed record of an update applied again gives way to it.
        let old = reg.unlink(payload.id().as_bytes());
        reg.link(node);
        old
    };
    drop(old);
    Ok(Done {
        functions,
        pause_ns: pause,
    })
}

/// Runs the pre hooks, then `commit`; if either refuses, the fail hooks,
/// which undo what the pre hooks did.
fn committed(
    hooks: &Hooks,
    pre: hooks::Kind,
    fail: hooks::Kind,
    commit: impl FnOnce() -> Result<u64, Refusal>,
) -> Result<u64, Refusal> {
    let result = hooks.run(pre).and_then(|()| commit());
    if result.is_err() {
        let _ = hooks.run(fail);
    }
    result
}

/// Undoes the applied update `id`. The caller holds the operation lock.
pub(crate) fn undo(
        id: &[u8],
    retry: Retry,
) -> Result<Done, Refusal> {
    let (sites, ranges, hooks) = {
        let reg = crate::REGISTRY.lock();
        let Some(update) = reg.find(id) else {
            let id = core::str::from_utf8(id).unwrap_or("?");
            refuse!(Abort::NotApplied, "no update {id} is applied");
        };
        if update.state != UpdateState::Applied {
            refuse!(
                Abort::NotApplied,
                "update {} is already reversed",
                id_str(&update.id)
            );
        }
        // An update stacked on this one (its trampoline is in this
        // module's code or over the same site, or its code refers into
        // this module) must go first.
        let later = reg.iter().skip_while(|u| !u.id_is(id)).skip(1);
        for u in later.filter(|u| u.state == UpdateState::Applied) {
            let stacked = u.depends_on(&update.id)
                || u.sites.iter().any(|t| {
                    update.module.owns(t.site, 5) || update.sites.iter().any(|o| o.site == t.site)
                });
            if stacked {
                refuse!(
                    Abort::OutOfOrder,
                    "undo {} first: it is applied on top of this update",
                    id_str(&u.id)
                );
            }
        }
        let mut sites = KVec::with_capacity(update.sites.len(), GFP_KERNEL)?;
        for s in update.sites.iter() {
            sites.push(*s, GFP_KERNEL)?;
        }
        (sites, update.new_code_ranges()?, update.hooks.try_clone()?)
    };
    let mut checker = Checker::new(ranges)?;
    let pause = committed(&hooks, hooks::Kind::PreUndo, hooks::Kind::FailUndo, || {
        trampoline::commit(Direction::Undo, &sites, Some(&mut checker), Some(&hooks), retry)
    })?;
    // Reversed: from here on nothing can fail.
    let _ = hooks.run(hooks::Kind::PostUndo);
    let mut reg = crate::REGISTRY.lock();
    if let Some(update) = reg.find_mut(id) {
        update.state = UpdateState::Reversed;
        update.reversed_at_ns = sys::real_ns();
    }
    Ok(Done {
        functions: sites.len() as u32,
        pause_ns: pause,
    })
}

/// Forgets the reversed update `id`, dropping its reference on update.ko.
/// Waits for RCU callbacks queued until now first, since new code may
/// have queued some that point into it. The caller holds the operation
/// lock.
pub(crate) fn release(id: &[u8]) -> Result<(), Refusal> {
    {
        let reg = crate::REGISTRY.lock();
        let Some(update) = reg.find(id) else {
            let id = core::str::from_utf8(id).unwrap_or("?");
            refuse!(Abort::NotApplied, "no update {id} is known");
        };
        if update.state == UpdateState::Applied {
            refuse!(
                Abort::StillApplied,
                "update {} is applied; undo it first",
                id_str(&update.id)
            );
        }
        let dependant = reg.iter().find(|u| u.depends_on(&update.id)).map(|u| u.id);
        if let Some(d) = dependant {
            refuse!(
                Abort::OutOfOrder,
                "update {} refers into this update's code; release it first",
                id_str(&d)
            );
        }
    }
    // SAFETY: Sleeps until every RCU callback queued before has run.
    unsafe { kernel::bindings::rcu_barrier() };
    let node = crate::REGISTRY.lock().unlink(id);
    drop(node);
    Ok(())
}

/// Re-checks the live kernel against update `id` (every applied update if
/// `id` is empty) without changing anything. Returns the number of
/// functions checked.
pub(crate) fn verify(id: &[u8]) -> Result<u32, Refusal> {
    let reg = crate::REGISTRY.lock();
    if !id.is_empty() && reg.find(id).is_none() {
        let id = core::str::from_utf8(id).unwrap_or("?");
        refuse!(Abort::NotApplied, "no update {id} is known");
    }
    let mut checked = 0u32;
    let mut owner = None;
    {
        let lock = TextLock::lock();
        let chosen = reg
            .iter()
            .filter(|u| u.state == UpdateState::Applied)
            .filter(|u| id.is_empty() || u.id_is(id));
        for u in chosen {
            for (s, name) in u.sites.iter().zip(u.names()) {
                let name = core::str::from_utf8(name).unwrap_or("?");
                checked += 1;
                if !s.holds_jmp() {
                    if sys::kprobe_at(&lock, s.site).is_some() {
                        refuse!(
                            Abort::ProbeConflict,
                            "{}: a kprobe sits on the trampoline of {name}; undo refuses until it is removed",
                            id_str(&u.id)
                        );
                    }
                    refuse!(
                        Abort::CodeChanged,
                        "{}: the trampoline of {name} at {:#x} is no longer the jmp ksplice wrote",
                        id_str(&u.id),
                        s.site
                    );
                }
                if let Some(o) = conflicts::owner(&lock, s) {
                    owner = Some((o, u.id, name));
                    break;
                }
            }
            if owner.is_some() {
                break;
            }
            if let Some(at) = u.new_code.iter().find_map(|c| new_code_change(&lock, &u.module, c)) {
                let mut buf = sys::symbol_buffer();
                let at = core::str::from_utf8(sys::symbol_at(at, &mut buf)).unwrap_or("?");
                refuse!(
                    Abort::CodeChanged,
                    "{}: the new code at {at} is no longer what was applied",
                    id_str(&u.id)
                );
            }
        }
    }
    if let Some((o, uid, name)) = owner {
        let mut r = Refusal::new(
            Abort::FtraceConflict,
            format_args!("{}: {name} is shadowed by ", id_str(&uid)),
        );
        let _ = conflicts::describe(o, &mut r);
        return Err(r);
    }
    Ok(checked)
}

/// The first address where the live new code is no longer what was
/// applied, but for the sites the kernel itself patches at run time (ftrace
/// calls, jump labels, static calls) and the bytes of kprobes on it.
fn new_code_change(lock: &TextLock, module: &ModuleRef, c: &NewCode) -> Option<u64> {
    let mut live = [0u8; 1];
    let mut i = 0usize;
    while let Some(&want) = c.bytes.get(i) {
        let at = c.range.start + i as u64;
        if sys::read_kernel(at, &mut live).is_err() {
            return Some(at);
        }
        if live[0] == want {
            i += 1;
            continue;
        }
        let probed = (at.saturating_sub(x86::MAX_INSN_LEN as u64)..=at)
            .find_map(|p| sys::kprobe_at(lock, p).filter(|&end| end > at).map(|end| (p, end)));
        match module.patch_site(lock, at).or(probed) {
            Some((_, end)) => i = (end - c.range.start) as usize,
            None => return Some(at),
        }
    }
    None
}

/// Writes the `FUNCTIONS` lines of update `id` into `out`: name, object,
/// state and, for a shadowed function, who shadows it.
pub(crate) fn functions(
        id: &[u8],
    out: &mut KVec<u8>,
) -> Result<(), Refusal> {
    let reg = crate::REGISTRY.lock();
    let Some(update) = reg.find(id) else {
        refuse!(Abort::NotApplied, "no such update");
    };
    let mut owners = KVec::new();
    if update.state == UpdateState::Applied {
        let lock = TextLock::lock();
        for s in update.sites.iter() {
            owners.push(conflicts::owner(&lock, s), GFP_KERNEL)?;
        }
    }
    for (i, name) in update.names().enumerate() {
        let owner = owners.get(i).copied().flatten();
        let state = match (update.state, owner) {
            (UpdateState::Reversed, _) => FunctionState::Reversed,
            (_, Some(_)) => FunctionState::Shadowed,
            _ => FunctionState::Patched,
        };
        out.extend_from_slice(name, GFP_KERNEL)?;
        let mut line = Line(out, false);
        let _ = core::fmt::write(&mut line, format_args!("\tvmlinux\t{}", state.as_str()));
        if let Some(o) = owner {
            let _ = core::fmt::Write::write_str(&mut line, "\t");
            let _ = conflicts::describe(o, &mut line);
        }
        if line.1 {
            return Err(Refusal::from(kernel::alloc::AllocError));
        }
        out.push(b'\n', GFP_KERNEL)?;
    }
    Ok(())
}

/// A `fmt::Write` into a growing buffer that remembers an allocation
/// failure.
struct Line<'a>(&'a mut KVec<u8>, bool);

impl core::fmt::Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).is_err() {
            self.1 = true;
        }
        Ok(())
    }
}

/// The pause of an empty stop_machine, run exactly like apply's.
pub(crate) fn empty_stop() -> Result<u64, Refusal> {
    trampoline::commit(Direction::Nothing, &[], None, None, Retry::new(1, 1))
}
