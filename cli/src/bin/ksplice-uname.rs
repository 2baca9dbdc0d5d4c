//! `ksplice-uname`: uname with the release applied updates bring.

use std::process::ExitCode;

use clap::Parser;
use ksplice::args::UnameArgs;
use ksplice::persist::StateDir;
use ksplice::status::{self, UnameFields, Uts};
use ksplice::{Error, ExitStatus};

fn run(args: &UnameArgs) -> Result<ExitStatus, Error> {
    let uts = Uts::running();
    let state = StateDir::new(&args.state.state_dir);
    let metadata = match status::core_state(&state) {
        Ok(core) => core
            .listed
            .into_iter()
            .filter(|l| status::is_applied(&l.entry))
            .filter_map(|l| l.metadata)
            .collect(),
        // Without ksplice.ko no update is applied.
        Err(Error::NotLoaded { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let effective = status::effective_release(&uts.release, &metadata);
    let fields = UnameFields {
        sysname: args.all || args.kernel_name,
        nodename: args.all || args.nodename,
        release: args.all || args.kernel_release,
        version: args.all || args.kernel_version,
        machine: args.all || args.machine,
        os: args.all || args.operating_system,
    };
    println!("{}", status::uname_line(&uts, effective, fields));
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = UnameArgs::parse();
    ksplice::finish("ksplice-uname", run(&args))
}
