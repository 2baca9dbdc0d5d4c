// SPDX-License-Identifier: GPL-2.0
//! The stack check: no task may be inside the code being replaced (apply)
//! or the code being removed (undo) when the trampolines change.
//!
//! It runs in two phases, so the `stop_machine` pause stays close to an
//! empty one:
//!
//! 1. **Outside the stop** ([`Checker::snapshot`]), every task on the task
//!    list is walked with the ORC unwinder, as `arch_stack_walk_reliable`
//!    does (the interrupted IP of a preempted task included), and its
//!    context-switch count is recorded with its identity (pointer and start
//!    time, so a freed and reused `task_struct` is not mistaken for it).
//! 2. **Inside the stop** ([`Checker::recheck`]), nothing runs. A task whose
//!    switch count is unchanged has not run since its walk, so that walk
//!    still holds. Every other task is checked again: tasks that ran or are
//!    new, the idle task of each CPU, the tasks that have left the task list
//!    in `do_exit` but still run (the per-CPU exit lists of RCU Tasks), and
//!    the stopper threads themselves, each of which checks its own stack on
//!    its own CPU ([`check_current`]).
//!
//! A check inside the stop first scans the stack conservatively: every word
//! from the saved stack pointer to the stack's top. Every return address the
//! unwinder could report is such a word, so a scan that finds no word in the
//! ranges (and no ftrace-graph, kretprobe or rethook trampoline address,
//! behind which the unwinder finds the real return address elsewhere) proves
//! the task clear. Only a scan that finds one pays for a full ORC walk.

use core::ffi::c_void;
use core::sync::atomic::{fence, Ordering};

use kernel::bindings;
use kernel::prelude::*;

use crate::refusal::{refuse, Refusal};
use crate::sys::{self, RcuReadLock, StackRef, TaskLayout, UnwindState};
use crate::uapi::Abort;

/// An address range `[start, end)` that no stack may return into.
#[derive(Clone, Copy)]
pub(crate) struct Range {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Range {
    pub(crate) fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }
}

/// The code a stack check guards.
pub(crate) struct Ranges {
    list: KVec<Range>,
}

impl Ranges {
    pub(crate) fn new() -> Self {
        Self { list: KVec::new() }
    }

    pub(crate) fn push(&mut self, range: Range) -> Result<(), Refusal> {
        self.list.push(range, GFP_KERNEL)?;
        Ok(())
    }

    pub(crate) fn contains(&self, addr: u64) -> bool {
        self.list.iter().any(|r| r.contains(addr))
    }

}

/// Who was in the way.
#[derive(Clone, Copy)]
pub(crate) struct Busy {
    /// The pid, 0 for an idle task.
    pub(crate) pid: i32,
    pub(crate) comm: [u8; 16],
    /// The return address found in the ranges; 0 if the stack could not be
    /// walked reliably.
    pub(crate) addr: u64,
}

impl Busy {
    pub(crate) const fn none() -> Self {
        Self {
            pid: 0,
            comm: [0; 16],
            addr: 0,
        }
    }

    pub(crate) fn comm(&self) -> &str {
        let len = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        core::str::from_utf8(self.comm.get(..len).unwrap_or(&[])).unwrap_or("?")
    }
}

/// The outcome of a stack check.
#[derive(Clone, Copy)]
pub(crate) enum Stacks {
    Clear,
    /// A task is in the ranges.
    Busy(Busy),
    /// A stack could not be walked reliably.
    Unreliable(Busy),
}

/// A `task_struct`, whose fields are read at the offsets this kernel's C
/// compiler gave them (`sys::TaskLayout`).
#[derive(Clone, Copy)]
struct Task(*const u8);

impl Task {
    fn of(ptr: *const c_void) -> Self {
        Self(ptr.cast())
    }

    fn ptr(self) -> *const c_void {
        self.0.cast()
    }

