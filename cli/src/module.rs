//! Kernel modules on the userspace side: reading an update.ko file and
//! loading or unloading modules.

use std::fs::File;
use std::path::{Path, PathBuf};

use ksplice_core::payload::Payload;
use log::debug;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::metadata::Metadata;
use crate::Error;

/// The module name of an update: `ksplice_<id>` with `-` and `.` as `_`.
pub fn name_for_id(id: &str) -> String {
    format!("ksplice_{}", id.replace(['-', '.'], "_"))
}

/// An update.ko read from disk.
pub struct UpdateFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The module's name, from `.modinfo`.
    pub module_name: String,
    /// The update id, from the payload.
    pub id: String,
    /// The kernel release it was built for, from the payload.
    pub release: String,
    /// The vmlinux build id it was built for, from the payload (may be
    /// empty).
    pub build_id: Vec<u8>,
    /// Description, CVEs and effective release, from `.modinfo`.
    pub metadata: Metadata,
    /// The appended module signature, if any.
    pub signature: Option<Signature>,
    /// The payload bytes (`__ksplice_payload`).
    pub payload: Vec<u8>,
}

impl UpdateFile {
    /// Reads and checks `path`: an ELF module with a valid payload.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let bad = |why: String| Error::NotAnUpdate {
            path: path.to_owned(),
            why,
        };
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let file = object::File::parse(&*data).map_err(|e| bad(e.to_string()))?;
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok("__ksplice_payload"))
            .ok_or_else(|| bad("no __ksplice_payload symbol".into()))?;
        let section = file
            .section_by_index(
                sym.section_index()
                    .ok_or_else(|| bad("payload symbol is undefined".into()))?,
            )
            .map_err(|e| bad(e.to_string()))?;
        let bytes = section.data().map_err(|e| bad(e.to_string()))?;
        let start = usize::try_from(sym.address()).map_err(|_| bad("payload offset".into()))?;
        let end = start
            .checked_add(sym.size() as usize)
            .ok_or_else(|| bad("payload size".into()))?;
        let payload = bytes
            .get(start..end)
            .ok_or_else(|| bad("payload outside its section".into()))?
            .to_vec();
        let parsed = Payload::parse(&payload).map_err(|e| bad(e.to_string()))?;
        let (id, release, build_id) = (
            parsed.id().to_owned(),
            parsed.release().to_owned(),
            parsed.build_id().to_vec(),
        );
        let modinfo = file
            .section_by_name(".modinfo")
            .ok_or_else(|| bad("no .modinfo".into()))?;
        let modinfo = modinfo.data().map_err(|e| bad(e.to_string()))?;
        let module_name = modinfo
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(b"name="))
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| bad("no module name in .modinfo".into()))?
            .to_owned();
        let metadata = Metadata::from_modinfo(modinfo);
        debug!(
            "{}: update {id}, module {module_name}, payload {} bytes",
            path.display(),
            payload.len()
        );
        Ok(Self {
            path: path.to_owned(),
            module_name,
            id,
            release,
            build_id,
            metadata,
            signature: Signature::find(&data),
            payload,
        })
    }
}

/// What ends a signed module (`MODULE_SIG_STRING` in
/// include/linux/module_signature.h).
pub const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `PKEY_ID_PKCS7`: the only signature type the kernel accepts for modules.
const PKEY_ID_PKCS7: u8 = 2;

/// A module signature as scripts/sign-file appends it: the PKCS#7 blob,
/// a `struct module_signature` and [`SIGNATURE_MAGIC`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Length of the signed part of the file (everything before the blob).
    pub signed_len: usize,
    /// The PKCS#7 (DER) signature.
    pub pkcs7: Vec<u8>,
}

impl Signature {
    /// The signature at the end of `file`, if it is well formed. The kernel
    /// decides whether it is valid and trusted; this only finds it.
    pub fn find(file: &[u8]) -> Option<Self> {
        // struct module_signature: algo, hash, id_type, signer_len,
        // key_id_len, __pad[3], sig_len (big endian).
        const INFO_LEN: usize = 12;
        let info_end = file.len().checked_sub(SIGNATURE_MAGIC.len())?;
        if &file[info_end..] != SIGNATURE_MAGIC {
            return None;
        }
        let info = file.get(info_end.checked_sub(INFO_LEN)?..info_end)?;
        let sig_len = u32::from_be_bytes(info[8..12].try_into().ok()?) as usize;
        let sig_end = info_end - INFO_LEN;
        let signed_len = sig_end.checked_sub(sig_len)?;
        // The kernel rejects any other field set (mod_check_sig).
        let pkcs7_only = info[..2] == [0, 0] && info[3..8].iter().all(|&b| b == 0);
        (info[2] == PKEY_ID_PKCS7 && pkcs7_only && sig_len > 0).then(|| Self {
            signed_len,
            pkcs7: file[signed_len..sig_end].to_vec(),
        })
    }
}

