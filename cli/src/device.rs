//! The only place that talks to `/dev/ksplice`.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ksplice_core::uapi::{
    self, ApplyRequest, FunctionsRequest, Info, ListRequest, OpResult, UndoRequest, UpdateEntry,
};
use log::debug;

use crate::Error;

nix::ioctl_read_bad!(ioctl_info, uapi::IOC_INFO, Info);
nix::ioctl_readwrite_bad!(ioctl_list, uapi::IOC_LIST, ListRequest);
nix::ioctl_readwrite_bad!(ioctl_apply, uapi::IOC_APPLY, ApplyRequest);
nix::ioctl_readwrite_bad!(ioctl_undo, uapi::IOC_UNDO, UndoRequest);
nix::ioctl_readwrite_bad!(ioctl_functions, uapi::IOC_FUNCTIONS, FunctionsRequest);

/// How hard the kernel tries before `code_busy` (0: its default).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Retry {
    /// Stack-check attempts before giving up with code_busy (default 5).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub tries: u32,
    /// Milliseconds between attempts (default 1000).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub retry_ms: u32,
}

/// An open `/dev/ksplice` whose module speaks our ABI version.
pub struct Device {
    file: File,
    path: PathBuf,
    info: Info,
}

impl Device {
    /// Opens the device at its standard path.
    pub fn open() -> Result<Self, Error> {
        Self::open_at(Path::new(uapi::DEVICE_PATH))
    }

    /// Opens the device at `path` and checks the module's ABI version.
    pub fn open_at(path: &Path) -> Result<Self, Error> {
        let path = path.to_path_buf();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Error::NotLoaded { path }),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(Error::PermissionDenied { path })
            }
            Err(source) => return Err(Error::Open { path, source }),
        };
        let mut device = Self {
            file,
            path,
            info: Info::zeroed(),
        };
        let mut info = Info::zeroed();
        // SAFETY: `info` is a valid, writable `Info`, the exact type the
        // request number encodes, and the fd is open for the call's duration.
        device.check(
            unsafe { ioctl_info(device.file.as_raw_fd(), &mut info) },
            "INFO",
        )?;
        if info.abi_version != uapi::ABI_VERSION {
            return Err(Error::AbiMismatch {
                module: info.abi_version,
                tools: uapi::ABI_VERSION,
            });
        }
        debug!(
            "{}: ABI {}, kernel {:?}",
            device.path.display(),
            info.abi_version,
            info.release_str()
        );
        device.info = info;
        Ok(device)
    }

    /// What the module said about itself when the device was opened.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Every update the module knows, in the order they were applied.
    pub fn list(&self) -> Result<Vec<UpdateEntry>, Error> {
        let mut entries: Vec<UpdateEntry> = Vec::new();
        loop {
            let capacity = u32::try_from(entries.len()).map_err(|_| Error::MalformedReply {
                what: "update count",
            })?;
            let mut request = ListRequest {
                entries: entries.as_mut_ptr() as u64,
                capacity,
                total: 0,
            };
            // SAFETY: `request` is a valid `ListRequest`; it points at
            // `capacity` writable `UpdateEntry` records owned by `entries`.
            self.check(
                unsafe { ioctl_list(self.file.as_raw_fd(), &mut request) },
                "LIST",
            )?;
            if request.total <= capacity {
                entries.truncate(request.total as usize);
                return Ok(entries);
            }
            // Updates were added since the last call: grow and ask again.
            entries.resize(request.total as usize, UpdateEntry::zeroed());
        }
    }

    /// Applies the update whose payload is `payload`, carried by the loaded
    /// module `module`.
    pub fn apply(&self, payload: &[u8], module: &str, retry: Retry) -> Result<OpResult, Error> {
        let mut request = ApplyRequest {
            payload: payload.as_ptr() as u64,
            payload_len: u32::try_from(payload.len()).map_err(|_| Error::MalformedReply {
                what: "payload size",
            })?,
            tries: retry.tries,
            retry_ms: retry.retry_ms,
            flags: 0,
            module: [0; uapi::MODULE_NAME_LEN],
            result: OpResult::zeroed(),
        };
        for (d, s) in request
            .module
            .iter_mut()
            .zip(module.bytes().take(uapi::MODULE_NAME_LEN - 1))
        {
            *d = s;
        }
        // SAFETY: `request` is a valid `ApplyRequest` and points at
        // `payload`, which outlives the call.
        self.check(
            unsafe { ioctl_apply(self.file.as_raw_fd(), &mut request) },
            "APPLY",
        )?;
        Ok(request.result)
    }

    /// Undoes the applied update `id`.
    pub fn undo(&self, id: &str, retry: Retry) -> Result<OpResult, Error> {
        let mut request = UndoRequest {
            id: [0; uapi::ID_MAX_LEN + 1],
            tries: retry.tries,
            retry_ms: retry.retry_ms,
            result: OpResult::zeroed(),
        };
        for (d, s) in request.id.iter_mut().zip(id.bytes().take(uapi::ID_MAX_LEN)) {
            *d = s;
        }
        // SAFETY: `request` is a valid `UndoRequest`.
        self.check(
            unsafe { ioctl_undo(self.file.as_raw_fd(), &mut request) },
            "UNDO",
        )?;
        Ok(request.result)
    }

    /// Names of the functions the applied update `id` replaces.
    pub fn functions(&self, id: &str) -> Result<Vec<String>, Error> {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let mut request = FunctionsRequest {
                id: [0; uapi::ID_MAX_LEN + 1],
                buf: buf.as_mut_ptr() as u64,
                len: u32::try_from(buf.len()).map_err(|_| Error::MalformedReply {
                    what: "function names",
                })?,
                total: 0,
            };
            for (d, s) in request.id.iter_mut().zip(id.bytes().take(uapi::ID_MAX_LEN)) {
                *d = s;
            }
            // SAFETY: `request` is a valid `FunctionsRequest` pointing at
            // `len` writable bytes owned by `buf`.
            self.check(
                unsafe { ioctl_functions(self.file.as_raw_fd(), &mut request) },
                "FUNCTIONS",
            )?;
            if request.total as usize <= buf.len() {
                buf.truncate(request.total as usize);
                let text = String::from_utf8_lossy(&buf);
                return Ok(text.lines().map(str::to_owned).collect());
            }
            buf.resize(request.total as usize, 0);
        }
    }

    fn check(&self, result: nix::Result<i32>, request: &'static str) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err(nix::Error::EPERM | nix::Error::EACCES) => Err(Error::PermissionDenied {
                path: self.path.clone(),
            }),
            Err(source) => Err(Error::Ioctl {
                request,
                path: self.path.clone(),
                source,
            }),
        }
    }
}
