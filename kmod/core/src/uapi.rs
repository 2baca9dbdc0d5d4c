//! The ioctl ABI of `/dev/ksplice`, defined once for `ksplice.ko` and the tools.
//!
//! Every struct is `#[repr(C)]`, uses fixed-width fields only and has no
//! implicit padding, so it is identical for the kernel and userspace and safe
//! to copy as plain bytes in both directions.
#![forbid(unsafe_code)]

/// Path of the character device the core module registers.
pub const DEVICE_PATH: &str = "/dev/ksplice";

/// Bumped whenever a struct or command below changes incompatibly.
pub const ABI_VERSION: u32 = 5;

/// The ioctl "type" byte of `/dev/ksplice` (unused in ioctl-number.rst).
pub const IOCTL_TYPE: u32 = 0xB5;

const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_SIZEMASK: usize = (1 << 14) - 1;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)` as in `include/uapi/asm-generic/ioctl.h`.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // Struct sizes are compile-time constants far below the 14-bit limit; the
    // assertion turns a future oversize struct into a build error.
    assert!(size <= IOC_SIZEMASK);
    (dir << IOC_DIRSHIFT)
        | (IOCTL_TYPE << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `INFO`: the kernel fills an [`Info`].
pub const IOC_INFO: u32 = ioc(IOC_READ, 0x01, core::mem::size_of::<Info>());
/// `LIST`: userspace passes a [`ListRequest`]; the kernel fills the entries
/// it points at and sets `total`.
pub const IOC_LIST: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x02,
    core::mem::size_of::<ListRequest>(),
);

/// `APPLY`: userspace passes an [`ApplyRequest`]; the kernel fills its
/// `result`.
pub const IOC_APPLY: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x03,
    core::mem::size_of::<ApplyRequest>(),
);
/// `UNDO`: userspace passes an [`UndoRequest`]; the kernel fills its
/// `result`.
pub const IOC_UNDO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x04,
    core::mem::size_of::<UndoRequest>(),
);

/// `EMPTY_STOP`: runs an empty `stop_machine` the way apply does (every
/// CPU, then serialise) and writes its duration in ns as a `u64`: the
/// baseline for apply's pause in benchmarks.
pub const IOC_EMPTY_STOP: u32 = ioc(IOC_READ, 0x05, core::mem::size_of::<u64>());

/// `FUNCTIONS`: userspace passes a [`FunctionsRequest`]; the kernel writes
/// one line per function update `id` replaces: the name, the object it
/// lives in (`vmlinux` or a module name) and its state, separated by tabs
/// (see [`FunctionState`]); a shadowed function adds a fourth field naming
/// the text user that took it.
pub const IOC_FUNCTIONS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x06,
    core::mem::size_of::<FunctionsRequest>(),
);

/// `VERIFY`: userspace passes a [`VerifyRequest`]; the kernel re-checks the
/// live kernel against update `id` (every applied update if `id` is empty)
/// without changing anything, and fills `result`: abort 0 when everything
/// holds, else the first problem ([`Abort::CodeChanged`] for a trampoline
/// or new code that is not what ksplice wrote, [`Abort::FtraceConflict`] or
/// [`Abort::ProbeConflict`] for another text user that took a function).
pub const IOC_VERIFY: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x07,
    core::mem::size_of::<VerifyRequest>(),
);

/// `RELEASE`: userspace passes a [`ReleaseRequest`]; the kernel forgets
/// the reversed update `id` and drops its reference on update.ko, which
/// userspace may then unload. Refused with [`Abort::StillApplied`] while
/// the update is applied, and [`Abort::OutOfOrder`] while another update
/// depends on its module.
pub const IOC_RELEASE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x08,
    core::mem::size_of::<ReleaseRequest>(),
);

/// Argument of [`IOC_VERIFY`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The update id, NUL-padded; all zero for every applied update.
    pub id: [u8; ID_MAX_LEN + 1],
    /// Set by the kernel: number of functions checked.
    pub checked: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Set by the kernel.
    pub result: OpResult,
}

/// Argument of [`IOC_RELEASE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// The update id, NUL-padded.
    pub id: [u8; ID_MAX_LEN + 1],
    /// Set by the kernel.
    pub result: OpResult,
}

