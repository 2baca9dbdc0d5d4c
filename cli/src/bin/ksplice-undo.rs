//! `ksplice-undo`: reverses an applied update.

use std::process::ExitCode;

use clap::Parser;
use ksplice::device::{Device, Retry};
use ksplice::{module, Error, ExitStatus};
use ksplice_core::uapi;

/// Undo an applied ksplice update, restoring the original code.
///
/// Exit codes: 0 undone, 1 failure, 2 usage, 3 ksplice.ko missing,
/// 4 permission denied, 5 refused by the kernel (abort code given).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    retry: Retry,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The update id (see ksplice-view).
    id: String,
}

fn run(args: &Args) -> Result<ExitStatus, Error> {
    if !uapi::is_valid_id(&args.id) {
        eprintln!("ksplice-undo: bad id '{}'", args.id);
        return Ok(ExitStatus::Usage);
    }
    let device = Device::open()?;
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
    // The code is no longer reachable: unload update.ko.
    module::unload(&module::name_for_id(&args.id))?;
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = Args::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-undo", run(&args))
}
