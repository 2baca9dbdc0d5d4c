// SPDX-License-Identifier: GPL-2.0
//! The only place that calls C: the glue in `helpers.c` and a few exported
//! kernel functions, each behind a small safe wrapper.

use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;

/// `struct ksplice_range` of helpers.h.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Range {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// `struct ksplice_busy` of helpers.h.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Busy {
    pub(crate) addr: u64,
    pub(crate) pid: c_int,
    pub(crate) comm: [u8; 16],
}

impl Busy {
    pub(crate) const fn new() -> Self {
        Self {
            addr: 0,
            pid: 0,
            comm: [0; 16],
        }
    }
}

extern "C" {
    fn ksplice_helper_kernel_release() -> *const c_char;
    fn ksplice_helper_init_kallsyms() -> c_int;
    fn ksplice_helper_for_each_match(
        name: *const c_char,
        f: unsafe extern "C" fn(*mut c_void, u64) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn ksplice_helper_build_id(out: *mut u8, max: c_int) -> c_int;
    fn ksplice_helper_get_module(name: *const c_char) -> *mut c_void;
    fn ksplice_helper_put_module(module: *mut c_void);
    fn ksplice_helper_module_symbol(
        module: *mut c_void,
        name: *const c_char,
        size: *mut u64,
    ) -> u64;
    fn ksplice_helper_module_owns(module: *mut c_void, addr: u64, len: u64) -> bool;
    fn ksplice_helper_map(addr: u64, len: u64) -> *mut u8;
    fn ksplice_helper_unmap(alias: *mut u8);
    fn ksplice_helper_lock_text();
    fn ksplice_helper_unlock_text();
    fn ksplice_helper_stop_machine(
        f: unsafe extern "C" fn(*mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn ksplice_helper_sync_core();
    fn ksplice_helper_ktime_ns() -> u64;
    fn ksplice_helper_real_ns() -> u64;
    fn ksplice_helper_snapshot_stacks(
        ranges: *const Range,
        n: u32,
        snap: *mut Snap,
        cap: u32,
        count: *mut u32,
        busy: *mut Busy,
    ) -> c_int;
    fn ksplice_helper_recheck_stacks(
        ranges: *const Range,
        n: u32,
        snap: *const Snap,
        count: u32,
        busy: *mut Busy,
    ) -> c_int;
    fn copy_from_kernel_nofault(dst: *mut c_void, src: *const c_void, size: usize) -> isize;
    fn sprint_symbol(buffer: *mut c_char, address: u64) -> c_int;
    fn msleep(msecs: u32);
}

/// Longest name kallsyms prints (`KSYM_SYMBOL_LEN`).
const KSYM_SYMBOL_LEN: usize = 512 + 128 + 64;

/// Copies `s` into a NUL-terminated buffer for C.
fn c_name(s: &str) -> Result<KVec<u8>> {
    let mut v = KVec::with_capacity(s.len() + 1, GFP_KERNEL)?;
    v.extend_from_slice(s.as_bytes(), GFP_KERNEL)?;
    v.push(0, GFP_KERNEL)?;
    Ok(v)
}

/// The release string of the running kernel.
pub(crate) fn kernel_release() -> &'static [u8] {
    // SAFETY: The helper returns the NUL-terminated release string of the
    // initial UTS namespace, a static object that lives forever.
    unsafe { CStr::from_char_ptr(ksplice_helper_kernel_release()) }.to_bytes()
}

/// Finds the unexported kernel functions and data this module needs.
pub(crate) fn init_kallsyms() -> Result {
    // SAFETY: Called once from module init; only registers a kprobe and
    // looks up names.
    kernel::error::to_result(unsafe { ksplice_helper_init_kallsyms() })
}

unsafe extern "C" fn push_candidate(data: *mut c_void, addr: u64) -> c_int {
    // SAFETY: `data` is the `&mut KVec<u64>` passed by `candidates` below,
    // exclusively borrowed for the duration of the walk.
    let list = unsafe { &mut *data.cast::<KVec<u64>>() };
    match list.push(addr, GFP_KERNEL) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Every vmlinux address kallsyms has for `name`.
pub(crate) fn candidates(name: &str) -> Result<KVec<u64>> {
    let c = c_name(name)?;
    let mut list = KVec::new();
    // SAFETY: `c` is NUL-terminated; `push_candidate` gets `&mut list`,
    // which lives across the call and is not otherwise used during it.
    let rc = unsafe {
        ksplice_helper_for_each_match(c.as_ptr().cast(), push_candidate, (&raw mut list).cast())
    };
    if rc != 0 {
        return Err(ENOMEM);
    }
    Ok(list)
}

/// The running vmlinux's GNU build id (empty if unknown).
pub(crate) fn build_id(out: &mut [u8; 20]) -> usize {
    // SAFETY: `out` is writable for 20 bytes.
    let n = unsafe { ksplice_helper_build_id(out.as_mut_ptr(), 20) };
    usize::try_from(n).unwrap_or(0).min(out.len())
}

/// `sprint_symbol`: "name+0xoff/0xsize [module]".
pub(crate) fn symbol_at(addr: u64, buf: &mut [u8; KSYM_SYMBOL_LEN]) -> &[u8] {
    // SAFETY: `buf` has KSYM_SYMBOL_LEN bytes, the size sprint_symbol needs.
    let n = unsafe { sprint_symbol(buf.as_mut_ptr().cast(), addr) };
    buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[])
}

/// A buffer for [`symbol_at`].
pub(crate) const fn symbol_buffer() -> [u8; KSYM_SYMBOL_LEN] {
    [0; KSYM_SYMBOL_LEN]
}

/// Reads kernel memory without faulting (unmapped memory is an error).
pub(crate) fn read_kernel(addr: u64, out: &mut [u8]) -> Result {
    // SAFETY: `out` is writable for its length; the source is only read,
    // with faults caught by copy_from_kernel_nofault.
    let rc = unsafe {
        copy_from_kernel_nofault(out.as_mut_ptr().cast(), addr as *const c_void, out.len())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(EFAULT)
    }
}

/// Sleeps.
pub(crate) fn sleep_ms(ms: u32) {
    // SAFETY: msleep only sleeps; we hold no spinlock here.
    unsafe { msleep(ms) }
}

/// Monotonic time in ns.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: Reads the clock.
    unsafe { ksplice_helper_ktime_ns() }
}

/// Wall-clock time in ns since the epoch.
pub(crate) fn real_ns() -> u64 {
    // SAFETY: Reads the clock.
    unsafe { ksplice_helper_real_ns() }
}

/// A reference on a live module; dropping it releases the reference.
pub(crate) struct ModuleRef(*mut c_void);

// SAFETY: A module reference may be released from any thread.
unsafe impl Send for ModuleRef {}

impl ModuleRef {
    /// Takes a reference on the live module `name`.
    pub(crate) fn get(name: &str) -> Result<Option<Self>> {
        let c = c_name(name)?;
        // SAFETY: `c` is NUL-terminated; the helper looks the module up
        // under RCU and takes a reference before returning it.
        let m = unsafe { ksplice_helper_get_module(c.as_ptr().cast()) };
        Ok((!m.is_null()).then_some(Self(m)))
    }

    /// Address and size of a defined symbol of the module.
    pub(crate) fn symbol(&self, name: &str) -> Result<Option<(u64, u64)>> {
        let c = c_name(name)?;
        let mut size = 0u64;
        // SAFETY: We hold a reference, so the module and its kallsyms live.
        let addr = unsafe { ksplice_helper_module_symbol(self.0, c.as_ptr().cast(), &mut size) };
        Ok((addr != 0).then_some((addr, size)))
    }

    /// Whether [addr, addr + len) lies in the module's memory.
    pub(crate) fn owns(&self, addr: u64, len: u64) -> bool {
        // SAFETY: We hold a reference, so `mem[]` is stable.
        unsafe { ksplice_helper_module_owns(self.0, addr, len) }
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: We own one reference, taken in `get`.
        unsafe { ksplice_helper_put_module(self.0) }
    }
}

/// A writable alias of up to one page of text; unmapped on drop.
pub(crate) struct TextAlias {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: The alias is plain kernel virtual memory usable from any CPU.
unsafe impl Send for TextAlias {}
// SAFETY: Writes happen only inside stop_machine, from one CPU.
unsafe impl Sync for TextAlias {}

impl TextAlias {
    /// Maps [addr, addr + len) writable. May sleep.
    pub(crate) fn map(addr: u64, len: usize) -> Result<Self> {
        // SAFETY: The helper only builds a vmap of the pages backing the
        // range (kernel or module text, found by the caller's matching).
        let ptr = unsafe { ksplice_helper_map(addr, len as u64) };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self { ptr, len })
    }

    /// Writes `bytes` at `offset`. For the bytes of an instruction that no
    /// CPU may execute concurrently: inside stop_machine, or in code no
    /// trampoline points at yet.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) -> Result {
        let end = offset.checked_add(bytes.len()).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        // SAFETY: [offset, end) is inside the mapping (checked above), and
        // the caller guarantees no CPU executes those bytes meanwhile.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len())
        };
        Ok(())
    }
}

