//! What ksplice-create reads from a configured, built kernel tree: the
//! source tree, the compile command and dependencies of each object (from
//! kbuild's `.cmd` files), exports, `System.map` and the build identity.
//!
//! A distribution's kernel (`scripts/debian-kernel`) comes as a *prepared*
//! tree instead: its source and config prepared as `make modules_prepare`
//! does, with the distribution's `vmlinux`, `System.map` and
//! `Module.symvers`, no objects and no `.cmd` files. There the objects of
//! vmlinux are listed in `ksplice-vmlinux-objects` (from the compile units
//! of the distribution's own vmlinux debug info), an object's command comes
//! from building it once with kbuild's single-object target, and every
//! program runs with the distribution's toolchain through `ksplice-bin/`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use log::{debug, info};

use super::CreateError;

/// A kernel build directory and the source tree it was built from.
pub struct KernelTree {
    /// The build (object) directory: `.config`, `vmlinux`, `.cmd` files.
    pub objtree: PathBuf,
    /// The source tree: `objtree/source` for `O=` builds, else `objtree`.
    pub srctree: PathBuf,
    /// `include/config/kernel.release`.
    pub release: String,
    /// The `.config` options that are set, e.g. `CONFIG_DEBUG_BUGVERBOSE`.
    config: BTreeSet<String>,
}

/// The language an object is compiled from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// C: its functions can be replaced.
    C,
    /// C the build generated (in the objtree): ksplice-create cannot
    /// generate it again from the patched sources.
    GeneratedC,
    /// Assembly (`.S`): an update cannot replace it.
    Assembly,
    /// Anything else (Rust, a composite object, a generated blob).
    Other,
}

/// Where an object's code is in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Linked into vmlinux.
    Vmlinux,
    /// Linked into the named loadable module.
    Module(String),
    /// Linked into vmlinux only as an `objcopy`'d copy, the named `.pi.o`
    /// (early boot code): ksplice cannot rebuild that copy.
    BootCopy(String),
    /// Not in the running kernel: boot setup code, the decompressor, the
    /// vDSO (a user-space image), realmode, host tools.
    Outside,
}

/// How one object file of vmlinux was compiled.
#[derive(Clone, Debug)]
pub struct CompileCommand {
    /// Object path relative to the objtree, e.g. `fs/proc/loadavg.o`.
    pub object: String,
    /// The source file, as an absolute path inside the srctree.
    pub source: PathBuf,
    /// The compiler command line, split into words (an `objtool` run
    /// kbuild chained after it is not part of it).
    pub argv: Vec<String>,
    /// The loadable module the object is linked into (`-DMODULE`), if any.
    pub module: Option<String>,
}

impl KernelTree {
    /// Opens and sanity-checks a kernel build directory.
    pub fn open(dir: &Path) -> Result<Self, CreateError> {
        let objtree = fs::canonicalize(dir).map_err(|e| CreateError::io(dir, e))?;
        let config_text = fs::read_to_string(objtree.join(".config")).map_err(|_| {
            CreateError::NotAKernelTree {
                dir: objtree.clone(),
                missing: ".config",
            }
        })?;
        if !objtree.join("vmlinux").is_file() {
            return Err(CreateError::NotAKernelTree {
                dir: objtree,
                missing: "vmlinux (build the kernel first)",
            });
        }
        let source_link = objtree.join("source");
        let srctree = if source_link.exists() {
            fs::canonicalize(&source_link).map_err(|e| CreateError::io(&source_link, e))?
        } else {
            objtree.clone()
        };
        let release_path = objtree.join("include/config/kernel.release");
        let release = fs::read_to_string(&release_path)
            .map_err(|e| CreateError::io(&release_path, e))?
            .trim()
            .to_owned();
        let config = config_text
            .lines()
            .filter_map(|l| l.strip_suffix("=y"))
            .filter(|k| k.starts_with("CONFIG_"))
            .map(str::to_owned)
            .collect();
        debug!(
            "kernel {release}: objtree {}, srctree {}",
            objtree.display(),
            srctree.display()
        );
        Ok(Self {
            objtree,
            srctree,
            release,
            config,
        })
    }

