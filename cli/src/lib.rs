//! The userspace side of ksplice: shared by the `ksplice-*` binaries.
//!
//! Only [`device`] talks to `/dev/ksplice`; the binaries in `src/bin/`
//! parse arguments, call into this library and turn its [`Error`] into an
//! exit code.

pub mod create;
pub mod device;
pub mod error;
pub mod module;

pub use error::{Error, ExitStatus};

/// Sets up logging to stderr: `warn` by default, `-v` for `info`, `-vv`
/// for `debug`; `RUST_LOG` overrides both.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
}

/// Prints `error` as `<tool>: <error>` and returns the exit code for it.
pub fn report(tool: &str, error: &Error) -> std::process::ExitCode {
    eprintln!("{tool}: {error}");
    if let Some(hint) = error.hint() {
        eprintln!("{tool}: hint: {hint}");
    }
    error.exit_status().into()
}
