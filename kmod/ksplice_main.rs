// SPDX-License-Identifier: GPL-2.0
//! `ksplice.ko`: applies rebootless updates to the running kernel.
//!
//! Userspace talks to it through `/dev/ksplice` (mode 0600). Every
//! operation requires `CAP_SYS_MODULE`. The ioctl ABI is defined once, in
//! `kmod/core/src/uapi.rs`, which this crate includes by path together with
//! the rest of the shared `no_std` core (payload format, x86 decoding,
//! run-pre matching, relocation arithmetic).
//!
//! Commands:
//! - `INFO`: ABI version, applied-update count and kernel release;
//! - `LIST`: one record per applied update;
//! - `APPLY`: apply the update whose payload is uploaded and whose module
//!   (update.ko) is loaded; see `update.rs` for the sequence;
//! - `UNDO`: reverse an applied update.
//!
//! Expected refusals (`no_match`, `code_busy`, ...) are not ioctl errors:
//! the ioctl succeeds and the result's abort code says why. Errnos are for
//! misuse of the ABI (`EPERM`, `EFAULT`, `EINVAL`, `ENOTTY`).

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

mod sys;
mod update;

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
unsafe impl FromBytes for uapi::FunctionsRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::FunctionsRequest {}
// SAFETY: As above.
unsafe impl AsBytes for uapi::UndoRequest {}

kernel::sync::global_lock! {
    // SAFETY: Initialised in module init before the device exists.
    // One operation at a time: every ioctl that reads or changes the
    // applied updates holds this lock for its whole duration.
    unsafe(uninit) static REGISTRY: Mutex<update::Registry> = update::Registry::new();
}

/// This module, pinned (`try_module_get`) while any update is applied,
/// because only it can undo them.
static THIS_MODULE_PTR: AtomicPtr<kernel::bindings::module> = AtomicPtr::new(core::ptr::null_mut());

module! {
    type: KspliceModule,
    name: "ksplice",
    authors: ["The ksplice developers"],
    description: "Rebootless kernel updates with run-pre matching",
    license: "GPL",
}

#[pin_data(PinnedDrop)]
struct KspliceModule {
    _kallsyms: (),
    #[pin]
    _device: MiscDeviceRegistration<KspliceDevice>,
}

