//! The Rust bindings a header change reaches.
//!
//! Rust code in the kernel sees C only through the bindings bindgen
//! generates from the headers (`rust/bindings/bindings_generated.rs`, ...)
//! and cannot be rebuilt by an update: a constant or a type the bindings
//! already had must come out the same. So each generated file whose
//! kbuild dependencies name a changed header is generated again, pre and
//! post, with kbuild's own bindgen command, and the update is refused
//! unless every item of the pre bindings is still there, unchanged; new
//! items (a macro the patch adds) are accepted, since no compiled Rust
//! code can use them.

use std::collections::BTreeMap;
use std::path::Path;

use log::{debug, info};

use super::compile::overlay_args;
use super::kbuild::KernelTree;
use super::CreateError;

/// Checks the generated bindings file `target` (relative to the objtree),
/// which kbuild generates with `argv` ([`KernelTree::bindgen_command`]).
/// `pre_overlay` and `overlay` are the source overlays of the two builds.
pub fn check(
    tree: &KernelTree,
    target: &str,
    argv: &[String],
    work_dir: &Path,
    pre_overlay: Option<&Path>,
    overlay: &Path,
) -> Result<(), CreateError> {
    let generate = |variant: &str, overlay: Option<&Path>| -> Result<String, CreateError> {
        let out = work_dir.join(variant).join(target);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CreateError::io(parent, e))?;
        }
        let args = rewrite(argv, &tree.srctree, overlay, &out);
        debug!("{variant} {target}: {}", args.join(" "));
        let output = tree
            .command(&argv[0])
            .args(&args)
            .current_dir(&tree.objtree)
            .output()
            .map_err(|e| CreateError::UnsupportedChange {
                path: target.to_owned(),
                why: format!(
                    "the patch reaches the kernel's Rust bindings, and checking them needs \
                     bindgen, the kernel build's tool: {} ({e})",
                    argv[0]
                ),
            })?;
        if !output.status.success() {
            return Err(CreateError::CompileFailed {
                object: target.to_owned(),
                variant: if variant == "pre" { "pre" } else { "post" },
                log: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        std::fs::read_to_string(&out).map_err(|e| CreateError::io(&out, e))
    };
    let pre = generate("pre", pre_overlay)?;
    let post = generate("post", Some(overlay))?;
    match first_changed_item(&pre, &post) {
        None => {
            info!("{target}: every item of the Rust bindings is unchanged");
            Ok(())
        }
        Some(item) => Err(CreateError::UnsupportedChange {
            path: target.to_owned(),
            why: format!(
                "the patch changes an item of the kernel's Rust bindings, and compiled Rust \
                 code cannot be rebuilt by an update: {item}"
            ),
        }),
    }
}

/// bindgen's arguments (after argv\[0\]) with its output in `out` and, with
/// an overlay, the header it reads and the compiler flags after `--`
/// redirected to the overlay as [`overlay_args`] does.
fn rewrite(argv: &[String], srctree: &Path, overlay: Option<&Path>, out: &Path) -> Vec<String> {
    let mut args = Vec::with_capacity(argv.len() + 8);
    let mut words = argv.iter().skip(1);
    while let Some(arg) = words.next() {
        if arg == "-o" {
            words.next();
            args.push("-o".to_owned());
            args.push(out.to_string_lossy().into_owned());
            continue;
        }
        match overlay {
            Some(overlay) => args.extend(overlay_args(arg, srctree, overlay, &Path::exists)),
            None => args.push(arg.clone()),
        }
    }
    args
}

/// The first item of the `pre` bindings that `post` lacks or has changed,
/// abridged to its first line; `None` when `post` has every item of `pre`
/// (as many times).
pub fn first_changed_item(pre: &str, post: &str) -> Option<String> {
    let mut have: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items(post) {
        *have.entry(item).or_default() += 1;
    }
    for item in items(pre) {
        match have.get_mut(item) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                let head = item
                    .lines()
                    .find(|l| !l.trim_start().starts_with("#["))
                    .unwrap_or(item);
                return Some(head.trim().to_owned());
            }
        }
    }
    None
}

