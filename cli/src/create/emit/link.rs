//! The kbuild link of `update.ko`: a generated `main.c` (module init,
//! the stubs unresolved references point at) plus `post.o`, built by the
//! kernel's own kbuild against the kernel tree so vermagic and `struct
//! module` match; then the rewrite of load-time references into livepatch
//! relocations.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use log::debug;
use object::elf;

use super::super::kbuild::KernelTree;
use super::super::CreateError;
use super::PostObject;

/// The module name for an update id.
pub use crate::module::name_for_id as module_name;

/// Links `post.o` into `<module_name>.ko` with the kernel's own kbuild.
pub fn build_module(
    tree: &KernelTree,
    dir: &Path,
    id: &str,
    post: &PostObject,
) -> Result<PathBuf, CreateError> {
    let name = module_name(id);
    std::fs::create_dir_all(dir).map_err(|e| CreateError::io(dir, e))?;
    let write = |file: &str, contents: &[u8]| {
        std::fs::write(dir.join(file), contents).map_err(|e| CreateError::io(&dir.join(file), e))
    };
    // A prebuilt object with no rule to make it: kbuild links it as is.
    write("post.o", &post.elf)?;
    write(
        "Kbuild",
        format!("obj-m := {name}.o\n{name}-y := main.o post.o\n").as_bytes(),
    )?;
    let imports: String = post
        .namespaces
        .iter()
        .map(|ns| format!("MODULE_IMPORT_NS(\"{ns}\");\n"))
        .collect();
    write("main.c", main_c(id, &imports).as_bytes())?;
    // ksplice.ko's exports (shadow data), for modpost.
    let symvers: String = super::super::hooks::EXPORTS
        .iter()
        .map(|name| format!("0x00000000\t{name}\tksplice\tEXPORT_SYMBOL_GPL\t\n"))
        .collect();
    write("ksplice.symvers", symvers.as_bytes())?;
    let output = tree
        .command("make")
        .arg("-C")
        .arg(&tree.objtree)
        .arg(format!("M={}", dir.display()))
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .arg("modules")
        .arg(format!(
            "KBUILD_EXTRA_SYMBOLS={}",
            dir.join("ksplice.symvers").display()
        ))
        // The load-time symbols are undefined until `to_livepatch_relocs`.
        .env(
            "KBUILD_MODPOST_WARN",
            if post.load_time.is_empty() { "" } else { "1" },
        )
        .output()
        .map_err(|e| CreateError::io(Path::new("make"), e))?;
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    debug!("kbuild output:\n{log}");
    if !output.status.success() {
        return Err(CreateError::KbuildFailed {
            dir: dir.to_owned(),
            log: tail(&log, 40),
        });
    }
    // With KBUILD_MODPOST_WARN, modpost only warns about undefined
    // symbols (in a wording that differs between kernel versions): check
    // the module itself for any the loader could not resolve.
    let ko = dir.join(format!("{name}.ko"));
    let data = std::fs::read(&ko).map_err(|e| CreateError::io(&ko, e))?;
    let exports = super::exports_with_ksplice(tree)?;
    let missing =
        unresolvable(&data, &exports, &post.load_time).map_err(|e| CreateError::elf(&ko, e))?;
    if !missing.is_empty() {
        return Err(CreateError::KbuildFailed {
            dir: dir.to_owned(),
            log: format!(
                "{}\nundefined in {}: {}",
                tail(&log, 20),
                ko.display(),
                missing.join(", ")
            ),
        });
    }
    if !post.load_time.is_empty() {
        to_livepatch_relocs(&ko, &post.load_time)?;
    }
    Ok(ko)
}

/// The undefined symbols of the linked module `ko` that are neither
/// exported nor left for a livepatch relocation (`load_time`).
fn unresolvable(
    ko: &[u8],
    exports: &HashMap<String, String>,
    load_time: &BTreeSet<String>,
) -> Result<Vec<String>, object::Error> {
    use object::{Object as _, ObjectSymbol as _};
    let file = object::File::parse(ko)?;
    let mut missing = Vec::new();
    for sym in file.symbols().filter(|s| s.is_undefined()) {
        let name = sym.name()?;
        if !name.is_empty() && !exports.contains_key(name) && !load_time.contains(name) {
            missing.push(name.to_owned());
        }
    }
    Ok(missing)
}

/// `SHN_LIVEPATCH` and `SHF_RELA_LIVEPATCH` (include/uapi/linux/elf.h).
const SHN_LIVEPATCH: u16 = 0xff20;
const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;

