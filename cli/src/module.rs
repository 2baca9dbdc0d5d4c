//! Kernel modules on the userspace side: reading an update.ko file and
//! loading or unloading modules.

use std::fs::File;
use std::path::{Path, PathBuf};

use ksplice_core::payload::Payload;
use log::debug;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

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
        let id = Payload::parse(&payload)
            .map_err(|e| bad(e.to_string()))?
            .id()
            .to_owned();
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
        debug!(
            "{}: update {id}, module {module_name}, payload {} bytes",
            path.display(),
            payload.len()
        );
        Ok(Self {
            path: path.to_owned(),
            module_name,
            id,
            payload,
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
        Err(nix::Error::EPERM) => Err(Error::PermissionDenied {
            path: path.to_owned(),
        }),
        Err(source) => Err(Error::LoadModule {
            path: path.to_owned(),
            source,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_valid_c_identifiers() {
        assert_eq!(name_for_id("fix-loadavg.2"), "ksplice_fix_loadavg_2");
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