    /// Whether a boolean option is set to `y`.
    pub fn config(&self, option: &str) -> bool {
        self.config.contains(option)
    }

    /// The compile command of `object` (relative to the objtree), if the
    /// kernel built it.
    pub fn compile_command(&self, object: &str) -> Result<Option<CompileCommand>, CreateError> {
        let cmd_path = self.cmd_path(object);
        if !cmd_path.exists() && self.is_prepared_only() {
            self.build_single_object(object)?;
        }
        let Ok(text) = fs::read_to_string(&cmd_path) else {
            return Ok(None);
        };
        let line = saved_command(&text, object, &cmd_path)?;
        let words = split_shell_words(line).ok_or_else(|| CreateError::BadCmdFile {
            path: cmd_path.clone(),
            why: "unbalanced quotes",
        })?;
        let argv = compiler_command(words, object).ok_or_else(|| CreateError::BadCmdFile {
            path: cmd_path.clone(),
            why: "not a plain 'cc ... -c -o OBJ SRC' command",
        })?;
        let n = argv.len();
        let source = PathBuf::from(&argv[n - 1]);
        let source = if source.is_absolute() {
            source
        } else {
            self.srctree.join(source)
        };
        let module = argv.iter().any(|a| a == "-DMODULE").then(|| {
            argv.iter()
                .find_map(|a| a.strip_prefix("-DKBUILD_MODNAME="))
                .map_or_else(|| object.to_owned(), |m| m.trim_matches('"').to_owned())
        });
        Ok(Some(CompileCommand {
            object: object.to_owned(),
            source,
            argv,
            module,
        }))
    }

    /// The `.cmd` file where kbuild keeps `target`'s command and
    /// dependencies.
    fn cmd_path(&self, target: &str) -> PathBuf {
        let (dir, file) = target.rsplit_once('/').unwrap_or(("", target));
        self.objtree.join(dir).join(format!(".{file}.cmd"))
    }

    /// The bindgen command kbuild saved for the generated Rust bindings
    /// `target` (e.g. `rust/bindings/bindings_generated.rs`), split into
    /// words, without the commands chained after it.
    pub fn bindgen_command(&self, target: &str) -> Result<Vec<String>, CreateError> {
        let cmd_path = self.cmd_path(target);
        let text = fs::read_to_string(&cmd_path).map_err(|e| CreateError::io(&cmd_path, e))?;
        let line = saved_command(&text, target, &cmd_path)?;
        let bad = |why| CreateError::BadCmdFile {
            path: cmd_path.clone(),
            why,
        };
        // kbuild writes a `#` in a command as `$(pound)`.
        let words = split_shell_words(&line.replace("$(pound)", "#"))
            .ok_or_else(|| bad("unbalanced quotes"))?;
        let argv: Vec<String> = words.split(|w| w == ";").next().unwrap_or(&[]).to_vec();
        if !argv.first().is_some_and(|w| w.ends_with("bindgen")) || !argv.iter().any(|w| w == "-o")
        {
            return Err(bad("not a 'bindgen HEADER ... -o OUT -- CFLAGS' command"));
        }
        Ok(argv)
    }

