// SPDX-License-Identifier: GPL-2.0
//! The kernel's other users of text, and where they and ksplice must not
//! meet.
//!
//! - **kprobes** save the bytes they replace when they are registered, and
//!   write them back when disarmed. A probe anywhere in a trampoline's
//!   window (or an optimised probe whose `jmp` reaches into it) would write
//!   stale bytes over the `jmp`, or, after undo, keep an `int3` inside an
//!   instruction that undo made live again. Apply and undo refuse with
//!   `probe_conflict` while one is registered there, enabled or not
//!   (checked under `kprobe_mutex`, so none can appear meanwhile). A probe
//!   registered later can only land on the `jmp` itself (the kernel's
//!   decoder refuses the middle of it), which kprobes then emulates, so it
//!   is harmless; undo refuses until it is gone.
//! - **ftrace** owns the fentry call before the window. Tracing callers
//!   (the function tracer, function_graph, kprobes on ftrace, BPF
//!   trampolines, which call the original body and so the `jmp`) keep
//!   working. A user that redirects the function instead (an `IPMODIFY`
//!   ftrace_ops: livepatch, an error-injection kprobe) or a direct
//!   trampoline that is not BPF's would keep the new code from running:
//!   apply refuses with `ftrace_conflict`, naming it; one that arrives
//!   after the apply makes the update *shadowed*, which `ksplice-view`
//!   and `VERIFY` report.

use kernel::prelude::*;

use crate::refusal::{refuse, Refusal};
use crate::sys::{self, KlpLock, TextLock};
use crate::trampoline::Site;
use crate::uapi::Abort;

/// Refuses if a kprobe is registered anywhere from the function's start to
/// the end of a window (for probes before the window, only optimised ones
/// whose `jmp` reaches into it count).
pub(crate) fn check_probes(lock: &TextLock, sites: &[Site]) -> Result<(), Refusal> {
    for s in sites {
        let mut addr = s.func;
        while addr < s.end {
            if let Some(reach) = sys::kprobe_at(lock, addr) {
                if reach > s.site {
                    let mut buf = sys::symbol_buffer();
                    let at = core::str::from_utf8(sys::symbol_at(addr, &mut buf)).unwrap_or("?");
                    refuse!(
                        Abort::ProbeConflict,
                        "a kprobe at {at} is inside the bytes of the trampoline; remove it first"
                    );
                }
            }
            addr += 1;
        }
    }
    Ok(())
}

/// Who owns a function's entry besides plain tracing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// An ftrace_ops with `IPMODIFY`: livepatch, or an error-injection probe.
    IpModify(u64),
    /// A direct trampoline that is not a BPF trampoline, at this address.
    Direct(u64),
}

/// The owner of `site`'s function entry, if one would keep the new code
/// from running.
pub(crate) fn owner(lock: &TextLock, site: &Site) -> Option<Owner> {
    let (ipmodify, direct) = sys::ftrace_site(lock, site.fentry?)?;
    if ipmodify {
        return Some(Owner::IpModify(site.func));
    }
    if direct != 0 && !is_bpf_trampoline(direct) {
        return Some(Owner::Direct(direct));
    }
    None
}

fn is_bpf_trampoline(addr: u64) -> bool {
    let mut buf = sys::symbol_buffer();
    sys::symbol_at(addr, &mut buf).starts_with(b"bpf_trampoline_")
}

/// The first site whose entry another ftrace user owns.
pub(crate) fn find_owner(lock: &TextLock, sites: &[Site]) -> Option<(usize, Owner)> {
    sites
        .iter()
        .enumerate()
        .find_map(|(i, s)| owner(lock, s).map(|o| (i, o)))
}

/// Describes an owner in words, e.g. "livepatch module livepatch_sample".
/// Takes `klp_mutex`, so it must not run under the text lock.
pub(crate) fn describe(owner: Owner, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    match owner {
        Owner::IpModify(func) => {
            let _klp = KlpLock::lock();
            let mut name = [0u8; 64];
            match sys::livepatch_owner(&_klp, func, &mut name) {
                Some(module) => write!(out, "livepatch module {module}"),
                None => out.write_str("an ftrace user that redirects it (IPMODIFY)"),
            }
        }
        Owner::Direct(tramp) => {
            let mut buf = sys::symbol_buffer();
            let at = core::str::from_utf8(sys::symbol_at(tramp, &mut buf)).unwrap_or("?");
            write!(out, "the direct ftrace trampoline {at}")
        }
    }
}
