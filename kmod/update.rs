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
//! **Modules.** An update may replace functions of loadable modules. Those
//! of a module that is not loaded are *pending*: when it loads, before its
//! init runs (`MODULE_STATE_COMING`), they are matched against its fresh
//! code and their trampolines written, or the load is refused with the
//! reason logged. When it unloads, its trampolines go with its code; they
//! come back when it loads again.
//!
//! Locking: `OPERATION` serialises apply, undo, release and the module
//! notifier for their whole duration, including the sleeps between
//! stack-check tries (ioctls wait for it interruptibly). `REGISTRY` guards
//! the list and is never held across a stack-check sleep, so `ksplice-view`
//! does not wait for an operation's retries. Only holders of `OPERATION`
//! change the registry. Text is read and written under the text lock
//! (`sys::TextLock`).

use kernel::prelude::*;

use crate::conflicts;
use crate::hooks::{self, Hooks};
use crate::matching::{self, Applied, Targets};
use crate::notes;
use crate::payload::{Payload, SymbolKind};
use crate::refusal::{refuse, Refusal};
use crate::stack_check::{Checker, Range, Ranges};
use crate::sys::{self, name_bytes, ModuleName, ModuleRef, TextLock};
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
    /// The object it serves: its post relocations exist only while that
    /// object is loaded.
    object: u16,
}

fn module_name_of(s: &[u8]) -> ModuleName {
    let mut name = [0u8; crate::payload::MODULE_NAME_MAX + 1];
    for (d, &b) in name.iter_mut().zip(s.iter().take(crate::payload::MODULE_NAME_MAX)) {
        *d = b;
    }
    name
}

/// One replaced function.
struct Replaced {
    /// Its payload function.
    function: u32,
    /// Its object: 0 for vmlinux, else 1 + an index into `Update::objects`.
    object: u16,
    /// The trampoline; `None` while its module is not loaded.
    site: Option<Site>,
}

