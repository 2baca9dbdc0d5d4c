//! `ksplice-view`: lists the updates applied to the running kernel.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use ksplice::device::Device;
use ksplice::{Error, ExitStatus};
use ksplice_core::uapi::{UpdateEntry, UpdateState};
use serde::Serialize;

/// List the ksplice updates applied to the running kernel.
///
/// Exit codes: 0 success, 1 failure, 2 usage error or unknown update id,
/// 3 ksplice.ko not loaded, 4 permission denied.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Show only this update.
    id: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Serialize)]
struct Report<'a> {
    kernel_release: &'a str,
    abi_version: u32,
    updates: Vec<UpdateReport>,
}

#[derive(Serialize)]
struct UpdateReport {
    id: String,
    state: &'static str,
    functions: u32,
    replaced: Vec<String>,
    applied_at: String,
    pause_ns: u64,
}

impl UpdateReport {
    fn new(entry: &UpdateEntry, device: &Device) -> Result<Self, Error> {
        let id = entry
            .id_str()
            .ok_or(Error::MalformedReply { what: "update id" })?;
        let state = UpdateState::from_u32(entry.state).map_or("unknown", UpdateState::as_str);
        let applied = UNIX_EPOCH + Duration::from_nanos(entry.applied_at_ns);
        Ok(Self {
            id: id.to_owned(),
            state,
            functions: entry.functions,
            replaced: device.functions(id)?,
            applied_at: humantime::format_rfc3339_seconds(applied).to_string(),
            pause_ns: entry.pause_ns,
        })
    }
}

fn run(args: &Args) -> Result<ExitStatus, Error> {
    let device = Device::open()?;
    let mut updates = device
        .list()?
        .iter()
        .map(|entry| UpdateReport::new(entry, &device))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(id) = &args.id {
        updates.retain(|u| &u.id == id);
        if updates.is_empty() {
            eprintln!("ksplice-view: no update with id '{id}' is applied");
            return Ok(ExitStatus::Usage);
        }
    }
    let release = device.info().release_str().unwrap_or("?");
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = Report {
            kernel_release: release,
            abi_version: device.info().abi_version,
            updates,
        };
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    } else if updates.is_empty() {
        writeln!(out, "no updates applied (kernel {release})").map_err(Error::Output)?;
    } else {
        writeln!(
            out,
            "{:<32} {:<9} {:>5}  {:<20}  {:>10}",
            "ID", "STATE", "FUNCS", "APPLIED", "PAUSE"
        )
        .map_err(Error::Output)?;
        for u in &updates {
            writeln!(
                out,
                "{:<32} {:<9} {:>5}  {:<20}  {:>7.1} us",
                u.id,
                u.state,
                u.functions,
                u.applied_at,
                u.pause_ns as f64 / 1000.0
            )
            .map_err(Error::Output)?;
            for function in &u.replaced {
                writeln!(out, "    replaces {function}").map_err(Error::Output)?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn main() -> ExitCode {
    let args = Args::parse();
    ksplice::init_logging(args.verbose);
    ksplice::finish("ksplice-view", run(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_and_json() {
        let args = Args::try_parse_from(["ksplice-view", "abc", "--json"]).unwrap();
        assert_eq!(args.id.as_deref(), Some("abc"));
        assert!(args.json);
    }

    #[test]
    fn rejects_unknown_flags() {
        assert!(Args::try_parse_from(["ksplice-view", "--bogus"]).is_err());
    }
}