    /// Every target whose recorded dependencies include one of `headers`
    /// (paths relative to the srctree), from all `.o.cmd` and `.rs.cmd`
    /// files: objects of any source language, and generated Rust bindings.
    pub fn dependents(
        &self,
        headers: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, CreateError> {
        if self.is_prepared_only() {
            // Which objects include a header only kbuild's dependency
            // records say; guessing could leave an includer unpatched.
            return Err(CreateError::UnsupportedChange {
                path: headers.join(", "),
                why: "a header change needs kbuild's dependency records (.cmd files) of \
                      every object, and this distribution kernel tree has none"
                    .into(),
            });
        }
        let wanted: HashMap<PathBuf, &String> =
            headers.iter().map(|h| (self.srctree.join(h), h)).collect();
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![self.objtree.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if name != "source" && !name.starts_with('.') {
                        stack.push(path);
                    }
                    continue;
                }
                let Some(target) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".cmd"))
                else {
                    continue;
                };
                if !(target.ends_with(".o") || target.ends_with(".rs")) {
                    continue;
                }
                let Ok(text) = fs::read_to_string(&path) else {
                    continue;
                };
                let rel_dir = dir.strip_prefix(&self.objtree).unwrap_or(&dir);
                let target = rel_dir.join(target).to_string_lossy().into_owned();
                for dep in text.lines().map(|l| l.trim().trim_end_matches('\\').trim()) {
                    let dep_path = if Path::new(dep).is_absolute() {
                        PathBuf::from(dep)
                    } else {
                        self.srctree.join(dep)
                    };
                    if let Some(header) = wanted.get(&dep_path) {
                        found
                            .entry(target.clone())
                            .or_default()
                            .push((*header).clone());
                    }
                }
            }
        }
        Ok(found)
    }

    /// The source language of `object`, from the file next to it in the
    /// srctree.
    pub fn source_kind(&self, object: &str) -> SourceKind {
        let stem = object.strip_suffix(".o").unwrap_or(object);
        if self.srctree.join(format!("{stem}.c")).is_file() {
            SourceKind::C
        } else if self.objtree.join(format!("{stem}.c")).is_file() {
            SourceKind::GeneratedC
        } else if self.srctree.join(format!("{stem}.S")).is_file() {
            SourceKind::Assembly
        } else {
            SourceKind::Other
        }
    }

    /// Where the code of `object` ends up in the running kernel.
    /// `vmlinux` and `modules` are [`Self::vmlinux_objects`] and
    /// [`Self::module_objects`].
    pub fn place_of(
        object: &str,
        vmlinux: &BTreeSet<String>,
        modules: &BTreeMap<String, String>,
    ) -> Place {
        if vmlinux.contains(object) {
            return Place::Vmlinux;
        }
        if let Some(module) = modules.get(object) {
            return Place::Module(module.clone());
        }
        // Early boot code is compiled, then copied with objcopy (symbols
        // renamed `__pi_*`) into the object vmlinux links.
        let copy = format!("{}.pi.o", object.strip_suffix(".o").unwrap_or(object));
        if vmlinux.contains(&copy) {
            return Place::BootCopy(copy);
        }
        Place::Outside
    }

    /// The objects linked into loadable modules, each with its module's
    /// name: from `modules.order` and each module's `.mod` member list (a
    /// module of one object has none).
    pub fn module_objects(&self) -> Result<BTreeMap<String, String>, CreateError> {
        let path = self.objtree.join("modules.order");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(CreateError::io(&path, e)),
        };
        let mut objects = BTreeMap::new();
        for module in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let stem = module.strip_suffix(".o").unwrap_or(module);
            let name = module_name_of(stem);
            let mod_path = self.objtree.join(format!("{stem}.mod"));
            match fs::read_to_string(&mod_path) {
                Ok(members) => {
                    for member in members.split_whitespace() {
                        objects.insert(member.to_owned(), name.clone());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    objects.insert(module.to_owned(), name.clone());
                }
                Err(e) => return Err(CreateError::io(&mod_path, e)),
            }
        }
        Ok(objects)
    }

    /// Every object linked into vmlinux, relative to the objtree: the
    /// members of the thin archives `vmlinux.a` and the `lib.a` libraries
    /// (whose members are linked when referenced).
    /// In a prepared tree, the list `ksplice-vmlinux-objects` says.
    pub fn vmlinux_objects(&self) -> Result<BTreeSet<String>, CreateError> {
        if self.is_prepared_only() {
            let path = self.objtree.join(VMLINUX_OBJECTS);
            let text = fs::read_to_string(&path).map_err(|e| CreateError::io(&path, e))?;
            return Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect());
        }
        // scripts/link-vmlinux.sh links these beside the archives.
        let mut objects: BTreeSet<String> = ["init/version-timestamp.o", ".vmlinux.export.o"]
            .into_iter()
            .filter(|o| self.objtree.join(o).is_file())
            .map(str::to_owned)
            .collect();
        for archive in ["vmlinux.a", "lib/lib.a", "arch/x86/lib/lib.a"] {
            let path = self.objtree.join(archive);
            let Ok(data) = fs::read(&path) else {
                if archive == "vmlinux.a" {
                    return Err(CreateError::NotAKernelTree {
                        dir: self.objtree.clone(),
                        missing: "vmlinux.a",
                    });
                }
                continue;
            };
            let file = object::read::archive::ArchiveFile::parse(&*data)
                .map_err(|e| CreateError::elf(&path, e))?;
            let dir = Path::new(archive).parent().unwrap_or(Path::new(""));
            for member in file.members() {
                let member = member.map_err(|e| CreateError::elf(&path, e))?;
                let name = String::from_utf8_lossy(member.name());
                objects.insert(dir.join(&*name).to_string_lossy().into_owned());
            }
        }
        Ok(objects)
    }

    /// Exported vmlinux symbols and their namespaces, from `Module.symvers`.
    pub fn exports(&self) -> Result<HashMap<String, String>, CreateError> {
        let path = self.objtree.join("Module.symvers");
        let text = fs::read_to_string(&path).map_err(|e| CreateError::io(&path, e))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4 && f[2] == "vmlinux")
                    .then(|| (f[1].to_owned(), f.get(4).copied().unwrap_or("").to_owned()))
            })
            .collect())
    }

    /// `System.map` as name -> type letters seen (`T`, `t`, `D`, ...).
    pub fn system_map(&self) -> Result<HashMap<String, Vec<char>>, CreateError> {
        let path = self.objtree.join("System.map");
        let text = fs::read_to_string(&path).map_err(|e| CreateError::io(&path, e))?;
        let mut map: HashMap<String, Vec<char>> = HashMap::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            if let (Some(_), Some(t), Some(name)) = (f.next(), f.next(), f.next()) {
                map.entry(name.to_owned())
                    .or_default()
                    .extend(t.chars().next());
            }
        }
        Ok(map)
    }

    /// A command running `program` as this kernel's build does: in a
    /// prepared tree through its `ksplice-bin/` wrapper of that name, or
    /// else `ksplice-bin/enter` (the distribution's toolchain root); in a
    /// tree built here, `program` itself.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        command_in(&self.objtree, program.as_ref())
    }

    /// Whether this is a distribution kernel's prepared tree (no objects,
    /// no `.cmd` files; see the module documentation).
    pub fn is_prepared_only(&self) -> bool {
        self.objtree.join(VMLINUX_OBJECTS).is_file()
    }

    /// Builds `object` in the prepared tree with kbuild's single-object
    /// target, which leaves kbuild's own command for it in its `.cmd` file.
    fn build_single_object(&self, object: &str) -> Result<(), CreateError> {
        let source = self
            .srctree
            .join(format!("{}.c", object.strip_suffix(".o").unwrap_or(object)));
        if !source.is_file() {
            return Ok(());
        }
        info!("{object}: building it once with kbuild, for its command line");
        let output = self
            .command("make")
            .arg("-C")
            .arg(&self.objtree)
            .arg("-s")
            .arg(object)
            .output()
            .map_err(|e| CreateError::io(Path::new("make"), e))?;
        if !output.status.success() {
            return Err(CreateError::CompileFailed {
                object: object.to_owned(),
                variant: "distribution's (kbuild single-object target)",
                log: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Symbols exported by loadable modules: name -> (module, namespace),
    /// from `Module.symvers` (module names as the kernel spells them).
    pub fn module_exports(&self) -> Result<HashMap<String, (String, String)>, CreateError> {
        let path = self.objtree.join("Module.symvers");
        let text = fs::read_to_string(&path).map_err(|e| CreateError::io(&path, e))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4 && f[2] != "vmlinux").then(|| {
                    let namespace = f.get(4).copied().unwrap_or("").to_owned();
                    (f[1].to_owned(), (module_name_of(f[2]), namespace))
                })
            })
            .collect())
    }

    /// The built `.ko` of loadable module `name`, from `modules.order`.
    pub fn module_file(&self, name: &str) -> Result<Option<PathBuf>, CreateError> {
        let path = self.objtree.join("modules.order");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CreateError::io(&path, e)),
        };
        Ok(text
            .lines()
            .map(|l| l.trim().trim_end_matches(".o"))
            .find(|l| module_name_of(l) == name)
            .map(|l| self.objtree.join(format!("{l}.ko"))))
    }

    /// The GNU build id of `vmlinux`.
    pub fn build_id(&self) -> Result<Vec<u8>, CreateError> {
        use object::Object as _;
        let path = self.objtree.join("vmlinux");
        let data = fs::read(&path).map_err(|e| CreateError::io(&path, e))?;
        let file = object::File::parse(&*data).map_err(|e| CreateError::elf(&path, e))?;
        Ok(file
            .build_id()
            .map_err(|e| CreateError::elf(&path, e))?
            .map(<[u8]>::to_vec)
            .unwrap_or_default())
    }
}

