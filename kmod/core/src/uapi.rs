//! The ioctl ABI of `/dev/ksplice`, defined once for `ksplice.ko` and the tools.
//!
//! Every struct is `#[repr(C)]`, uses fixed-width fields only and has no
//! implicit padding, so it is identical for the kernel and userspace and safe
//! to copy as plain bytes in both directions.
#![forbid(unsafe_code)]

/// Path of the character device the core module registers.
pub const DEVICE_PATH: &str = "/dev/ksplice";

/// Bumped whenever a struct or command below changes incompatibly.
pub const ABI_VERSION: u32 = 1;

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
}

impl UpdateState {
    /// Decodes the wire value; unknown values come from a newer module.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Applied),
            _ => None,
        }
    }

    /// The stable name shown by `ksplice-view`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
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

        assert_eq!(size_of::<UpdateEntry>(), 32 + 4 + 4 + 8 + 8);
        assert_eq!(offset_of!(UpdateEntry, state), 32);
        assert_eq!(offset_of!(UpdateEntry, applied_at_ns), 40);
        assert_eq!(offset_of!(UpdateEntry, pause_ns), 48);
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
        assert_eq!(UpdateState::from_u32(0), None);
        assert_eq!(UpdateState::from_u32(99), None);
    }
}
