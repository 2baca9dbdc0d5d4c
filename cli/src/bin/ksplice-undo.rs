//! `ksplice-undo`: reverses an applied update.

use std::process::ExitCode;

use clap::Parser;
use ksplice::device::{Device, Retry};
use ksplice::{module, Error, ExitStatus};
use ksplice_core::uapi::{self, UpdateState};

/// Undo an applied ksplice update, restoring the original code.
///
/// The update's module (update.ko) stays loaded after the undo: an open
/// file, a timer, a work item or an RCU callback may still point into its
/// code, and nothing can prove that none does. `--unload` also unloads it,
/// after the kernel has waited for pending RCU callbacks.
///
/// Exit codes: 0 undone, 1 failure, 2 usage, 3 ksplice.ko missing,
/// 4 permission denied, 5 refused by the kernel (abort code given).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    retry: Retry,
    /// Also unload update.ko (for an update already reversed, only that).
    #[arg(long)]
    unload: bool,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The update id (see ksplice-view).
    id: String,
}

/// What unloading cannot prove, said every time it is done.
const UNLOAD_CAVEAT: &str = "ksplice waited for pending RCU callbacks, but cannot prove that no open file, timer or work item still points into the update's code; unload only if the update's new code hands out no such pointers";

fn run(args: &Args) -> Result<ExitStatus, Error> {
    if !uapi::is_valid_id(&args.id) {
        eprintln!("ksplice-undo: bad id '{}'", args.id);
        return Ok(ExitStatus::Usage);
    }
    let device = Device::open()?;
    let state = device
        .list()?
        .iter()
        .find(|e| e.id_str() == Some(args.id.as_str()))
        .and_then(|e| UpdateState::from_u32(e.state));
    if state != Some(UpdateState::Reversed) || !args.unload {
        let result = device.undo(&args.id, args.retry)?;
        if let Some(refused) = Error::from_result("undo", &result) {
            return Err(refused);
        }
        println!(
            "undid update {}: {} function(s) restored, stop_machine pause {:.1} us",
            args.id,
            result.functions,
            result.pause_ns as f64 / 1000.0
        );
    }
    if args.unload {
        let result = device.release(&args.id)?;
        if let Some(refused) = Error::from_result("unload", &result) {
            return Err(refused);
        }
        eprintln!("ksplice-undo: warning: {UNLOAD_CAVEAT}");
        module::unload(&module::name_for_id(&args.id))?;
        println!("unloaded update {}", args.id);
    } else {
        println!(
            "update {} stays loaded (reversed); `ksplice-undo --unload {}` unloads it",
            args.id, args.id
        );
    }
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = Args::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-undo", run(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unload_is_an_explicit_flag() {
        let args = Args::try_parse_from(["ksplice-undo", "abc"]).unwrap();
        assert!(!args.unload);
        let args = Args::try_parse_from(["ksplice-undo", "--unload", "abc"]).unwrap();
        assert!(args.unload);
    }
}