/// The top-level items of generated Rust source, each with its attributes:
/// an item ends where a line ending in `;` or `}` brings the nesting of
/// brackets back to zero (string and character literals skipped).
fn items(source: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth: i64 = 0;
    let mut start = 0;
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let begin = offset;
        offset += line.len();
        if depth == 0 && line.trim().is_empty() {
            start = offset;
            continue;
        }
        if depth == 0 && begin == start && line.trim_start().starts_with("//") {
            start = offset;
            continue;
        }
        depth += nesting(line);
        let end = line.trim_end();
        if depth <= 0 && (end.ends_with(';') || end.ends_with('}')) {
            items.push(source[start..offset].trim_end());
            start = offset;
            depth = 0;
        }
    }
    if start < source.len() && !source[start..].trim().is_empty() {
        items.push(source[start..].trim_end());
    }
    items
}

/// How much `line` opens brackets, less how much it closes them.
fn nesting(line: &str) -> i64 {
    let mut depth = 0;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' => quote = Some('"'),
                // A character literal, not a lifetime: `'x'` or `'\n'`.
                '\'' if chars.clone().nth(1) == Some('\'') || chars.peek() == Some(&'\\') => {
                    quote = Some('\'')
                }
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRE: &str = "/* automatically generated by rust-bindgen */\n\
        \n\
        pub const MAPLE_NODE_SLOTS: u32 = 31;\n\
        #[repr(C)]\n\
        #[derive(Debug, Default, Copy, Clone)]\n\
        pub struct maple_range_64 {\n\
        \x20   pub parent: *mut maple_pnode,\n\
        \x20   pub pivot: [ffi::c_ulong; 15usize],\n\
        }\n\
        unsafe extern \"C\" {\n\
        \x20   #[link_name = \"\\u{1}mas_find\"]\n\
        \x20   pub fn mas_find(mas: *mut ma_state, max: ffi::c_ulong) -> *mut ffi::c_void;\n\
        }\n";

    #[test]
    fn bindings_that_only_gain_items_are_accepted() {
        let post = PRE.replace(
            "pub const MAPLE_NODE_SLOTS: u32 = 31;\n",
            "pub const MAPLE_NODE_SLOTS: u32 = 31;\npub const MT_FLAGS_NEW: u32 = 512;\n",
        );
        assert_eq!(first_changed_item(PRE, &post), None);
        assert_eq!(first_changed_item(PRE, PRE), None);
    }

    #[test]
    fn a_changed_constant_or_member_is_named() {
        let post = PRE.replace("= 31;", "= 32;");
        assert_eq!(
            first_changed_item(PRE, &post).as_deref(),
            Some("pub const MAPLE_NODE_SLOTS: u32 = 31;")
        );
        let post = PRE.replace("15usize", "16usize");
        assert_eq!(
            first_changed_item(PRE, &post).as_deref(),
            Some("pub struct maple_range_64 {")
        );
        let post = PRE.replace("max: ffi::c_ulong", "max: ffi::c_long");
        assert_eq!(
            first_changed_item(PRE, &post).as_deref(),
            Some("unsafe extern \"C\" {")
        );
    }

    #[test]
    fn items_keep_their_attributes_and_braces_in_strings_do_not_count() {
        let found = items(PRE);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[1].starts_with("#[repr(C)]"));
        assert!(found[2].contains("\\u{1}mas_find"));
    }

    #[test]
    fn bindgen_output_and_include_dirs_go_to_scratch_and_the_overlay() {
        let argv: Vec<String> = "bindgen /src/rust/bindings/bindings_helper.h --no-doc-comments \
             -o rust/bindings/bindings_generated.rs -- -nostdinc -I/src/include -I./include \
             -include /src/include/linux/kconfig.h -D__KERNEL__"
            .split(' ')
            .map(str::to_owned)
            .collect();
        let args = rewrite(&argv, Path::new("/src"), None, Path::new("/w/pre/b.rs"));
        assert_eq!(args[3], "/w/pre/b.rs");
        assert_eq!(args.len(), argv.len() - 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("include/linux")).unwrap();
        std::fs::write(dir.path().join("include/linux/kconfig.h"), "").unwrap();
        let args = rewrite(
            &argv,
            Path::new("/src"),
            Some(dir.path()),
            Path::new("/w/b.rs"),
        );
        let ov = dir.path().to_string_lossy();
        assert!(args.contains(&format!("-I{ov}/include")), "{args:?}");
        assert!(args.contains(&format!("{ov}/include/linux/kconfig.h")));
        assert!(args.contains(&"/src/rust/bindings/bindings_helper.h".to_owned()));
    }
}
