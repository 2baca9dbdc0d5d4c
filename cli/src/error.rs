//! The one error type of the tools, and the documented exit codes.

use std::path::PathBuf;

/// Exit codes shared by every `ksplice-*` tool (documented in README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// The operation succeeded.
    Success = 0,
    /// The operation failed; the message says why.
    Failure = 1,
    /// The command line was wrong (clap also uses 2).
    Usage = 2,
    /// `ksplice.ko` is not loaded, so `/dev/ksplice` does not exist.
    NotLoaded = 3,
    /// The caller lacks root / `CAP_SYS_MODULE`.
    PermissionDenied = 4,
    /// The change cannot be made safely: ksplice-create cannot turn the
    /// patch into an update (or, for apply/undo, the kernel refused it).
    Refused = 5,
    /// Compiling the kernel objects or linking update.ko failed.
    BuildFailed = 6,
    /// Nothing to apply: the patch compiles to the code the running kernel
    /// already has (ksplice-create).
    NothingToApply = 7,
}

impl ExitStatus {
    /// Every exit code, in order.
    pub const ALL: [ExitStatus; 8] = [
        Self::Success,
        Self::Failure,
        Self::Usage,
        Self::NotLoaded,
        Self::PermissionDenied,
        Self::Refused,
        Self::BuildFailed,
        Self::NothingToApply,
    ];

    /// What the code means, as `--help`, the man pages and README say it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "the operation failed; the message says why",
            Self::Usage => "usage error, or no such update id",
            Self::NotLoaded => "ksplice.ko is not loaded (/dev/ksplice is missing)",
            Self::PermissionDenied => {
                "permission denied: run as root (ksplice needs CAP_SYS_MODULE)"
            }
            Self::Refused => {
                "refused: the patch cannot be turned into an update, or the kernel refused the update (reason given)"
            }
            Self::BuildFailed => "compiling an object or linking update.ko failed",
            Self::NothingToApply => {
                "nothing to apply: the running kernel's code is already equivalent (ksplice-create)"
            }
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status as u8)
    }
}

/// Everything that can go wrong in the tools, with the context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: the ksplice core module is not loaded")]
    NotLoaded { path: PathBuf },

    #[error("{path}: permission denied")]
    PermissionDenied { path: PathBuf },

    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{request} request to {path} failed: {source}")]
    Ioctl {
        request: &'static str,
        path: PathBuf,
        source: nix::Error,
    },

    #[error("ksplice.ko speaks ABI version {module}, but these tools speak version {tools}")]
    AbiMismatch { module: u32, tools: u32 },

    #[error("ksplice.ko returned a malformed {what}")]
    MalformedReply { what: &'static str },

    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),

    #[error(transparent)]
    Create(#[from] crate::create::CreateError),

    #[error("{operation} refused: {}: {detail}", abort.as_str())]
    Refused {
        operation: &'static str,
        abort: ksplice_core::uapi::Abort,
        detail: String,
    },

    #[error("{operation} refused with abort code {code}, which these tools do not know: {detail}")]
    RefusedUnknown {
        operation: &'static str,
        code: u32,
        detail: String,
    },

    #[error("{path}: not a ksplice update: {why}")]
    NotAnUpdate { path: PathBuf, why: String },

    #[error("cannot load {path}: {source}")]
    LoadModule { path: PathBuf, source: nix::Error },

    #[error("the kernel refused to load {path}: {why}")]
    LoadRefused {
        path: PathBuf,
        why: crate::module::LoadRefusal,
    },

    #[error("cannot unload module {name}: {source}")]
    UnloadModule { name: String, source: nix::Error },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: {why}")]
    State { path: PathBuf, why: String },

    #[error("automatic re-apply skipped: {reason}")]
    AutoApplyDisabled { reason: String },

    #[error(transparent)]
    Seal(#[from] crate::create::seal::SealError),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::NotLoaded { .. } => ExitStatus::NotLoaded,
            Self::PermissionDenied { .. } => ExitStatus::PermissionDenied,
            Self::Create(crate::create::CreateError::NoChanges) => ExitStatus::NothingToApply,
            Self::Create(e) if e.is_refusal() => ExitStatus::Refused,
            Self::Refused { .. } | Self::RefusedUnknown { .. } | Self::LoadRefused { .. } => {
                ExitStatus::Refused
            }
            Self::Create(
                crate::create::CreateError::CompileFailed { .. }
                | crate::create::CreateError::KbuildFailed { .. },
            ) => ExitStatus::BuildFailed,
            _ => ExitStatus::Failure,
        }
    }

    /// The refusal a kernel `APPLY`/`UNDO` result carries, if any.
    pub fn from_result(
        operation: &'static str,
        result: &ksplice_core::uapi::OpResult,
    ) -> Option<Self> {
        use ksplice_core::uapi::Abort;
        let detail = result.detail_str().to_owned();
        match Abort::from_u32(result.abort) {
            Some(Abort::None) => None,
            Some(abort) => Some(Self::Refused {
                operation,
                abort,
                detail,
            }),
            // A code this tool does not know still means "refused".
            None => Some(Self::RefusedUnknown {
                operation,
                code: result.abort,
                detail,
            }),
        }
    }

    /// What the sysadmin can do about it, where there is something.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::NotLoaded { .. } => {
                Some("load it with `insmod ksplice.ko` (or let `ksplice-apply` load it)")
            }
            Self::PermissionDenied { .. } => Some("run as root: ksplice needs CAP_SYS_MODULE"),
            Self::AbiMismatch { .. } => {
                Some("install ksplice.ko and the tools from the same build")
            }
            Self::Create(crate::create::CreateError::DataChange { .. }) => Some(
                "give the patch an apply hook that sets the new value and an undo hook that \
                 restores it (<ksplice/patch.h>), or rewrite the fix so it does not change \
                 initial values of variables",
            ),
            Self::Create(crate::create::CreateError::LayoutChange { .. }) => Some(
                "objects the running kernel already allocated keep the old layout, and the new \
                 code would read and free them with the new one; keep the type unchanged and put \
                 new state in shadow data (a separate table keyed by the object), with hooks that \
                 set it up when the update is applied and undone",
            ),
            Self::Refused { abort, .. } => Some(abort_hint(*abort)),
            Self::AutoApplyDisabled { .. } => Some(
                "read that boot's kernel log; drop a bad update with `ksplice-undo --persist ID`, then run `ksplice-apply --boot --after-crash`",
            ),
            Self::LoadRefused { why, .. } => load_hint(why),
            _ => None,
        }
    }
}