/// One update in the registry.
pub(crate) struct Update {
    pub(crate) id: Id,
    pub(crate) state: UpdateState,
    module: ModuleRef,
    replaced: KVec<Replaced>,
    /// The replaced functions' names, one line each, in `replaced` order.
    names: KVec<u8>,
    /// The modules it patches, by object number - 1.
    objects: KVec<ModuleName>,
    /// Whether each of them is loaded (and its part applied).
    objects_loaded: KVec<bool>,
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
        self.replaced.len() as u32
    }

    /// The trampolines in place.
    fn sites(&self) -> impl Iterator<Item = &Site> {
        self.replaced.iter().filter_map(|r| r.site.as_ref())
    }

    /// The trampolines in place, as one list.
    fn sites_vec(&self) -> Result<KVec<Site>, Refusal> {
        let mut sites = KVec::with_capacity(self.replaced.len(), GFP_KERNEL)?;
        for s in self.sites() {
            sites.push(*s, GFP_KERNEL)?;
        }
        Ok(sites)
    }

    /// The object number of module `name` in this update, if it has one.
    fn object_of(&self, name: &[u8]) -> Option<u16> {
        let i = self.objects.iter().position(|o| name_bytes(o) == name)?;
        u16::try_from(i + 1).ok()
    }

    /// Whether the code of `object` is there and its part applied.
    fn object_loaded(&self, object: u16) -> bool {
        match object.checked_sub(1) {
            None => true,
            Some(i) => self.objects_loaded.get(i as usize).copied().unwrap_or(false),
        }
    }

    fn set_object_loaded(&mut self, object: u16, loaded: bool) {
        if let Some(slot) = object
            .checked_sub(1)
            .and_then(|i| self.objects_loaded.get_mut(i as usize))
        {
            *slot = loaded;
        }
    }

    /// The module name of object `object`, or "vmlinux".
    fn object_name(&self, object: u16) -> &[u8] {
        match object.checked_sub(1) {
            None => b"vmlinux",
            Some(i) => self.objects.get(i as usize).map_or(b"?", name_bytes),
        }
    }

    /// Whether it replaces function `function` of module `module`.
    fn replaces(&self, module: &[u8], function: &[u8]) -> bool {
        self.replaced
            .iter()
            .zip(self.names())
            .any(|(r, name)| r.object != 0 && self.object_name(r.object) == module && name == function)
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

    fn for_each_mut(&mut self, mut f: impl FnMut(&mut Update)) {
        let mut next = self.head.as_deref_mut();
        while let Some(u) = next {
            f(u);
            next = u.next.as_deref_mut();
        }
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
    /// Trampolines written (apply) or removed (undo).
    pub(crate) functions: u32,
    /// Functions of modules that are not loaded (apply).
    pub(crate) pending: u32,
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
    let places = places_of(&module, name, payload)?;
    Ok((module, places))
}

/// The payload update.ko holds (it was checked at apply).
fn payload_of(module: &ModuleRef) -> Result<KVVec<u8>, Refusal> {
    let Some((at, size)) = module.symbol("__ksplice_payload")? else {
        refuse!(Abort::BadPayload, "update.ko lost its payload");
    };
    if !module.owns(at, size) {
        refuse!(Abort::BadPayload, "update.ko's payload lies outside it");
    }
    read_module(at, size as usize)
}

/// The address of every place of update.ko, each inside it.
fn places_of(module: &ModuleRef, name: &str, payload: &Payload<'_>) -> Result<KVec<u64>, Refusal> {
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
    Ok(places)
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
fn copy_new_code(
    payload: &Payload<'_>,
    places: &[u64],
    wanted: impl Fn(u16) -> bool,
) -> Result<KVec<NewCode>, Refusal> {
    let mut code = KVec::new();
    for (i, p) in (0u32..).zip(payload.places.iter()) {
        if p.kind != SymbolKind::Function as u8 || !wanted(p.object) {
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
                object: p.object,
            },
            GFP_KERNEL,
        )?;
    }
    Ok(code)
}

fn function_names(payload: &Payload<'_>) -> Result<KVec<u8>, Refusal> {
    let mut names = KVec::new();
    for r in payload.replacements.iter() {
        let symbol = payload.functions.get(r.function).map_or(u32::MAX, |f| f.symbol);
        names.extend_from_slice(payload.symbol_name(symbol).as_bytes(), GFP_KERNEL)?;
        names.push(b'\n', GFP_KERNEL)?;
    }
    Ok(names)
}

/// One entry per replacement of the payload, with its trampoline where
/// `sites` has one.
fn replaced_list(payload: &Payload<'_>, sites: &[Site]) -> Result<KVec<Replaced>, Refusal> {
    let mut list = KVec::with_capacity(payload.replacements.len() as usize, GFP_KERNEL)?;
    for r in payload.replacements.iter() {
        list.push(
            Replaced {
                function: r.function,
                object: payload.function_object(r.function),
                site: sites.iter().find(|s| s.function == r.function).copied(),
            },
            GFP_KERNEL,
        )?;
    }
    Ok(list)
}

fn objects_loaded(payload: &Payload<'_>, targets: &Targets) -> Result<KVec<bool>, Refusal> {
    let mut loaded = KVec::with_capacity(payload.objects.len() as usize, GFP_KERNEL)?;
    for object in 1..=payload.objects.len() {
        loaded.push(targets.loaded(object as u16), GFP_KERNEL)?;
    }
    Ok(loaded)
}

fn object_names(payload: &Payload<'_>) -> Result<KVec<ModuleName>, Refusal> {
    let mut names = KVec::with_capacity(payload.objects.len() as usize, GFP_KERNEL)?;
    for object in 1..=payload.objects.len() {
        let name = payload.object_name(object).unwrap_or("?");
        names.push(module_name_of(name.as_bytes()), GFP_KERNEL)?;
    }
    Ok(names)
}

/// Refuses what module patching cannot do safely: replacing a module
/// function another applied update already replaces (module code is not
/// stacked on), and hooks when a module is not loaded (hooks run once, at
/// apply, so they could not act on its code or data when it loads).
fn check_modules(
    reg: &Registry,
    payload: &Payload<'_>,
    hooks: &Hooks,
    targets: &Targets,
) -> Result<(), Refusal> {
    for r in payload.replacements.iter() {
        let object = payload.function_object(r.function);
        let Some(module) = payload.object_name(u32::from(object)) else {
            continue;
        };
        let symbol = payload.functions.get(r.function).map_or(u32::MAX, |f| f.symbol);
        let name = payload.symbol_name(symbol);
        let other = reg
            .iter()
            .filter(|u| u.state == UpdateState::Applied && !u.id_is(payload.id().as_bytes()))
            .find(|u| u.replaces(module.as_bytes(), name.as_bytes()));
        if let Some(u) = other {
            refuse!(
                Abort::Unsupported,
                "{name} of module {module} is already replaced by update {}; updates do not stack on module code: undo it and apply one update with both fixes",
                id_str(&u.id)
            );
        }
        if !hooks.is_empty() && !targets.loaded(object) {
            refuse!(
                Abort::Unsupported,
                "the update has hooks and module {module} is not loaded: load it first"
            );
        }
    }
    Ok(())
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
    // Modules are held for the operation only: an update does not keep the
    // modules it patches from unloading.
    let targets = Targets::find(&payload)?;
    check_modules(&reg, &payload, &hooks, &targets)?;
    let loaded = |object: u16| targets.loaded(object);

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
    let matched = matching::match_all(&lock, &payload, &applied, &targets, loaded)?;
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
    matching::post_relocate(&payload, &matched, &targets, loaded, &module, &places)?;
    matching::check_resolved(&payload, loaded, &module, &places)?;
    let sites = trampoline::prepare(&payload, &matched.addresses, &places, |f| {
        loaded(payload.function_object(f))
    })?;
    let ranges = replaced_ranges(&payload, &matched, &sites)?;
    drop(lock);

    let node = KBox::new(
        Update {
            id: id_of(payload.id().as_bytes()),
            state: UpdateState::Applied,
            names: function_names(&payload)?,
            objects: object_names(&payload)?,
            objects_loaded: objects_loaded(&payload, &targets)?,
            new_code: copy_new_code(&payload, &places, |_| true)?,
            hooks,
            replaced: replaced_list(&payload, &sites)?,
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
            &sites,
            Some(&mut checker),
            Some(&node.hooks),
            retry,
        )
    })?;
    drop(targets);
    // Applied: from here on nothing can fail.
    let _ = node.hooks.run(hooks::Kind::PostApply);
    let mut node = node;
    node.applied_at_ns = sys::real_ns();
    node.pause_ns = pause;
    let functions = sites.len() as u32;
    let pending = node.functions().saturating_sub(functions);
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
        pending,
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
                || u.sites().any(|t| {
                    update.module.owns(t.site, 5) || update.sites().any(|o| o.site == t.site)
                });
            if stacked {
                refuse!(
                    Abort::OutOfOrder,
                    "undo {} first: it is applied on top of this update",
                    id_str(&u.id)
                );
            }
        }
        (update.sites_vec()?, update.new_code_ranges()?, update.hooks.try_clone()?)
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
        pending: 0,
        pause_ns: pause,
    })
}