/// Argument of [`IOC_FUNCTIONS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionsRequest {
    /// The update id, NUL-padded.
    pub id: [u8; ID_MAX_LEN + 1],
    /// User address of a buffer for the names.
    pub buf: u64,
    /// Its size; 0 only asks for `total`.
    pub len: u32,
    /// Set by the kernel: bytes of names it has (only `min(len, total)`
    /// are written).
    pub total: u32,
}

/// Longest module name (`MODULE_NAME_LEN` is 56 with the NUL).
pub const MODULE_NAME_LEN: usize = 56;
/// Length of the NUL-padded human-readable detail of a [`OpResult`].
pub const DETAIL_LEN: usize = 200;
/// Largest payload the kernel accepts.
pub const PAYLOAD_MAX: u32 = 64 << 20;

/// Why the kernel refused an operation. An expected refusal is not an
/// ioctl error: the ioctl succeeds and [`OpResult::abort`] says why, so
/// errnos stay for misuse of the ABI itself.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// Nothing went wrong.
    None = 0,
    /// The pre code matches no candidate in the running kernel, or more
    /// than one.
    NoMatch = 1,
    /// A task is running (or will return into) code being replaced.
    CodeBusy = 2,
    /// The update was built for another kernel release or build.
    WrongKernel = 3,
    /// The payload is malformed or disagrees with update.ko.
    BadPayload = 4,
    /// update.ko is not loaded.
    ModuleNotLoaded = 5,
    /// An update with this id is already applied.
    AlreadyApplied = 6,
    /// No update with this id is applied.
    NotApplied = 7,
    /// A later update must be undone first.
    OutOfOrder = 8,
    /// No safe place for the trampoline in a function.
    UnsafeSite = 9,
    /// The live code is no longer what ksplice wrote or matched.
    CodeChanged = 10,
    /// A needed kernel symbol could not be found or is ambiguous.
    MissingSymbol = 11,
    /// The kernel ran out of memory.
    OutOfMemory = 12,
    /// A kprobe sits in (or, optimised, reaches into) the bytes a
    /// trampoline overwrites or restores.
    ProbeConflict = 13,
    /// Another ftrace user that redirects execution (livepatch, a BPF or
    /// direct trampoline, an IPMODIFY kprobe) owns the function's entry,
    /// so the new code would not run.
    FtraceConflict = 14,
    /// A kernel function failed with an errno (named in the detail).
    KernelError = 15,
    /// A hook of the update refused or failed.
    HookFailed = 16,
    /// A fatal signal ended the operation; nothing was changed.
    Interrupted = 17,
    /// The running kernel lacks something ksplice needs to be safe.
    Unsupported = 18,
    /// The update is still applied (release needs it reversed first).
    StillApplied = 19,
    /// A module the update patches is being loaded or unloaded right now.
    ModuleChanging = 20,
}

impl Abort {
    /// Decodes the wire value.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::NoMatch,
            2 => Self::CodeBusy,
            3 => Self::WrongKernel,
            4 => Self::BadPayload,
            5 => Self::ModuleNotLoaded,
            6 => Self::AlreadyApplied,
            7 => Self::NotApplied,
            8 => Self::OutOfOrder,
            9 => Self::UnsafeSite,
            10 => Self::CodeChanged,
            11 => Self::MissingSymbol,
            12 => Self::OutOfMemory,
            13 => Self::ProbeConflict,
            14 => Self::FtraceConflict,
            15 => Self::KernelError,
            16 => Self::HookFailed,
            17 => Self::Interrupted,
            18 => Self::Unsupported,
            19 => Self::StillApplied,
            20 => Self::ModuleChanging,
            _ => return None,
        })
    }

    /// The stable code printed by the tools, as in Ksplice.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "ok",
            Self::NoMatch => "no_match",
            Self::CodeBusy => "code_busy",
            Self::WrongKernel => "wrong_kernel",
            Self::BadPayload => "bad_payload",
            Self::ModuleNotLoaded => "module_not_loaded",
            Self::AlreadyApplied => "already_applied",
            Self::NotApplied => "not_applied",
            Self::OutOfOrder => "out_of_order",
            Self::UnsafeSite => "unsafe_site",
            Self::CodeChanged => "code_changed",
            Self::MissingSymbol => "missing_symbol",
            Self::OutOfMemory => "out_of_memory",
            Self::ProbeConflict => "probe_conflict",
            Self::FtraceConflict => "ftrace_conflict",
            Self::KernelError => "kernel_error",
            Self::HookFailed => "hook_failed",
            Self::Interrupted => "interrupted",
            Self::Unsupported => "unsupported",
            Self::StillApplied => "still_applied",
            Self::ModuleChanging => "module_changing",
        }
    }
}

