//! The last step of ksplice-create, after every rewrite of the linked
//! update.ko (kbuild, then `.klp.rela`): the update's metadata goes into
//! `.modinfo`, then the module is signed with the kernel tree's own
//! `scripts/sign-file`. Nothing may touch the file after [`seal`], or the
//! signature no longer matches.

use std::path::{Path, PathBuf};

use log::debug;

use crate::metadata::Metadata;
use crate::module::Signature;

/// The key update.ko is signed with.
#[derive(Clone, Debug)]
pub struct Signer {
    /// Private key, PEM (may also hold the certificate).
    pub key: PathBuf,
    /// Its X.509 certificate, PEM or DER.
    pub cert: PathBuf,
}

/// Why metadata or a signature could not be added.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: cannot add the update's metadata: {why}")]
    Elf { path: PathBuf, why: String },

    #[error("cannot sign: {path} is missing (was the kernel built with CONFIG_MODULE_SIG?)")]
    NoSignFile { path: PathBuf },

    #[error("cannot sign: {config} sets no CONFIG_MODULE_SIG_HASH (the kernel was built without CONFIG_MODULE_SIG)")]
    NoHash { config: PathBuf },

    #[error("scripts/sign-file failed on {path}:\n{log}")]
    SignFailed { path: PathBuf, log: String },

    #[error("{path}: no module signature after scripts/sign-file")]
    NotSigned { path: PathBuf },
}

/// Adds `metadata` to `ko`'s `.modinfo`, then signs it with `signer`
/// using the tools of the kernel build directory `objtree`.
pub fn seal(
    objtree: &Path,
    ko: &Path,
    metadata: &Metadata,
    signer: Option<&Signer>,
) -> Result<(), SealError> {
    if !metadata.is_empty() {
        append_modinfo(ko, &metadata.to_modinfo())?;
    }
    if let Some(signer) = signer {
        sign(objtree, ko, signer)?;
    }
    Ok(())
}

/// Appends `entries` (`key=value\0` each) to the `.modinfo` section.
fn append_modinfo(ko: &Path, entries: &[u8]) -> Result<(), SealError> {
    use object::build::elf::{Builder, SectionData};
    let elf = |why: String| SealError::Elf {
        path: ko.to_owned(),
        why,
    };
    let data = std::fs::read(ko).map_err(|source| SealError::Io {
        path: ko.to_owned(),
        source,
    })?;
    if Signature::find(&data).is_some() {
        return Err(elf(
            "already signed: metadata must be added before signing".into()
        ));
    }
    let mut builder = Builder::read(&*data).map_err(|e| elf(e.to_string()))?;
    let modinfo = builder
        .sections
        .iter_mut()
        .find(|s| &*s.name == b".modinfo")
        .ok_or_else(|| elf("no .modinfo section".into()))?;
    let SectionData::Data(bytes) = &mut modinfo.data else {
        return Err(elf(".modinfo holds no data".into()));
    };
    let bytes = bytes.to_mut();
    // Entries are NUL-terminated; keep it so after a possible padding byte.
    if bytes.last().is_some_and(|&b| b != 0) {
        bytes.push(0);
    }
    bytes.extend_from_slice(entries);
    modinfo.sh_size = bytes.len() as u64;
    let mut out = Vec::new();
    builder.write(&mut out).map_err(|e| elf(e.to_string()))?;
    std::fs::write(ko, out).map_err(|source| SealError::Io {
        path: ko.to_owned(),
        source,
    })
}

/// `CONFIG_MODULE_SIG_HASH` of the kernel build in `objtree`.
fn signature_hash(objtree: &Path) -> Result<String, SealError> {
    let config = objtree.join(".config");
    let text = std::fs::read_to_string(&config).map_err(|source| SealError::Io {
        path: config.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_MODULE_SIG_HASH="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or(SealError::NoHash { config })
}

/// Signs `ko` in place with `<objtree>/scripts/sign-file`, as
/// `make modules_sign` would, and checks the signature is there.
fn sign(objtree: &Path, ko: &Path, signer: &Signer) -> Result<(), SealError> {
    let sign_file = objtree.join("scripts/sign-file");
    if !sign_file.exists() {
        return Err(SealError::NoSignFile { path: sign_file });
    }
    let hash = signature_hash(objtree)?;
    debug!(
        "{} {hash} {} {} {}",
        sign_file.display(),
        signer.key.display(),
        signer.cert.display(),
        ko.display()
    );
    let output = crate::create::kbuild::command_in(objtree, &sign_file)
        .arg(&hash)
        .arg(&signer.key)
        .arg(&signer.cert)
        .arg(ko)
        .output()
        .map_err(|source| SealError::Io {
            path: sign_file.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(SealError::SignFailed {
            path: ko.to_owned(),
            log: String::from_utf8_lossy(&output.stderr).into_owned()
                + &String::from_utf8_lossy(&output.stdout),
        });
    }
    let data = std::fs::read(ko).map_err(|source| SealError::Io {
        path: ko.to_owned(),
        source,
    })?;
    match Signature::find(&data) {
        Some(_) => Ok(()),
        None => Err(SealError::NotSigned {
            path: ko.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_comes_from_the_kernel_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".config"),
            "CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_HASH=\"sha512\"\n",
        )
        .unwrap();
        assert_eq!(signature_hash(dir.path()).unwrap(), "sha512");
        std::fs::write(
            dir.path().join(".config"),
            "# CONFIG_MODULE_SIG is not set\n",
        )
        .unwrap();
        assert!(matches!(
            signature_hash(dir.path()),
            Err(SealError::NoHash { .. })
        ));
    }

    #[test]
    fn signing_needs_the_kernels_sign_file() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer {
            key: "k.pem".into(),
            cert: "k.x509".into(),
        };
        assert!(matches!(
            sign(dir.path(), &dir.path().join("u.ko"), &signer),
            Err(SealError::NoSignFile { .. })
        ));
    }
}