/// The list of vmlinux objects of a prepared tree (see the module docs).
const VMLINUX_OBJECTS: &str = "ksplice-vmlinux-objects";

/// `program` run as the kernel build in `objtree` runs it (see
/// [`KernelTree::command`]).
pub fn command_in(objtree: &Path, program: &Path) -> Command {
    let wrappers = objtree.join("ksplice-bin");
    let named = program
        .file_name()
        .filter(|_| program.components().count() == 1)
        .map(|name| wrappers.join(name));
    match named {
        Some(wrapper) if wrapper.is_file() => Command::new(wrapper),
        _ if wrappers.join("enter").is_file() => {
            let mut command = Command::new(wrappers.join("enter"));
            command.arg(program);
            command
        }
        _ => Command::new(program),
    }
}

/// The compiler invocation `cc ... -c -o OBJ SRC` of a saved command, which
/// may be followed by `; objtool ... OBJ` runs (module objects, and some
/// objects objtool only checks): those post-process or check the object
/// and are not part of compiling it. Anything else is not reproducible.
fn compiler_command(words: Vec<String>, object: &str) -> Option<Vec<String>> {
    let mut parts = words.split(|w| w == ";");
    let argv = parts.next()?.to_vec();
    let n = argv.len();
    let plain = n >= 4
        && argv[n - 4] == "-c"
        && argv[n - 3] == "-o"
        && argv[n - 2] == object
        && !argv.iter().any(|a| a == "&&" || a == "||" || a == "|");
    let objtool_only = parts.all(|p| {
        p.first().is_some_and(|w| w.ends_with("/objtool"))
            && p.last().is_some_and(|w| w == object)
            && !p.iter().any(|a| a == "&&" || a == "||" || a == "|")
    });
    (plain && objtool_only).then_some(argv)
}

