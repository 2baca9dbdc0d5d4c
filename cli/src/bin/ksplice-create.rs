//! `ksplice-create`: builds `update.ko` from a kernel tree and a patch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ksplice::create::report::Report;
use ksplice::create::{self, emit, Request};
use ksplice::{Error, ExitStatus};
use log::info;

/// Build a rebootless update (update.ko) from a kernel patch.
///
/// Compiles the objects the patch affects twice, before and after it, with
/// the kernel's own compile commands, compares the object code function by
/// function, and links the changed functions into a module.
///
/// Exit codes: 0 success, 1 failure, 2 usage error, 5 the patch cannot be
/// turned into an update (reason given), 6 a compile or link failed, 7
/// nothing to apply: the running kernel's code is already equivalent.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The configured, built kernel tree the running kernel came from (a
    /// kbuild O= directory with its `source` link, or an in-tree build).
    #[arg(long, value_name = "DIR")]
    kernel: PathBuf,
    /// Update id (default: a short hash of the patch).
    #[arg(long)]
    id: Option<String>,
    /// Output file (default: ksplice-<id>.ko).
    #[arg(short, long, value_name = "OUT.ko")]
    output: Option<PathBuf>,
    /// Print which functions would be replaced and why, then stop.
    #[arg(long)]
    explain: bool,
    /// Print the outcome as one JSON object on stdout (created, refused,
    /// noop or failed, with the reason, functions, objects and timings).
    #[arg(long, conflicts_with = "explain")]
    json: bool,
    /// Keep the scratch directory here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// A patch an earlier update (still applied) was built from; repeat in
    /// the order they were applied. The new update stacks on top of them.
    #[arg(long, value_name = "PATCH")]
    applied: Vec<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The unified diff against the kernel source.
    patch: PathBuf,
}

fn run(args: &Args, report: &mut Report, link: &mut Duration) -> Result<ExitStatus, Error> {
    let patch_text = std::fs::read_to_string(&args.patch).map_err(|source| Error::Io {
        path: args.patch.clone(),
        source,
    })?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| create::default_id(&patch_text));
    if !ksplice_core::uapi::is_valid_id(&id) {
        eprintln!("ksplice-create: bad id '{id}': use 1-31 characters of [A-Za-z0-9_.-]");
        return Ok(ExitStatus::Usage);
    }
    report.id.clone_from(&id);
    let scratch;
    let work_dir = match &args.work_dir {
        // Compilers run in the kernel tree: the path must be absolute.
        Some(dir) => std::path::absolute(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?,
        None => {
            // Next to the kernel cache when possible, so hard links work.
            scratch = tempfile::Builder::new()
                .prefix("ksplice-create.")
                .tempdir()
                .map_err(|source| Error::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
            scratch.path().to_owned()
        }
    };
    let applied = args
        .applied
        .iter()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = Request {
        applied: &applied,
        kernel: &args.kernel,
        patch_text: &patch_text,
        id: &id,
        work_dir: &work_dir,
        progress: !args.quiet,
    };
    let analysis = match create::analyse(&request) {
        Err(create::CreateError::LayoutChange { changes }) if args.explain => {
            for change in &changes {
                println!("layout changed: {change}");
            }
            return Err(create::CreateError::LayoutChange { changes }.into());
        }
        result => result?,
    };
    report.analysed(&analysis);
    for note in &analysis.notes {
        eprintln!("ksplice-create: note: {note}");
    }
    if args.explain {
        explain(&analysis);
        return Ok(ExitStatus::Success);
    }
    let started = Instant::now();
    let post = emit::build_post_object(&analysis.tree, &id, &analysis.units)?;
    report.functions(&post.summary.replaced, &post.summary.added);
    if !args.quiet {
        eprintln!("[link] update module {}", emit::module_name(&id));
    }
    let ko = emit::build_module(&analysis.tree, &work_dir.join("module"), &id, &post)?;
    *link = started.elapsed();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("ksplice-{id}.ko")));
    std::fs::copy(&ko, &output).map_err(|source| Error::Io {
        path: output.clone(),
        source,
    })?;
    info!(
        "{} matched pre functions, {} post relocations",
        post.summary.matched, post.summary.post_relocs
    );
    report.output = Some(output.clone());
    if args.json {
        return Ok(ExitStatus::Success);
    }
    for (object, function) in &post.summary.replaced {
        println!("replace {function} ({object})");
    }
    for (object, function) in &post.summary.added {
        println!("add     {function} ({object})");
    }
    println!("wrote {} (update id {id})", output.display());
    Ok(ExitStatus::Success)
}

fn explain(analysis: &create::Analysis) {
    for (object, because) in &analysis.rebuilt {
        if analysis.compiled.contains(object) {
            println!("rebuilt {object} ({})", because.join(", "));
        } else {
            println!(
                "same    {object} ({}): preprocessed source unchanged",
                because.join(", ")
            );
        }
    }
    for unit in &analysis.units {
        println!("{}:", unit.object);
        let inlined = create::via_inlining(analysis, unit);
        for (function, reasons) in &unit.diff.changed {
            let mut why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
            if inlined.contains(function) {
                why.push("changed inlined callee, macro or header".into());
            }
            println!("  replace {function}: {}", why.join(", "));
        }
        for function in &unit.diff.new_functions {
            println!("  add     {function}: new function");
        }
        for data in &unit.diff.changed_rodata {
            println!("  copy    {data}: changed read-only data");
        }
        for data in &unit.diff.new_data {
            println!("  add     {data}: new data");
        }
    }
    for rename in &analysis.layout.renames {
        println!("layout accepted: {rename}");
    }
    if analysis.units.is_empty() {
        println!("no function changes");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    ksplice::init_logging(args.verbose);
    let started = Instant::now();
    let mut report = Report::new(args.id.as_deref().unwrap_or(""));
    let mut link = Duration::ZERO;
    let result = run(&args, &mut report, &mut link);
    if args.json {
        report.finish(&result, link, started.elapsed());
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("ksplice-create: cannot print the report: {e}"),
        }
    }
    ksplice::finish("ksplice-create", result)
}
