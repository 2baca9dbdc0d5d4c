//! `ksplice-create`: builds `update.ko` from a kernel tree and a patch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ksplice::args::CreateArgs;
use ksplice::create::report::Report;
use ksplice::create::seal::{self, Signer};
use ksplice::create::{self, emit, Request};
use ksplice::metadata::Metadata;
use ksplice::{Error, ExitStatus};
use log::{debug, info};

fn run(args: &CreateArgs, report: &mut Report, link: &mut Duration) -> Result<ExitStatus, Error> {
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
        compile_every_includer: args.compile_every_includer,
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
    let metadata = Metadata {
        description: args.description.clone(),
        cves: args.cves.clone(),
        effective_release: args.effective_release.clone(),
    };
    let signer = match (&args.sign_key, &args.sign_cert) {
        (Some(key), Some(cert)) => Some(Signer {
            key: key.clone(),
            cert: cert.clone(),
        }),
        _ => None,
    };
    // Last: nothing may rewrite update.ko after it is signed.
    seal::seal(&analysis.tree.objtree, &ko, &metadata, signer.as_ref())?;
    if signer.is_some() && !args.quiet {
        eprintln!("[sign] {}", ko.display());
    }
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
    let mut same = 0;
    for (object, because) in &analysis.rebuilt {
        if analysis.compiled.contains(object) {
            println!("rebuilt {object} ({})", because.join(", "));
        } else {
            debug!(
                "{object} ({}): not compiled: preprocessed source unchanged, or changed only \
                 in declarations its code never reaches",
                because.join(", ")
            );
            same += 1;
        }
    }
    if same > 0 {
        println!(
            "same    {same} objects: preprocessed source unchanged, or changed only in \
             declarations their code never reaches; not compiled (-v lists them)"
        );
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
    let args = CreateArgs::parse();
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