/// The `savedcmd_TARGET := ...` command of the `.cmd` file text at `path`.
fn saved_command<'t>(text: &'t str, target: &str, path: &Path) -> Result<&'t str, CreateError> {
    let prefix = format!("savedcmd_{target} := ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .ok_or_else(|| CreateError::BadCmdFile {
            path: path.to_owned(),
            why: "no savedcmd line",
        })
}

/// Splits a kbuild command line into words, honouring '…', "…" and \.
fn split_shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The name the kernel gives the module built as `path` (`fs/ext2/ext2`,
/// `drivers/net/foo-bar.ko`): its base name with `-` as `_`, as kbuild's
/// `KBUILD_MODNAME` spells it.
pub fn module_name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".ko").unwrap_or(base);
    base.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_base_names_with_underscores() {
        assert_eq!(module_name_of("fs/ext2/ext2"), "ext2");
        assert_eq!(module_name_of("drivers/net/foo-bar.ko"), "foo_bar");
        assert_eq!(module_name_of("loop"), "loop");
    }

    #[test]
    fn kbuild_quoting_is_undone() {
        let words =
            split_shell_words(r#"gcc -DKBUILD_MODFILE='"fs/proc/proc"' -DX=\"y\" -c -o a.o a.c"#)
                .unwrap();
        assert_eq!(
            words,
            [
                "gcc",
                r#"-DKBUILD_MODFILE="fs/proc/proc""#,
                r#"-DX="y""#,
                "-c",
                "-o",
                "a.o",
                "a.c"
            ]
        );
        assert_eq!(split_shell_words("gcc 'unterminated"), None);
    }

    #[test]
    fn an_objtool_run_chained_after_the_compiler_is_not_part_of_the_compile() {
        let words = |s: &str| split_shell_words(s).unwrap();
        let compile = "gcc -DMODULE -c -o net/ipv4/ip_tunnel.o /s/net/ipv4/ip_tunnel.c";
        let with_objtool = format!(
            "{compile} ; ./tools/objtool/objtool --orc --link --module net/ipv4/ip_tunnel.o"
        );
        assert_eq!(
            compiler_command(words(&with_objtool), "net/ipv4/ip_tunnel.o"),
            Some(words(compile))
        );
        assert_eq!(
            compiler_command(words(compile), "net/ipv4/ip_tunnel.o"),
            Some(words(compile))
        );
        for bad in [
            format!("{compile} ; cp net/ipv4/ip_tunnel.o /tmp"),
            format!("{compile} ; ./tools/objtool/objtool --orc other.o"),
            "gcc -c -o other.o x.c".to_owned(),
            format!("{compile} && true"),
        ] {
            assert_eq!(
                compiler_command(words(&bad), "net/ipv4/ip_tunnel.o"),
                None,
                "{bad}"
            );
        }
    }

    /// A prepared tree as `scripts/debian-kernel` leaves it, without any
    /// object: `.config`, vmlinux, the release, the vmlinux object list and
    /// the toolchain wrappers.
    fn prepared_tree(objects: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join(".config"), "CONFIG_RUST=y\n").unwrap();
        fs::write(p.join("vmlinux"), "").unwrap();
        fs::create_dir_all(p.join("include/config")).unwrap();
        fs::write(
            p.join("include/config/kernel.release"),
            "7.2.12+deb13-cloud-amd64\n",
        )
        .unwrap();
        fs::write(p.join(VMLINUX_OBJECTS), objects).unwrap();
        fs::create_dir_all(p.join("ksplice-bin")).unwrap();
        fs::write(p.join("ksplice-bin/enter"), "").unwrap();
        fs::write(p.join("ksplice-bin/make"), "").unwrap();
        dir
    }

    #[test]
    fn a_prepared_tree_runs_every_program_with_its_toolchain() {
        let dir = prepared_tree("fs/proc/loadavg.o\n");
        let tree = KernelTree::open(dir.path()).unwrap();
        let bin = tree.objtree.join("ksplice-bin");
        let run = |program: &str| {
            let c = tree.command(program);
            let args: Vec<String> = c
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            (PathBuf::from(c.get_program()), args)
        };
        assert_eq!(run("make"), (bin.join("make"), vec![]));
        assert_eq!(
            run("x86_64-linux-gnu-gcc-14"),
            (
                bin.join("enter"),
                vec!["x86_64-linux-gnu-gcc-14".to_owned()]
            )
        );
        // A path is never taken for a wrapper's name.
        assert_eq!(
            run("/k/scripts/make"),
            (bin.join("enter"), vec!["/k/scripts/make".to_owned()])
        );
        let plain = tempfile::tempdir().unwrap();
        let c = command_in(plain.path(), Path::new("gcc"));
        assert_eq!(c.get_program(), "gcc");
        assert_eq!(c.get_args().count(), 0);
    }

    #[test]
    fn a_prepared_tree_lists_its_vmlinux_objects_and_refuses_header_changes() {
        let dir = prepared_tree("fs/proc/loadavg.o\nkernel/fork.o\n\n");
        let tree = KernelTree::open(dir.path()).unwrap();
        let objects = tree.vmlinux_objects().unwrap();
        assert_eq!(
            objects.into_iter().collect::<Vec<_>>(),
            ["fs/proc/loadavg.o", "kernel/fork.o"]
        );
        let err = tree
            .dependents(&["include/linux/fs.h".to_owned()])
            .unwrap_err();
        assert!(err.is_refusal(), "{err}");
        assert!(err.to_string().contains("include/linux/fs.h"), "{err}");
        assert!(err.to_string().contains("dependency records"), "{err}");
    }

    #[test]
    fn a_built_tree_without_vmlinux_a_is_not_a_kernel_tree() {
        let dir = prepared_tree("");
        fs::remove_file(dir.path().join(VMLINUX_OBJECTS)).unwrap();
        let tree = KernelTree::open(dir.path()).unwrap();
        assert!(matches!(
            tree.vmlinux_objects(),
            Err(CreateError::NotAKernelTree {
                missing: "vmlinux.a",
                ..
            })
        ));
    }
}