/// The outcome of `APPLY` or `UNDO`, written by the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpResult {
    /// An [`Abort`] value; 0 on success.
    pub abort: u32,
    /// Number of functions redirected (apply) or restored (undo).
    pub functions: u32,
    /// Length of the `stop_machine` pause that committed, in ns.
    pub pause_ns: u64,
    /// What to act on: the function, task or symbol involved. NUL-padded.
    pub detail: [u8; DETAIL_LEN],
}

impl OpResult {
    /// An all-zero value.
    pub const fn zeroed() -> Self {
        Self {
            abort: 0,
            functions: 0,
            pause_ns: 0,
            detail: [0; DETAIL_LEN],
        }
    }

    /// The detail as text.
    pub fn detail_str(&self) -> &str {
        nul_terminated_str(&self.detail).unwrap_or("")
    }
}

/// Argument of [`IOC_APPLY`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyRequest {
    /// User address of the payload bytes.
    pub payload: u64,
    /// Their length, at most [`PAYLOAD_MAX`].
    pub payload_len: u32,
    /// Stack-check attempts before `code_busy` (0: the default, 5).
    pub tries: u32,
    /// Milliseconds to sleep between attempts (0: the default, 1000).
    pub retry_ms: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Name of the loaded update module, NUL-padded.
    pub module: [u8; MODULE_NAME_LEN],
    /// Set by the kernel.
    pub result: OpResult,
}

/// Argument of [`IOC_UNDO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UndoRequest {
    /// The update id, NUL-padded.
    pub id: [u8; ID_MAX_LEN + 1],
    /// Stack-check attempts before `code_busy` (0: the default, 5).
    pub tries: u32,
    /// Milliseconds to sleep between attempts (0: the default, 1000).
    pub retry_ms: u32,
    /// Set by the kernel.
    pub result: OpResult,
}

/// Length of the NUL-padded kernel release field (`__NEW_UTS_LEN + 1`, rounded up).
pub const RELEASE_LEN: usize = 68;
/// Longest update id, not counting the terminating NUL.
pub const ID_MAX_LEN: usize = 31;

/// Reply to [`IOC_INFO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// [`ABI_VERSION`] of the running module.
    pub abi_version: u32,
    /// Number of updates currently applied.
    pub applied: u32,
    /// `utsname()->release` of the running kernel, NUL-padded.
    pub release: [u8; RELEASE_LEN],
}

impl Info {
    /// An all-zero value, for userspace to pass in.
    pub const fn zeroed() -> Self {
        Self {
            abi_version: 0,
            applied: 0,
            release: [0; RELEASE_LEN],
        }
    }

    /// The release as text: the bytes before the first NUL, if UTF-8.
    pub fn release_str(&self) -> Option<&str> {
        nul_terminated_str(&self.release)
    }
}

/// Argument of [`IOC_LIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// User address of an array of `capacity` [`UpdateEntry`] records.
    pub entries: u64,
    /// Number of records the array can hold; 0 only asks for `total`.
    pub capacity: u32,
    /// Set by the kernel: number of updates it knows. Only
    /// `min(capacity, total)` records are written.
    pub total: u32,
}