/// Loads the module at `path`; `Ok(false)` if it was already loaded.
pub fn load(path: &Path) -> Result<bool, Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) => Ok(true),
        Err(nix::Error::EEXIST) => Ok(false),
        Err(errno) => {
            let signed = std::fs::read(path)
                .ok()
                .and_then(|data| Signature::find(&data))
                .is_some();
            Err(
                match LoadRefusal::explain(errno, signed, &LoadPolicy::probe()) {
                    Some(LoadRefusal::NoCapability) => Error::PermissionDenied {
                        path: path.to_owned(),
                    },
                    Some(why) => Error::LoadRefused {
                        path: path.to_owned(),
                        why,
                    },
                    None => Error::LoadModule {
                        path: path.to_owned(),
                        source: errno,
                    },
                },
            )
        }
    }
}

/// What decides whether the kernel loads a module, as far as userspace
/// can see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadPolicy {
    /// This process has `CAP_SYS_MODULE` (`None`: unknown).
    pub cap_sys_module: Option<bool>,
    /// `module.sig_enforce` is on.
    pub sig_enforce: bool,
    /// The lockdown level (`integrity`, `confidentiality`), if locked down.
    pub lockdown: Option<String>,
    /// `kernel.modules_disabled` is set.
    pub modules_disabled: bool,
}

impl LoadPolicy {
    /// Reads the policy of the running kernel from /proc and /sys.
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cap_sys_module = read("/proc/self/status")
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .map(|caps| caps & (1 << 16) != 0);
        let securityfs = std::fs::read_to_string("/sys/kernel/security/lockdown").ok();
        Self {
            cap_sys_module,
            sig_enforce: read("/sys/module/module/parameters/sig_enforce").trim() == "Y",
            lockdown: lockdown_level(securityfs.as_deref(), &read("/proc/cmdline")),
            modules_disabled: read("/proc/sys/kernel/modules_disabled").trim() == "1",
        }
    }
}

/// The active lockdown level, if any: from securityfs ("none [integrity]
/// confidentiality", the bracketed word is active), else from `lockdown=`
/// on the kernel command line. Without securityfs the level cannot be
/// raised after boot, so the command line's is the level.
fn lockdown_level(securityfs: Option<&str>, cmdline: &str) -> Option<String> {
    let level = match securityfs {
        Some(text) => text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))?,
        None => cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("lockdown="))?,
    };
    (level != "none").then(|| level.to_owned())
}

/// Why the kernel would not load a module, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadRefusal {
    /// The caller lacks `CAP_SYS_MODULE`.
    NoCapability,
    /// Module loading is off until reboot.
    ModulesDisabled,
    /// `module.sig_enforce=1` and the module is unsigned.
    UnsignedEnforced,
    /// `module.sig_enforce=1` and the signature is not one the kernel
    /// trusts (unknown key, or it does not verify).
    Untrusted,
    /// The signature does not verify with a key the kernel has.
    BadSignature,
    /// The signature trailer cannot be parsed.
    MalformedSignature,
    /// Signed by a key the kernel does not have.
    UnknownKey,
    /// The signature uses crypto the kernel lacks.
    UnsupportedCrypto,
    /// Lockdown forbids loading modules without a trusted signature.
    LockedDown { level: String, signed: bool },
    /// EPERM despite `CAP_SYS_MODULE`, with no lockdown level readable.
    PolicyRefused { signed: bool },
}

impl LoadRefusal {
    /// Turns a `finit_module` errno into a reason, given whether the file
    /// carries a signature and the kernel's policy; `None` when the errno
    /// is not about permission or signatures.
    pub fn explain(errno: nix::Error, signed: bool, policy: &LoadPolicy) -> Option<Self> {
        use nix::Error as E;
        Some(match errno {
            E::EPERM if policy.cap_sys_module == Some(false) => Self::NoCapability,
            E::EPERM if policy.modules_disabled => Self::ModulesDisabled,
            E::EPERM => match &policy.lockdown {
                Some(level) => Self::LockedDown {
                    level: level.clone(),
                    signed,
                },
                // The capability is there and no lockdown is visible.
                None if policy.cap_sys_module == Some(true) => Self::PolicyRefused { signed },
                None => Self::NoCapability,
            },
            E::EKEYREJECTED if policy.sig_enforce && !signed => Self::UnsignedEnforced,
            E::EKEYREJECTED if policy.sig_enforce => Self::Untrusted,
            E::EKEYREJECTED => Self::BadSignature,
            E::EBADMSG => Self::MalformedSignature,
            E::ENOKEY => Self::UnknownKey,
            E::ENOPKG => Self::UnsupportedCrypto,
            _ => return None,
        })
    }
}

