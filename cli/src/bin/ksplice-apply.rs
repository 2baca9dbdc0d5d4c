//! `ksplice-apply`: applies an update.ko to the running kernel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use ksplice::device::{Device, Retry};
use ksplice::module::{self, UpdateFile};
use ksplice::{Error, ExitStatus};
use log::info;

/// Apply a ksplice update to the running kernel, without a reboot.
///
/// Loads ksplice.ko if needed, loads update.ko, and asks ksplice.ko to
/// apply it: run-pre matching, a stack check in stop_machine, trampolines.
/// On any refusal nothing is changed and update.ko is unloaded again.
///
/// Exit codes: 0 applied, 1 failure, 2 usage, 3 ksplice.ko missing,
/// 4 permission denied, 5 refused by the kernel (abort code given).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The core module to load if /dev/ksplice does not exist (default: the
    /// first of /lib/modules/$(uname -r)/extra/ksplice.ko and
    /// /lib/ksplice/ksplice.ko).
    #[arg(long, value_name = "PATH")]
    core: Option<PathBuf>,
    #[command(flatten)]
    retry: Retry,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The update, as written by ksplice-create.
    update: PathBuf,
}

fn core_path(args: &Args) -> Result<PathBuf, Error> {
    if let Some(p) = &args.core {
        return Ok(p.clone());
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates = [
        PathBuf::from(format!("/lib/modules/{release}/extra/ksplice.ko")),
        PathBuf::from("/lib/ksplice/ksplice.ko"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| Error::NotLoaded {
            path: PathBuf::from(ksplice_core::uapi::DEVICE_PATH),
        })
}

fn open_device(args: &Args) -> Result<Device, Error> {
    match Device::open() {
        Err(Error::NotLoaded { .. }) => {
            let core = core_path(args)?;
            info!("loading {}", core.display());
            module::load(&core)?;
            // devtmpfs creates the node during misc_register; allow for udev.
            for _ in 0..50 {
                if Path::new(ksplice_core::uapi::DEVICE_PATH).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Device::open()
        }
        other => other,
    }
}

fn run(args: &Args) -> Result<ExitStatus, Error> {
    let update = UpdateFile::read(&args.update)?;
    let device = open_device(args)?;
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
    let result = device.apply(&update.payload, &update.module_name, args.retry)?;
    if let Some(refused) = Error::from_result("apply", &result) {
        // Leave nothing behind: the update never took effect.
        if loaded_now {
            let _ = module::unload(&update.module_name);
        }
        return Err(refused);
    }
    println!(
        "applied update {}: {} function(s) replaced, stop_machine pause {:.1} us",
        update.id,
        result.functions,
        result.pause_ns as f64 / 1000.0
    );
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = Args::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-apply", run(&args))
}