/// What happened to an update last.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateState {
    /// Trampolines are in place: the new code runs.
    Applied = 1,
    /// Undone: the original code runs again, but update.ko stays loaded,
    /// because something (an open file, a timer, an RCU callback) may still
    /// point into its code. Releasing it is an explicit step.
    Reversed = 2,
}

impl UpdateState {
    /// Decodes the wire value; unknown values come from a newer module.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Applied),
            2 => Some(Self::Reversed),
            _ => None,
        }
    }

    /// The stable name shown by `ksplice-view`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Reversed => "reversed",
        }
    }
}

/// [`UpdateEntry::flags`]: another text user took one of the update's
/// functions after it was applied (see `FUNCTIONS` for which and by what).
pub const UPDATE_SHADOWED: u32 = 1 << 0;

/// The state of one replaced function, as `FUNCTIONS` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionState {
    /// The trampoline is in place and nothing else redirects the function.
    Patched,
    /// The update is reversed: the original runs.
    Reversed,
    /// The trampoline is in place, but another ftrace user redirects the
    /// function's entry, so the new code does not run.
    Shadowed,
    /// Its module is not loaded: the trampoline is written when it loads.
    Pending,
}

impl FunctionState {
    /// The stable name in `FUNCTIONS` lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Reversed => "reversed",
            Self::Shadowed => "shadowed",
            Self::Pending => "pending",
        }
    }

    /// Decodes a name; unknown ones come from a newer module.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "patched" => Some(Self::Patched),
            "reversed" => Some(Self::Reversed),
            "shadowed" => Some(Self::Shadowed),
            "pending" => Some(Self::Pending),
            _ => None,
        }
    }
}

/// One record of [`IOC_LIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateEntry {
    /// The update id, NUL-padded.
    pub id: [u8; ID_MAX_LEN + 1],
    /// An [`UpdateState`] value.
    pub state: u32,
    /// Number of functions the update replaces.
    pub functions: u32,
    /// `CLOCK_REALTIME` time of the apply, in ns since the epoch.
    pub applied_at_ns: u64,
    /// Length of the `stop_machine` pause of the apply, in ns.
    pub pause_ns: u64,
    /// `CLOCK_REALTIME` time of the undo, in ns since the epoch; 0 while
    /// applied.
    pub reversed_at_ns: u64,
    /// `UPDATE_*` bits.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl UpdateEntry {
    /// An all-zero value.
    pub const fn zeroed() -> Self {
        Self {
            id: [0; ID_MAX_LEN + 1],
            state: 0,
            functions: 0,
            applied_at_ns: 0,
            pause_ns: 0,
            reversed_at_ns: 0,
            flags: 0,
            reserved: 0,
        }
    }

    /// The id as text, if it is well formed.
    pub fn id_str(&self) -> Option<&str> {
        nul_terminated_str(&self.id).filter(|id| is_valid_id(id))
    }
}

