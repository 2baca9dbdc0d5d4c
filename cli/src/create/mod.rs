//! `ksplice-create`: from a kernel tree and a patch to `update.ko`.
//!
//! 1. apply the patch in memory (`patch`), refusing what cannot be updated;
//! 2. find the affected objects: changed `.c` files plus every object whose
//!    kbuild dependencies name a changed header (`kbuild`);
//! 3. compile each twice with the kernel's own saved command plus
//!    `-ffunction-sections -fdata-sections` (`compile`): pre from the
//!    untouched source, post with an overlay of the patched files searched
//!    first (no copy of the tree is made); for header changes, only the
//!    objects whose preprocessed source differs;
//! 4. compare pre and post function by function (`objdiff`);
//! 5. write `post.o` and the payload (with `ksplice_core::writer`) and link
//!    `update.ko` with kbuild (`emit`);
//! 6. add the metadata and sign it (`seal`), always last.
//!
//! The user's kernel tree is only read: every output goes to a scratch
//! directory.

pub mod compile;
pub mod emit;
pub mod hooks;
pub mod kbuild;
pub mod layout;
pub mod objdiff;
pub mod patch;
pub mod report;
pub mod seal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info};

use self::compile::{Job, Step};
use self::kbuild::{CompileCommand, KernelTree};
use self::patch::FileKind;

/// Why an update cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: bad object file: {why}")]
    Elf { path: PathBuf, why: String },

    #[error("{dir} is not a built kernel tree: no {missing}")]
    NotAKernelTree { dir: PathBuf, missing: &'static str },

    #[error("{path}: {why}")]
    BadCmdFile { path: PathBuf, why: &'static str },

    #[error("bad patch: {0}")]
    BadPatch(String),

    #[error("{path}: {why}")]
    UnsupportedChange { path: String, why: String },

    #[error("{object}: the initial value of {symbol} changed; data changes need a hook")]
    DataChange { object: String, symbol: String },

    #[error("the patch changes the layout of data the running kernel holds:\n  {}", changes.join("\n  "))]
    LayoutChange { changes: Vec<String> },

    #[error("compiling the {variant} version of {object} failed:\n{log}")]
    CompileFailed {
        object: String,
        variant: &'static str,
        log: String,
    },

    #[error(
        "nothing to apply: the running kernel's code is already equivalent \
         (the patch changes no code it has built in)"
    )]
    NoChanges,

    #[error("cannot write the payload: {0}")]
    Payload(ksplice_core::writer::WriteError),

    #[error("kbuild could not link the update module in {dir}:\n{log}")]
    KbuildFailed { dir: PathBuf, log: String },
}

impl CreateError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A malformed object file.
    pub fn elf(path: &Path, why: impl std::fmt::Display) -> Self {
        Self::Elf {
            path: path.to_owned(),
            why: why.to_string(),
        }
    }

    /// A stable name for the kind of error, for machine-readable reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Elf { .. } => "bad_object",
            Self::NotAKernelTree { .. } => "not_a_kernel_tree",
            Self::BadCmdFile { .. } => "bad_cmd_file",
            Self::BadPatch(_) => "bad_patch",
            Self::UnsupportedChange { .. } => "unsupported_change",
            Self::DataChange { .. } => "data_change",
            Self::LayoutChange { .. } => "layout_change",
            Self::CompileFailed { .. } => "compile_failed",
            Self::NoChanges => "no_changes",
            Self::Payload(_) => "payload",
            Self::KbuildFailed { .. } => "kbuild_failed",
        }
    }

    /// Whether the patch itself is what cannot be turned into an update.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedChange { .. } | Self::DataChange { .. } | Self::LayoutChange { .. }
        )
    }
}

/// What `ksplice-create` was asked to do.
pub struct Request<'a> {
    /// The kernel build directory.
    pub kernel: &'a Path,
    /// The unified diff.
    pub patch_text: &'a str,
    /// The update id.
    pub id: &'a str,
    /// Where scratch files go.
    pub work_dir: &'a Path,
    /// Print progress lines.
    pub progress: bool,
    /// Patches of updates already applied to the running kernel (for
    /// stacking): the pre source has them, the post source too.
    pub applied: &'a [String],
}

/// A rebuilt object and why it was rebuilt.
pub struct Affected {
    /// The compile command.
    pub command: CompileCommand,
    /// The changed files it depends on.
    pub because: Vec<String>,
}

/// The outcome of the differencing, before any module is built.
pub struct Analysis {
    /// The kernel tree.
    pub tree: KernelTree,
    /// The compared objects.
    pub units: Vec<emit::Unit>,
    /// Notes for the user (skipped objects, init code, ...).
    pub notes: Vec<String>,
    /// Functions named in the patch, per file (for "why" reports).
    pub touched: BTreeMap<String, Vec<String>>,
    /// Every object the patch affects, with the changed files it depends on.
    pub rebuilt: BTreeMap<String, Vec<String>>,
    /// What the type-layout check compared and accepted.
    pub layout: layout::Report,
    /// The affected objects that were compiled: those whose preprocessed
    /// source the patch changes.
    pub compiled: BTreeSet<String>,
    /// Where the time went.
    pub timings: Timings,
}

