//! Refuses updates that change the layout of data the running kernel holds.
//!
//! The objects already in memory keep the layout they were allocated with,
//! and no code converts them: new code that reads a member at a new offset,
//! or frees an object with a bigger size, corrupts them. So for every
//! rebuilt object with changes, each named type it uses must have the same
//! size, alignment, members, offsets, member types, bitfield positions and
//! enumerator values before and after the patch, and so must the types of
//! the variables the replaced and new code names. A change is named after
//! the replaced function, new function or changed data object whose DWARF
//! reaches the type (through members, pointers, arrays, typedefs,
//! qualifiers and function types), where one does. A member renamed in
//! place is accepted (and listed by `--explain`); a type only the patched
//! build has is new and holds no live data.
//!
//! Type information comes from the DWARF of the pre and post objects when
//! kbuild compiles with full `-g`; otherwise (no `-g`, reduced or split
//! DWARF) from a second compile of both with `-g`, used for this analysis
//! only.

mod compare;
mod dwarf;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use log::{debug, info};

use self::compare::{Roots, Types};
use super::compile::{self, Job, Step};
use super::emit::Unit;
use super::kbuild::{CompileCommand, KernelTree};
use super::objdiff::{Item, Target};
use super::{CreateError, Request};

/// What the check compared and accepted, for `--explain`.
#[derive(Debug, Default)]
pub struct Report {
    /// Renamed members and enumerators, e.g. `fs/x.o: struct foo: member
    /// a renamed to b (offset 8, int)`.
    pub renames: Vec<String>,
    /// Named types compared, over all objects.
    pub compared: usize,
    /// Objects compiled a second time, with `-g`, for their types.
    pub analysis_compiles: usize,
    /// Wall time of the check, analysis compiles included.
    pub elapsed: std::time::Duration,
}

impl Report {
    /// Adds the findings of a check of more objects.
    pub fn absorb(&mut self, other: Report) {
        self.renames.extend(other.renames);
        self.compared += other.compared;
        self.analysis_compiles += other.analysis_compiles;
        self.elapsed += other.elapsed;
    }
}

/// Compares the type layouts `units` use before and after the patch.
/// `pre_overlay` and `overlay` are the source overlays of the pre and post
/// builds, for the analysis compiles.
pub fn check(
    tree: &KernelTree,
    req: &Request<'_>,
    units: &[Unit],
    pre_overlay: Option<&Path>,
    overlay: &Path,
) -> Result<Report, CreateError> {
    let start = std::time::Instant::now();
    let mut report = Report::default();
    // The objects whose own DWARF cannot be trusted to hold every type,
    // with the command that compiles them for the analysis.
    let mut need_compile: Vec<&Unit> = Vec::new();
    let mut commands = Vec::new();
    for unit in units {
        let command =
            tree.compile_command(&unit.object)?
                .ok_or_else(|| CreateError::BadCmdFile {
                    path: tree.objtree.join(&unit.object),
                    why: "its compile command vanished",
                })?;
        if full_type_info(&command.argv)
            && dwarf::has_debug_info(&unit.pre.data)
            && dwarf::has_debug_info(&unit.post.data)
        {
            continue;
        }
        need_compile.push(unit);
        commands.push(CompileCommand {
            argv: analysis_argv(&command.argv),
            ..command
        });
    }
    let jobs: Vec<Job<'_>> = commands
        .iter()
        .flat_map(|command| {
            [
                Job {
                    command,
                    variant: "pre-debug",
                    overlay: pre_overlay,
                    step: Step::Compile,
                },
                Job {
                    command,
                    variant: "post-debug",
                    overlay: Some(overlay),
                    step: Step::Compile,
                },
            ]
        })
        .collect();
    if !jobs.is_empty() {
        info!(
            "compiling {} objects again with -g for their types",
            commands.len()
        );
        compile::run_all(
            &tree.objtree,
            &tree.srctree,
            req.work_dir,
            &jobs,
            req.progress,
        )?;
    }
    report.analysis_compiles = commands.len();

    // Change text -> (object, what reaches it) of each object it is in.
    let mut changes: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for unit in units {
        let (pre, post) = if need_compile.iter().any(|u| u.object == unit.object) {
            let read = |variant: &str| -> Result<Types, CreateError> {
                let path = req.work_dir.join(variant).join(&unit.object);
                let data = std::fs::read(&path).map_err(|e| CreateError::io(&path, e))?;
                Types::read(&data, &path)
            };
            (read("pre-debug")?, read("post-debug")?)
        } else {
            (
                Types::read(&unit.pre.data, &unit.pre_path)?,
                Types::read(&unit.post.data, &unit.post_path)?,
            )
        };
        let roots = roots(unit);
        let findings = compare::compare(&pre, &post, &roots)?;
        debug!(
            "{}: {} named types compared, {} layout changes",
            unit.object,
            findings.compared,
            findings.changes.len()
        );
        for function in &findings.unlocated {
            info!(
                "{}: no DWARF for {function}; every type of the object counts as its",
                unit.object
            );
        }
        report.compared += findings.compared;
        report.renames.extend(
            findings
                .renames
                .iter()
                .map(|r| format!("{}: {r}", unit.object)),
        );
        for change in findings.changes {
            changes
                .entry(change.text)
                .or_default()
                .push((unit.object.clone(), change.via));
        }
    }
    report.elapsed = start.elapsed();
    info!(
        "layout check: {} named types compared in {} objects ({} analysis compiles) in {:.3} s",
        report.compared,
        units.len(),
        report.analysis_compiles,
        report.elapsed.as_secs_f64()
    );
    if changes.is_empty() {
        return Ok(report);
    }
    Err(CreateError::LayoutChange {
        changes: changes
            .into_iter()
            .map(|(text, mut seen)| {
                seen.sort();
                let (object, via) = &seen[0];
                let via = via.as_ref().map_or(String::new(), |v| format!(": {v}"));
                let more = match seen.len() - 1 {
                    0 => String::new(),
                    1 => ", and 1 more object".into(),
                    n => format!(", and {n} more objects"),
                };
                format!("{text} ({object}{via}{more})")
            })
            .collect(),
    })
}

