// SPDX-License-Identifier: GPL-2.0
//! `ksplice.ko`: applies rebootless updates to the running kernel.
//!
//! Userspace talks to it through `/dev/ksplice` (mode 0600). Every
//! operation requires `CAP_SYS_MODULE`. The ioctl ABI is defined once, in
//! `kmod/core/src/uapi.rs`, which this crate includes by path together with
//! the rest of the shared `no_std` core (payload format, x86 decoding,
//! run-pre matching, relocation arithmetic).
//!
//! An apply is a sequence of stages, one file each:
//! 1. `update.rs`: check the payload, the target kernel and that update.ko
//!    holds this very payload;
//! 2. `matching.rs`: run-pre match every pre function against the live
//!    kernel, and write update.ko's post relocations from what it reveals;
//! 3. `trampoline.rs`: prepare each `jmp`; `conflicts.rs`: refuse if a
//!    kprobe or another ftrace user is in the way;
//! 4. `stack_check.rs` and `trampoline.rs`: in one `stop_machine`, check
//!    that no task is inside a replaced function, then (the commit point)
//!    write the trampolines;
//! 5. `update.rs`: record the update in the registry.
//!
//! Functions of a module that is not loaded wait in the registry; the
//! module notifier (`update::module_coming`) patches them when it loads.
//!
//! Expected refusals (`no_match`, `code_busy`, ...) are not ioctl errors:
//! the ioctl succeeds and the result's abort code says why. Errnos are for
//! misuse of the ABI (`EPERM`, `EFAULT`, `EINVAL`, `ENOTTY`, `EINTR`).

use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

// The shared `no_std` core, compiled into this module from its source.
// The files are siblings here as in the core crate, so `super::` paths
// between them work in both places.
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/notes.rs"]
mod notes;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/payload.rs"]
mod payload;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/reloc.rs"]
mod reloc;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/runpre.rs"]
mod runpre;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/uapi.rs"]
mod uapi;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/x86.rs"]
mod x86;

mod conflicts;
mod hooks;
mod matching;
mod refusal;
mod shadow;
mod stack_check;
mod sys;
mod trampoline;
mod update;

use refusal::Refusal;

