//! `ksplice-apply`: applies an update.ko to the running kernel, or (with
//! --boot) the stored updates after a reboot.

use std::process::ExitCode;

use clap::Parser;
use ksplice::apply::{self, open_or_load_core};
use ksplice::args::ApplyArgs;
use ksplice::device::Device;
use ksplice::module::UpdateFile;
use ksplice::persist::{KernelId, Replayed, StateDir};
use ksplice::{Error, ExitStatus};

fn run(args: &ApplyArgs) -> Result<ExitStatus, Error> {
    let state = StateDir::new(&args.state.state_dir);
    let Some(path) = &args.update else {
        return boot(args, &state);
    };
    let update = UpdateFile::read(path)?;
    let device = open_or_load_core(args.core.as_deref())?;
    let result = apply::apply_update(&device, &update, args.retry, &state)?;
    println!(
        "applied update {}: {} function(s) replaced, stop_machine pause {:.1} us",
        update.id,
        result.functions,
        result.pause_ns as f64 / 1000.0
    );
    let pending = apply::pending_modules(&device, &update.id)?;
    for (module, count) in &pending {
        println!("  {count} function(s) of module {module} pending: patched when it loads");
    }
    if args.persist {
        let stored = state.store(&update).inspect_err(|_| {
            eprintln!(
                "ksplice-apply: update {} is applied, but not stored:",
                update.id
            );
        })?;
        println!(
            "stored update {} for kernel {} as {}",
            update.id,
            stored.kernel,
            stored.path.display()
        );
    }
    Ok(ExitStatus::Success)
}

/// `--boot`: the stored updates of the running kernel, in order.
fn boot(args: &ApplyArgs, state: &StateDir) -> Result<ExitStatus, Error> {
    let kernel = KernelId::running()?;
    let mut device: Option<Device> = None;
    let report = state.replay(&kernel, args.after_crash, |update| {
        // ksplice.ko is loaded only when there is something to apply.
        let device = match device {
            Some(ref device) => device,
            None => device.insert(open_or_load_core(args.core.as_deref())?),
        };
        if apply::is_applied(device, &update.id)? {
            return Ok(Replayed::AlreadyApplied);
        }
        apply::apply_update(device, update, args.retry, state)?;
        Ok(Replayed::Applied)
    })?;
    if report.done.is_empty() && report.failed.is_none() {
        println!("no stored updates for kernel {kernel}");
    }
    for (stored, how) in &report.done {
        match how {
            Replayed::Applied => println!("applied stored update {}", stored.id),
            Replayed::AlreadyApplied => println!("stored update {} is already applied", stored.id),
        }
    }
    let Some((failed, error)) = report.failed else {
        return Ok(ExitStatus::Success);
    };
    eprintln!(
        "ksplice-apply: stored update {} ({}) was not applied",
        failed.id,
        failed.path.display()
    );
    for later in &report.not_tried {
        eprintln!(
            "ksplice-apply: stored update {} not tried: it may build on {}",
            later.id, failed.id
        );
    }
    Err(error)
}

fn main() -> ExitCode {
    let args = ApplyArgs::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-apply", run(&args))
}