impl TextAlias {
    /// Writes `bytes` at `offset`, as one aligned 8-byte store when they
    /// fit in one aligned word (always so for a 5-byte trampoline at fn+9
    /// of a 16-byte aligned function): an NMI running the code during the
    /// stop then sees the old or the new instruction, never a torn one.
    /// The mapping must start 8-byte aligned (see `commit`).
    pub(crate) fn write_atomically(&self, offset: usize, bytes: &[u8]) -> Result {
        let word_start = offset & !7;
        let within = offset - word_start;
        if within + bytes.len() > 8 || word_start + 8 > self.len || (self.ptr as usize) & 7 != 0 {
            return self.write(offset, bytes);
        }
        // SAFETY: [word_start, word_start + 8) is inside the mapping and
        // 8-byte aligned (checked above); only this CPU writes text during
        // the stop.
        unsafe {
            let word = self.ptr.add(word_start).cast::<u64>();
            let mut buf = core::ptr::read_volatile(word).to_le_bytes();
            for (dst, src) in buf.iter_mut().skip(within).zip(bytes) {
                *dst = *src;
            }
            core::ptr::write_volatile(word, u64::from_le_bytes(buf));
        }
        Ok(())
    }
}

impl Drop for TextAlias {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from ksplice_helper_map and is unmapped once.
        unsafe { ksplice_helper_unmap(self.ptr) }
    }
}