impl std::fmt::Display for LoadRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCapability => write!(f, "loading modules needs CAP_SYS_MODULE"),
            Self::ModulesDisabled => write!(
                f,
                "module loading is disabled until reboot (kernel.modules_disabled=1)"
            ),
            Self::UnsignedEnforced => write!(
                f,
                "the module is not signed, and this kernel loads only signed modules (module.sig_enforce=1)"
            ),
            Self::Untrusted => write!(
                f,
                "the module is not signed by a key the kernel trusts (module.sig_enforce=1)"
            ),
            Self::BadSignature => write!(
                f,
                "the module's signature does not verify: it was changed after signing, or signed by a key the kernel does not trust"
            ),
            Self::MalformedSignature => write!(f, "the module's signature is malformed"),
            Self::UnknownKey => write!(f, "the module is signed by a key the kernel does not have"),
            Self::UnsupportedCrypto => write!(
                f,
                "the module's signature uses a hash or key type the kernel does not support"
            ),
            Self::LockedDown { level, signed } => write!(
                f,
                "the kernel is locked down (lockdown: {level}) and loads only modules signed by a key it trusts; the module is {}",
                if *signed { "signed, but not by such a key" } else { "not signed" }
            ),
            Self::PolicyRefused { signed } => write!(
                f,
                "permission denied although this process has CAP_SYS_MODULE: lockdown (unreadable: is securityfs mounted?) or a security module refuses the {} module",
                if *signed { "signed" } else { "unsigned" }
            ),
        }
    }
}

/// Unloads module `name`.
pub fn unload(name: &str) -> Result<(), Error> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::UnloadModule {
        name: name.to_owned(),
        source: nix::Error::EINVAL,
    })?;
    nix::kmod::delete_module(&c, nix::kmod::DeleteModuleFlags::O_NONBLOCK).map_err(|source| {
        Error::UnloadModule {
            name: name.to_owned(),
            source,
        }
    })
}