    /// # Safety
    ///
    /// The task must be valid and `off` a field offset from the layout.
    unsafe fn word(self, off: u64) -> u64 {
        // SAFETY: As the caller promises; racy reads of these fields are the
        // point, so they are volatile.
        unsafe { core::ptr::read_volatile(self.0.wrapping_add(off as usize).cast::<u64>()) }
    }

    /// # Safety
    ///
    /// As for [`Task::word`], for an `int` field.
    unsafe fn int(self, off: u64) -> u32 {
        // SAFETY: As above.
        unsafe { core::ptr::read_volatile(self.0.wrapping_add(off as usize).cast::<u32>()) }
    }

    /// Every switch away from a task counts in one of these.
    ///
    /// # Safety
    ///
    /// The task must be valid.
    unsafe fn switches(self, l: &TaskLayout) -> u64 {
        // SAFETY: As the caller promises.
        unsafe { self.word(l.nvcsw).wrapping_add(self.word(l.nivcsw)) }
    }

    /// # Safety
    ///
    /// The task must be valid.
    unsafe fn on_cpu(self, l: &TaskLayout) -> bool {
        // SAFETY: As the caller promises; the field is 1 or 4 bytes.
        unsafe {
            if l.on_cpu_size == 1 {
                core::ptr::read_volatile(self.0.wrapping_add(l.on_cpu as usize)) != 0
            } else {
                self.int(l.on_cpu) != 0
            }
        }
    }

    /// # Safety
    ///
    /// The task must be valid.
    unsafe fn is_dead(self, l: &TaskLayout) -> bool {
        // SAFETY: As the caller promises.
        unsafe { self.int(l.state) == bindings::TASK_DEAD }
    }

    /// # Safety
    ///
    /// The task must be valid.
    unsafe fn busy(self, l: &TaskLayout, addr: u64) -> Busy {
        let mut comm = [0u8; 16];
        for (i, c) in comm.iter_mut().enumerate() {
            // SAFETY: `comm` is a 16-byte array in the task.
            *c = unsafe { core::ptr::read_volatile(self.0.wrapping_add((l.comm as usize) + i)) };
        }
        Busy {
            // SAFETY: As the caller promises.
            pid: unsafe { self.int(l.pid) } as i32,
            comm,
            addr,
        }
    }
}

/// Marks a phase-one record whose task must be checked again in the stop.
const RECHECK: u64 = u64::MAX;

/// A task as phase one saw it.
#[derive(Clone, Copy)]
struct Snap {
    task: *const u8,
    start_time: u64,
    switches: u64,
}

/// One CPU's check of its own stopper thread, inside the stop.
#[derive(Clone, Copy)]
struct CpuSlot {
    outcome: Stacks,
}

/// The state of the two-phase check for one operation. Everything the
/// stop needs is allocated here, before it.
pub(crate) struct Checker {
    ranges: Ranges,
    layout: TaskLayout,
    snapshot: KVVec<Snap>,
    /// Indexed by CPU id; written by each CPU inside the stop.
    cpus: KVec<core::cell::UnsafeCell<CpuSlot>>,
    /// Per possible CPU: the exit list head of RCU Tasks.
    exit_lists: KVec<u64>,
    /// Return addresses that stand for others (`return_to_handler`,
    /// `__kretprobe_trampoline`, ...): a stack holding one needs a walk.
    hijacks: [u64; 3],
    /// Bounds of the ranges and of the hijack addresses, so the scan
    /// rejects most words with one comparison each.
    bounds: (u64, u64),
    hijack_bounds: (u64, u64),
    thread_size: u64,
}

