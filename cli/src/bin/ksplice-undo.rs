//! `ksplice-undo`: reverses an applied update.

use std::process::ExitCode;

use clap::Parser;
use ksplice::args::UndoArgs;
use ksplice::device::Device;
use ksplice::persist::{KernelId, StateDir};
use ksplice::{module, Error, ExitStatus};
use ksplice_core::uapi::{self, Abort, UpdateState};

/// What unloading cannot prove, said every time it is done.
const UNLOAD_CAVEAT: &str = "ksplice waited for pending RCU callbacks, but cannot prove that no open file, timer or work item still points into the update's code; unload only if the update's new code hands out no such pointers";

/// Undoes `id` if it is applied; unloads it with `--unload`. Returns
/// whether it was applied.
fn undo(device: &Device, args: &UndoArgs, state: &StateDir) -> Result<bool, Error> {
    let current = device
        .list()?
        .iter()
        .find(|e| e.id_str() == Some(args.id.as_str()))
        .and_then(|e| UpdateState::from_u32(e.state));
    let mut undone = false;
    if current != Some(UpdateState::Reversed) || !args.unload {
        let result = device.undo(&args.id, args.retry)?;
        match Error::from_result("undo", &result) {
            None => {
                println!(
                    "undid update {}: {} function(s) restored, stop_machine pause {:.1} us",
                    args.id,
                    result.functions,
                    result.pause_ns as f64 / 1000.0
                );
                if let Err(e) = state.forget_applied(&args.id) {
                    log::warn!("cannot drop the record of {}: {e}", args.id);
                }
                undone = true;
            }
            // Not applied: with --persist, dropping it is all there is to do.
            Some(Error::Refused {
                abort: Abort::NotApplied,
                ..
            }) if args.persist => return Ok(false),
            Some(refused) => return Err(refused),
        }
    }
    if args.unload {
        let result = device.release(&args.id)?;
        if let Some(refused) = Error::from_result("unload", &result) {
            return Err(refused);
        }
        eprintln!("ksplice-undo: warning: {UNLOAD_CAVEAT}");
        module::unload(&module::name_for_id(&args.id))?;
        println!("unloaded update {}", args.id);
    } else if undone {
        println!(
            "update {} stays loaded (reversed); `ksplice-undo --unload {}` unloads it",
            args.id, args.id
        );
    }
    Ok(undone)
}

fn run(args: &UndoArgs) -> Result<ExitStatus, Error> {
    if !uapi::is_valid_id(&args.id) {
        eprintln!("ksplice-undo: bad id '{}'", args.id);
        return Ok(ExitStatus::Usage);
    }
    let state = StateDir::new(&args.state.state_dir);
    let undone = match Device::open() {
        Ok(device) => undo(&device, args, &state)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unload_is_an_explicit_flag() {
        let args = UndoArgs::try_parse_from(["ksplice-undo", "abc"]).unwrap();
        assert!(!args.unload);
        let args = UndoArgs::try_parse_from(["ksplice-undo", "--unload", "abc"]).unwrap();
        assert!(args.unload);
    }
}
