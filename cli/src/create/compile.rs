//! Running the kernel's own compile commands, redirected.
//!
//! Each affected object is built with exactly the command kbuild saved for
//! it, rewritten so that patched files are read from an overlay searched
//! before the source tree, output goes to the scratch directory, and every
//! function and datum gets its own section. The same rewrite with `-E`
//! preprocesses instead, for the cheap pre-pass that finds the objects a
//! header change leaves untouched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use log::debug;

use super::kbuild::CompileCommand;
use super::CreateError;

/// What a job makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The object file, with `-ffunction-sections -fdata-sections`.
    Compile,
    /// The preprocessed source, to stdout.
    Preprocess,
    /// Whether the source uses any of these macros: preprocessed with each
    /// defined as itself from the start (so an `#if NAME`, or a name built
    /// by an argument's expansion, expands it even where the real build
    /// does not define it yet) and `-dU` (each macro expanded or tested),
    /// warnings off (a redefinition is expected). The output says only that.
    PreprocessUses(&'a BTreeSet<String>),
}

impl Step<'_> {
    fn preprocesses(self) -> bool {
        !matches!(self, Step::Compile)
    }
}

/// One run of a compile command.
pub struct Job<'a> {
    /// The command kbuild saved.
    pub command: &'a CompileCommand,
    /// `pre` or `post`: the scratch subdirectory and the log name.
    pub variant: &'static str,
    /// The overlay of patched files searched before the source tree.
    pub overlay: Option<&'a Path>,
    /// Compile or preprocess.
    pub step: Step<'a>,
}

/// The arguments (after argv\[0\]) that run `command` for `job`. `argv`
/// ends `-c -o OBJ SRC` (checked by `kbuild`). With an overlay, each `-I`
/// into the source tree is preceded by the same directory in the overlay,
/// but only where `exists` says the overlay has it (kbuild's
/// `-Werror=missing-include-dirs` rejects a missing one); so are
/// `-fmacro-prefix-map` (so `__FILE__` stays relative for overlay files),
/// and the source and `-include`d files are read from the overlay where it
/// has them.
pub fn rewrite(
    argv: &[String],
    srctree: &Path,
    overlay: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
    step: Step<'_>,
    out: &Path,
    dep: &Path,
) -> Vec<String> {
    let n = argv.len();
    let mut args: Vec<String> = Vec::with_capacity(n + 8);
    for (i, arg) in argv.iter().enumerate().skip(1) {
        let mut arg = arg.clone();
        if let Some(overlay) = overlay {
            if i == n - 1 {
                // The source itself, read from the overlay (which links
                // every file next to it); a source the build generated in
                // the objtree is not there and is read where it is.
                let rest = arg
                    .strip_prefix(&*srctree.to_string_lossy())
                    .unwrap_or(&arg)
                    .to_owned();
                let in_overlay = overlay.join(rest.trim_start_matches('/'));
                if exists(&in_overlay) {
                    arg = in_overlay.to_string_lossy().into_owned();
                }
            } else {
                let mapped = overlay_args(&arg, srctree, overlay, &exists);
                if let [one] = mapped.as_slice() {
                    arg = one.clone();
                } else {
                    args.extend(mapped);
                    continue;
                }
            }
        }
        let dep_arg = arg.starts_with("-Wp,-MMD,") || arg.starts_with("-Wp,-MD,");
        match (step, i) {
            (Step::Compile, _) if i == n - 4 => {
                args.extend(["-ffunction-sections".into(), "-fdata-sections".into(), arg]);
            }
            (Step::PreprocessUses(names), _) if i == n - 4 => {
                args.extend(["-E".into(), "-dU".into(), "-w".into()]);
                args.extend(names.iter().map(|name| format!("-D{name}={name}")));
            }
            (Step::Preprocess, _) if i == n - 4 => args.push("-E".into()),
            (_, _) if i == n - 2 => args.push(out.to_string_lossy().into_owned()),
            (Step::Compile, _) if dep_arg => args.push(format!("-Wp,-MMD,{}", dep.display())),
            (_, _) if dep_arg => {}
            _ => args.push(arg),
        }
    }
    args
}