// SAFETY: These structs are `#[repr(C)]`, made only of integers and integer
// arrays, with no padding (the core crate's layout tests prove it), so every
// bit pattern is valid and every byte is initialised.
unsafe impl FromBytes for uapi::Info {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::Info {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::ListRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::ListRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::UpdateEntry {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::ApplyRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::ApplyRequest {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::UndoRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::UndoRequest {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::FunctionsRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::FunctionsRequest {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::VerifyRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::VerifyRequest {}
// SAFETY: As above.
unsafe impl FromBytes for uapi::ReleaseRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::ReleaseRequest {}

kernel::sync::global_lock! {
    // SAFETY: Initialised in module init before the device exists.
    // Every update; held only briefly, never across a sleep.
    unsafe(uninit) static REGISTRY: Mutex<update::Registry> = update::Registry::new();
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in module init before the device exists.
    // One apply, undo or release at a time, for its whole duration.
    unsafe(uninit) static OPERATION: Mutex<()> = ();
}

/// This module, pinned (`try_module_get`) while the registry holds any
/// update, because only it can undo or release them.
static THIS_MODULE_PTR: AtomicPtr<kernel::bindings::module> =
    AtomicPtr::new(core::ptr::null_mut());

module! {
    type: KspliceModule,
    name: "ksplice",
    authors: ["The ksplice developers"],
    description: "Rebootless kernel updates with run-pre matching",
    license: "GPL",
}

#[pin_data(PinnedDrop)]
struct KspliceModule {
    _kernel: (),
    #[pin]
    _device: MiscDeviceRegistration<KspliceDevice>,
}

impl kernel::InPlaceModule for KspliceModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called exactly once, before any ioctl can run.
        unsafe {
            REGISTRY.init();
            OPERATION.init();
            shadow::SHADOW.init();
        };
        THIS_MODULE_PTR.store(module.as_ptr(), Ordering::Relaxed);
        let kernel = sys::init_kallsyms()
            .and_then(|()| sys::register_int3())
            .and_then(|()| {
                sys::register_module_notifier().inspect_err(|_| sys::unregister_int3())
            });
        match &kernel {
            Ok(()) => pr_info!("core loaded, ABI version {}\n", uapi::ABI_VERSION),
            Err(e) => pr_err!(
                "cannot find the kernel functions ksplice needs (errno {}); refusing to load\n",
                -e.to_errno()
            ),
        }
        try_pin_init!(Self {
            _kernel: kernel?,
            _device <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"ksplice" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for KspliceModule {
    fn drop(self: Pin<&mut Self>) {
        sys::unregister_module_notifier();
        sys::unregister_int3();
        shadow::free_everything();
        pr_info!("core unloaded\n");
    }
}

/// Per-open state of `/dev/ksplice`; all real state is module-wide.
struct KspliceDevice;

/// Every operation needs `CAP_SYS_MODULE`, the capability that already
/// allows loading arbitrary code into the kernel.
fn require_cap_sys_module() -> Result {
    // SAFETY: `capable` only reads the current task's credentials.
    if unsafe { kernel::bindings::capable(kernel::bindings::CAP_SYS_MODULE as i32) } {
        Ok(())
    } else {
        Err(EPERM)
    }
}

fn user<T>(arg: UserPtr) -> UserSlice {
    UserSlice::new(arg, core::mem::size_of::<T>())
}

#[vtable]
impl MiscDevice for KspliceDevice {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        require_cap_sys_module()?;
        Ok(KBox::new(KspliceDevice, GFP_KERNEL)?)
    }

    fn ioctl(_me: &KspliceDevice, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        require_cap_sys_module()?;
        let arg = UserPtr::from_addr(arg);
        match cmd {
            uapi::IOC_INFO => info(user::<uapi::Info>(arg))?,
            uapi::IOC_LIST => list(user::<uapi::ListRequest>(arg))?,
            uapi::IOC_APPLY => apply(user::<uapi::ApplyRequest>(arg))?,
            uapi::IOC_UNDO => undo(user::<uapi::UndoRequest>(arg))?,
            uapi::IOC_FUNCTIONS => functions(user::<uapi::FunctionsRequest>(arg))?,
            uapi::IOC_VERIFY => verify(user::<uapi::VerifyRequest>(arg))?,
            uapi::IOC_RELEASE => release(user::<uapi::ReleaseRequest>(arg))?,
            uapi::IOC_EMPTY_STOP => empty_stop(user::<u64>(arg))?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

/// The module notifier (helpers.c): module `module` is coming, its init
/// not yet run. Patches what applied updates have pending for it; a
/// refusal refuses the load (an errno), with the reason logged.
#[no_mangle]
extern "C" fn ksplice_module_coming(module: *mut core::ffi::c_void) -> kernel::ffi::c_int {
    // SAFETY: The notifier passes the module it is called for.
    let module = unsafe { sys::ModuleRef::notified(module) };
    let _op = OPERATION.lock();
    let name = core::str::from_utf8(module.name()).unwrap_or("?");
    match update::module_coming(&module) {
        Ok(0) => 0,
        Ok(n) => {
            pr_info!("module {name} loaded: patched {n} functions of applied updates\n");
            0
        }
        Err(r) => {
            pr_err!(
                "refusing to load module {name}: an applied update patches it: {}: {}\n",
                r.abort.as_str(),
                core::str::from_utf8(r.detail()).unwrap_or("?")
            );
            EINVAL.to_errno()
        }
    }
}

/// The module notifier: module `module` is going (or failed to load).
#[no_mangle]
extern "C" fn ksplice_module_going(module: *mut core::ffi::c_void) {
    // SAFETY: The notifier passes the module it is called for, which lives
    // until it returns.
    let name = unsafe { sys::module_name(module) };
    let _op = OPERATION.lock();
    update::module_going(sys::name_bytes(&name));
}

/// Waits for the operation lock without blocking uninterruptibly: a
/// second operation sleeps (killable) until the first ends.
fn operation_lock() -> Result<kernel::sync::GlobalGuard<OPERATION>> {
    loop {
        if let Some(guard) = OPERATION.try_lock() {
            return Ok(guard);
        }
        if !sys::sleep_ms(10) {
            return Err(EINTR);
        }
    }
}

fn info(user: UserSlice) -> Result {
    let mut reply = uapi::Info::zeroed();
    reply.abi_version = uapi::ABI_VERSION;
    reply.applied = REGISTRY.lock().applied() as u32;
    // The last byte stays NUL even if the release were ever too long.
    let room = reply.release.len().saturating_sub(1);
    for (dst, &src) in reply.release.iter_mut().take(room).zip(sys::kernel_release()) {
        *dst = src;
    }
    user.writer().write(&reply)
}

fn list(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::ListRequest = reader.read()?;
    let registry = REGISTRY.lock();
    let total = registry.len();
    let count = total.min(request.capacity as usize);
    if count > 0 {
        let len = count
            .checked_mul(core::mem::size_of::<uapi::UpdateEntry>())
            .ok_or(EINVAL)?;
        let mut entries =
            UserSlice::new(UserPtr::from_addr(request.entries as usize), len).writer();
        for u in registry.iter().take(count) {
            let mut e = uapi::UpdateEntry::zeroed();
            e.id = u.id;
            e.state = u.state as u32;
            e.functions = u.functions();
            e.applied_at_ns = u.applied_at_ns;
            e.pause_ns = u.pause_ns;
            e.reversed_at_ns = u.reversed_at_ns;
            entries.write(&e)?;
        }
    }
    request.total = total as u32;
    writer.write(&request)
}

fn fill_result(result: &mut uapi::OpResult, outcome: &core::result::Result<update::Done, Refusal>) {
    *result = uapi::OpResult::zeroed();
    match outcome {
        Ok(done) => {
            result.functions = done.functions;
            result.pause_ns = done.pause_ns;
        }
        Err(refusal) => refuse_into(result, refusal),
    }
}

fn refuse_into(result: &mut uapi::OpResult, refusal: &Refusal) {
    result.abort = refusal.abort as u32;
    for (d, s) in result.detail.iter_mut().zip(refusal.detail()) {
        *d = *s;
    }
}

/// One kernel log line per operation: what was done, or why not.
fn log_outcome(what: &str, subject: &str, outcome: &core::result::Result<update::Done, Refusal>) {
    match outcome {
        Ok(d) if d.pending > 0 => pr_info!(
            "{what} {subject}: {} functions, pause {} ns; {} pending until their module loads\n",
            d.functions,
            d.pause_ns,
            d.pending
        ),
        Ok(d) => pr_info!(
            "{what} {subject}: {} functions, pause {} ns\n",
            d.functions,
            d.pause_ns
        ),
        Err(r) => pr_warn!(
            "refused to {what} {subject}: {}: {}\n",
            r.abort.as_str(),
            core::str::from_utf8(r.detail()).unwrap_or("?")
        ),
    }
}

fn nul_terminated(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..len).unwrap_or(&[])
}

/// A valid update id from a NUL-padded field, or `EINVAL`.
fn request_id(field: &[u8]) -> Result<&[u8]> {
    let id = nul_terminated(field);
    if core::str::from_utf8(id).is_ok_and(uapi::is_valid_id) {
        Ok(id)
    } else {
        Err(EINVAL)
    }
}

/// Pins this module while the registry holds any update.
fn pin_this_module(before: usize, after: usize) {
    let module = THIS_MODULE_PTR.load(Ordering::Relaxed);
    if module.is_null() {
        return;
    }
    if before == 0 && after > 0 {
        // SAFETY: `module` is this module, which is live while we run.
        unsafe { kernel::bindings::try_module_get(module) };
    } else if before > 0 && after == 0 {
        // SAFETY: Releases the reference taken above.
        unsafe { kernel::bindings::module_put(module) };
    }
}

fn apply(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::ApplyRequest = reader.read()?;
    if request.payload_len == 0 || request.payload_len > uapi::PAYLOAD_MAX || request.flags != 0 {
        return Err(EINVAL);
    }
    let name = core::str::from_utf8(nul_terminated(&request.module)).map_err(|_| EINVAL)?;
    if name.is_empty() {
        return Err(EINVAL);
    }
    let mut payload = KVVec::new();
    UserSlice::new(
        UserPtr::from_addr(request.payload as usize),
        request.payload_len as usize,
    )
    .read_all(&mut payload, GFP_KERNEL)?;
    let op = operation_lock()?;
    let before = REGISTRY.lock().len();
    let retry = trampoline::Retry::new(request.tries, request.retry_ms);
    let outcome = update::apply(&payload, name, retry);
    log_outcome("apply update from", name, &outcome);
    pin_this_module(before, REGISTRY.lock().len());
    drop(op);
    fill_result(&mut request.result, &outcome);
    writer.write(&request)
}

fn undo(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::UndoRequest = reader.read()?;
    let id = request_id(&request.id)?;
    let op = operation_lock()?;
    let retry = trampoline::Retry::new(request.tries, request.retry_ms);
    let outcome = update::undo(id, retry);
    log_outcome("undo", core::str::from_utf8(id).unwrap_or("?"), &outcome);
    drop(op);
    fill_result(&mut request.result, &outcome);
    writer.write(&request)
}

fn release(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::ReleaseRequest = reader.read()?;
    let id = request_id(&request.id)?;
    let op = operation_lock()?;
    let before = REGISTRY.lock().len();
    let outcome = update::release(id);
    let subject = core::str::from_utf8(id).unwrap_or("?");
    match &outcome {
        Ok(()) => pr_info!("released {subject}\n"),
        Err(r) => pr_warn!(
            "refused to release {subject}: {}: {}\n",
            r.abort.as_str(),
            core::str::from_utf8(r.detail()).unwrap_or("?")
        ),
    }
    pin_this_module(before, REGISTRY.lock().len());
    drop(op);
    request.result = uapi::OpResult::zeroed();
    if let Err(r) = &outcome {
        refuse_into(&mut request.result, r);
    }
    writer.write(&request)
}

fn verify(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::VerifyRequest = reader.read()?;
    let id = nul_terminated(&request.id);
    if !id.is_empty() {
        request_id(&request.id)?;
    }
    request.result = uapi::OpResult::zeroed();
    request.checked = 0;
    match update::verify(id) {
        Ok(n) => request.checked = n,
        Err(r) => refuse_into(&mut request.result, &r),
    }
    writer.write(&request)
}

fn empty_stop(user: UserSlice) -> Result {
    let op = operation_lock()?;
    let ns = update::empty_stop().map_err(|_| ENOMEM)?;
    drop(op);
    user.writer().write(&ns)
}

fn functions(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::FunctionsRequest = reader.read()?;
    let id = request_id(&request.id)?;
    let mut lines = KVec::new();
    if update::functions(id, &mut lines).is_err() {
        return Err(ENOENT);
    }
    let count = lines.len().min(request.len as usize);
    if count > 0 {
        UserSlice::new(UserPtr::from_addr(request.buf as usize), count)
            .writer()
            .write_slice(lines.get(..count).unwrap_or(&[]))?;
    }
    request.total = lines.len() as u32;
    writer.write(&request)
}