/// Module `module` is coming (its code is in place, its init has not run):
/// writes the pending trampolines of every applied update that patches it.
/// On a refusal nothing is left written, and the caller refuses the load.
/// Returns the number of functions patched. The caller holds the
/// operation lock.
pub(crate) fn module_coming(module: &ModuleRef) -> Result<u32, Refusal> {
    let name = module.name();
    let mut patched = 0u32;
    let result = patch_coming(module, name, &mut patched);
    if result.is_err() {
        forget_sites(name);
    }
    result.map(|()| patched)
}

fn patch_coming(module: &ModuleRef, name: &[u8], patched: &mut u32) -> Result<(), Refusal> {
    let mut reg = crate::REGISTRY.lock();
    let mut ids = KVec::new();
    for u in reg.iter().filter(|u| u.state == UpdateState::Applied) {
        if u.object_of(name).is_some() {
            ids.push(u.id, GFP_KERNEL)?;
        }
    }
    for id in ids.iter() {
        let Some(u) = reg.find(id) else { continue };
        let Some(object) = u.object_of(name) else { continue };
        let module_name = core::str::from_utf8(name).unwrap_or("?");
        if !u.hooks.is_empty() {
            refuse!(
                Abort::Unsupported,
                "update {} patches module {module_name} and has hooks, which ran when it was applied; undo it before loading {module_name}",
                id_str(id)
            );
        }
        let bytes = payload_of(&u.module)?;
        let payload = match Payload::parse(&bytes) {
            Ok(p) => p,
            Err(e) => refuse!(Abort::BadPayload, "{e}"),
        };
        let places = places_of(&u.module, id_str(id), &payload)?;
        let targets = Targets::find_with(&payload, Some(module))?;
        let this = |o: u16| o == object;
        let lock = TextLock::lock();
        let matched = matching::match_all(&lock, &payload, &[], &targets, this)?;
        matching::post_relocate(&payload, &matched, &targets, this, &u.module, &places)?;
        matching::check_resolved(&payload, this, &u.module, &places)?;
        let sites = trampoline::prepare(&payload, &matched.addresses, &places, |f| {
            this(payload.function_object(f))
        })?;
        // The module's new code as its post relocations now are, for verify.
        let mut fresh = copy_new_code(&payload, &places, this)?;
        trampoline::write_unstarted(&lock, &sites)?;
        drop(lock);
        if let Some(u) = reg.find_mut(id) {
            for r in u.replaced.iter_mut() {
                if let Some(s) = sites.iter().find(|s| s.function == r.function) {
                    r.site = Some(*s);
                    *patched += 1;
                }
            }
            for c in u.new_code.iter_mut() {
                if let Some(f) = fresh.iter_mut().find(|f| f.range.start == c.range.start) {
                    core::mem::swap(&mut c.bytes, &mut f.bytes);
                }
            }
            u.set_object_loaded(object, true);
        }
    }
    Ok(())
}

