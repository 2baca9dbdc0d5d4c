//! The userspace side of ksplice: shared by the `ksplice-*` binaries.
//!
//! Only [`device`] talks to `/dev/ksplice`; the binaries in `src/bin/`
//! parse arguments, call into this library and turn its [`Error`] into an
//! exit code.

pub mod apply;
pub mod args;
pub mod create;
pub mod device;
pub mod error;
pub mod metadata;
pub mod module;
pub mod persist;
pub mod status;

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

/// Ends a tool: its status on success, else `error` printed as
/// `<tool>: <error>` (plus a hint) and the error's exit code.
pub fn finish(tool: &str, result: Result<ExitStatus, Error>) -> std::process::ExitCode {
    match result {
        Ok(status) => status.into(),
        // The reader stopped reading (`ksplice-view | head`): as ripgrep
        // does, end quietly; nothing was left half-done.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitStatus::Success.into()
        }
        Err(error) => {
            eprintln!("{tool}: {error}");
            if let Some(hint) = error.hint() {
                eprintln!("{tool}: hint: {hint}");
            }
            error.exit_status().into()
        }
    }
}
