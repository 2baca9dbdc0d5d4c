// SPDX-License-Identifier: GPL-2.0
//! The only place that calls C: the glue in `helpers.c` and a few exported
//! kernel functions, each behind a small safe wrapper. Types here own what
//! they acquire (a module reference, a text alias, a lock) and release it
//! on drop.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::ffi::{c_char, c_int};
use kernel::prelude::*;

/// `struct ksplice_symbols` of helpers.h.
#[repr(C)]
struct Symbols {
    rcu_tasks_percpu: u64,
    rcu_tasks: u64,
    return_to_handler: u64,
    kretprobe_trampoline: u64,
    rethook_trampoline: u64,
    notes_start: u64,
    notes_end: u64,
}

extern "C" {
    fn ksplice_helper_init_kallsyms(out: *mut Symbols) -> c_int;
    fn ksplice_helper_task_layout(out: *mut TaskLayout);
    fn ksplice_helper_init_task() -> *mut c_void;
    fn ksplice_helper_kernel_release() -> *const c_char;
    fn ksplice_helper_for_each_match(
        name: *const c_char,
        f: unsafe extern "C" fn(*mut c_void, u64) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn ksplice_helper_get_module(name: *const c_char) -> *mut c_void;
    fn ksplice_helper_module_put(module: *mut c_void);
    fn ksplice_helper_module_get(module: *mut c_void);
    fn ksplice_helper_module_symbol(
        module: *mut c_void,
        name: *const c_char,
        size: *mut u64,
    ) -> u64;
    fn ksplice_helper_module_owns(module: *mut c_void, addr: u64, len: u64)
        -> bool;
    fn ksplice_helper_module_matches(
        module: *mut c_void,
        name: *const c_char,
        out: *mut u64,
        cap: usize,
    ) -> usize;
    fn ksplice_helper_module_state(name: *const c_char) -> c_int;
    fn ksplice_helper_module_name(module: *mut c_void) -> *const c_char;
    fn ksplice_helper_register_module_notifier() -> c_int;
    fn ksplice_helper_unregister_module_notifier();
    fn ksplice_helper_sync_all_cpus();
    fn ksplice_helper_module_patch_site(
        module: *mut c_void,
        addr: u64,
        start: *mut u64,
        end: *mut u64,
    ) -> bool;
    fn ksplice_helper_kprobe_lock();
    fn ksplice_helper_kprobe_unlock();
    fn ksplice_helper_ftrace_lock();
    fn ksplice_helper_ftrace_unlock();
    fn ksplice_helper_cpus_read_lock();
    fn ksplice_helper_cpus_read_unlock();
    fn ksplice_helper_text_lock();
    fn ksplice_helper_text_unlock();
    fn ksplice_helper_klp_lock();
    fn ksplice_helper_klp_unlock();
    fn ksplice_helper_map(addr: u64, len: u64) -> *mut u8;
    fn ksplice_helper_unmap(alias: *mut u8);
    fn ksplice_helper_stop_machine(
        f: unsafe extern "C" fn(*mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn ksplice_helper_sync_core();
    fn ksplice_helper_irq_save() -> core::ffi::c_ulong;
    fn ksplice_helper_irq_restore(flags: core::ffi::c_ulong);
    fn ksplice_helper_register_int3() -> c_int;
    fn ksplice_helper_unregister_int3();
    fn ksplice_helper_get_kprobe(addr: u64) -> *mut c_void;
    fn ksplice_helper_kprobe_reach(probe: *mut c_void) -> u64;
    fn ksplice_helper_within_kprobe_blacklist(addr: u64) -> bool;
    fn ksplice_helper_ftrace_flags(ip: u64) -> u64;
    fn ksplice_helper_ftrace_direct(ip: u64) -> u64;
    fn ksplice_helper_livepatch_owner(old_func: u64, buf: *mut c_char, len: usize) -> bool;
    fn ksplice_helper_num_online_cpus() -> u32;
    fn ksplice_helper_next_cpu(cpu: c_int, online: bool) -> c_int;
    fn ksplice_helper_smp_processor_id() -> c_int;
    fn ksplice_helper_per_cpu_ptr(addr: u64, cpu: c_int) -> *mut c_void;
    fn ksplice_helper_current() -> *mut c_void;
    fn ksplice_helper_idle_task(cpu: c_int) -> *mut c_void;
    fn ksplice_helper_rcu_read_lock();
    fn ksplice_helper_rcu_read_unlock();
    fn ksplice_helper_try_get_task_stack(t: *mut c_void) -> bool;
    fn ksplice_helper_put_task_stack(t: *mut c_void);
    fn ksplice_helper_thread_size() -> u64;
    fn ksplice_helper_unwind_start(state: *mut c_void, task: *mut c_void);
    fn ksplice_helper_unwind_done(state: *mut c_void) -> bool;
    fn ksplice_helper_unwind_error(state: *mut c_void) -> bool;
    fn ksplice_helper_unwind_in_user_mode(state: *mut c_void) -> bool;
    fn ksplice_helper_fatal_signal_pending() -> bool;
    fn ksplice_helper_ktime_ns() -> u64;
    fn ksplice_helper_call_hook(func: u64, returns_int: bool) -> c_int;
    fn ksplice_helper_real_ns() -> u64;
    fn unwind_next_frame(state: *mut c_void) -> bool;
    fn unwind_get_return_address(state: *mut c_void) -> u64;
    fn copy_from_kernel_nofault(dst: *mut c_void, src: *const c_void, size: usize) -> isize;
    fn sprint_symbol(buffer: *mut c_char, address: u64) -> c_int;
    fn msleep_interruptible(msecs: u32) -> u64;
}

/// `struct ksplice_task_layout` of helpers.h: where task_struct fields are.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct TaskLayout {
    pub(crate) tasks: u64,
    pub(crate) thread_node: u64,
    pub(crate) signal: u64,
    pub(crate) thread_head: u64,
    pub(crate) nvcsw: u64,
    pub(crate) nivcsw: u64,
    pub(crate) on_cpu: u64,
    pub(crate) start_time: u64,
    pub(crate) stack: u64,
    pub(crate) thread_sp: u64,
    pub(crate) state: u64,
    pub(crate) pid: u64,
    pub(crate) comm: u64,
    /// `u64::MAX` without CONFIG_TASKS_RCU.
    pub(crate) rcu_tasks_exit_list: u64,
    /// 1 or 4.
    pub(crate) on_cpu_size: u64,
}

/// Where this kernel's C compiler put the task_struct fields ksplice reads.
pub(crate) fn task_layout() -> TaskLayout {
    let mut l = TaskLayout {
        tasks: 0,
        thread_node: 0,
        signal: 0,
        thread_head: 0,
        nvcsw: 0,
        nivcsw: 0,
        on_cpu: 0,
        start_time: 0,
        stack: 0,
        thread_sp: 0,
        state: 0,
        pid: 0,
        comm: 0,
        rcu_tasks_exit_list: 0,
        on_cpu_size: 0,
    };
    // SAFETY: The helper only writes offsetof values into `l`.
    unsafe { ksplice_helper_task_layout(&mut l) };
    l
}

/// `&init_task`, the head of the task list.
pub(crate) fn init_task() -> *const c_void {
    // SAFETY: Returns the address of a static.
    unsafe { ksplice_helper_init_task() }
}

/// Addresses found at load; 0 where this kernel lacks the symbol.
pub(crate) struct KernelSymbols {
    pub(crate) rcu_tasks_percpu: u64,
    pub(crate) rcu_tasks: u64,
    pub(crate) return_to_handler: u64,
    pub(crate) kretprobe_trampoline: u64,
    pub(crate) rethook_trampoline: u64,
    pub(crate) notes: (u64, u64),
}

static SYMBOLS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Finds the unexported kernel functions and data this module needs.
pub(crate) fn init_kallsyms() -> Result {
    let mut s = Symbols {
        rcu_tasks_percpu: 0,
        rcu_tasks: 0,
        return_to_handler: 0,
        kretprobe_trampoline: 0,
        rethook_trampoline: 0,
        notes_start: 0,
        notes_end: 0,
    };
    // SAFETY: Called once from module init; the helper registers and
    // unregisters a kprobe and looks names up, writing only `s`.
    kernel::error::to_result(unsafe { ksplice_helper_init_kallsyms(&mut s) })?;
    let values = [
        s.rcu_tasks_percpu,
        s.rcu_tasks,
        s.return_to_handler,
        s.kretprobe_trampoline,
        s.rethook_trampoline,
        s.notes_start,
        s.notes_end,
    ];
    for (slot, v) in SYMBOLS.iter().zip(values) {
        slot.store(v, Ordering::Relaxed);
    }
    Ok(())
}

/// The addresses [`init_kallsyms`] found.
pub(crate) fn symbols() -> KernelSymbols {
    let v = |i: usize| SYMBOLS.get(i).map_or(0, |s| s.load(Ordering::Relaxed));
    KernelSymbols {
        rcu_tasks_percpu: v(0),
        rcu_tasks: v(1),
        return_to_handler: v(2),
        kretprobe_trampoline: v(3),
        rethook_trampoline: v(4),
        notes: (v(5), v(6)),
    }
}

/// Longest name kallsyms prints (`KSYM_SYMBOL_LEN`).
pub(crate) const KSYM_SYMBOL_LEN: usize = 512 + 128 + 64;

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

/// A buffer for [`symbol_at`].
pub(crate) type SymbolBuffer = [u8; KSYM_SYMBOL_LEN];

/// A buffer for [`symbol_at`].
pub(crate) const fn symbol_buffer() -> SymbolBuffer {
    [0; KSYM_SYMBOL_LEN]
}

/// `sprint_symbol`: "name+0xoff/0xsize [module]".
pub(crate) fn symbol_at(addr: u64, buf: &mut SymbolBuffer) -> &[u8] {
    // SAFETY: `buf` has KSYM_SYMBOL_LEN bytes, the size sprint_symbol needs.
    let n = unsafe { sprint_symbol(buf.as_mut_ptr().cast(), addr) };
    buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[])
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

/// Reads one machine word of kernel memory without faulting.
pub(crate) fn read_word(addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_kernel(addr, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

/// Sleeps interruptibly; false if a fatal signal is pending afterwards.
pub(crate) fn sleep_ms(ms: u32) -> bool {
    // SAFETY: Sleeps; the caller holds no spinlock and no lock another
    // task needs to make progress on what we wait for.
    unsafe { msleep_interruptible(ms) };
    !fatal_signal_pending()
}

/// Whether the current task has a fatal signal pending.
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: Reads the current task's signal state.
    unsafe { ksplice_helper_fatal_signal_pending() }
}

/// Calls an update's hook function.
///
/// # Safety
///
/// `func` must be a function of a loaded module with the C prototype
/// `int (*)(void)` (`returns_int`) or `void (*)(void)`.
pub(crate) unsafe fn call_hook(func: u64, returns_int: bool) -> i32 {
    // SAFETY: As the caller promises.
    unsafe { ksplice_helper_call_hook(func, returns_int) }
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

// SAFETY: A module reference may be used and released from any thread.
unsafe impl Send for ModuleRef {}
// SAFETY: Shared use only reads the module through the helpers, which
// take RCU where the module's data can change.
unsafe impl Sync for ModuleRef {}

/// A module name as the kernel keeps it (`MODULE_NAME_LEN`), NUL-padded.
pub(crate) type ModuleName = [u8; crate::payload::MODULE_NAME_MAX + 1];

/// The name of a module the caller knows exists.
///
/// # Safety
///
/// `module` points to a live `struct module` (a notifier's argument).
pub(crate) unsafe fn module_name(module: *mut c_void) -> ModuleName {
    let mut name = [0u8; crate::payload::MODULE_NAME_MAX + 1];
    // SAFETY: As the caller promises; the name is a NUL-terminated array
    // inside the struct.
    let live = unsafe { CStr::from_char_ptr(ksplice_helper_module_name(module)) }.to_bytes();
    for (d, &b) in name.iter_mut().zip(live.iter().take(crate::payload::MODULE_NAME_MAX)) {
        *d = b;
    }
    name
}

/// The bytes of a NUL-padded [`ModuleName`].
pub(crate) fn name_bytes(name: &ModuleName) -> &[u8] {
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    name.get(..len).unwrap_or(&[])
}

/// What a module name stands for right now.
pub(crate) enum ModuleLookup {
    /// Loaded and initialised; the reference keeps it so.
    Live(ModuleRef),
    /// No module of that name is loaded.
    Absent,
    /// It is being loaded or unloaded.
    Changing,
}

impl ModuleRef {
    /// Takes a reference on the live module `name`.
    pub(crate) fn get(name: &str) -> Result<Option<Self>> {
        let c = c_name(name)?;
        // SAFETY: `c` is NUL-terminated; the helper looks the module up
        // under RCU and takes a reference before returning it.
        let m = unsafe { ksplice_helper_get_module(c.as_ptr().cast()) };
        Ok((!m.is_null()).then(|| Self(m)))
    }

    /// Looks module `name` up, taking a reference if it is live.
    pub(crate) fn lookup(name: &str) -> Result<ModuleLookup> {
        if let Some(m) = Self::get(name)? {
            return Ok(ModuleLookup::Live(m));
        }
        let c = c_name(name)?;
        // SAFETY: `c` is NUL-terminated; the helper only reads the state.
        let state = unsafe { ksplice_helper_module_state(c.as_ptr().cast()) };
        // Any state but absent is changing: coming, going, or live only
        // after the reference was tried.
        Ok(if state == -1 {
            ModuleLookup::Absent
        } else {
            ModuleLookup::Changing
        })
    }

    /// A reference on the module a `MODULE_STATE_COMING` notifier was
    /// called for.
    ///
    /// # Safety
    ///
    /// `module` is the `struct module` the notifier got, which lives at
    /// least until the notifier returns.
    pub(crate) unsafe fn notified(module: *mut c_void) -> Self {
        // SAFETY: The module exists (as the caller promises); a plain
        // reference count increment is allowed in any state.
        unsafe { ksplice_helper_module_get(module) };
        Self(module)
    }

    /// The module's name.
    pub(crate) fn name(&self) -> &[u8] {
        // SAFETY: We hold a reference; `name` is a NUL-terminated array
        // inside the module struct.
        unsafe { CStr::from_char_ptr(ksplice_helper_module_name(self.0)) }.to_bytes()
    }

    /// Every address the module's kallsyms has for `name`.
    pub(crate) fn candidates(&self, name: &str) -> Result<KVec<u64>> {
        let c = c_name(name)?;
        let mut list = KVec::new();
        loop {
            let cap = list.capacity();
            // SAFETY: We hold a reference, so the module's kallsyms live;
            // `list` has room for `cap` entries.
            let n = unsafe {
                ksplice_helper_module_matches(self.0, c.as_ptr().cast(), list.as_mut_ptr(), cap)
            };
            if n <= cap {
                // SAFETY: The helper wrote `n` entries, within capacity.
                unsafe { list.inc_len(n) };
                return Ok(list);
            }
            list.reserve(n, GFP_KERNEL)?;
        }
    }

    /// Address and size of a defined symbol of the module.
    pub(crate) fn symbol(&self, name: &str) -> Result<Option<(u64, u64)>> {
        let c = c_name(name)?;
        let mut size = 0;
        // SAFETY: We hold a reference, so the module and its kallsyms live.
        let addr = unsafe { ksplice_helper_module_symbol(self.0, c.as_ptr().cast(), &mut size) };
        Ok((addr != 0).then_some((addr, size)))
    }

    /// Whether [addr, addr + len) lies in the module's memory.
    pub(crate) fn owns(&self, addr: u64, len: u64) -> bool {
        // SAFETY: We hold a reference, so `mem[]` is stable.
        unsafe { ksplice_helper_module_owns(self.0, addr, len) }
    }

    /// The bounds of the site around `addr` that the kernel patches at run
    /// time in this module's code (ftrace call, jump label, static call).
    pub(crate) fn patch_site(&self, _lock: &TextLock, addr: u64) -> Option<(u64, u64)> {
        let (mut start, mut end) = (0, 0);
        // SAFETY: We hold a reference, so the module's tables live; the text
        // lock keeps the sites from changing.
        unsafe { ksplice_helper_module_patch_site(self.0, addr, &mut start, &mut end) }
            .then_some((start, end))
    }

    /// Another reference on the same module.
    pub(crate) fn clone_ref(&self) -> Self {
        // SAFETY: We hold a reference, so taking another cannot fail.
        unsafe { ksplice_helper_module_get(self.0) };
        Self(self.0)
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: We own one reference, taken in `get`.
        unsafe { ksplice_helper_module_put(self.0) }
    }
}

/// A writable alias of up to one page of text; unmapped on drop.
pub(crate) struct TextAlias {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: The alias is plain kernel virtual memory usable from any CPU.
unsafe impl Send for TextAlias {}
// SAFETY: Writes happen only inside stop_machine, from one CPU, or to code
// nothing executes yet.
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

    /// Writes `bytes` at `offset` of code that nothing executes meanwhile
    /// (update.ko's code before any trampoline points at it).
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

    /// Writes one byte with a single store, which an instruction fetch on
    /// another CPU sees whole (the premise of the int3 protocol).
    /// `offset` must be inside the mapping; out of range writes nothing.
    pub(crate) fn write_byte(&self, offset: usize, byte: u8) {
        if offset < self.len {
            // SAFETY: `offset` is inside the mapping; only the one CPU
            // writing text inside stop_machine writes here.
            unsafe { core::ptr::write_volatile(self.ptr.add(offset), byte) };
        }
    }
}

impl Drop for TextAlias {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from ksplice_helper_map and is unmapped once.
        unsafe { ksplice_helper_unmap(self.ptr) }
    }
}

/// Held while ksplice reads or writes text: `kprobe_mutex`, `ftrace_lock`,
/// `cpus_read_lock` and `text_mutex`, in the order the kernel's own
/// patchers take them, so no kprobe, ftrace user, jump label or static
/// call changes code (or registers itself) meanwhile.
pub(crate) struct TextLock(());

impl TextLock {
    pub(crate) fn lock() -> Self {
        // SAFETY: Takes the four locks in the kernel's order; released in
        // reverse on drop.
        unsafe {
            ksplice_helper_kprobe_lock();
            ksplice_helper_ftrace_lock();
            ksplice_helper_cpus_read_lock();
            ksplice_helper_text_lock();
        }
        Self(())
    }
}

impl Drop for TextLock {
    fn drop(&mut self) {
        // SAFETY: Held since `lock`.
        unsafe {
            ksplice_helper_text_unlock();
            ksplice_helper_cpus_read_unlock();
            ksplice_helper_ftrace_unlock();
            ksplice_helper_kprobe_unlock();
        }
    }
}

/// Held while walking livepatch's patches (`klp_mutex`). Never taken while
/// a [`TextLock`] is held: livepatch takes ftrace's locks under it.
pub(crate) struct KlpLock(());

impl KlpLock {
    pub(crate) fn lock() -> Self {
        // SAFETY: Released on drop.
        unsafe { ksplice_helper_klp_lock() };
        Self(())
    }
}

impl Drop for KlpLock {
    fn drop(&mut self) {
        // SAFETY: Held since `lock`.
        unsafe { ksplice_helper_klp_unlock() }
    }
}

/// Runs `f(data)` on every online CPU at once with interrupts off.
///
/// # Safety
///
/// `data` must be valid for `f` for the whole call.
pub(crate) unsafe fn stop_machine(
    _lock: &TextLock,
    f: unsafe extern "C" fn(*mut c_void) -> c_int,
    data: *mut c_void,
) -> c_int {
    // SAFETY: As the caller promises; `_lock` holds cpus_read_lock.
    unsafe { ksplice_helper_stop_machine(f, data) }
}

/// Serialises this CPU's instruction stream (after cross-modifying code).
pub(crate) fn sync_core() {
    // SAFETY: An always-safe serializing instruction sequence.
    unsafe { ksplice_helper_sync_core() }
}

/// Serialises every CPU's instruction stream; sleeps.
pub(crate) fn sync_all_cpus() {
    // SAFETY: Runs sync_core on each CPU through an IPI and waits.
    unsafe { ksplice_helper_sync_all_cpus() }
}

/// Registers the module notifier (module init).
pub(crate) fn register_module_notifier() -> Result {
    // SAFETY: Registers a static notifier block once.
    kernel::error::to_result(unsafe { ksplice_helper_register_module_notifier() })
}

/// Unregisters it (module exit); waits for calls in progress.
pub(crate) fn unregister_module_notifier() {
    // SAFETY: Registered in module init.
    unsafe { ksplice_helper_unregister_module_notifier() }
}

/// Registers the int3 die notifier (module init).
pub(crate) fn register_int3() -> Result {
    // SAFETY: Registers a static notifier block once.
    kernel::error::to_result(unsafe { ksplice_helper_register_int3() })
}

/// Unregisters it (module exit); waits for NMIs running it (RCU).
pub(crate) fn unregister_int3() {
    // SAFETY: Registered in module init.
    unsafe { ksplice_helper_unregister_int3() }
}

/// A kprobe registered at exactly `addr` that rewrites text: where the
/// bytes it rewrites end (more than one when optimised). Probes on an
/// ftrace call site rewrite none and do not count. Needs [`TextLock`].
pub(crate) fn kprobe_at(_lock: &TextLock, addr: u64) -> Option<u64> {
    // SAFETY: We hold kprobe_mutex (in `_lock`), which get_kprobe needs.
    let p = unsafe { ksplice_helper_get_kprobe(addr) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a registered kprobe, live while we hold kprobe_mutex.
    let reach = unsafe { ksplice_helper_kprobe_reach(p) };
    (reach != 0).then_some(reach)
}

/// Whether kprobes refuses `addr` (noinstr, entry code, its own blacklist):
/// code an int3 must never be placed in.
pub(crate) fn kprobe_blacklisted(addr: u64) -> bool {
    // SAFETY: Reads the blacklist, which only grows at module load.
    unsafe { ksplice_helper_within_kprobe_blacklist(addr) }
}

/// ftrace's record of the call site at `ip`: `None` if ftrace has none,
/// else whether an IPMODIFY user is on it and the direct trampoline, if
/// any. Needs [`TextLock`] (it holds ftrace_lock).
pub(crate) fn ftrace_site(_lock: &TextLock, ip: u64) -> Option<(bool, u64)> {
    const IPMODIFY: u64 = 1 << 26;
    const DIRECT: u64 = 1 << 24;
    // SAFETY: We hold ftrace_lock, under which the records are stable.
    let flags = unsafe { ksplice_helper_ftrace_flags(ip) };
    if flags == u64::MAX {
        return None;
    }
    // SAFETY: As above.
    let direct = (flags & DIRECT != 0).then(|| unsafe { ksplice_helper_ftrace_direct(ip) });
    Some((flags & IPMODIFY != 0, direct.unwrap_or(0)))
}

/// The livepatch module whose enabled patch redirects the function at
/// `func`, its name copied into `buf`.
pub(crate) fn livepatch_owner<'b>(_lock: &KlpLock, func: u64, buf: &'b mut [u8; 64]) -> Option<&'b str> {
    // SAFETY: We hold klp_mutex (in `_lock`); `buf` is writable for its
    // length and the helper NUL-terminates it.
    if !unsafe { ksplice_helper_livepatch_owner(func, buf.as_mut_ptr().cast(), buf.len()) } {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    core::str::from_utf8(buf.get(..len)?).ok()
}

/// The CPU ids, online or possible, in order.
pub(crate) fn cpus(online: bool) -> impl Iterator<Item = i32> {
    let mut cpu = -1;
    core::iter::from_fn(move || {
        // SAFETY: Reads a cpumask.
        cpu = unsafe { ksplice_helper_next_cpu(cpu, online) };
        (cpu >= 0).then_some(cpu)
    })
}

/// Number of online CPUs (stable under cpus_read_lock).
pub(crate) fn num_online_cpus() -> u32 {
    // SAFETY: Reads a counter.
    unsafe { ksplice_helper_num_online_cpus() }
}

/// This CPU's id (inside stop_machine, where it cannot change).
pub(crate) fn this_cpu() -> i32 {
    // SAFETY: Reads the CPU number.
    unsafe { ksplice_helper_smp_processor_id() }
}

/// `per_cpu_ptr(addr, cpu)` of a per-CPU symbol's address.
pub(crate) fn per_cpu_ptr(addr: u64, cpu: i32) -> u64 {
    // SAFETY: Pure address arithmetic on the per-CPU offsets.
    unsafe { ksplice_helper_per_cpu_ptr(addr, cpu) as u64 }
}

/// The running task.
pub(crate) fn current() -> *const c_void {
    // SAFETY: `current` is always valid.
    unsafe { ksplice_helper_current() }
}

/// The idle task of `cpu`.
pub(crate) fn idle_task(cpu: i32) -> *const c_void {
    // SAFETY: Idle tasks exist for every possible CPU, forever.
    unsafe { ksplice_helper_idle_task(cpu) }
}

/// `THREAD_SIZE`: the size of a task's kernel stack.
pub(crate) fn thread_size() -> u64 {
    // SAFETY: A constant.
    unsafe { ksplice_helper_thread_size() }
}

/// Holds `rcu_read_lock` (the task list may change but not be freed).
/// Interrupts off on this CPU (`local_irq_save`); restored on drop. With
/// a plain spinlock inside, it is `spin_lock_irqsave`, which kernels before
/// 7.3 offer Rust no global lock for.
pub(crate) struct IrqsOff(core::ffi::c_ulong);

impl IrqsOff {
    pub(crate) fn new() -> Self {
        // SAFETY: Restored on drop, on this CPU (the guard is not Send).
        Self(unsafe { ksplice_helper_irq_save() })
    }
}

impl Drop for IrqsOff {
    fn drop(&mut self) {
        // SAFETY: The flags `new` saved on this CPU.
        unsafe { ksplice_helper_irq_restore(self.0) }
    }
}

pub(crate) struct RcuReadLock(());

impl RcuReadLock {
    pub(crate) fn lock() -> Self {
        // SAFETY: Released on drop.
        unsafe { ksplice_helper_rcu_read_lock() };
        Self(())
    }
}

impl Drop for RcuReadLock {
    fn drop(&mut self) {
        // SAFETY: Held since `lock`.
        unsafe { ksplice_helper_rcu_read_unlock() }
    }
}

/// A pinned task stack; released on drop.
pub(crate) struct StackRef(*const c_void);

impl StackRef {
    /// Pins `task`'s stack, if it still has one.
    ///
    /// # Safety
    ///
    /// `task` must be a valid task for the call (RCU, or inside the stop).
    pub(crate) unsafe fn get(task: *const c_void) -> Option<Self> {
        // SAFETY: As the caller promises.
        unsafe { ksplice_helper_try_get_task_stack(task.cast_mut()) }.then(|| Self(task))
    }
}

impl Drop for StackRef {
    fn drop(&mut self) {
        // SAFETY: Pinned in `get`; the task struct outlives its stack pin.
        unsafe { ksplice_helper_put_task_stack(self.0.cast_mut()) }
    }
}

/// Room for the unwinder's `struct unwind_state` (size checked in C).
#[repr(C, align(8))]
pub(crate) struct UnwindState([u8; 256]);

impl UnwindState {
    pub(crate) const fn new() -> Self {
        Self([0; 256])
    }

    fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr().cast()
    }

    /// Starts unwinding `task` (a task that is not running, or current).
    ///
    /// # Safety
    ///
    /// `task` and its stack must stay valid while the state is used.
    pub(crate) unsafe fn start(&mut self, task: *const c_void) {
        // SAFETY: As the caller promises; the buffer is large enough.
        unsafe { ksplice_helper_unwind_start(self.ptr(), task.cast_mut()) }
    }

    pub(crate) fn done(&mut self) -> bool {
        // SAFETY: Started by `start`.
        unsafe { ksplice_helper_unwind_done(self.ptr()) }
    }

    pub(crate) fn error(&mut self) -> bool {
        // SAFETY: Started by `start`.
        unsafe { ksplice_helper_unwind_error(self.ptr()) }
    }

    pub(crate) fn in_user_mode(&mut self) -> bool {
        // SAFETY: Started by `start`.
        unsafe { ksplice_helper_unwind_in_user_mode(self.ptr()) }
    }

    /// The current frame's return address (the real one behind an ftrace
    /// graph or kretprobe trampoline), 0 if it cannot be known.
    pub(crate) fn return_address(&mut self) -> u64 {
        // SAFETY: Started by `start`.
        unsafe { unwind_get_return_address(self.ptr()) }
    }

    pub(crate) fn next(&mut self) {
        // SAFETY: Started by `start`.
        unsafe { unwind_next_frame(self.ptr()) };
    }
}
