//! `ksplice-undo`: reverses an applied update (and with --persist drops it
//! from the stored set).

use std::process::ExitCode;

use clap::Parser;
use ksplice::args::UndoArgs;
use ksplice::device::Device;
use ksplice::persist::{KernelId, StateDir};
use ksplice::{module, Error, ExitStatus};
use ksplice_core::uapi::{self, Abort};

fn run(args: &UndoArgs) -> Result<ExitStatus, Error> {
    if !uapi::is_valid_id(&args.id) {
        eprintln!("ksplice-undo: bad id '{}'", args.id);
        return Ok(ExitStatus::Usage);
    }
    let state = StateDir::new(&args.state.state_dir);
    let undone = match Device::open() {
        Ok(device) => {
            let result = device.undo(&args.id, args.retry)?;
            match Error::from_result("undo", &result) {
                None => {
                    println!(
                        "undid update {}: {} function(s) restored, stop_machine pause {:.1} us",
                        args.id,
                        result.functions,
                        result.pause_ns as f64 / 1000.0
                    );
                    // The code is no longer reachable: unload update.ko.
                    module::unload(&module::name_for_id(&args.id))?;
                    if let Err(e) = state.forget_applied(&args.id) {
                        log::warn!("cannot drop the record of {}: {e}", args.id);
                    }
                    true
                }
                // Not applied: with --persist, dropping it is all there is to do.
                Some(Error::Refused {
                    abort: Abort::NotApplied,
                    ..
                }) if args.persist => false,
                Some(refused) => return Err(refused),
            }
        }
        // No core module: nothing is applied.
        Err(Error::NotLoaded { .. }) if args.persist => false,
        Err(e) => return Err(e),
    };
    if args.persist {
        let kernel = KernelId::running()?;
        let removed = state.remove(&kernel, &args.id)?;
        match (undone, removed) {
            (_, true) => println!(
                "removed update {} from the stored set of kernel {kernel}",
                args.id
            ),
            (true, false) => println!("update {} was not stored for kernel {kernel}", args.id),
            (false, false) => {
                eprintln!(
                    "ksplice-undo: update {} is neither applied nor stored for kernel {kernel}",
                    args.id
                );
                return Ok(ExitStatus::Usage);
            }
        }
        if !undone {
            println!("update {} was not applied", args.id);
        }
    }
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = UndoArgs::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-undo", run(&args))
}