impl kernel::InPlaceModule for KspliceModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called exactly once, before any ioctl can run.
        unsafe { REGISTRY.init() };
        THIS_MODULE_PTR.store(module.as_ptr(), Ordering::Relaxed);
        let kallsyms = sys::init_kallsyms();
        if kallsyms.is_err() {
            pr_err!("cannot find kallsyms_lookup_name and friends; refusing to load\n");
        }
        pr_info!("core loaded, ABI version {}\n", uapi::ABI_VERSION);
        try_pin_init!(Self {
            _kallsyms: kallsyms?,
            _device <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"ksplice" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for KspliceModule {
    fn drop(self: Pin<&mut Self>) {
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
            uapi::IOC_INFO => info(UserSlice::new(arg, core::mem::size_of::<uapi::Info>()))?,
            uapi::IOC_LIST => list(UserSlice::new(
                arg,
                core::mem::size_of::<uapi::ListRequest>(),
            ))?,
            uapi::IOC_APPLY => apply(UserSlice::new(
                arg,
                core::mem::size_of::<uapi::ApplyRequest>(),
            ))?,
            uapi::IOC_UNDO => undo(UserSlice::new(
                arg,
                core::mem::size_of::<uapi::UndoRequest>(),
            ))?,
            uapi::IOC_FUNCTIONS => functions(UserSlice::new(
                arg,
                core::mem::size_of::<uapi::FunctionsRequest>(),
            ))?,
            uapi::IOC_EMPTY_STOP => empty_stop(UserSlice::new(arg, core::mem::size_of::<u64>()))?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

fn info(user: UserSlice) -> Result {
    let mut reply = uapi::Info::zeroed();
    reply.abi_version = uapi::ABI_VERSION;
    reply.applied = REGISTRY.lock().updates.len() as u32;
    // The last byte stays NUL even if the release were ever too long.
    let room = reply.release.len().saturating_sub(1);
    for (dst, &src) in reply
        .release
        .iter_mut()
        .take(room)
        .zip(sys::kernel_release())
    {
        *dst = src;
    }
    user.writer().write(&reply)
}

fn list(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::ListRequest = reader.read()?;
    let registry = REGISTRY.lock();
    let count = registry.updates.len().min(request.capacity as usize);
    if count > 0 {
        let size = core::mem::size_of::<uapi::UpdateEntry>();
        let len = count.checked_mul(size).ok_or(EINVAL)?;
        let mut entries =
            UserSlice::new(UserPtr::from_addr(request.entries as usize), len).writer();
        for u in registry.updates.iter().take(count) {
            let mut e = uapi::UpdateEntry::zeroed();
            e.id = u.id;
            e.state = uapi::UpdateState::Applied as u32;
            e.functions = u.functions();
            e.applied_at_ns = u.applied_at_ns;
            e.pause_ns = u.pause_ns;
            entries.write(&e)?;
        }
    }
    request.total = registry.updates.len() as u32;
    writer.write(&request)
}

fn fill_result(
    result: &mut uapi::OpResult,
    outcome: core::result::Result<(u32, u64), update::Refusal>,
) {
    *result = uapi::OpResult::zeroed();
    match outcome {
        Ok((functions, pause_ns)) => {
            result.functions = functions;
            result.pause_ns = pause_ns;
        }
        Err(refusal) => {
            result.abort = refusal.abort as u32;
            for (d, s) in result.detail.iter_mut().zip(refusal.detail.iter()) {
                *d = *s;
            }
        }
    }
}

/// One kernel log line per operation: what was done, or why not.
fn log_outcome(
    what: &str,
    subject: &str,
    outcome: &core::result::Result<(u32, u64), update::Refusal>,
) {
    match outcome {
        Ok((n, pause)) => pr_info!("{what} {subject}: {n} functions, pause {pause} ns\n"),
        Err(r) => pr_warn!(
            "refused to {what} {subject}: {}: {}\n",
            r.abort.as_str(),
            core::str::from_utf8(&r.detail).unwrap_or("?")
        ),
    }
}

fn nul_terminated(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..len).unwrap_or(&[])
}

fn pin_this_module(applied_before: usize, applied_after: usize) {
    let module = THIS_MODULE_PTR.load(Ordering::Relaxed);
    if module.is_null() {
        return;
    }
    if applied_before == 0 && applied_after > 0 {
        // SAFETY: `module` is this module, which is live while we run.
        unsafe { kernel::bindings::try_module_get(module) };
    } else if applied_before > 0 && applied_after == 0 {
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
    let mut registry = REGISTRY.lock();
    let before = registry.updates.len();
    let outcome = update::apply(
        &mut registry,
        &payload,
        name,
        request.tries,
        request.retry_ms,
    );
    log_outcome("apply update from", name, &outcome);
    pin_this_module(before, registry.updates.len());
    drop(registry);
    fill_result(&mut request.result, outcome);
    writer.write(&request)
}

fn undo(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::UndoRequest = reader.read()?;
    let id = nul_terminated(&request.id);
    if !core::str::from_utf8(id).is_ok_and(uapi::is_valid_id) {
        return Err(EINVAL);
    }
    let mut registry = REGISTRY.lock();
    let before = registry.updates.len();
    let outcome = update::undo(&mut registry, id, request.tries, request.retry_ms);
    log_outcome("undo", core::str::from_utf8(id).unwrap_or("?"), &outcome);
    pin_this_module(before, registry.updates.len());
    drop(registry);
    fill_result(&mut request.result, outcome);
    writer.write(&request)
}

fn empty_stop(user: UserSlice) -> Result {
    // One operation at a time, like apply.
    let registry = REGISTRY.lock();
    let ns = update::empty_stop().map_err(|_| ENOMEM)?;
    drop(registry);
    user.writer().write(&ns)
}

fn functions(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::FunctionsRequest = reader.read()?;
    let id = nul_terminated(&request.id);
    let registry = REGISTRY.lock();
    let update = registry
        .updates
        .iter()
        .find(|u| u.id_is(id))
        .ok_or(ENOENT)?;
    let names = update.names.as_slice();
    let count = names.len().min(request.len as usize);
    if count > 0 {
        UserSlice::new(UserPtr::from_addr(request.buf as usize), count)
            .writer()
            .write_slice(names.get(..count).unwrap_or(&[]))?;
    }
    request.total = names.len() as u32;
    drop(registry);
    writer.write(&request)
}