/// `(lo, hi - lo)` of a set of values or ranges; an empty set gives a span
/// no word falls in.
fn bounds(values: impl Iterator<Item = (u64, u64)>) -> (u64, u64) {
    let (lo, hi) = values.fold((u64::MAX, 0u64), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
    if lo > hi {
        (u64::MAX, 0)
    } else {
        (lo, hi - lo)
    }
}

// SAFETY: The snapshot's task pointers are only compared, or followed under
// RCU or inside the stop; `cpus` slots are each written by one CPU inside
// the stop and read by the leader after the arrival barrier.
unsafe impl Send for Checker {}
// SAFETY: As above.
unsafe impl Sync for Checker {}

/// The next node of a list.
///
/// # Safety
///
/// `node` must be a valid list node.
unsafe fn next(node: u64) -> u64 {
    // SAFETY: As the caller promises; the read is an RCU list traversal.
    unsafe { core::ptr::read_volatile(node as *const u64) }
}

/// Calls `f` on every thread of every process, as `for_each_process_thread`,
/// until it returns false.
///
/// # Safety
///
/// Under RCU, or inside the stop.
unsafe fn for_each_thread(l: &TaskLayout, mut f: impl FnMut(Task) -> bool) {
    let init = sys::init_task() as u64;
    // SAFETY: init_task's list is valid; the caller holds RCU or stops all.
    let mut process = unsafe { next(init + l.tasks) } - l.tasks;
    while process != init {
        // SAFETY: A task on the list has a valid signal struct (freed only
        // after an RCU grace period once it is off the list).
        let head = unsafe { Task(process as *const u8).word(l.signal) } + l.thread_head;
        // SAFETY: As above.
        let mut node = unsafe { next(head) };
        while node != head {
            if !f(Task((node - l.thread_node) as *const u8)) {
                return;
            }
            // SAFETY: As above.
            node = unsafe { next(node) };
        }
        // SAFETY: As above.
        process = unsafe { next(process + l.tasks) } - l.tasks;
    }
}

/// The result of looking at one stack.
enum Walk {
    Clear,
    Hit(u64),
    Unreliable,
}

/// Walks `task`'s stack with the ORC unwinder.
///
/// # Safety
///
/// `task` must be valid and not running (or current), and its stack must
/// stay allocated during the walk.
unsafe fn walk(task: Task, ranges: &Ranges) -> Walk {
    let mut state = UnwindState::new();
    // SAFETY: As the caller promises.
    unsafe { state.start(task.ptr()) };
    while !state.done() && !state.error() {
        if state.in_user_mode() {
            return Walk::Clear;
        }
        let addr = state.return_address();
        if addr == 0 {
            return Walk::Unreliable;
        }
        if ranges.contains(addr) {
            return Walk::Hit(addr);
        }
        state.next();
    }
    if state.error() {
        Walk::Unreliable
    } else {
        Walk::Clear
    }
}

impl Checker {
    /// Prepares a check of `ranges`, allocating all it needs.
    pub(crate) fn new(ranges: Ranges) -> Result<Self, Refusal> {
        let syms = sys::symbols();
        let mut cpus = KVec::new();
        for cpu in sys::cpus(false) {
            while cpus.len() <= cpu as usize {
                cpus.push(
                    core::cell::UnsafeCell::new(CpuSlot {
                        outcome: Stacks::Clear,
                    }),
                    GFP_KERNEL,
                )?;
            }
        }
        let hijacks = [
            syms.return_to_handler,
            syms.kretprobe_trampoline,
            syms.rethook_trampoline,
        ];
        Ok(Self {
            bounds: bounds(ranges.list.iter().map(|r| (r.start, r.end))),
            hijack_bounds: bounds(hijacks.iter().filter(|&&h| h != 0).map(|&h| (h, h + 1))),
            ranges,
            layout: sys::task_layout(),
            snapshot: KVVec::new(),
            cpus,
            exit_lists: exit_lists()?,
            hijacks,
            thread_size: sys::thread_size(),
        })
    }

    /// Phase one, while the machine runs: walks every task on the task list
    /// and records who must be looked at again inside the stop. `Busy`
    /// means a task that did not run during its walk is in the ranges.
    pub(crate) fn snapshot(&mut self) -> Result<Stacks, Refusal> {
        loop {
            let cap = self.snapshot.capacity().max(256);
            self.snapshot.clear();
            self.snapshot.reserve(cap, GFP_KERNEL)?;
            let mut overflow = false;
            let mut outcome = Stacks::Clear;
            {
                let _rcu = RcuReadLock::lock();
                let snapshot = &mut self.snapshot;
                let ranges = &self.ranges;
                let layout = &self.layout;
                // SAFETY: Under RCU.
                unsafe {
                    for_each_thread(layout, |t| {
                        let (snap, seen) = Self::snap_one(t, layout, ranges);
                        if snapshot.push_within_capacity(snap).is_err() {
                            overflow = true;
                            return false;
                        }
                        match seen {
                            Stacks::Clear => true,
                            other => {
                                outcome = other;
                                false
                            }
                        }
                    })
                };
            }
            if !overflow {
                return Ok(outcome);
            }
            let grown = cap.checked_mul(2).ok_or(ENOMEM)?;
            self.snapshot.reserve(grown, GFP_KERNEL)?;
        }
    }

    /// Phase one for one task: its record, and `Busy` if it is in the ranges
    /// and did not run during the walk.
    ///
    /// # Safety
    ///
    /// Under RCU, `t` from the task list.
    unsafe fn snap_one(t: Task, l: &TaskLayout, ranges: &Ranges) -> (Snap, Stacks) {
        // SAFETY: As the caller promises.
        let (start_time, before) = unsafe { (t.word(l.start_time), t.switches(l)) };
        let mut snap = Snap {
            task: t.0,
            start_time,
            switches: RECHECK,
        };
        // SAFETY: As above.
        if unsafe { t.on_cpu(l) } {
            return (snap, Stacks::Clear);
        }
        fence(Ordering::Acquire);
        // SAFETY: `t` is valid under RCU; the pin keeps its stack alive.
        let Some(_stack) = (unsafe { StackRef::get(t.ptr()) }) else {
            // No stack: the task has exited and runs nothing.
            snap.switches = before;
            return (snap, Stacks::Clear);
        };
        // SAFETY: The stack is pinned; a task that runs meanwhile is caught
        // by the switch count below and checked again in the stop.
        let seen = unsafe { walk(t, ranges) };
        fence(Ordering::Acquire);
        // SAFETY: As above.
        let still = unsafe { t.switches(l) == before && !t.on_cpu(l) };
        match seen {
            Walk::Clear if still => snap.switches = before,
            // SAFETY: `t` is valid.
            Walk::Hit(addr) if still => return (snap, Stacks::Busy(unsafe { t.busy(l, addr) })),
            _ => {}
        }
        (snap, Stacks::Clear)
    }

    /// Checks a task that is not running, inside the stop: a conservative
    /// scan of its stack, and a full walk only if the scan finds something.
    ///
    /// # Safety
    ///
    /// Inside the stop (nothing runs), `t` valid and not running.
    unsafe fn check_stopped(&self, t: Task) -> Stacks {
        let l = &self.layout;
        // SAFETY: As the caller promises.
        let (stack, sp) = unsafe { (t.word(l.stack), t.word(l.thread_sp)) };
        let top = stack.wrapping_add(self.thread_size);
        // The kernel frees a task's stack (and clears `stack`) only after
        // its final switch as TASK_DEAD, so it never runs again: a zombie
        // group leader stays on the thread list like that, and its saved
        // stack pointer points into freed memory.
        if stack == 0 {
            return Stacks::Clear;
        }
        if sp < stack || sp >= top {
            // SAFETY: `t` is valid.
            return Stacks::Unreliable(unsafe { t.busy(l, 0) });
        }
        // SAFETY: [sp, top) is the used part of a stopped task's stack,
        // mapped while `stack` is set.
        if !unsafe { self.scan(sp, top) } {
            return Stacks::Clear;
        }
        // SAFETY: Nothing runs inside the stop, so the stack stays put.
        match unsafe { walk(t, &self.ranges) } {
            Walk::Clear => Stacks::Clear,
            // SAFETY: `t` is valid.
            Walk::Hit(addr) => Stacks::Busy(unsafe { t.busy(l, addr) }),
            // SAFETY: `t` is valid.
            Walk::Unreliable => Stacks::Unreliable(unsafe { t.busy(l, 0) }),
        }
    }

    /// Whether any word of `[sp, top)` could be a return address into the
    /// ranges, or one the unwinder would look behind.
    ///
    /// # Safety
    ///
    /// `[sp, top)` must be mapped and not change during the call.
    unsafe fn scan(&self, sp: u64, top: u64) -> bool {
        let words = ((top - sp) / 8) as usize;
        // SAFETY: As the caller promises; `sp` is 8-byte aligned on x86-64
        // kernel stacks at a switch.
        let stack = unsafe { core::slice::from_raw_parts(sp as *const u64, words) };
        let (lo, span) = self.bounds;
        let (hlo, hspan) = self.hijack_bounds;
        stack.iter().any(|&w| {
            (w.wrapping_sub(lo) < span && self.ranges.contains(w))
                || (w.wrapping_sub(hlo) < hspan && self.hijacks.contains(&w))
        })
    }

    /// Phase two, on the leader CPU inside the stop, after every CPU has
    /// checked its own stopper thread ([`check_current`]).
    pub(crate) fn recheck(&self) -> Stacks {
        for slot in self.cpus.iter() {
            // SAFETY: Each CPU wrote its slot before the arrival barrier the
            // leader passed; nothing writes it now.
            let outcome = unsafe { (*slot.get()).outcome };
            if !matches!(outcome, Stacks::Clear) {
                return outcome;
            }
        }
        let mut outcome = Stacks::Clear;
        let mut i = 0usize;
        let snapshot = self.snapshot.as_slice();
        let l = &self.layout;
        // SAFETY: Inside the stop no task runs or exits, so the list is
        // stable; stopper threads (on a CPU) checked themselves.
        unsafe {
            for_each_thread(l, |t| {
                // The list is in phase-one order unless tasks came or went.
                let start_time = t.word(l.start_time);
                let same = |s: &Snap| core::ptr::eq(s.task, t.0) && s.start_time == start_time;
                let snap = match snapshot.get(i) {
                    Some(s) if same(s) => {
                        i += 1;
                        Some(s)
                    }
                    _ => match snapshot.get(i + 1) {
                        // The task before this one exited.
                        Some(s) if same(s) => {
                            i += 2;
                            Some(s)
                        }
                        _ => None,
                    },
                };
                // RECHECK never equals a real count, so it needs no test.
                if snap.is_some_and(|s| s.switches == t.switches(l)) || t.on_cpu(l) {
                    return true;
                }
                outcome = self.check_stopped(t);
                matches!(outcome, Stacks::Clear)
            })
        };
        if !matches!(outcome, Stacks::Clear) {
            return outcome;
        }
        for cpu in sys::cpus(true) {
            let idle = Task::of(sys::idle_task(cpu));
            // SAFETY: Idle tasks live forever; inside the stop they do not run.
            if unsafe { idle.on_cpu(l) } {
                continue;
            }
            // SAFETY: As above.
            let outcome = unsafe { self.check_stopped(idle) };
            if !matches!(outcome, Stacks::Clear) {
                return outcome;
            }
        }
        self.recheck_exiting()
    }

    /// The tasks that have left the task list in `do_exit` but still run:
    /// RCU Tasks keeps them on per-CPU lists until their last preemptible
    /// moment (`exit_tasks_rcu_start` .. `_finish`).
    fn recheck_exiting(&self) -> Stacks {
        let l = &self.layout;
        for &head in self.exit_lists.iter() {
            // SAFETY: The list heads were found at preparation; inside the
            // stop no task adds or removes itself.
            let first = unsafe { next(head) };
            // A list head whose first node does not point back is not one.
            // SAFETY: As above.
            if first == 0 || unsafe { next(first + 8) } != head {
                return Stacks::Unreliable(Busy::none());
            }
            let mut n = first;
            while n != head && n != 0 {
                let t = Task((n - l.rcu_tasks_exit_list) as *const u8);
                // SAFETY: A task on the list is alive until it removes itself.
                if !unsafe { t.on_cpu(l) || t.is_dead(l) } {
                    // SAFETY: As above.
                    let outcome = unsafe { self.check_stopped(t) };
                    if !matches!(outcome, Stacks::Clear) {
                        return outcome;
                    }
                }
                // SAFETY: As above.
                n = unsafe { next(n) };
            }
        }
        Stacks::Clear
    }

    /// Inside the stop, on every CPU: checks the stopper thread this CPU
    /// runs, which the task walk skips, and records the result for the
    /// leader.
    pub(crate) fn check_current(&self) {
        let me = Task::of(sys::current());
        let here = 0u64;
        let sp = (&raw const here) as u64;
        // SAFETY: `current` is valid and running here.
        let stack = unsafe { me.word(self.layout.stack) };
        let top = stack.wrapping_add(self.thread_size);
        let outcome = if stack != 0
            && sp >= stack
            && sp < top
            // SAFETY: [sp, top) is the live part of this CPU's own stack;
            // the frames above this one do not change during the scan.
            && !unsafe { self.scan(sp & !7, top) }
        {
            Stacks::Clear
        } else {
            // SAFETY: Unwinding the current task from here is always valid.
            match unsafe { walk(me, &self.ranges) } {
                Walk::Clear => Stacks::Clear,
                // SAFETY: `me` is valid.
                Walk::Hit(addr) => Stacks::Busy(unsafe { me.busy(&self.layout, addr) }),
                // SAFETY: `me` is valid.
                Walk::Unreliable => Stacks::Unreliable(unsafe { me.busy(&self.layout, 0) }),
            }
        };
        if let Some(slot) = self.cpus.get(sys::this_cpu() as usize) {
            // SAFETY: Only this CPU writes its slot, before the arrival
            // barrier after which the leader reads it.
            unsafe { (*slot.get()).outcome = outcome };
        }
    }
}

/// The exit-list heads of RCU Tasks, one per possible CPU. Their struct is
/// private to kernel/rcu/tasks.h, so the list is found by what surrounds it
/// (`struct list_head rtp_exit_list; int cpu; int index; struct rcu_tasks
/// *rtpp;`): the one offset at which every CPU's copy holds its own CPU
/// number and then the address of `rcu_tasks`. Without it exiting tasks
/// would be invisible, so its absence refuses every operation.
fn exit_lists() -> Result<KVec<u64>, Refusal> {
    let syms = sys::symbols();
    if syms.rcu_tasks_percpu == 0 || syms.rcu_tasks == 0 || sys::task_layout().rcu_tasks_exit_list == u64::MAX {
        refuse!(
            Abort::Unsupported,
            "this kernel keeps no list of exiting tasks (CONFIG_TASKS_RCU), so a stack check cannot see them"
        );
    }
    let mut buf = sys::symbol_buffer();
    let size = crate::matching::sprinted_size(sys::symbol_at(syms.rcu_tasks_percpu, &mut buf))
        .unwrap_or(0)
        .min(4096);
    let mut found: Option<u64> = None;
    let mut offset = 16u64;
    while offset + 16 <= size {
        let fits = sys::cpus(false).all(|cpu| {
            let base = sys::per_cpu_ptr(syms.rcu_tasks_percpu, cpu);
            let cpu_field = sys::read_word(base + offset).map(|w| w as u32);
            let rtpp = sys::read_word(base + offset + 8);
            cpu_field == Some(cpu as u32) && rtpp == Some(syms.rcu_tasks)
        });
        if fits {
            if found.is_some() {
                refuse!(Abort::Unsupported, "the exiting-task lists of this kernel are ambiguous");
            }
            found = Some(offset - 16);
        }
        offset += 8;
    }
    let Some(list) = found else {
        refuse!(Abort::Unsupported, "cannot find the exiting-task lists of this kernel");
    };
    let mut heads = KVec::new();
    for cpu in sys::cpus(false) {
        heads.push(sys::per_cpu_ptr(syms.rcu_tasks_percpu, cpu) + list, GFP_KERNEL)?;
    }
    Ok(heads)
}
