//! Hooks and shadow data: what `<ksplice/patch.h>` gives a patch, and how
//! ksplice-create carries it into update.ko.
//!
//! The header's macros put a pointer to each hook function into a section
//! `.ksplice.hooks.<kind>` of the post object. ksplice-create carries the
//! functions (they are new code) and lists them, with their kinds, in
//! update.ko's `__ksplice_hooks` table, which ksplice.ko reads. The shadow
//! data API is exported by ksplice.ko, so an update that uses it links
//! against those exports.

use std::collections::BTreeSet;
use std::path::Path;

use object::{Object as _, ObjectSection as _, RelocationTarget};

use super::emit::Unit;
use super::objdiff::{self, Target};
use super::CreateError;

/// The header patches include, as the project ships it.
pub const HEADER: &str = include_str!("../../../kmod/include/ksplice/patch.h");
/// Where post builds find it.
pub const HEADER_PATH: &str = "include/ksplice/patch.h";
/// How a patch includes it.
pub const HEADER_INCLUDE: &str = "<ksplice/patch.h>";

/// Hook kinds, numbered as ksplice.ko numbers them (from 1).
pub const KINDS: [&str; 10] = [
    "pre_apply",
    "check_apply",
    "apply",
    "post_apply",
    "fail_apply",
    "pre_undo",
    "check_undo",
    "undo",
    "post_undo",
    "fail_undo",
];

/// What ksplice.ko exports to updates (the shadow data API).
pub const EXPORTS: [&str; 5] = [
    "ksplice_shadow_get",
    "ksplice_shadow_alloc",
    "ksplice_shadow_get_or_alloc",
    "ksplice_shadow_free",
    "ksplice_shadow_free_all",
];

const SECTION_PREFIX: &str = ".ksplice.hooks.";

/// One hook a post object declares: its kind number and function name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub kind: u64,
    pub function: String,
}

/// The hooks one post object declares, in declaration order.
pub fn in_object(data: &[u8], path: &Path) -> Result<Vec<Hook>, CreateError> {
    let file = object::read::elf::ElfFile64::<object::Endianness>::parse(data)
        .map_err(|e| CreateError::elf(path, e))?;
    let mut hooks = Vec::new();
    for section in file.sections() {
        let Some(kind) = section
            .name()
            .ok()
            .and_then(|n| n.strip_prefix(SECTION_PREFIX))
        else {
            continue;
        };
        let number =
            KINDS
                .iter()
                .position(|k| *k == kind)
                .ok_or_else(|| CreateError::UnsupportedChange {
                    path: path.display().to_string(),
                    why: format!("unknown hook kind {kind}"),
                })? as u64
                + 1;
        let mut relocs: Vec<_> = section.relocations().collect();
        relocs.sort_by_key(|(offset, _)| *offset);
        for (_, reloc) in relocs {
            let RelocationTarget::Symbol(index) = reloc.target() else {
                continue;
            };
            // A static function is named by its section symbol and offset.
            match objdiff::normalise(&file, path, index, reloc.addend(), 0)? {
                (Target::Named(function), _) => hooks.push(Hook {
                    kind: number,
                    function,
                }),
                _ => {
                    return Err(CreateError::UnsupportedChange {
                        path: path.display().to_string(),
                        why: format!("a {kind} hook does not name a function"),
                    })
                }
            }
        }
    }
    Ok(hooks)
}

/// The kinds of hook the patch declares, over every unit.
pub fn declared(units: &[Unit]) -> Result<BTreeSet<&'static str>, CreateError> {
    let mut kinds = BTreeSet::new();
    for unit in units {
        for hook in in_object(&unit.post.data, &unit.post_path)? {
            if let Some(k) = KINDS.get(hook.kind as usize - 1) {
                kinds.insert(*k);
            }
        }
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles C with the host gcc against the shipped header (with
    /// stand-ins for the kernel headers it includes).
    fn compile(source: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("include");
        std::fs::create_dir_all(inc.join("ksplice")).unwrap();
        std::fs::create_dir_all(inc.join("linux")).unwrap();
        std::fs::write(inc.join("ksplice/patch.h"), HEADER).unwrap();
        std::fs::write(
            inc.join("linux/compiler.h"),
            "#define __used __attribute__((used))\n#define __section(s) __attribute__((section(s)))\n",
        )
        .unwrap();
        std::fs::write(inc.join("linux/gfp.h"), "typedef unsigned int gfp_t;\n").unwrap();
        std::fs::write(
            inc.join("linux/types.h"),
            "#include <stddef.h>\n#include <stdbool.h>\n",
        )
        .unwrap();
        let src = dir.path().join("t.c");
        std::fs::write(&src, source).unwrap();
        let obj = dir.path().join("t.o");
        let status = std::process::Command::new("gcc")
            .args(["-c", "-O2", "-ffunction-sections", "-I"])
            .arg(&inc)
            .arg("-o")
            .arg(&obj)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(obj).unwrap()
    }

    #[test]
    fn hooks_are_found_with_their_kinds_in_declaration_order() {
        let obj = compile(
            "#include <ksplice/patch.h>\n\
             static int check(void) { return 0; }\n\
             static void on(void) {}\n\
             static void off(void) {}\n\
             ksplice_check_apply(check);\n\
             ksplice_apply(on);\n\
             ksplice_undo(off);\n",
        );
        let mut hooks = in_object(&obj, Path::new("t.o")).unwrap();
        hooks.sort_by_key(|h| h.kind);
        let got: Vec<(u64, &str)> = hooks
            .iter()
            .map(|h| (h.kind, h.function.as_str()))
            .collect();
        assert_eq!(got, [(2, "check"), (3, "on"), (8, "off")]);
    }

    #[test]
    fn an_object_without_hooks_declares_none() {
        let obj = compile("int f(void) { return 1; }\n");
        assert!(in_object(&obj, Path::new("t.o")).unwrap().is_empty());
    }
}
