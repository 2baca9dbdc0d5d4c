// SPDX-License-Identifier: GPL-2.0
//! Hooks: functions of an update that ksplice.ko calls at named points of
//! its apply and undo (declared in the patch with `<ksplice/patch.h>`).
//!
//! update.ko lists them in `__ksplice_hooks`, pairs of (kind, function)
//! that module signing covers; every function must lie in update.ko. Pre
//! and check hooks return an int, nonzero refusing the operation; the
//! others return nothing. README ("Hooks") gives the calling convention
//! and context of each point.

use kernel::prelude::*;

use crate::refusal::{refuse, Refusal};
use crate::sys::{self, ModuleRef};
use crate::uapi::Abort;

/// Where a hook is called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PreApply = 1,
    CheckApply = 2,
    Apply = 3,
    PostApply = 4,
    FailApply = 5,
    PreUndo = 6,
    CheckUndo = 7,
    Undo = 8,
    PostUndo = 9,
    FailUndo = 10,
}

impl Kind {
    fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::PreApply,
            2 => Self::CheckApply,
            3 => Self::Apply,
            4 => Self::PostApply,
            5 => Self::FailApply,
            6 => Self::PreUndo,
            7 => Self::CheckUndo,
            8 => Self::Undo,
            9 => Self::PostUndo,
            10 => Self::FailUndo,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PreApply => "pre_apply",
            Self::CheckApply => "check_apply",
            Self::Apply => "apply",
            Self::PostApply => "post_apply",
            Self::FailApply => "fail_apply",
            Self::PreUndo => "pre_undo",
            Self::CheckUndo => "check_undo",
            Self::Undo => "undo",
            Self::PostUndo => "post_undo",
            Self::FailUndo => "fail_undo",
        }
    }

    /// Pre and check hooks say whether to go on.
    fn returns_int(self) -> bool {
        matches!(
            self,
            Self::PreApply | Self::CheckApply | Self::PreUndo | Self::CheckUndo
        )
    }
}

#[derive(Clone, Copy)]
struct Hook {
    kind: Kind,
    func: u64,
}

/// An update's hooks, in the order the patch declares them.
pub(crate) struct Hooks {
    list: KVec<Hook>,
}

/// Calls hook function `func` (in update.ko).
fn call(hook: Hook) -> i32 {
    // SAFETY: `func` lies in update.ko's text (checked in `read`), which
    // stays loaded while the update exists, and the patch's macro gave it
    // the prototype its kind says.
    unsafe { crate::sys::call_hook(hook.func, hook.kind.returns_int()) }
}

impl Hooks {
    /// Reads update.ko's hook table (no table: no hooks).
    pub(crate) fn read(module: &ModuleRef) -> Result<Self, Refusal> {
        let mut list = KVec::new();
        let Some((table, size)) = module.symbol("__ksplice_hooks")? else {
            return Ok(Self { list });
        };
        if size % 16 != 0 || !module.owns(table, size) {
            refuse!(Abort::BadPayload, "update.ko's hook table is malformed");
        }
        for at in (table..table + size).step_by(16) {
            let (Some(kind), Some(func)) = (sys::read_word(at), sys::read_word(at + 8)) else {
                refuse!(Abort::BadPayload, "cannot read update.ko's hook table");
            };
            let Some(kind) = Kind::from_u64(kind) else {
                refuse!(Abort::BadPayload, "unknown hook kind {kind}");
            };
            if !module.owns(func, 1) {
                refuse!(Abort::BadPayload, "a {} hook lies outside update.ko", kind.name());
            }
            list.push(Hook { kind, func }, GFP_KERNEL)?;
        }
        Ok(Self { list })
    }

    /// Whether the update has no hooks.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A copy, for an operation that must not hold the registry lock.
    pub(crate) fn try_clone(&self) -> Result<Self, Refusal> {
        let mut list = KVec::with_capacity(self.list.len(), GFP_KERNEL)?;
        for &h in self.list.iter() {
            list.push(h, GFP_KERNEL)?;
        }
        Ok(Self { list })
    }

    fn of(&self, kind: Kind) -> impl Iterator<Item = Hook> + '_ {
        self.list.iter().copied().filter(move |h| h.kind == kind)
    }

    /// Runs the hooks of `kind` in process context; a pre hook that
    /// returns nonzero refuses, naming it.
    pub(crate) fn run(&self, kind: Kind) -> Result<(), Refusal> {
        for hook in self.of(kind) {
            let rc = call(hook);
            if rc != 0 {
                let mut buf = sys::symbol_buffer();
                let at = core::str::from_utf8(sys::symbol_at(hook.func, &mut buf)).unwrap_or("?");
                refuse!(
                    Abort::HookFailed,
                    "{} hook {at} returned {rc}",
                    kind.name()
                );
            }
        }
        Ok(())
    }

    /// Inside the stop: the first check hook of `kind` that refuses, with
    /// what it returned. Neither allocates nor logs.
    pub(crate) fn check(&self, kind: Kind) -> Option<(u64, i32)> {
        self.of(kind)
            .map(|h| (h.func, call(h)))
            .find(|&(_, rc)| rc != 0)
    }

    /// Inside the stop, past the commit point: the hooks of `kind`.
    pub(crate) fn act(&self, kind: Kind) {
        for hook in self.of(kind) {
            call(hook);
        }
    }
}
