// SPDX-License-Identifier: GPL-2.0
//! `ksplice.ko`: applies rebootless updates to the running kernel.
//!
//! Userspace talks to it through `/dev/ksplice` (mode 0600). Every
//! operation requires `CAP_SYS_MODULE`. The ioctl ABI is defined once, in
//! `kmod/core/src/uapi.rs`, which this crate includes by path together with
//! the rest of the shared `no_std` core.
//!
//! Commands:
//! - `INFO`: ABI version, applied-update count and kernel release;
//! - `LIST`: one record per update the module knows.

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
#[path = "core/src/uapi.rs"]
mod uapi;

// Compiled here already so the kernel's rustc flags check them; apply and
// undo (the next step) use them.
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/payload.rs"]
mod payload;
#[allow(dead_code, unreachable_pub)]
#[path = "core/src/reloc.rs"]
mod reloc;

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

module! {
    type: KspliceModule,
    name: "ksplice",
    authors: ["The ksplice developers"],
    description: "Rebootless kernel updates with run-pre matching",
    license: "GPL",
}

#[pin_data(PinnedDrop)]
struct KspliceModule {
    #[pin]
    _device: MiscDeviceRegistration<KspliceDevice>,
}

impl kernel::InPlaceModule for KspliceModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("core loaded, ABI version {}\n", uapi::ABI_VERSION);
        try_pin_init!(Self {
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

extern "C" {
    fn ksplice_helper_kernel_release() -> *const kernel::ffi::c_char;
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
            uapi::IOC_LIST => list(UserSlice::new(arg, core::mem::size_of::<uapi::ListRequest>()))?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

fn info(user: UserSlice) -> Result {
    let mut reply = uapi::Info::zeroed();
    reply.abi_version = uapi::ABI_VERSION;
    reply.applied = 0;
    // SAFETY: The helper returns the NUL-terminated release string of the
    // initial UTS namespace, a static object that lives forever.
    let release = unsafe { CStr::from_char_ptr(ksplice_helper_kernel_release()) };
    // The last byte stays NUL even if the release were ever too long.
    let room = reply.release.len().saturating_sub(1);
    for (dst, &src) in reply.release.iter_mut().take(room).zip(release.to_bytes()) {
        *dst = src;
    }
    user.writer().write(&reply)
}

fn list(user: UserSlice) -> Result {
    let (mut reader, mut writer) = user.reader_writer();
    let mut request: uapi::ListRequest = reader.read()?;
    // No update is tracked yet: report zero and write no records.
    request.total = 0;
    writer.write(&request)
}
