//! `ksplice-create`: from a kernel tree and a patch to `update.ko`.
//!
//! 1. apply the patch in memory (`patch`), refusing what cannot be updated;
//! 2. find the affected objects: changed `.c` files plus every object whose
//!    kbuild dependencies name a changed header (`kbuild`);
//! 3. compile each twice with the kernel's own saved command plus
//!    `-ffunction-sections -fdata-sections`: pre from the untouched source,
//!    post with an overlay of the patched files searched first (no copy of
//!    the tree is made);
//! 4. compare pre and post function by function (`objdiff`);
//! 5. write `post.o` and the payload and link `update.ko` with kbuild (`emit`);
//! 6. add the metadata and sign it (`seal`), always last.
//!
//! The user's kernel tree is only read: every output goes to a scratch
//! directory.

pub mod emit;
pub mod kbuild;
pub mod objdiff;
pub mod patch;
pub mod payload;
pub mod seal;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use log::{debug, info};

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

    #[error("compiling the {variant} version of {object} failed:\n{log}")]
    CompileFailed {
        object: String,
        variant: &'static str,
        log: String,
    },

    #[error("the patch changes no code that the running kernel has built in")]
    NoChanges,

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

    /// Whether the patch itself is what cannot be turned into an update.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedChange { .. } | Self::DataChange { .. } | Self::NoChanges
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
    /// Every object rebuilt, with the changed files it depends on.
    pub rebuilt: BTreeMap<String, Vec<String>>,
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
    for file in files.iter().filter(|f| f.kind == FileKind::CSource) {
        let object = format!("{}.o", file.path.trim_end_matches(".c"));
        match tree.compile_command(&object)? {
            Some(command) => {
                affected
                    .entry(object)
                    .or_insert(Affected {
                        command,
                        because: Vec::new(),
                    })
                    .because
                    .push(file.path.clone());
            }
            None => notes.push(format!(
                "{}: not built into this kernel ({object} does not exist); skipped",
                file.path
            )),
        }
    }
    if !headers.is_empty() {
        for (object, hs) in tree.objects_depending_on(&headers)? {
            if let Some(command) = tree.compile_command(&object)? {
                affected
                    .entry(object)
                    .or_insert(Affected {
                        command,
                        because: Vec::new(),
                    })
                    .because
                    .extend(hs);
            }
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
    for (path, text) in &base {
        write_file(&pre_overlay.join(path), text.as_bytes())?;
        write_file(&overlay.join(path), text.as_bytes())?;
    }
    for file in &files {
        write_file(&overlay.join(&file.path), file.post_text.as_bytes())?;
    }
    for a in affected.values() {
        let rel = a
            .command
            .source
            .strip_prefix(&tree.srctree)
            .unwrap_or(&a.command.source);
        for dir in [&pre_overlay, &overlay] {
            let in_overlay = dir.join(rel);
            if (!base.is_empty() || dir == &overlay) && !in_overlay.exists() {
                let text = fs::read(&a.command.source)
                    .map_err(|e| CreateError::io(&a.command.source, e))?;
                write_file(&in_overlay, &text)?;
            }
        }
    }
    let pre_overlay = (!base.is_empty()).then_some(pre_overlay);

    let jobs: Vec<Job> = affected
        .values()
        .flat_map(|a| {
            [
                Job {
                    command: &a.command,
                    variant: "pre",
                    overlay: pre_overlay.as_deref(),
                },
                Job {
                    command: &a.command,
                    variant: "post",
                    overlay: Some(&overlay),
                },
            ]
        })
        .collect();
    run_jobs(&tree, req, &jobs)?;

    let mut units = Vec::new();
    for object in affected.keys() {
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
        {
            debug!("{object}: no code changes");
            continue;
        }
        units.push(emit::Unit {
            object: object.clone(),
            pre,
            pre_path,
            post,
            post_path,
            diff,
        });
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
    })
}

struct Job<'a> {
    command: &'a CompileCommand,
    variant: &'static str,
    /// For post builds: the overlay holding patched files and the sources
    /// being compiled, searched before the srctree.
    overlay: Option<&'a Path>,
}

/// Runs the compile jobs on all CPUs, printing progress.
fn run_jobs(tree: &KernelTree, req: &Request<'_>, jobs: &[Job<'_>]) -> Result<(), CreateError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let first_error: Mutex<Option<CreateError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                if first_error.lock().map_or(true, |e| e.is_some()) {
                    break;
                }
                let result = compile(tree, req.work_dir, job);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if req.progress {
                    eprintln!(
                        "[{n}/{}] CC {:4} {}",
                        jobs.len(),
                        job.variant,
                        job.command.object
                    );
                }
                if let Err(e) = result {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Compiles one object with the kernel's command, redirected to scratch.
fn compile(tree: &KernelTree, work_dir: &Path, job: &Job<'_>) -> Result<(), CreateError> {
    let out = work_dir.join(job.variant).join(&job.command.object);
    let dep = work_dir
        .join(job.variant)
        .join(format!("{}.d", job.command.object));
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(|e| CreateError::io(parent, e))?;
    }
    let src = tree.srctree.to_string_lossy().into_owned();
    let argv = &job.command.argv;
    let n = argv.len();
    let mut args: Vec<String> = Vec::with_capacity(2 * n);
    for (i, arg) in argv.iter().enumerate().skip(1) {
        let mut arg = arg.clone();
        if let Some(overlay) = job.overlay {
            let overlay = overlay.to_string_lossy();
            if let Some(dir) = arg
                .strip_prefix("-I")
                .and_then(|d| d.strip_prefix(src.as_str()))
            {
                // Patched headers shadow the originals, directory by directory.
                args.push(format!("-I{overlay}{dir}"));
            } else if let Some(map) = arg
                .strip_prefix("-fmacro-prefix-map=")
                .filter(|m| m.starts_with(src.as_str()))
            {
                // __FILE__ stays relative for files read from the overlay too.
                args.push(format!("-fmacro-prefix-map={overlay}{}", &map[src.len()..]));
            } else if i == n - 1
                || arg.strip_prefix(src.as_str()).is_some_and(|rest| {
                    Path::new(&overlay.to_string())
                        .join(rest.trim_start_matches('/'))
                        .exists()
                })
            {
                // The source itself, and `-include`d files that were patched.
                arg = arg.replacen(src.as_str(), &overlay, 1);
            }
        }
        if i == n - 4 {
            args.push("-ffunction-sections".into());
            args.push("-fdata-sections".into());
        }
        if i == n - 2 {
            args.push(out.to_string_lossy().into_owned());
        } else if arg.starts_with("-Wp,-MMD,") || arg.starts_with("-Wp,-MD,") {
            args.push(format!("-Wp,-MMD,{}", dep.display()));
        } else {
            args.push(arg);
        }
    }
    debug!(
        "{} {}: {} {}",
        job.variant,
        job.command.object,
        argv[0],
        args.join(" ")
    );
    let output = Command::new(&argv[0])
        .args(&args)
        .current_dir(&tree.objtree)
        .output()
        .map_err(|e| CreateError::io(Path::new(&argv[0]), e))?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        return Err(CreateError::CompileFailed {
            object: job.command.object.clone(),
            variant: job.variant,
            log,
        });
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), CreateError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| CreateError::io(parent, e))?;
    }
    fs::write(path, contents).map_err(|e| CreateError::io(path, e))
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