/// Time spent in each step of [`analyse`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Preprocessing (header changes only).
    pub preprocess: Duration,
    /// Compiling pre and post.
    pub compile: Duration,
    /// Comparing the objects.
    pub compare: Duration,
}

/// The default update id: the first 8 hex digits of the patch's SHA-256.
pub fn default_id(patch_text: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(patch_text.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Steps 1-4: patch, find, compile and compare.
pub fn analyse(req: &Request<'_>) -> Result<Analysis, CreateError> {
    let tree = KernelTree::open(req.kernel)?;
    // Patches of updates already applied: part of both pre and post.
    let mut base: BTreeMap<String, String> = BTreeMap::new();
    for applied in req.applied {
        for f in patch::apply_on(applied, &tree.srctree, &base)? {
            base.insert(f.path.clone(), f.plain_post_text);
        }
    }
    let files = patch::apply_on(req.patch_text, &tree.srctree, &base)?;
    let mut notes = Vec::new();

    let mut affected: BTreeMap<String, Affected> = BTreeMap::new();
    let headers: Vec<String> = files
        .iter()
        .filter(|f| f.kind == FileKind::Header)
        .map(|f| f.path.clone())
        .collect();
    // Objects of vmlinux and of loadable modules; the rest (the boot
    // decompressor, the vDSO, ...) is not code ksplice can reach.
    let in_vmlinux = tree.vmlinux_objects()?;
    let command_of = |object: &str| -> Result<Option<CompileCommand>, CreateError> {
        if in_vmlinux.contains(object) {
            return tree.compile_command(object);
        }
        Ok(tree
            .compile_command(object)
            .ok()
            .flatten()
            .filter(|c| c.module.is_some()))
    };
    let mut add =
        |object: String, command: CompileCommand, because: &mut dyn Iterator<Item = String>| {
            affected
                .entry(object)
                .or_insert(Affected {
                    command,
                    because: Vec::new(),
                })
                .because
                .extend(because);
        };
    for file in files.iter().filter(|f| f.kind == FileKind::CSource) {
        let object = format!("{}.o", file.path.trim_end_matches(".c"));
        match command_of(&object)? {
            Some(command) => add(object, command, &mut std::iter::once(file.path.clone())),
            None => notes.push(format!(
                "{}: not built into this kernel's vmlinux or modules; skipped",
                file.path
            )),
        }
    }
    if !headers.is_empty() {
        let mut elsewhere = 0;
        for (object, hs) in tree.objects_depending_on(&headers)? {
            match command_of(&object)? {
                Some(command) => add(object, command, &mut hs.into_iter()),
                None => elsewhere += 1,
            }
        }
        if elsewhere > 0 {
            notes.push(format!(
                "{elsewhere} objects outside vmlinux and modules (boot code, vDSO, ...) \
                 include a changed header; skipped"
            ));
        }
    }
    if affected.is_empty() {
        return Err(CreateError::NoChanges);
    }
    for (object, a) in &affected {
        info!("{object}: rebuilt because of {}", a.because.join(", "));
    }

    // Each build sees its files through an overlay searched before the
    // source tree (see `compile`): pre holds the sources as earlier updates
    // left them, post also the patched files.
    let pre_overlay = req.work_dir.join("pre-overlay");
    let overlay = req.work_dir.join("overlay");
    let sources: Vec<&Path> = affected
        .values()
        .map(|a| {
            a.command
                .source
                .strip_prefix(&tree.srctree)
                .unwrap_or(&a.command.source)
        })
        .collect();
    let pre_files: Vec<(&str, &str)> = base.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let mut post_files = pre_files.clone();
    post_files.retain(|(p, _)| !files.iter().any(|f| f.path == *p));
    post_files.extend(
        files
            .iter()
            .map(|f| (f.path.as_str(), f.post_text.as_str())),
    );
    // A patch that declares hooks or uses shadow data includes the header
    // ksplice ships; only its post build can see it.
    if files
        .iter()
        .any(|f| f.post_text.contains(hooks::HEADER_INCLUDE))
    {
        post_files.push((hooks::HEADER_PATH, hooks::HEADER));
    }
    if !base.is_empty() {
        compile::make_overlay(&pre_overlay, &tree.srctree, &pre_files, &sources)?;
    }
    compile::make_overlay(&overlay, &tree.srctree, &post_files, &sources)?;
    let pre_overlay = (!base.is_empty()).then_some(pre_overlay);
    let job = |object: &str, variant: &'static str, step: Step| Job {
        command: &affected[object].command,
        variant,
        overlay: if variant == "pre" {
            pre_overlay.as_deref()
        } else {
            Some(&overlay)
        },
        step,
    };
    let both = |object: &str, step: Step| [job(object, "pre", step), job(object, "post", step)];
    let mut timings = Timings::default();

    // A header change reaches many objects and leaves most of their code
    // alone: preprocess them first (far cheaper than compiling) and compile
    // only those whose preprocessed source differs.
    let mut compiled: Vec<String> = affected.keys().cloned().collect();
    if !headers.is_empty() {
        let started = Instant::now();
        let jobs: Vec<Job> = compiled
            .iter()
            .flat_map(|o| both(o, Step::Preprocess))
            .collect();
        let digests = compile::run_all(
            &tree.objtree,
            &tree.srctree,
            req.work_dir,
            &jobs,
            req.progress,
        )?;
        let mut pairs = digests.chunks(2);
        compiled.retain(|object| {
            let same = matches!(
                pairs.next(),
                Some([compile::Output::Preprocessed(a), compile::Output::Preprocessed(b)]) if a == b
            );
            if same {
                debug!("{object}: same preprocessed source before and after; not compiled");
            }
            !same
        });
        timings.preprocess = started.elapsed();
    }
    // The objects of the changed .c files first: a refusal they lead to
    // comes before the (possibly thousands of) includers of a header are
    // compiled.
    let (direct, includers): (Vec<&String>, Vec<&String>) = compiled.iter().partition(|o| {
        let source = o.trim_end_matches(".o").to_owned() + ".c";
        affected[o.as_str()].because.contains(&source)
    });
    let mut units = Vec::new();
    let mut layout = layout::Report::default();
    for batch in [direct, includers] {
        if batch.is_empty() {
            continue;
        }
        let batch_start = units.len();
        let started = Instant::now();
        let jobs: Vec<Job> = batch.iter().flat_map(|o| both(o, Step::Compile)).collect();
        compile::run_all(
            &tree.objtree,
            &tree.srctree,
            req.work_dir,
            &jobs,
            req.progress,
        )?;
        timings.compile += started.elapsed();
        let started = Instant::now();
        for object in batch {
            let pre_path = req.work_dir.join("pre").join(object);
            let post_path = req.work_dir.join("post").join(object);
            let pre = objdiff::Object::read(&pre_path)?;
            let post = objdiff::Object::read(&post_path)?;
            let diff = objdiff::diff(object, &pre, &post)?;
            notes.extend(diff.notes.iter().cloned());
            if diff.changed.is_empty()
                && diff.new_functions.is_empty()
                && diff.changed_rodata.is_empty()
                && diff.new_data.is_empty()
                && diff.changed_data.is_empty()
            {
                debug!("{object}: no code changes");
                continue;
            }
            units.push(emit::Unit {
                object: object.clone(),
                module: affected[object.as_str()].command.module.clone(),
                pre,
                pre_path,
                post,
                post_path,
                diff,
            });
        }
        timings.compare += started.elapsed();
        // Per batch, so a header's layout change is refused once the
        // changed .c files show it, before its includers compile. Before
        // changed initial values: those are often a layout change's
        // symptom (an `offsetof` in a table), and the type says more.
        let found = layout::check(
            &tree,
            req,
            &units[batch_start..],
            pre_overlay.as_deref(),
            &overlay,
        )?;
        layout.absorb(found);
    }
    // A changed initial value is live data the new code cannot reach by
    // copying; the patch's apply hook must write it and its undo hook
    // restore it.
    if let Some(refusal) = units.iter_mut().find_map(|u| u.diff.rodata_refusal.take()) {
        return Err(refusal);
    }
    let declared = hooks::declared(&units)?;
    for unit in &units {
        if let Some(symbol) = unit.diff.changed_data.first() {
            if declared.contains("apply") && declared.contains("undo") {
                notes.push(format!(
                    "{}: the initial value of {symbol} changed; the patch's apply and undo hooks must set and restore it",
                    unit.object
                ));
                continue;
            }
            return Err(CreateError::DataChange {
                object: unit.object.clone(),
                symbol: symbol.clone(),
            });
        }
    }
    let touched = files
        .into_iter()
        .map(|f| (f.path, f.touched_names))
        .collect();
    let rebuilt = affected
        .into_iter()
        .map(|(object, a)| (object, a.because))
        .collect();
    Ok(Analysis {
        tree,
        units,
        notes,
        touched,
        rebuilt,
        layout,
        compiled: compiled.into_iter().collect(),
        timings,
    })
}

/// Names of the functions a unit replaces whose source the patch did not
/// touch: the change came through an inlined callee, a macro or a header.
pub fn via_inlining(analysis: &Analysis, unit: &emit::Unit) -> BTreeSet<String> {
    let source = unit.object.trim_end_matches(".o").to_owned() + ".c";
    let named: BTreeSet<&str> = analysis
        .touched
        .get(&source)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    // `__x64_sys_getppid` comes from `SYSCALL_DEFINE0(getppid)`: a touched
    // word counts when it is the name or its last `_`-separated part.
    let touched = |function: &str| {
        let base = function.split('.').next().unwrap_or(function);
        named
            .iter()
            .any(|w| base == *w || base.ends_with(&format!("_{w}")))
    };
    unit.diff
        .changed
        .keys()
        .filter(|f| !touched(f))
        .cloned()
        .collect()
}