/// Module `name` is going (or its load failed): its trampolines go with
/// its code. The caller holds the operation lock.
pub(crate) fn module_going(name: &[u8]) {
    forget_sites(name);
}

fn forget_sites(name: &[u8]) {
    crate::REGISTRY.lock().for_each_mut(|u| {
        if let Some(object) = u.object_of(name) {
            for r in u.replaced.iter_mut().filter(|r| r.object == object) {
                r.site = None;
            }
            u.set_object_loaded(object, false);
        }
    });
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
            let present = u.replaced.iter().zip(u.names()).filter_map(|(r, n)| Some((r.site.as_ref()?, n)));
            for (s, name) in present {
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
            let changed = u
                .new_code
                .iter()
                .filter(|c| u.object_loaded(c.object))
                .find_map(|c| new_code_change(&lock, &u.module, c));
            if let Some(at) = changed {
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
        for r in update.replaced.iter() {
            owners.push(r.site.as_ref().and_then(|s| conflicts::owner(&lock, s)), GFP_KERNEL)?;
        }
    }
    for ((i, name), r) in update.names().enumerate().zip(update.replaced.iter()) {
        let owner = owners.get(i).copied().flatten();
        let state = match (update.state, owner) {
            (UpdateState::Reversed, _) => FunctionState::Reversed,
            (_, Some(_)) => FunctionState::Shadowed,
            _ if r.site.is_none() => FunctionState::Pending,
            _ => FunctionState::Patched,
        };
        out.extend_from_slice(name, GFP_KERNEL)?;
        let object = core::str::from_utf8(update.object_name(r.object)).unwrap_or("?");
        let mut line = Line(out, false);
        let _ = core::fmt::write(&mut line, format_args!("\t{object}\t{}", state.as_str()));
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