/// One compiler argument redirected to the overlay: an `-I` into the
/// source tree becomes the same directory in the overlay (only where
/// `exists` says the overlay has it: kbuild's `-Werror=missing-include-dirs`
/// rejects a missing one) followed by the original; `-fmacro-prefix-map`
/// (so `__FILE__` stays relative for overlay files) is added for the
/// overlay; a file of the source tree (an `-include`d header) is read from
/// the overlay where the overlay has it. Other arguments are kept.
pub fn overlay_args(
    arg: &str,
    srctree: &Path,
    overlay: &Path,
    exists: &impl Fn(&Path) -> bool,
) -> Vec<String> {
    let src = srctree.to_string_lossy();
    let overlay_text = overlay.to_string_lossy();
    let in_overlay = |rest: &str| overlay.join(rest.trim_start_matches('/'));
    if let Some(dir) = arg
        .strip_prefix("-I")
        .and_then(|d| d.strip_prefix(src.as_ref()))
    {
        // Patched headers shadow the originals, directory by directory.
        if exists(&in_overlay(dir)) {
            return vec![format!("-I{overlay_text}{dir}"), arg.to_owned()];
        }
    } else if let Some(map) = arg
        .strip_prefix("-fmacro-prefix-map=")
        .and_then(|m| m.strip_prefix(src.as_ref()))
    {
        return vec![
            format!("-fmacro-prefix-map={overlay_text}{map}"),
            arg.to_owned(),
        ];
    } else if let Some(rest) = arg.strip_prefix(src.as_ref()) {
        if exists(&in_overlay(rest)) {
            return vec![format!("{overlay_text}{rest}")];
        }
    }
    vec![arg.to_owned()]
}

/// Builds an overlay of the source tree in `dir`: `files` (path relative
/// to the source tree, contents) as real files, and every other entry of
/// their directories, of the directories of `sources` (the files being
/// compiled) and of all their ancestors as a symlink to the source tree.
/// A file read from the overlay then finds its unchanged neighbours where
/// `#include "..."` (relative to the including file) looks for them, and
/// patched ones before the originals. Nothing is written into the source
/// tree: every directory is created before any symlink exists.
pub fn make_overlay(
    dir: &Path,
    srctree: &Path,
    files: &[(&str, &str)],
    sources: &[&Path],
) -> Result<(), CreateError> {
    let mut real: BTreeSet<PathBuf> = BTreeSet::new();
    let parents = files
        .iter()
        .map(|(p, _)| Path::new(*p))
        .chain(sources.iter().copied())
        .filter_map(Path::parent);
    for parent in parents {
        real.extend(parent.ancestors().map(Path::to_path_buf));
    }
    for d in &real {
        let d = dir.join(d);
        std::fs::create_dir_all(&d).map_err(|e| CreateError::io(&d, e))?;
    }
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::write(&path, text).map_err(|e| CreateError::io(&path, e))?;
    }
    for d in &real {
        let original = srctree.join(d);
        let Ok(entries) = std::fs::read_dir(&original) else {
            continue;
        };
        for entry in entries.flatten() {
            let link = dir.join(d).join(entry.file_name());
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(entry.path(), &link)
                    .map_err(|e| CreateError::io(&link, e))?;
            }
        }
    }
    Ok(())
}

/// Where a job's output goes under `work_dir`.
pub fn output_path(work_dir: &Path, job: &Job<'_>) -> PathBuf {
    work_dir.join(job.variant).join(&job.command.object)
}

/// What a finished job produced.
pub enum Output {
    /// The object file is at [`output_path`].
    Object,
    /// The preprocessed source.
    Preprocessed(Vec<u8>),
    /// Whether the source uses one of the macros of
    /// [`Step::PreprocessUses`].
    Uses(bool),
}

