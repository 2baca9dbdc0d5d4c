//! Applying an update.ko: loading ksplice.ko when needed, loading the
//! update module, asking ksplice.ko to apply it, and recording it.

use std::path::{Path, PathBuf};

use ksplice_core::uapi::{self, OpResult};
use log::{info, warn};

use crate::device::{Device, Retry};
use crate::module::{self, UpdateFile};
use crate::persist::StateDir;
use crate::Error;

/// Where ksplice-apply looks for ksplice.ko, in order.
pub fn core_candidates(release: &str) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("/lib/modules/{release}/extra/ksplice.ko")),
        PathBuf::from("/lib/ksplice/ksplice.ko"),
    ]
}

/// Opens `/dev/ksplice`, loading ksplice.ko first if it is missing: from
/// `core`, else from the first of [`core_candidates`] that exists.
pub fn open_or_load_core(core: Option<&Path>) -> Result<Device, Error> {
    match Device::open() {
        Err(Error::NotLoaded { .. }) => {
            let core = match core {
                Some(p) => p.to_owned(),
                None => {
                    let release = nix::sys::utsname::uname()
                        .map(|u| u.release().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    core_candidates(&release)
                        .into_iter()
                        .find(|p| p.exists())
                        .ok_or_else(|| Error::NotLoaded {
                            path: PathBuf::from(uapi::DEVICE_PATH),
                        })?
                }
            };
            info!("loading {}", core.display());
            module::load(&core)?;
            // devtmpfs creates the node during misc_register; allow for udev.
            for _ in 0..50 {
                if Path::new(uapi::DEVICE_PATH).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Device::open()
        }
        other => other,
    }
}

/// Loads `update`'s module and applies it. On a refusal nothing changed
/// and the module is unloaded again. Once applied, its metadata is
/// recorded in `state` for ksplice-view and ksplice-uname.
pub fn apply_update(
    device: &Device,
    update: &UpdateFile,
    retry: Retry,
    state: &StateDir,
) -> Result<OpResult, Error> {
    let loaded_now = module::load(&update.path)?;
    info!(
        "update {} in module {} ({})",
        update.id,
        update.module_name,
        if loaded_now {
            "loaded"
        } else {
            "already loaded"
        }
    );
    let result = device.apply(&update.payload, &update.module_name, retry)?;
    if let Some(refused) = Error::from_result("apply", &result) {
        // Leave nothing behind: the update never took effect.
        if loaded_now {
            let _ = module::unload(&update.module_name);
        }
        return Err(refused);
    }
    // The record is a convenience: the update is applied either way.
    let applied_at = device
        .list()?
        .iter()
        .find(|e| e.id_str() == Some(update.id.as_str()))
        .map(|e| e.applied_at_ns);
    match applied_at {
        Some(at) => {
            if let Err(e) = state.record_applied(update, at) {
                warn!("cannot record the metadata of {}: {e}", update.id);
            }
        }
        None => warn!("update {} applied but not listed by ksplice.ko", update.id),
    }
    Ok(result)
}

/// Whether update `id` is listed by ksplice.ko as applied.
pub fn is_applied(device: &Device, id: &str) -> Result<bool, Error> {
    Ok(device
        .list()?
        .iter()
        .any(|e| e.id_str() == Some(id) && crate::status::is_applied(e)))
}

/// The modules whose functions update `id` replaces but which are not
/// loaded, with how many functions each: those are patched when it loads.
pub fn pending_modules(device: &Device, id: &str) -> Result<Vec<(String, usize)>, Error> {
    let mut pending: Vec<(String, usize)> = Vec::new();
    for f in device.functions(id)? {
        if f.state != Some(ksplice_core::uapi::FunctionState::Pending) {
            continue;
        }
        match pending.iter_mut().find(|(m, _)| *m == f.object) {
            Some((_, n)) => *n += 1,
            None => pending.push((f.object, 1)),
        }
    }
    Ok(pending)
}