/// Rewrites the linked module so the loader resolves `symbols` itself, as
/// livepatch modules do (Documentation/livepatch/module-elf-format.rst):
/// each becomes `.klp.sym.vmlinux.NAME,0` in `SHN_LIVEPATCH`, and the
/// relocations naming it move to `.klp.rela.vmlinux.SECTION`. The loader
/// resolves them from kallsyms before jump labels and alternatives read them.
fn to_livepatch_relocs(ko: &Path, symbols: &BTreeSet<String>) -> Result<(), CreateError> {
    use object::build::elf::{Builder, SectionData};
    let bad = |e: object::build::Error| CreateError::elf(ko, e);
    let data = std::fs::read(ko).map_err(|e| CreateError::io(ko, e))?;
    let mut b = Builder::read(&*data).map_err(bad)?;
    let mut ids = Vec::new();
    for sym in b.symbols.iter_mut() {
        let name = String::from_utf8_lossy(&sym.name).into_owned();
        if sym.section.is_none() && sym.st_shndx == elf::SHN_UNDEF && symbols.contains(&name) {
            sym.name = format!(".klp.sym.vmlinux.{name},0").into_bytes().into();
            sym.st_shndx = SHN_LIVEPATCH;
            ids.push(sym.id());
        }
    }
    let symtab = b
        .sections
        .iter()
        .find(|s| s.sh_type == elf::SHT_SYMTAB)
        .map(|s| s.id());
    let mut moved = Vec::new();
    for sec in b.sections.iter_mut() {
        let SectionData::Relocation(relocs) = &mut sec.data else {
            continue;
        };
        let (klp, keep): (Vec<_>, Vec<_>) = relocs
            .iter()
            .partition(|r| r.symbol.is_some_and(|s| ids.contains(&s)));
        if klp.is_empty() {
            continue;
        }
        *relocs = keep;
        let target = String::from_utf8_lossy(&sec.name)
            .trim_start_matches(".rela")
            .trim_start_matches('.')
            .to_owned();
        moved.push((target, sec.sh_info_section, klp));
    }
    for (target, info, relocs) in moved {
        let s = b.sections.add();
        s.name = format!(".klp.rela.vmlinux.{target}").into_bytes().into();
        s.sh_type = elf::SHT_RELA;
        s.sh_flags = SHF_RELA_LIVEPATCH | u64::from(elf::SHF_INFO_LINK);
        s.sh_link_section = symtab;
        s.sh_info_section = info;
        s.sh_addralign = 8;
        s.sh_entsize = 24;
        s.data = SectionData::Relocation(relocs);
    }
    let mut out = Vec::new();
    b.write(&mut out).map_err(bad)?;
    std::fs::write(ko, out).map_err(|e| CreateError::io(ko, e))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn main_c(id: &str, imports: &str) -> String {
    format!(
        r#"// SPDX-License-Identifier: GPL-2.0
/*
 * ksplice update {id}, generated by ksplice-create. Loading it alone does
 * nothing: ksplice.ko applies it (ksplice-apply).
 */
#include <linux/bug.h>
#include <linux/module.h>
#include <linux/printk.h>

/*
 * Targets of references to kernel symbols that are not exported. ksplice.ko
 * rewrites every such reference from its run-pre matching results before
 * any trampoline points at this module's code, and refuses the update if
 * one is left, so neither is ever used; if one were, the function traps
 * and the data reads as poison.
 */
void __ksplice_unresolved(void);
extern char __ksplice_unresolved_data[64];
noinline void __ksplice_unresolved(void) {{ BUG(); }}
char __ksplice_unresolved_data[64] __aligned(64) = {{ [0 ... 63] = 0xa5 }};

static int __init ksplice_update_init(void)
{{
	pr_info("ksplice update %s loaded; inert until applied by ksplice.ko\n", "{id}");
	return 0;
}}

static void __exit ksplice_update_exit(void)
{{
}}

module_init(ksplice_update_init);
module_exit(ksplice_update_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ksplice update {id}");
MODULE_INFO(ksplice_update, "{id}");
{imports}"#
    )
}

#[cfg(test)]
mod tests {
    use object::write;

    use super::*;

    /// A relocatable object with these undefined globals.
    fn with_undefined(names: &[&str]) -> Vec<u8> {
        let mut out = write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        for name in names {
            out.add_symbol(write::Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 0,
                kind: object::SymbolKind::Unknown,
                scope: object::SymbolScope::Dynamic,
                weak: false,
                section: write::SymbolSection::Undefined,
                flags: object::SymbolFlags::None,
            });
        }
        out.write().unwrap()
    }

    #[test]
    fn only_exports_and_load_time_symbols_may_stay_undefined() {
        let ko = with_undefined(&["printk", "__tracepoint_sched_process_wait", "nr_threads"]);
        let exports = HashMap::from([("printk".to_owned(), String::new())]);
        let load_time = BTreeSet::from(["__tracepoint_sched_process_wait".to_owned()]);
        assert_eq!(
            unresolvable(&ko, &exports, &load_time).unwrap(),
            ["nr_threads"]
        );
        let load_time = BTreeSet::new();
        assert_eq!(
            unresolvable(&ko, &exports, &load_time).unwrap(),
            ["__tracepoint_sched_process_wait", "nr_threads"]
        );
    }
}
