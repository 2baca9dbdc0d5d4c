//! `ksplice-view`: lists the updates applied to the running kernel.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use ksplice::device::{Device, Function};
use ksplice::{Error, ExitStatus};
use ksplice_core::uapi::{FunctionState, UpdateEntry, UpdateState};
use serde::Serialize;

/// List the ksplice updates applied to the running kernel.
///
/// An update is `applied`, or `reversed` (undone, its update.ko still
/// loaded); a function another text user took after the apply (livepatch,
/// a direct ftrace trampoline) is `shadowed`, and so is its update.
///
/// Exit codes: 0 success, 1 failure, 2 usage error or unknown update id,
/// 3 ksplice.ko not loaded, 4 permission denied, 5 --verify found the live
/// kernel differs from what was applied.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Show only this update.
    id: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Re-check the live kernel against every applied update (or ID)
    /// without changing anything: each trampoline still holds its jmp, the
    /// new code is what was applied, and no other text user took a
    /// function since.
    #[arg(long)]
    verify: bool,
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
    shadowed: bool,
    functions: u32,
    replaced: Vec<FunctionReport>,
    applied_at: String,
    reversed_at: Option<String>,
    pause_ns: u64,
}

#[derive(Serialize)]
struct FunctionReport {
    name: String,
    object: String,
    state: &'static str,
    shadowed_by: Option<String>,
}

impl From<Function> for FunctionReport {
    fn from(f: Function) -> Self {
        Self {
            name: f.name,
            object: f.object,
            state: f.state.map_or("unknown", FunctionState::as_str),
            shadowed_by: f.shadowed_by,
        }
    }
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

impl UpdateReport {
    fn new(entry: &UpdateEntry, device: &Device) -> Result<Self, Error> {
        let id = entry
            .id_str()
            .ok_or(Error::MalformedReply { what: "update id" })?;
        let state = UpdateState::from_u32(entry.state).map_or("unknown", UpdateState::as_str);
        let replaced: Vec<FunctionReport> = device
            .functions(id)?
            .into_iter()
            .map(FunctionReport::from)
            .collect();
        Ok(Self {
            id: id.to_owned(),
            state,
            shadowed: replaced.iter().any(|f| f.shadowed_by.is_some()),
            functions: entry.functions,
            replaced,
            applied_at: rfc3339(entry.applied_at_ns),
            reversed_at: (entry.reversed_at_ns != 0).then(|| rfc3339(entry.reversed_at_ns)),
            pause_ns: entry.pause_ns,
        })
    }
}

fn verify(device: &Device, id: Option<&str>) -> Result<ExitStatus, Error> {
    let (result, checked) = device.verify(id)?;
    if let Some(problem) = Error::from_result("verify", &result) {
        return Err(problem);
    }
    println!("verified: {checked} function(s) hold what was applied");
    Ok(ExitStatus::Success)
}

fn run(args: &Args) -> Result<ExitStatus, Error> {
    let device = Device::open()?;
    if args.verify {
        return verify(&device, args.id.as_deref());
    }
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
                if u.shadowed { "shadowed" } else { u.state },
                u.functions,
                u.applied_at,
                u.pause_ns as f64 / 1000.0
            )
            .map_err(Error::Output)?;
            for f in &u.replaced {
                match &f.shadowed_by {
                    Some(by) => writeln!(
                        out,
                        "    replaces {} ({}), shadowed by {by}",
                        f.name, f.object
                    ),
                    None => writeln!(out, "    replaces {} ({})", f.name, f.object),
                }
                .map_err(Error::Output)?;
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