/// Minimal update.ko files for host tests: an ELF object with a payload
/// and a `.modinfo`, as far as [`UpdateFile::read`] looks.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::{Path, PathBuf};

    use ksplice_core::payload::HeaderFields;
    use object::write::{Object, Symbol, SymbolSection};

    use crate::metadata::Metadata;
    use ksplice_core::writer::PayloadWriter;

    /// Writes `dir/<id>.ko` for kernel `release`/`build_id`.
    pub fn update(
        dir: &Path,
        id: &str,
        release: &str,
        build_id: &[u8],
        metadata: &Metadata,
    ) -> PathBuf {
        let payload = PayloadWriter::default()
            .finish(&HeaderFields {
                id,
                release,
                build_id,
            })
            .unwrap();
        let mut obj = Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let rodata = obj.add_section(
            Vec::new(),
            b".rodata".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        let at = obj.append_section_data(rodata, &payload, 8);
        obj.add_symbol(Symbol {
            name: b"__ksplice_payload".to_vec(),
            value: at,
            size: payload.len() as u64,
            kind: object::SymbolKind::Data,
            scope: object::SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(rodata),
            flags: object::SymbolFlags::None,
        });
        let modinfo = obj.add_section(
            Vec::new(),
            b".modinfo".to_vec(),
            object::SectionKind::ReadOnlyString,
        );
        let mut info = format!("license=GPL\0name={}\0", super::name_for_id(id)).into_bytes();
        info.extend(metadata.to_modinfo());
        obj.append_section_data(modinfo, &info, 1);
        let path = dir.join(format!("{id}.ko"));
        std::fs::write(&path, obj.write().unwrap()).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_valid_c_identifiers() {
        assert_eq!(name_for_id("fix-loadavg.2"), "ksplice_fix_loadavg_2");
    }

    fn signed(payload: &[u8], info: [u8; 12]) -> Vec<u8> {
        let mut file = b"\x7fELF module".to_vec();
        file.extend_from_slice(payload);
        file.extend_from_slice(&info);
        file.extend_from_slice(SIGNATURE_MAGIC);
        file
    }

    #[test]
    fn a_pkcs7_trailer_is_found_and_its_blob_delimited() {
        let mut info = [0u8; 12];
        info[2] = PKEY_ID_PKCS7;
        info[8..].copy_from_slice(&3u32.to_be_bytes());
        let file = signed(b"SIG", info);
        let sig = Signature::find(&file).unwrap();
        assert_eq!(sig.pkcs7, b"SIG");
        assert_eq!(&file[..sig.signed_len], b"\x7fELF module");
    }

    #[test]
    fn unsigned_or_malformed_trailers_are_not_signatures() {
        assert_eq!(Signature::find(b"\x7fELF plain module"), None);
        assert_eq!(Signature::find(SIGNATURE_MAGIC), None);
        let mut info = [0u8; 12];
        info[2] = PKEY_ID_PKCS7;
        info[8..].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            Signature::find(&signed(b"SIG", info)),
            None,
            "length past the start"
        );
        info[8..].copy_from_slice(&3u32.to_be_bytes());
        info[2] = 1;
        assert_eq!(Signature::find(&signed(b"SIG", info)), None, "not PKCS#7");
        info[2] = PKEY_ID_PKCS7;
        info[5] = 1;
        assert_eq!(Signature::find(&signed(b"SIG", info)), None, "padding set");
    }

    #[test]
    fn the_lockdown_level_comes_from_securityfs_else_the_command_line() {
        let sfs = "none integrity [confidentiality]\n";
        assert_eq!(
            lockdown_level(Some(sfs), "lockdown=integrity"),
            Some("confidentiality".into())
        );
        assert_eq!(
            lockdown_level(Some("[none] integrity confidentiality"), ""),
            None
        );
        assert_eq!(
            lockdown_level(None, "console=ttyS0 lockdown=integrity quiet"),
            Some("integrity".into())
        );
        assert_eq!(lockdown_level(None, "console=ttyS0 quiet"), None);
        assert_eq!(lockdown_level(None, "lockdown=none"), None);
    }

    #[test]
    fn load_errors_are_explained_from_the_kernels_policy() {
        use nix::Error as E;
        let root = LoadPolicy {
            cap_sys_module: Some(true),
            ..LoadPolicy::default()
        };
        let enforced = LoadPolicy {
            sig_enforce: true,
            ..root.clone()
        };
        let locked = LoadPolicy {
            lockdown: Some("integrity".into()),
            ..root.clone()
        };
        let explain = LoadRefusal::explain;
        assert_eq!(
            explain(E::EKEYREJECTED, false, &enforced),
            Some(LoadRefusal::UnsignedEnforced)
        );
        let untrusted = explain(E::EKEYREJECTED, true, &enforced).unwrap();
        assert_eq!(untrusted, LoadRefusal::Untrusted);
        assert!(untrusted
            .to_string()
            .contains("not signed by a key the kernel trusts"));
        assert_eq!(
            explain(E::EKEYREJECTED, true, &root),
            Some(LoadRefusal::BadSignature)
        );
        let lockdown = explain(E::EPERM, false, &locked).unwrap();
        assert!(lockdown
            .to_string()
            .contains("locked down (lockdown: integrity)"));
        assert!(lockdown.to_string().contains("not signed"));
        let nobody = LoadPolicy {
            cap_sys_module: Some(false),
            ..locked.clone()
        };
        assert_eq!(
            explain(E::EPERM, false, &nobody),
            Some(LoadRefusal::NoCapability)
        );
        let disabled = LoadPolicy {
            modules_disabled: true,
            ..root.clone()
        };
        assert_eq!(
            explain(E::EPERM, true, &disabled),
            Some(LoadRefusal::ModulesDisabled)
        );
        assert_eq!(
            explain(E::EPERM, false, &root),
            Some(LoadRefusal::PolicyRefused { signed: false })
        );
        assert_eq!(
            explain(E::EBADMSG, true, &root),
            Some(LoadRefusal::MalformedSignature)
        );
        assert_eq!(explain(E::ENOEXEC, true, &enforced), None);
    }

    #[test]
    fn an_update_names_its_kernel_and_carries_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata {
            description: Some("fix".into()),
            cves: vec!["CVE-2026-0001".into()],
            effective_release: Some("7.3.5".into()),
        };
        let path = fixture::update(dir.path(), "fix-1", "7.3.4", &[0xab, 0xcd], &meta);
        let update = UpdateFile::read(&path).unwrap();
        assert_eq!(update.id, "fix-1");
        assert_eq!(update.module_name, "ksplice_fix_1");
        assert_eq!(update.release, "7.3.4");
        assert_eq!(update.build_id, [0xab, 0xcd]);
        assert_eq!(update.metadata, meta);
        assert_eq!(update.signature, None);
    }

    #[test]
    fn a_file_that_is_not_an_update_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ko");
        std::fs::write(&path, b"not an elf").unwrap();
        assert!(matches!(
            UpdateFile::read(&path),
            Err(Error::NotAnUpdate { .. })
        ));
    }
}