/// Holds `cpus_read_lock` and `text_mutex`: nobody else patches text.
pub(crate) struct TextLock(());

impl TextLock {
    pub(crate) fn lock() -> Self {
        // SAFETY: Takes the two locks in the kernel's order; released on drop.
        unsafe { ksplice_helper_lock_text() };
        Self(())
    }
}

impl Drop for TextLock {
    fn drop(&mut self) {
        // SAFETY: Held since `lock`.
        unsafe { ksplice_helper_unlock_text() }
    }
}

/// Runs `f(data)` on every online CPU at once with interrupts off.
///
/// # Safety
///
/// `data` must be valid for `f` for the whole call; `_lock` proves the
/// caller holds the text lock (cpus_read_lock is required).
pub(crate) unsafe fn stop_machine(
    _lock: &TextLock,
    f: unsafe extern "C" fn(*mut c_void) -> c_int,
    data: *mut c_void,
) -> c_int {
    // SAFETY: As the caller promises.
    unsafe { ksplice_helper_stop_machine(f, data) }
}

/// Serialises this CPU's instruction stream (after cross-modifying code).
pub(crate) fn sync_core() {
    // SAFETY: An always-safe serializing instruction sequence.
    unsafe { ksplice_helper_sync_core() }
}

/// `struct ksplice_snap` of helpers.h: a task and its switch count.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Snap {
    task: *const c_void,
    switches: u64,
}

// SAFETY: Plain data; the task pointer is only compared, never followed,
// outside the C helpers that hold RCU.
unsafe impl Send for Snap {}

/// Outcome of a stack check.
pub(crate) enum Stacks {
    /// No task is in the ranges.
    Clear,
    /// A task is (details in the `Busy`).
    Busy,
    /// A stack could not be walked reliably.
    Unreliable,
}

fn stacks(rc: c_int) -> Stacks {
    match rc {
        0 => Stacks::Clear,
        1 => Stacks::Busy,
        _ => Stacks::Unreliable,
    }
}

/// Phase one, outside stop_machine: walks every task's stack and records
/// who must be looked at again inside the stop. Grows `snap` as needed.
pub(crate) fn snapshot_stacks(
    ranges: &[Range],
    snap: &mut KVVec<Snap>,
    busy: &mut Busy,
) -> Result<Stacks> {
    let empty = Snap {
        task: core::ptr::null(),
        switches: 0,
    };
    loop {
        let cap = snap.len().max(256);
        snap.resize(cap, empty, GFP_KERNEL)?;
        let mut count = 0u32;
        // SAFETY: `snap` has `cap` writable records, `ranges` and `busy` are
        // valid; the helper walks tasks under RCU and may not sleep.
        let rc = unsafe {
            ksplice_helper_snapshot_stacks(
                ranges.as_ptr(),
                ranges.len() as u32,
                snap.as_mut_ptr(),
                cap as u32,
                &mut count,
                busy,
            )
        };
        if rc == -(kernel::bindings::ENOSPC as c_int) {
            let grown = cap.checked_mul(2).ok_or(ENOMEM)?;
            snap.resize(grown, empty, GFP_KERNEL)?;
            continue;
        }
        snap.truncate(count as usize);
        return Ok(stacks(rc));
    }
}

/// Phase two, only inside stop_machine: re-walks the tasks that ran since
/// phase one (and new tasks, and the idle tasks).
pub(crate) fn recheck_stacks(ranges: &[Range], snap: &[Snap], busy: &mut Busy) -> Stacks {
    // SAFETY: All pointers are valid for the call; the caller is a
    // stop_machine callback, so no task runs or exits meanwhile.
    stacks(unsafe {
        ksplice_helper_recheck_stacks(
            ranges.as_ptr(),
            ranges.len() as u32,
            snap.as_ptr(),
            snap.len() as u32,
            busy,
        )
    })
}