/// Whether `id` can name an update: 1 to [`ID_MAX_LEN`] characters from
/// `[A-Za-z0-9_.-]`, so it is safe in file names, logs and sysfs.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn nul_terminated_str(bytes: &[u8]) -> Option<&str> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(bytes.get(..len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn structs_have_fixed_layout_without_padding() {
        assert_eq!(size_of::<Info>(), 4 + 4 + RELEASE_LEN);
        assert_eq!(align_of::<Info>(), 4);
        assert_eq!(offset_of!(Info, release), 8);

        assert_eq!(size_of::<ListRequest>(), 16);
        assert_eq!(offset_of!(ListRequest, capacity), 8);
        assert_eq!(offset_of!(ListRequest, total), 12);

        assert_eq!(size_of::<UpdateEntry>(), 32 + 4 + 4 + 8 + 8 + 8 + 4 + 4);
        assert_eq!(offset_of!(UpdateEntry, state), 32);
        assert_eq!(offset_of!(UpdateEntry, applied_at_ns), 40);
        assert_eq!(offset_of!(UpdateEntry, pause_ns), 48);
    }

    #[test]
    fn apply_and_undo_structs_have_no_padding() {
        assert_eq!(size_of::<OpResult>(), 4 + 4 + 8 + DETAIL_LEN);
        assert_eq!(offset_of!(OpResult, pause_ns), 8);
        assert_eq!(
            size_of::<ApplyRequest>(),
            8 + 4 * 4 + MODULE_NAME_LEN + size_of::<OpResult>()
        );
        assert_eq!(offset_of!(ApplyRequest, result), 80);
        assert_eq!(size_of::<UndoRequest>(), 32 + 8 + size_of::<OpResult>());
        assert_eq!(offset_of!(UndoRequest, result) % 8, 0);
        assert_eq!(size_of::<FunctionsRequest>(), 32 + 8 + 4 + 4);
        assert_eq!(size_of::<VerifyRequest>(), 32 + 8 + size_of::<OpResult>());
        assert_eq!(offset_of!(VerifyRequest, result) % 8, 0);
        assert_eq!(size_of::<ReleaseRequest>(), 32 + size_of::<OpResult>());
        let numbers = [
            IOC_INFO,
            IOC_LIST,
            IOC_APPLY,
            IOC_UNDO,
            IOC_EMPTY_STOP,
            IOC_FUNCTIONS,
            IOC_VERIFY,
            IOC_RELEASE,
        ];
        for (i, a) in numbers.iter().enumerate() {
            assert!(numbers[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn abort_codes_round_trip_and_unknown_ones_are_none() {
        for v in 0..=20 {
            let abort = Abort::from_u32(v).unwrap();
            assert_eq!(abort as u32, v);
            assert!(!abort.as_str().is_empty());
        }
        assert_eq!(Abort::from_u32(21), None);
        assert_eq!(Abort::CodeBusy.as_str(), "code_busy");
    }

    #[test]
    fn ioctl_numbers_match_the_c_macros() {
        // _IOR(0xB5, 0x01, 76) and _IOWR(0xB5, 0x02, 16) computed by hand.
        assert_eq!(IOC_INFO, 0x8000_0000 | (76 << 16) | (0xB5 << 8) | 0x01);
        assert_eq!(IOC_LIST, 0xC000_0000 | (16 << 16) | (0xB5 << 8) | 0x02);
        assert_ne!(IOC_INFO, IOC_LIST);
    }

    #[test]
    fn release_stops_at_the_first_nul() {
        let mut info = Info::zeroed();
        info.release[..5].copy_from_slice(b"7.3.4");
        assert_eq!(info.release_str(), Some("7.3.4"));
        info.release = [b'x'; RELEASE_LEN];
        assert_eq!(info.release_str().map(str::len), Some(RELEASE_LEN));
    }

    #[test]
    fn ids_are_short_and_shell_safe() {
        assert!(is_valid_id("a1b2c3d4"));
        assert!(is_valid_id("fix-CVE-2026.1_x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id("../etc"));
        assert!(!is_valid_id(&"x".repeat(ID_MAX_LEN + 1)));
        let mut entry = UpdateEntry::zeroed();
        entry.id[..3].copy_from_slice(b"abc");
        assert_eq!(entry.id_str(), Some("abc"));
        entry.id[0] = b'/';
        assert_eq!(entry.id_str(), None);
    }

    #[test]
    fn unknown_states_are_not_guessed() {
        assert_eq!(UpdateState::from_u32(1), Some(UpdateState::Applied));
        assert_eq!(UpdateState::from_u32(2), Some(UpdateState::Reversed));
        assert_eq!(UpdateState::from_u32(0), None);
        for s in [
            FunctionState::Patched,
            FunctionState::Reversed,
            FunctionState::Shadowed,
            FunctionState::Pending,
        ] {
            assert_eq!(FunctionState::parse(s.as_str()), Some(s));
        }
        assert_eq!(FunctionState::parse("dormant"), None);
        assert_eq!(UpdateState::from_u32(99), None);
    }
}
