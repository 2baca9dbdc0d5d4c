//! `ksplice-view`: the updates of the running kernel and the stored set.

use std::process::ExitCode;

use clap::Parser;
use ksplice::args::ViewArgs;
use ksplice::device::Device;
use ksplice::persist::{KernelId, StateDir};
use ksplice::status::{self, Report};
use ksplice::{Error, ExitStatus};

/// `--verify`: the kernel re-checks every applied update (or `id`).
fn verify(id: Option<&str>) -> Result<ExitStatus, Error> {
    let device = Device::open()?;
    let (result, checked) = device.verify(id)?;
    if let Some(problem) = Error::from_result("verify", &result) {
        return Err(problem);
    }
    println!("verified: {checked} function(s) hold what was applied");
    Ok(ExitStatus::Success)
}

fn run(args: &ViewArgs) -> Result<ExitStatus, Error> {
    if args.verify {
        return verify(args.id.as_deref());
    }
    let state = StateDir::new(&args.state.state_dir);
    let kernel = KernelId::running()?;
    let (core, not_loaded) = match status::core_state(&state) {
        Ok(core) => (Some(core), None),
        Err(e @ Error::NotLoaded { .. }) => (None, Some(e)),
        Err(e) => return Err(e),
    };
    let mut report = Report::build(&kernel, core, status::stored(&state)?, state.guard()?);
    if let Some(id) = &args.id {
        if !report.retain_id(id) {
            eprintln!("ksplice-view: no update with id '{id}' is applied or stored");
            return Ok(ExitStatus::Usage);
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        report.write_json(&mut out)?;
    } else {
        report.write_text(&mut out).map_err(Error::Output)?;
    }
    // The report above still shows the stored set and the boot guard.
    match not_loaded {
        Some(e) => Err(e),
        None => Ok(ExitStatus::Success),
    }
}

fn main() -> ExitCode {
    let args = ViewArgs::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-view", run(&args))
}
