//! `ksplice-create`: from a kernel tree and a patch to `update.ko`.
//!
//! 1. apply the patch in memory (`patch`), refusing what cannot be updated;
//! 2. find the affected objects: changed `.c` files plus every object whose
//!    kbuild dependencies name a changed header (`kbuild`), unless the
//!    header's tokens are unchanged (`patch`); objects outside the running
//!    kernel are listed and skipped, code an update cannot replace
//!    (assembly, boot copies, generated C, Rust through its `bindings`)
//!    must come out unchanged;
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

pub mod bindings;
pub mod compile;
pub mod emit;
pub mod hooks;
pub mod kbuild;
pub mod layout;
pub mod objdiff;
pub mod patch;
pub mod report;
pub mod seal;
pub mod tu;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::debug;

use self::compile::{Job, Step};
use self::kbuild::{CompileCommand, KernelTree, Place, SourceKind};
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
    /// Compile objects whose preprocessed source differs only in
    /// declarations their code never reaches (see [`tu::compare`]).
    pub compile_every_includer: bool,
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
    /// Whether the update may replace its code.
    pub role: Role,
}

/// What the update may do with an affected object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Replace the functions the patch changes.
    Patch,
    /// Nothing: the reason says why its code cannot be replaced, and the
    /// update is refused if the patch changes its preprocessed source.
    Fixed(String),
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

    // A header whose tokens are unchanged (a comment, spacing) reaches no
    // object's code.
    let mut headers: Vec<String> = Vec::new();
    for file in files.iter().filter(|f| f.kind == FileKind::Header) {
        if patch::same_tokens(&file.pre_text, &file.post_text) {
            notes.push(format!(
                "{}: only comments or spacing change; no object can change",
                file.path
            ));
        } else {
            headers.push(file.path.clone());
        }
    }
    // When the headers change only macros, only objects that use one can
    // change.
    let macros = files
        .iter()
        .filter(|f| headers.contains(&f.path))
        .map(|f| patch::changed_macros(&f.pre_text, &f.post_text))
        .try_fold(BTreeSet::new(), |mut all, names| {
            all.extend(names?);
            Some(all)
        });
    if let Some(names) = &macros {
        debug!("the headers change only macros: {names:?}");
    }
    let placement = Placement::of(&tree)?;
    let mut affected: BTreeMap<String, Affected> = BTreeMap::new();
    let mut outside = Vec::new();
    for file in files.iter().filter(|f| f.kind == FileKind::CSource) {
        let object = format!("{}.o", file.path.trim_end_matches(".c"));
        match placement.reach(&tree, &object)? {
            Some((command, role)) => {
                add_affected(&mut affected, object, command, role, [file.path.clone()])
            }
            None => notes.push(format!(
                "{}: not built into this kernel's vmlinux or modules; skipped",
                file.path
            )),
        }
    }
    let mut generated_bindings = Vec::new();
    if !headers.is_empty() {
        for (target, hs) in tree.dependents(&headers)? {
            if target.ends_with(".rs") {
                let argv = tree.bindgen_command(&target)?;
                generated_bindings.push((target, argv));
                continue;
            }
            match placement.reach(&tree, &target)? {
                Some((command, role)) => add_affected(&mut affected, target, command, role, hs),
                None => outside.push(target),
            }
        }
    }
    if !outside.is_empty() {
        notes.push(format!(
            "{} objects that include a changed header are not part of vmlinux or a module \
             (boot setup, the decompressor, the vDSO, realmode, tools); skipped: {}",
            outside.len(),
            outside.join(" ")
        ));
    }
    if affected.is_empty() && generated_bindings.is_empty() {
        return Err(CreateError::NoChanges);
    }
    for (object, a) in &affected {
        debug!("{object}: affected by {}", a.because.join(", "));
    }

    // Each build sees its files through an overlay searched before the
    // source tree (see `compile`): pre holds the sources as earlier updates
    // left them, post also the patched files.
    let pre_overlay = req.work_dir.join("pre-overlay");
    let overlay = req.work_dir.join("overlay");
    // bindgen's first argument is the header it reads.
    let binding_headers: Vec<PathBuf> = generated_bindings
        .iter()
        .filter_map(|(_, argv)| argv.get(1).map(PathBuf::from))
        .collect();
    let sources: Vec<&Path> = affected
        .values()
        .map(|a| a.command.source.as_path())
        .chain(binding_headers.iter().map(PathBuf::as_path))
        .map(|source| source.strip_prefix(&tree.srctree).unwrap_or(source))
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
    let mut build = Build {
        tree: &tree,
        req,
        affected: &affected,
        pre_overlay: pre_overlay.as_deref(),
        overlay: &overlay,
        units: Vec::new(),
        notes: Vec::new(),
        layout: layout::Report::default(),
        compiled: Vec::new(),
        timings: Timings::default(),
        macros,
        checked: 0,
        unreferenced: (0, BTreeSet::new()),
        differ: 0,
        started: Instant::now(),
    };
    // The objects of the changed .c files first: a refusal they lead to
    // comes before the (possibly thousands of) includers of a header are
    // preprocessed.
    let (direct, checked): (Vec<String>, Vec<String>) = affected.keys().cloned().partition(|o| {
        let a = &affected[o.as_str()];
        let source = o.trim_end_matches(".o").to_owned() + ".c";
        a.role == Role::Patch && a.because.contains(&source)
    });
    build.compile_and_compare(&direct)?;
    // The rest (includers of a header, code that must not change, the
    // latter first) are preprocessed, a few at first, and only those whose
    // preprocessed source differs are compiled: a header change reaches
    // many objects and leaves most of their code alone, and a layout
    // change is refused as soon as some of them show it.
    let (fixed, includers): (Vec<String>, Vec<String>) = checked
        .into_iter()
        .partition(|o| affected[o.as_str()].role != Role::Patch);
    // A few includers first (a changed type is best named by the layout
    // check), then what must not change, then the other includers.
    let split = includers.len().min(FIRST_BATCH);
    let checked = [&includers[..split], &fixed, &includers[split..]].concat();
    let (first, rest) = checked.split_at(split);
    build.preprocess_and_compile(first, checked.len())?;
    // After the first objects, whose layout check names a changed type
    // better than the bindings would.
    for (target, argv) in &generated_bindings {
        bindings::check(
            &tree,
            target,
            argv,
            req.work_dir,
            pre_overlay.as_deref(),
            &overlay,
        )?;
    }
    build.preprocess_and_compile(rest, checked.len())?;
    let Build {
        mut units,
        notes: build_notes,
        layout,
        compiled,
        timings,
        unreferenced,
        ..
    } = build;
    notes.extend(build_notes);
    if unreferenced.0 > 0 {
        notes.push(format!(
            "{} objects include changed declarations they never mention ({}); not compiled",
            unreferenced.0,
            unreferenced.1.into_iter().collect::<Vec<_>>().join(", ")
        ));
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

fn add_affected(
    affected: &mut BTreeMap<String, Affected>,
    object: String,
    command: CompileCommand,
    role: Role,
    because: impl IntoIterator<Item = String>,
) {
    affected
        .entry(object)
        .or_insert(Affected {
            command,
            because: Vec::new(),
            role,
        })
        .because
        .extend(because);
}

/// Which objects are in the running kernel, and where.
struct Placement {
    vmlinux: BTreeSet<String>,
    modules: BTreeMap<String, String>,
    prepared: bool,
}

impl Placement {
    fn of(tree: &KernelTree) -> Result<Self, CreateError> {
        Ok(Self {
            vmlinux: tree.vmlinux_objects()?,
            modules: tree.module_objects()?,
            prepared: tree.is_prepared_only(),
        })
    }

    /// How the update treats `object`, which the patch reaches: `None` when
    /// it is not in the running kernel; a refusal naming it when it is but
    /// cannot be rebuilt.
    fn reach(
        &self,
        tree: &KernelTree,
        object: &str,
    ) -> Result<Option<(CompileCommand, Role)>, CreateError> {
        let place = if self.prepared && !self.vmlinux.contains(object) {
            // A distribution tree has no module member lists: an object is
            // a module's when building it defines MODULE.
            match tree.compile_command(object).ok().flatten() {
                Some(c) if c.module.is_some() => {
                    return Ok(Some((c, Role::Patch)));
                }
                _ => Place::Outside,
            }
        } else {
            KernelTree::place_of(object, &self.vmlinux, &self.modules)
        };
        let linked = match &place {
            Place::Outside => return Ok(None),
            Place::Vmlinux => "vmlinux".to_owned(),
            Place::Module(m) => format!("module {m}"),
            Place::BootCopy(copy) => format!("vmlinux as {copy}"),
        };
        let refuse = |why: String| {
            Err(CreateError::UnsupportedChange {
                path: object.to_owned(),
                why: format!("linked into {linked}, but {why}"),
            })
        };
        let role = match (&place, tree.source_kind(object)) {
            (Place::BootCopy(copy), _) => Role::Fixed(format!(
                "its code is in vmlinux only as the objcopy'd {copy} (early boot code), \
                 which an update cannot rebuild"
            )),
            (_, SourceKind::Assembly) => {
                Role::Fixed("it is assembly, which an update cannot replace".into())
            }
            (_, SourceKind::GeneratedC) => Role::Fixed(
                "its C source is generated by the build, which ksplice-create does not redo".into(),
            ),
            (_, SourceKind::Other) => {
                return refuse(
                    "it is not compiled from C or assembly, so an update cannot rebuild it".into(),
                )
            }
            (_, SourceKind::C) => Role::Patch,
        };
        match tree.compile_command(object) {
            Ok(Some(command)) => Ok(Some((command, role))),
            Ok(None) => refuse("kbuild recorded no command for it".into()),
            Err(CreateError::BadCmdFile { why, .. }) => {
                refuse(format!("its compile command cannot be reproduced: {why}"))
            }
            Err(e) => Err(e),
        }
    }
}

/// Compiles and compares affected objects, collecting the units.
struct Build<'a> {
    tree: &'a KernelTree,
    req: &'a Request<'a>,
    affected: &'a BTreeMap<String, Affected>,
    pre_overlay: Option<&'a Path>,
    overlay: &'a Path,
    units: Vec<emit::Unit>,
    notes: Vec<String>,
    layout: layout::Report,
    compiled: Vec<String>,
    timings: Timings,
    /// The macros the changed headers define or undefine, when that is all
    /// they change (see [`patch::changed_macros`]).
    macros: Option<BTreeSet<String>>,
    /// Objects preprocessed so far, and how many of them differ.
    checked: usize,
    /// Objects whose preprocessed source differs only in declarations they
    /// never mention, and the names of those declarations.
    unreferenced: (usize, BTreeSet<String>),
    differ: usize,
    started: Instant,
}

