//! The only place that talks to `/dev/ksplice`.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ksplice_core::uapi::{
    self, ApplyRequest, FunctionState, FunctionsRequest, Info, ListRequest, OpResult,
    ReleaseRequest, UndoRequest, UpdateEntry, VerifyRequest,
};
use log::debug;

use crate::Error;

nix::ioctl_read_bad!(ioctl_info, uapi::IOC_INFO, Info);
nix::ioctl_readwrite_bad!(ioctl_list, uapi::IOC_LIST, ListRequest);
nix::ioctl_readwrite_bad!(ioctl_apply, uapi::IOC_APPLY, ApplyRequest);
nix::ioctl_readwrite_bad!(ioctl_undo, uapi::IOC_UNDO, UndoRequest);
nix::ioctl_readwrite_bad!(ioctl_functions, uapi::IOC_FUNCTIONS, FunctionsRequest);
nix::ioctl_readwrite_bad!(ioctl_verify, uapi::IOC_VERIFY, VerifyRequest);
nix::ioctl_readwrite_bad!(ioctl_release, uapi::IOC_RELEASE, ReleaseRequest);

/// One function an update replaces, as `FUNCTIONS` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// The function's name.
    pub name: String,
    /// `vmlinux` or the module it lives in.
    pub object: String,
    /// Its state; `None` for a state this tool does not know.
    pub state: Option<FunctionState>,
    /// For a shadowed function: who shadows it.
    pub shadowed_by: Option<String>,
}

impl Function {
    /// Parses one `FUNCTIONS` line: name, object, state and owner,
    /// separated by tabs.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split('\t');
        let name = fields.next().filter(|n| !n.is_empty())?.to_owned();
        let object = fields.next()?.to_owned();
        let state = FunctionState::parse(fields.next()?);
        let shadowed_by = fields.next().map(str::to_owned);
        Some(Self {
            name,
            object,
            state,
            shadowed_by,
        })
    }
}

fn id_field(id: &str) -> [u8; uapi::ID_MAX_LEN + 1] {
    let mut field = [0; uapi::ID_MAX_LEN + 1];
    for (d, s) in field.iter_mut().zip(id.bytes().take(uapi::ID_MAX_LEN)) {
        *d = s;
    }
    field
}

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

    /// Undoes the applied update `id` (its update.ko stays loaded).
    pub fn undo(&self, id: &str, retry: Retry) -> Result<OpResult, Error> {
        let mut request = UndoRequest {
            id: id_field(id),
            tries: retry.tries,
            retry_ms: retry.retry_ms,
            result: OpResult::zeroed(),
        };
        // SAFETY: `request` is a valid `UndoRequest`.
        self.check(
            unsafe { ioctl_undo(self.file.as_raw_fd(), &mut request) },
            "UNDO",
        )?;
        Ok(request.result)
    }

    /// Makes the kernel forget the reversed update `id`, so its update.ko
    /// can be unloaded.
    pub fn release(&self, id: &str) -> Result<OpResult, Error> {
        let mut request = ReleaseRequest {
            id: id_field(id),
            result: OpResult::zeroed(),
        };
        // SAFETY: `request` is a valid `ReleaseRequest`.
        self.check(
            unsafe { ioctl_release(self.file.as_raw_fd(), &mut request) },
            "RELEASE",
        )?;
        Ok(request.result)
    }

    /// Re-checks the live kernel against update `id`, or every applied
    /// update; returns the result and the number of functions checked.
    pub fn verify(&self, id: Option<&str>) -> Result<(OpResult, u32), Error> {
        let mut request = VerifyRequest {
            id: id_field(id.unwrap_or("")),
            checked: 0,
            flags: 0,
            result: OpResult::zeroed(),
        };
        // SAFETY: `request` is a valid `VerifyRequest`.
        self.check(
            unsafe { ioctl_verify(self.file.as_raw_fd(), &mut request) },
            "VERIFY",
        )?;
        Ok((request.result, request.checked))
    }

    /// The functions update `id` replaces, with their state.
    pub fn functions(&self, id: &str) -> Result<Vec<Function>, Error> {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let mut request = FunctionsRequest {
                id: id_field(id),
                buf: buf.as_mut_ptr() as u64,
                len: u32::try_from(buf.len()).map_err(|_| Error::MalformedReply {
                    what: "function names",
                })?,
                total: 0,
            };
            // SAFETY: `request` is a valid `FunctionsRequest` pointing at
            // `len` writable bytes owned by `buf`.
            self.check(
                unsafe { ioctl_functions(self.file.as_raw_fd(), &mut request) },
                "FUNCTIONS",
            )?;
            if request.total as usize <= buf.len() {
                buf.truncate(request.total as usize);
                let text = String::from_utf8_lossy(&buf);
                return text
                    .lines()
                    .map(|l| {
                        Function::parse(l).ok_or(Error::MalformedReply {
                            what: "function line",
                        })
                    })
                    .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_lines_carry_object_state_and_owner() {
        let f =
            Function::parse("cmdline_proc_show\tvmlinux\tshadowed\tlivepatch module x").unwrap();
        assert_eq!(f.name, "cmdline_proc_show");
        assert_eq!(f.object, "vmlinux");
        assert_eq!(f.state, Some(FunctionState::Shadowed));
        assert_eq!(f.shadowed_by.as_deref(), Some("livepatch module x"));
        let f = Function::parse("f\tvmlinux\tpatched").unwrap();
        assert_eq!(
            (f.state, f.shadowed_by),
            (Some(FunctionState::Patched), None)
        );
        assert_eq!(
            Function::parse("f\tvmlinux\tfrom-the-future")
                .unwrap()
                .state,
            None
        );
        assert_eq!(Function::parse("only-a-name"), None);
    }
}