/// Whether objects compiled with `argv` describe every type they use:
/// `-g` without the options that leave types out (`-g1`, split DWARF,
/// `-femit-struct-debug-baseonly` of `DEBUG_INFO_REDUCED`, clang's
/// declarations-only default).
fn full_type_info(argv: &[String]) -> bool {
    let mut debug = false;
    let mut standalone = false;
    for arg in argv {
        match arg.as_str() {
            "-g" | "-g2" | "-g3" | "-ggdb" | "-ggdb2" | "-ggdb3" => debug = true,
            a if a.starts_with("-gdwarf") => debug = true,
            "-fstandalone-debug" => standalone = true,
            "-fno-standalone-debug" => standalone = false,
            a if reduces_type_info(a) => debug = false,
            _ => {}
        }
    }
    debug && (standalone || !is_clang(argv))
}

fn reduces_type_info(arg: &str) -> bool {
    matches!(
        arg,
        "-g0" | "-g1" | "-ggdb0" | "-ggdb1" | "-gmlt" | "-gsplit-dwarf" | "-fno-standalone-debug"
    ) || arg.starts_with("-gline-")
        || arg.starts_with("-femit-struct-debug-")
}

fn is_clang(argv: &[String]) -> bool {
    argv.first()
        .and_then(|cc| Path::new(cc).file_name())
        .is_some_and(|name| name.to_string_lossy().contains("clang"))
}

/// kbuild's command for an object, changed to describe every type: the
/// options that leave types out are dropped, `-g` is added. Variable
/// locations are not needed (a quarter of gcc's -g compile time), and never
/// change the code it generates.
fn analysis_argv(argv: &[String]) -> Vec<String> {
    // "-c -o OBJ SRC" stays last, where `compile` expects it.
    let (options, tail) = argv.split_at(argv.len().saturating_sub(4));
    let mut out: Vec<String> = options
        .iter()
        .filter(|a| !reduces_type_info(a))
        .cloned()
        .collect();
    out.push("-g".into());
    if is_clang(argv) {
        out.push("-fstandalone-debug".into());
    } else {
        out.push("-fno-var-tracking".into());
        out.push("-fno-var-tracking-assignments".into());
    }
    out.extend(tail.iter().cloned());
    out
}

/// Where the comparison of one object starts: the replaced functions
/// (pre and post), the new functions, the variables their code and the
/// changed or new data name, and that data itself.
fn roots(unit: &Unit) -> Roots {
    let diff = &unit.diff;
    let mut variables = BTreeSet::new();
    let mut named = |item: Option<&Item>| {
        for reloc in item.map_or(&[][..], |i| i.relocs.as_slice()) {
            if let Target::Named(name) = &reloc.target {
                variables.insert(name.clone());
            }
        }
    };
    for function in diff.changed.keys() {
        named(unit.pre.functions.get(function));
        named(unit.post.functions.get(function));
    }
    for function in &diff.new_functions {
        named(unit.post.functions.get(function));
    }
    let copied: BTreeSet<String> = diff
        .changed_rodata
        .iter()
        .chain(&diff.new_data)
        .cloned()
        .collect();
    for name in copied.iter().chain(&diff.changed_data) {
        named(unit.pre.objects.get(name));
        named(unit.post.objects.get(name));
    }
    variables.extend(diff.changed_data.iter().cloned());
    variables.retain(|v| !copied.contains(v));
    Roots {
        pre_functions: diff.changed.keys().cloned().collect(),
        post_functions: diff
            .changed
            .keys()
            .chain(&diff.new_functions)
            .cloned()
            .collect(),
        variables: variables.into_iter().collect(),
        copied: copied.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn only_full_debug_info_is_read_from_kbuilds_own_objects() {
        let full = |s: &str| full_type_info(&words(s));
        assert!(full("gcc -O2 -g -gdwarf-5 -c -o x.o x.c"));
        assert!(full("gcc -O2 -gdwarf-4 -c -o x.o x.c"));
        assert!(!full("gcc -O2 -c -o x.o x.c"));
        assert!(!full("gcc -O2 -g -g0 -c -o x.o x.c"));
        // CONFIG_DEBUG_INFO_REDUCED and CONFIG_DEBUG_INFO_SPLIT.
        assert!(!full(
            "gcc -g -fno-var-tracking -femit-struct-debug-baseonly -c -o x.o x.c"
        ));
        assert!(!full("gcc -g -gsplit-dwarf -c -o x.o x.c"));
        // clang leaves out definitions it deems another unit has.
        assert!(!full("clang -g -c -o x.o x.c"));
        assert!(full("clang -g -fstandalone-debug -c -o x.o x.c"));
    }

    #[test]
    fn the_analysis_compile_drops_what_leaves_types_out_and_keeps_the_tail() {
        assert_eq!(
            analysis_argv(&words(
                "gcc -O2 -g1 -femit-struct-debug-baseonly -gsplit-dwarf -c -o x.o x.c"
            )),
            words("gcc -O2 -g -fno-var-tracking -fno-var-tracking-assignments -c -o x.o x.c")
        );
        assert_eq!(
            analysis_argv(&words("clang -O2 -c -o x.o x.c")),
            words("clang -O2 -g -fstandalone-debug -c -o x.o x.c")
        );
    }
}