/// How many objects a header change preprocesses (and compiles, where they
/// differ) before the rest: a changed type most of them use is refused
/// after these.
const FIRST_BATCH: usize = 8;

impl Build<'_> {
    fn job<'j>(&'j self, object: &str, variant: &'static str, step: Step<'j>) -> Job<'j> {
        Job {
            command: &self.affected[object].command,
            variant,
            overlay: if variant == "pre" {
                self.pre_overlay
            } else {
                Some(self.overlay)
            },
            step,
        }
    }

    fn both<'j>(&'j self, object: &str, step: Step<'j>) -> [Job<'j>; 2] {
        [
            self.job(object, "pre", step),
            self.job(object, "post", step),
        ]
    }

    /// Preprocesses `objects` in growing batches; compiles and compares
    /// those whose preprocessed source differs, and refuses the update if
    /// one of them is code it cannot replace.
    /// `total` counts these and those of other calls, for progress.
    fn preprocess_and_compile(
        &mut self,
        objects: &[String],
        total: usize,
    ) -> Result<(), CreateError> {
        let mut done = 0;
        let mut batch = FIRST_BATCH * 4;
        while done < objects.len() {
            let chunk = &objects[done..objects.len().min(done + batch)];
            batch = (batch * 4).min(256);
            let pp_started = Instant::now();
            let differing = self.differing(chunk)?;
            self.timings.preprocess += pp_started.elapsed();
            let mut changed = Vec::new();
            for object in differing {
                // Assembly is all code: a different source is different
                // code. C that must not change is compiled and compared.
                if let Role::Fixed(why) = &self.affected[object.as_str()].role {
                    if self.tree.source_kind(object) == SourceKind::Assembly {
                        return Err(CreateError::UnsupportedChange {
                            path: object.clone(),
                            why: format!("the patch changes its preprocessed source, and {why}"),
                        });
                    }
                }
                changed.push(object.clone());
            }
            done += chunk.len();
            self.checked += chunk.len();
            self.differ += changed.len();
            self.compile_and_compare(&changed)?;
            if self.req.progress {
                let elapsed = self.started.elapsed().as_secs_f64();
                let left =
                    elapsed / self.checked as f64 * total.saturating_sub(self.checked) as f64;
                eprintln!(
                    "[headers] {}/{total} objects preprocessed, {} differ, {} compiled; \
                     about {left:.0} s left",
                    self.checked,
                    self.differ,
                    self.compiled.len(),
                );
            }
        }
        Ok(())
    }

    /// The objects of `chunk` whose code the patch may change: those whose
    /// preprocessed source differs other than in declarations they never
    /// mention (see [`tu::compare`]). When the headers change only macros,
    /// each object is first preprocessed once to learn whether it uses one
    /// of them (see [`Step::PreprocessUses`]); only those that do are
    /// preprocessed pre and post (the others cannot differ).
    fn differing<'c>(&mut self, chunk: &'c [String]) -> Result<Vec<&'c String>, CreateError> {
        let (objtree, srctree, work_dir) =
            (&self.tree.objtree, &self.tree.srctree, self.req.work_dir);
        let candidates: Vec<&String> = match &self.macros {
            None => chunk.iter().collect(),
            Some(names) => {
                let jobs: Vec<Job> = chunk
                    .iter()
                    .map(|o| self.job(o, "pre", Step::PreprocessUses(names)))
                    .collect();
                let uses = compile::run_all(objtree, srctree, work_dir, &jobs, false)?;
                chunk
                    .iter()
                    .zip(&uses)
                    .filter(|(_, out)| !matches!(out, compile::Output::Uses(false)))
                    .map(|(o, _)| o)
                    .collect()
            }
        };
        // Pre and post of one object at a time, so only two preprocessed
        // sources per CPU are held.
        let differences = compile::parallel(&candidates, |object| {
            let [pre, post] = self
                .both(object, Step::Preprocess)
                .map(|job| compile::run(objtree, srctree, work_dir, &job));
            // Only C is read declaration by declaration; preprocessed
            // assembly differs or not.
            let prunable = !self.req.compile_every_includer
                && matches!(
                    self.tree.source_kind(object),
                    SourceKind::C | SourceKind::GeneratedC
                )
                && tu::drops_unreferenced(&self.affected[object.as_str()].command.argv);
            Ok(tu::compare(&pre?.into_text(), &post?.into_text(), prunable))
        })?;
        let mut differing = Vec::new();
        for (object, difference) in candidates.into_iter().zip(differences) {
            match difference {
                tu::Difference::None => {}
                tu::Difference::Unreferenced(names) => {
                    debug!("{object}: changes only declarations it never mentions: {names:?}");
                    self.unreferenced.0 += 1;
                    self.unreferenced.1.extend(names);
                }
                tu::Difference::Code => differing.push(object),
            }
        }
        Ok(differing)
    }

    /// Compiles `objects` pre and post, compares them function by function
    /// and checks the layouts of the types the changed ones use.
    fn compile_and_compare(&mut self, objects: &[String]) -> Result<(), CreateError> {
        if objects.is_empty() {
            return Ok(());
        }
        let batch_start = self.units.len();
        let started = Instant::now();
        let jobs: Vec<Job> = objects
            .iter()
            .flat_map(|o| self.both(o, Step::Compile))
            .collect();
        compile::run_all(
            &self.tree.objtree,
            &self.tree.srctree,
            self.req.work_dir,
            &jobs,
            self.req.progress,
        )?;
        drop(jobs);
        self.compiled.extend(objects.iter().cloned());
        self.timings.compile += started.elapsed();
        let started = Instant::now();
        for object in objects {
            let pre_path = self.req.work_dir.join("pre").join(object);
            let post_path = self.req.work_dir.join("post").join(object);
            let pre = objdiff::Object::read(&pre_path)?;
            let post = objdiff::Object::read(&post_path)?;
            let diff = objdiff::diff(object, &pre, &post)?;
            self.notes.extend(diff.notes.iter().cloned());
            refuse_runtime_constants(object, &diff, &pre, &pre_path, &post, &post_path)?;
            if diff.changed.is_empty()
                && diff.new_functions.is_empty()
                && diff.changed_rodata.is_empty()
                && diff.new_data.is_empty()
                && diff.changed_data.is_empty()
            {
                debug!("{object}: no code changes");
                continue;
            }
            if let Role::Fixed(why) = &self.affected[object.as_str()].role {
                let what = (diff.changed.keys().next())
                    .or(diff.new_functions.first())
                    .or(diff.changed_rodata.first())
                    .or(diff.new_data.first())
                    .or(diff.changed_data.iter().next())
                    .cloned()
                    .unwrap_or_default();
                return Err(CreateError::UnsupportedChange {
                    path: object.clone(),
                    why: format!("the patch changes {what}, and {why}"),
                });
            }
            self.units.push(emit::Unit {
                object: object.clone(),
                module: self.affected[object.as_str()].command.module.clone(),
                pre,
                pre_path,
                post,
                post_path,
                diff,
            });
        }
        self.timings.compare += started.elapsed();
        // Per batch, so a header's layout change is refused once the first
        // objects show it. Before changed initial values: those are often
        // a layout change's symptom (an `offsetof` in a table), and the
        // type says more.
        let found = layout::check(
            self.tree,
            self.req,
            &self.units[batch_start..],
            self.pre_overlay,
            self.overlay,
        )?;
        self.layout.absorb(found);
        Ok(())
    }
}

/// Refuses an update whose replaced or carried code uses a runtime
/// constant (see [`objdiff::runtime_constants`]): run-pre matching would
/// meet the boot-time value where the object has the placeholder, and the
/// new code in update.ko would keep the placeholder.
fn refuse_runtime_constants(
    object: &str,
    diff: &objdiff::Diff,
    pre: &objdiff::Object,
    pre_path: &Path,
    post: &objdiff::Object,
    post_path: &Path,
) -> Result<(), CreateError> {
    let carried = |f: &String| diff.changed.contains_key(f) || diff.new_functions.contains(f);
    let uses = objdiff::runtime_constants(pre, pre_path)?
        .into_iter()
        .filter(|(_, f)| diff.changed.contains_key(f))
        .chain(
            objdiff::runtime_constants(post, post_path)?
                .into_iter()
                .filter(|(_, f)| carried(f)),
        );
    match uses.into_iter().next() {
        None => Ok(()),
        Some((constant, function)) => Err(CreateError::UnsupportedChange {
            path: object.to_owned(),
            why: format!(
                "{function} uses the runtime constant {constant}, whose value the kernel \
                 writes into its own code at boot over a placeholder; an update can \
                 neither match that code nor carry it"
            ),
        }),
    }
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