/// What a sysadmin can do about a module the kernel would not load.
fn load_hint(why: &crate::module::LoadRefusal) -> Option<&'static str> {
    use crate::module::LoadRefusal as R;
    match why {
        R::NoCapability => Some("run as root: ksplice needs CAP_SYS_MODULE"),
        R::ModulesDisabled => None,
        R::MalformedSignature | R::BadSignature => Some(
            "rebuild the update, or sign it again as the last step (ksplice-create --sign-key KEY --sign-cert CERT)",
        ),
        _ => Some(
            "sign updates with a key in the kernel's keyring: ksplice-create --sign-key KEY --sign-cert CERT (ksplice.ko itself must be signed too)",
        ),
    }
}

/// What a sysadmin can do about each abort code.
fn abort_hint(abort: ksplice_core::uapi::Abort) -> &'static str {
    use ksplice_core::uapi::Abort;
    match abort {
        Abort::NoMatch => "the update was built from source that differs from the running kernel; build it from the exact source and config of this kernel (nothing was changed)",
        Abort::CodeBusy => "a task stayed inside a function being replaced; retry when the system is quieter, or raise --tries (nothing was changed)",
        Abort::WrongKernel => "build the update against the tree of the running kernel (uname -r, and the same build)",
        Abort::BadPayload => "the update file is damaged or was not made by ksplice-create; rebuild it",
        Abort::ModuleNotLoaded => "load update.ko first (ksplice-apply does this)",
        Abort::AlreadyApplied => "see ksplice-view; undo it first to apply it again",
        Abort::NotApplied => "see ksplice-view for the applied update ids",
        Abort::OutOfOrder => "undo updates in the reverse order of applying them",
        Abort::UnsafeSite => "a replaced function has no safe spot for a trampoline; mark it noinline or change the fix",
        Abort::CodeChanged => "something else (ftrace, a kprobe, jump labels) changed the code meanwhile; retry",
        Abort::MissingSymbol => "a symbol the new code needs could not be located unambiguously",
        Abort::OutOfMemory => "the kernel is short of memory; retry",
        Abort::ProbeConflict => "a kprobe (perf probe, kprobe_events, a BPF kprobe) sits where the trampoline goes; remove it and retry (nothing was changed)",
        Abort::FtraceConflict => "another live patch or ftrace user redirects the function, so the update would not run; remove it first (nothing was changed)",
        Abort::KernelError => "a kernel call failed; the detail names the errno (nothing was changed)",
        Abort::HookFailed => "a hook of the update refused; see the detail (nothing was changed)",
        Abort::Interrupted => "a signal ended the operation; nothing was changed",
        Abort::Unsupported => "this kernel lacks something ksplice needs to be safe; see the detail",
        Abort::StillApplied => "undo the update first (ksplice-undo ID), then unload it",
        Abort::ModuleChanging => "a module the update patches is being loaded or unloaded; retry when that is done (nothing was changed)",
        Abort::None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ksplice_core::uapi::{Abort, OpResult};

    #[test]
    fn only_a_nonzero_abort_code_is_a_refusal_and_unknown_codes_still_refuse() {
        let mut result = OpResult::zeroed();
        assert!(Error::from_result("apply", &result).is_none());
        result.abort = Abort::CodeBusy as u32;
        result.detail[..4].copy_from_slice(b"kthr");
        let e = Error::from_result("apply", &result).unwrap();
        assert_eq!(e.exit_status(), ExitStatus::Refused);
        assert!(e.to_string().contains("code_busy: kthr"), "{e}");
        result.abort = 999;
        let e = Error::from_result("undo", &result).unwrap();
        assert!(matches!(e, Error::RefusedUnknown { code: 999, .. }));
        assert_eq!(e.exit_status(), ExitStatus::Refused);
        assert!(e.to_string().contains("abort code 999"), "{e}");
    }
}