impl Output {
    /// The preprocessed source (empty for other outputs).
    pub fn into_text(self) -> Vec<u8> {
        match self {
            Output::Preprocessed(text) => text,
            Output::Object | Output::Uses(_) => Vec::new(),
        }
    }
}

/// Runs one job in `objtree` (where kbuild ran the command).
pub fn run(
    objtree: &Path,
    srctree: &Path,
    work_dir: &Path,
    job: &Job<'_>,
) -> Result<Output, CreateError> {
    let out = output_path(work_dir, job);
    let dep = work_dir
        .join(job.variant)
        .join(format!("{}.d", job.command.object));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CreateError::io(parent, e))?;
    }
    let argv = &job.command.argv;
    let stdout = Path::new("-");
    let target = if job.step.preprocesses() {
        stdout
    } else {
        out.as_path()
    };
    let args = rewrite(
        argv,
        srctree,
        job.overlay,
        Path::exists,
        job.step,
        target,
        &dep,
    );
    debug!(
        "{} {} {:?}: {} {}",
        job.variant,
        job.command.object,
        job.step,
        argv[0],
        args.join(" ")
    );
    let output = super::kbuild::command_in(objtree, Path::new(&argv[0]))
        .args(&args)
        .current_dir(objtree)
        .output()
        .map_err(|e| CreateError::io(Path::new(&argv[0]), e))?;
    if !output.status.success() {
        return Err(CreateError::CompileFailed {
            object: job.command.object.clone(),
            variant: job.variant,
            log: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(match job.step {
        Step::Compile => Output::Object,
        Step::Preprocess => Output::Preprocessed(output.stdout),
        Step::PreprocessUses(names) => Output::Uses(uses_any(&output.stdout, names)),
    })
}

/// Runs `jobs` on all CPUs, printing progress if asked; returns each
/// job's output, in order, or the first error.
pub fn run_all(
    objtree: &Path,
    srctree: &Path,
    work_dir: &Path,
    jobs: &[Job<'_>],
    progress: bool,
) -> Result<Vec<Output>, CreateError> {
    let done = AtomicUsize::new(0);
    parallel(jobs, |job| {
        let result = run(objtree, srctree, work_dir, job);
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        if progress {
            let what = if job.step.preprocesses() { "CPP" } else { "CC" };
            eprintln!(
                "[{n}/{}] {what:3} {:4} {}",
                jobs.len(),
                job.variant,
                job.command.object
            );
        }
        result
    })
}

/// `f` of each item, on all CPUs; the results in order, or the first
/// error (items not yet started are then left alone).
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, CreateError> + Sync,
) -> Result<Vec<R>, CreateError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<CreateError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                if first_error.lock().map_or(true, |e| e.is_some()) {
                    break;
                }
                match f(item) {
                    Ok(output) => {
                        if let Ok(mut slots) = results.lock() {
                            if let Some(slot) = slots.get_mut(i) {
                                *slot = Some(output);
                            }
                        }
                    }
                    Err(e) => {
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Ok(Some(e)) = first_error.into_inner() {
        return Err(e);
    }
    // Every item ran unless a worker panicked, which `scope` re-raises.
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| {
            CreateError::io(
                Path::new("(worker thread)"),
                std::io::Error::other("a job did not run"),
            )
        })
}

/// `# 123 "file" flags` or `#line 123 "file"`.
pub(super) fn is_line_marker(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"#") else {
        return false;
    };
    let rest = rest.trim_ascii_start();
    let rest = rest
        .strip_prefix(b"line")
        .unwrap_or(rest)
        .trim_ascii_start();
    rest.first().is_some_and(u8::is_ascii_digit)
}

/// Whether `-dU` output uses one of `names`: lists it as expanded or
/// tested (`#define NAME ...`, `#undef NAME`), or has it as an identifier
/// (a macro not defined where it appears stays in the text; a changed
/// definition would expand it). One pass over the identifiers.
pub fn uses_any(text: &[u8], names: &BTreeSet<String>) -> bool {
    let names: std::collections::HashSet<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < text.len() {
        if !is_ident(text[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && is_ident(text[i]) {
            i += 1;
        }
        if names.contains(&text[start..i]) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    const SRC: &str = "/src";
    const CMD: &str = "gcc -Wp,-MMD,drivers/gpu/drm/.drm_gem.o.d -nostdinc \
         -I/src/arch/x86/include -I./arch/x86/include/generated -I/src/include -I./include \
         -I/src/include/uapi -include /src/include/linux/kconfig.h \
         -fmacro-prefix-map=/src/= -Wmissing-include-dirs -Werror \
         -I/src/drivers/gpu/drm -Idrivers/gpu/drm \
         -c -o drivers/gpu/drm/drm_gem.o /src/drivers/gpu/drm/drm_gem.c";

    fn rewrite_with(overlay_has: &[&str], step: Step) -> Vec<String> {
        let has: BTreeSet<PathBuf> = overlay_has
            .iter()
            .map(|p| Path::new("/ov").join(p))
            .collect();
        rewrite(
            &words(CMD),
            Path::new(SRC),
            Some(Path::new("/ov")),
            |p| has.contains(p),
            step,
            Path::new("/w/post/drivers/gpu/drm/drm_gem.o"),
            Path::new("/w/post/drivers/gpu/drm/drm_gem.o.d"),
        )
    }

    #[test]
    fn overlay_include_dirs_are_added_only_where_the_overlay_has_them() {
        // A .c-only patch: the overlay holds drivers/gpu/drm/drm_gem.c.
        let args = rewrite_with(
            &["drivers/gpu/drm", "drivers/gpu/drm/drm_gem.c"],
            Step::Compile,
        );
        let includes: Vec<&str> = args
            .iter()
            .filter(|a| a.starts_with("-I"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            includes,
            [
                "-I/src/arch/x86/include",
                "-I./arch/x86/include/generated",
                "-I/src/include",
                "-I./include",
                "-I/src/include/uapi",
                "-I/ov/drivers/gpu/drm",
                "-I/src/drivers/gpu/drm",
                "-Idrivers/gpu/drm",
            ]
        );
        // A header patch: overlay/include exists and is searched first.
        let args = rewrite_with(&["include", "drivers/gpu/drm/drm_gem.c"], Step::Compile);
        let at = |s: &str| args.iter().position(|a| a == s).unwrap();
        assert!(at("-I/ov/include") + 1 == at("-I/src/include"), "{args:?}");
        assert!(!args.contains(&"-I/ov/include/uapi".to_owned()));
    }

    #[test]
    fn the_object_goes_to_scratch_with_one_section_per_function() {
        let args = rewrite_with(&["drivers/gpu/drm/drm_gem.c"], Step::Compile);
        let tail: Vec<&str> = args[args.len() - 6..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-ffunction-sections",
                "-fdata-sections",
                "-c",
                "-o",
                "/w/post/drivers/gpu/drm/drm_gem.o",
                "/ov/drivers/gpu/drm/drm_gem.c"
            ]
        );
        assert_eq!(args[0], "-Wp,-MMD,/w/post/drivers/gpu/drm/drm_gem.o.d");
        assert!(args.contains(&"-fmacro-prefix-map=/ov/=".to_owned()));
        assert!(args.contains(&"-fmacro-prefix-map=/src/=".to_owned()));
        assert!(args.contains(&"-include".to_owned()));
        assert!(args.contains(&"/src/include/linux/kconfig.h".to_owned()));
    }

    #[test]
    fn patched_include_files_are_read_from_the_overlay() {
        let args = rewrite_with(&["include", "include/linux/kconfig.h"], Step::Compile);
        assert!(args.contains(&"/ov/include/linux/kconfig.h".to_owned()));
    }

    #[test]
    fn macro_uses_are_found_in_du_output_and_left_out_of_the_digest() {
        let names: BTreeSet<String> = ["MT_NEW".to_owned()].into();
        // Expanded or tested: -dU lists it.
        assert!(uses_any(
            b"# 1 \"x.c\"\n#define MT_NEW 2\nint a = 2;\n",
            &names
        ));
        assert!(uses_any(b"#undef MT_NEW\nint a;\n", &names));
        // Not a macro where it appears: the identifier is still there.
        assert!(uses_any(b"int a = MT_NEW + 1;\n", &names));
        // Other names, longer identifiers, other macros: no use.
        assert!(!uses_any(
            b"#define MT_NEWER 1\nint MT_NEW_X = xMT_NEW;\n",
            &names
        ));
    }

    #[test]
    fn preprocessing_for_uses_defines_the_macros_and_lists_their_uses() {
        let names: BTreeSet<String> = ["MT_NEW".to_owned()].into();
        let args = rewrite(
            &words(CMD),
            Path::new(SRC),
            None,
            |_| false,
            Step::PreprocessUses(&names),
            Path::new("-"),
            Path::new("/w/x.d"),
        );
        let tail: Vec<&str> = args[args.len() - 7..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-E",
                "-dU",
                "-w",
                "-DMT_NEW=MT_NEW",
                "-o",
                "-",
                "/src/drivers/gpu/drm/drm_gem.c"
            ]
        );
    }

    #[test]
    fn preprocessing_writes_to_stdout_without_dependency_files() {
        let args = rewrite(
            &words(CMD),
            Path::new(SRC),
            None,
            |_| false,
            Step::Preprocess,
            Path::new("-"),
            Path::new("/w/x.d"),
        );
        let tail: Vec<&str> = args[args.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["-E", "-o", "-", "/src/drivers/gpu/drm/drm_gem.c"]);
        assert!(!args.iter().any(|a| a.starts_with("-Wp,-MMD")));
        assert!(!args.iter().any(|a| a == "-ffunction-sections"));
    }

    #[test]
    fn the_overlay_holds_patched_files_and_links_everything_around_them() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        for (path, text) in [
            ("fs/proc/base.c", "#include \"internal.h\"\n"),
            ("fs/proc/internal.h", "old\n"),
            ("fs/proc/fd.h", "fd\n"),
            ("fs/ext4/inode.c", "x\n"),
            ("lib/xz/xz.h", "xz\n"),
            ("include/linux/sched.h", "s\n"),
        ] {
            std::fs::create_dir_all(s.join(path).parent().unwrap()).unwrap();
            std::fs::write(s.join(path), text).unwrap();
        }
        let work = tempfile::tempdir().unwrap();
        let ov = work.path().join("overlay");
        make_overlay(
            &ov,
            s,
            &[("fs/proc/internal.h", "new\n")],
            &[Path::new("fs/proc/base.c")],
        )
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(ov.join(p)).unwrap();
        assert_eq!(read("fs/proc/internal.h"), "new\n");
        assert_eq!(read("fs/proc/base.c"), "#include \"internal.h\"\n");
        assert_eq!(read("fs/proc/fd.h"), "fd\n");
        // `..` from the source's directory reaches the rest of the tree.
        assert_eq!(read("fs/proc/../../lib/xz/xz.h"), "xz\n");
        assert_eq!(read("include/linux/sched.h"), "s\n");
        assert!(ov.join("fs/proc").symlink_metadata().unwrap().is_dir());
        assert!(ov
            .join("fs/proc/fd.h")
            .symlink_metadata()
            .unwrap()
            .is_symlink());
        assert!(ov.join("fs/ext4").symlink_metadata().unwrap().is_symlink());
        assert_eq!(
            std::fs::read_to_string(s.join("fs/proc/internal.h")).unwrap(),
            "old\n",
            "the source tree is untouched"
        );
    }

    #[test]
    fn line_markers_are_told_from_other_directives() {
        assert!(!is_line_marker(b"#pragma GCC diagnostic push"));
        assert!(is_line_marker(b"#line 40 \"fs/proc/loadavg.c\""));
        assert!(is_line_marker(b"# 40"));
    }
}
