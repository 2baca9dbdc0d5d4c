//! Reading a unified diff and producing the patched ("post") text of each
//! file it touches.
//!
//! After every hunk that changes the number of lines, a `#line` directive
//! puts the numbering back to the original's, as upstream klp-build does:
//! otherwise every later `WARN_ON`/`BUG_ON` (whose `__LINE__` is compiled
//! into the bug table) would look changed.

use super::CreateError;

/// What kind of file a patch touches, which decides how it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A C source file: its object is rebuilt.
    CSource,
    /// A header: every object depending on it is rebuilt.
    Header,
}

/// One file of the patch, with its patched contents.
#[derive(Debug)]
pub struct PatchedFile {
    /// The text before the patch.
    pub pre_text: String,
    /// The text after the patch, without `#line` directives.
    pub plain_post_text: String,
    /// Path relative to the source tree.
    pub path: String,
    /// C source or header.
    pub kind: FileKind,
    /// The patched text, with `#line` directives after length-changing hunks.
    pub post_text: String,
    /// Function names named in hunk headers or changed lines (for --explain).
    pub touched_names: Vec<String>,
}

/// Splits a (possibly multi-file, possibly git) unified diff into per-file
/// sections, each starting at its `--- ` line.
fn split_files(text: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0, |pos, l| {
            let at = *pos;
            *pos += l.len();
            Some((at, l))
        })
        .collect();
    for w in lines.windows(2) {
        if w[0].1.starts_with("--- ") && w[1].1.starts_with("+++ ") {
            starts.push(w[0].0);
        }
    }
    let mut sections = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        // Drop the next file's "diff --git"/"index" preamble from this section.
        let mut section = &text[start..end];
        if let Some(cut) = section.find("\ndiff ") {
            section = &section[..cut + 1];
        }
        sections.push(section);
    }
    sections
}

fn strip_prefix_component(path: &str) -> &str {
    let path = path.split('\t').next().unwrap_or(path).trim();
    path.split_once('/').map_or(path, |(_, rest)| rest)
}

/// Refuses what cannot be updated yet, with the reason.
fn classify(path: &str) -> Result<FileKind, CreateError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let refuse = |why: &str| {
        Err(CreateError::UnsupportedChange {
            path: path.to_owned(),
            why: why.to_owned(),
        })
    };
    if path.ends_with(".lds") || path.ends_with(".lds.S") || path.ends_with(".lds.h") {
        return refuse("linker scripts cannot be changed by an update");
    }
    if name.ends_with(".S") || name.ends_with(".s") {
        return refuse("assembly changes are not supported yet");
    }
    if name.starts_with("Kconfig")
        || name.starts_with("Makefile")
        || name.starts_with("Kbuild")
        || name == ".config"
        || name.ends_with(".mk")
    {
        return refuse(
            "build configuration (Kconfig, Makefiles, .config) cannot change in a running kernel",
        );
    }
    if name.ends_with(".c") {
        Ok(FileKind::CSource)
    } else if name.ends_with(".h") {
        Ok(FileKind::Header)
    } else {
        refuse("only C sources and headers can be updated")
    }
}

/// Identifier-like words of a line, to guess which functions a hunk touches.
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// Parses `patch_text` and applies it to the files under `srctree`.
pub fn apply(patch_text: &str, srctree: &std::path::Path) -> Result<Vec<PatchedFile>, CreateError> {
    apply_on(patch_text, srctree, &std::collections::BTreeMap::new())
}

/// Like [`apply`], but files in `base` (path -> text) are patched from that
/// text instead of the srctree: the source as earlier updates left it.
pub fn apply_on(
    patch_text: &str,
    srctree: &std::path::Path,
    base: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<PatchedFile>, CreateError> {
    let sections = split_files(patch_text);
    if sections.is_empty() {
        return Err(CreateError::BadPatch(
            "no file changes found (expected a unified diff)".into(),
        ));
    }
    let mut files = Vec::new();
    for section in sections {
        let mut header = section.lines();
        let old = header
            .next()
            .and_then(|l| l.strip_prefix("--- "))
            .unwrap_or("");
        let new = header
            .next()
            .and_then(|l| l.strip_prefix("+++ "))
            .unwrap_or("");
        if old.starts_with("/dev/null") || new.starts_with("/dev/null") {
            let path = strip_prefix_component(if old.starts_with("/dev/null") {
                new
            } else {
                old
            })
            .to_owned();
            return Err(CreateError::UnsupportedChange {
                path,
                why: "adding or deleting files is not supported yet".into(),
            });
        }
        let path = strip_prefix_component(new).to_owned();
        let kind = classify(&path)?;
        let original_path = srctree.join(&path);
        let original = match base.get(&path) {
            Some(text) => text.clone(),
            None => std::fs::read_to_string(&original_path)
                .map_err(|e| CreateError::io(&original_path, e))?,
        };
        let patch = diffy::Patch::from_str(section)
            .map_err(|e| CreateError::BadPatch(format!("{path}: {e}")))?;
        let patched = diffy::apply(&original, &patch).map_err(|e| {
            CreateError::BadPatch(format!(
                "{path}: does not apply to {}: {e}",
                srctree.display()
            ))
        })?;

        let mut touched_names = Vec::new();
        let mut lines: Vec<String> = patched.split_inclusive('\n').map(str::to_owned).collect();
        let directive_ok = directive_lines(&patched);
        let original_lines: Vec<&str> = original.lines().collect();
        // Where the next hunk starts (0-based, in the patched text).
        let mut next_hunk = lines.len();
        // Last hunk first, so earlier insertion points stay valid.
        for hunk in patch.hunks().iter().rev() {
            // The enclosing definition, as `diff -p` finds it: the nearest
            // line above the hunk that starts with an identifier and has '('.
            let context = hunk.function_context().map(str::to_owned).or_else(|| {
                let from = hunk.old_range().start().min(original_lines.len());
                original_lines[..from]
                    .iter()
                    .rev()
                    .find(|l| {
                        l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && l.contains('(')
                    })
                    .map(|l| (*l).to_owned())
            });
            if let Some(function) = context {
                touched_names.extend(words(&function).map(str::to_owned));
            }
            for line in hunk.lines() {
                if let diffy::Line::Insert(l) | diffy::Line::Delete(l) = line {
                    touched_names.extend(words(l).map(str::to_owned));
                }
            }
            let (old, new) = (hunk.old_range(), hunk.new_range());
            let this_hunk = new.start().saturating_sub(1);
            if old.len() != new.len() {
                // diffy's ranges are 1-based: the line after the hunk, or
                // the first unchanged line after it where a directive is
                // allowed (not inside a comment or a continued macro).
                let after = new.start() + new.len() - 1;
                let at = (after..next_hunk.min(lines.len()))
                    .find(|&i| directive_ok.get(i).copied().unwrap_or(false));
                if let Some(at) = at {
                    let line = old.start() + old.len() + (at - after);
                    lines.insert(at, format!("#line {line}\n"));
                }
            }
            next_hunk = this_hunk;
        }
        touched_names.sort();
        touched_names.dedup();
        files.push(PatchedFile {
            pre_text: original.clone(),
            plain_post_text: patched.clone(),
            path,
            kind,
            post_text: lines.concat(),
            touched_names,
        });
    }
    Ok(files)
}

/// For each line of C `text`: whether a preprocessor directive may be
/// inserted before it, i.e. it does not start inside a block comment or
/// continue the line before it (a trailing backslash: a macro definition,
/// usually).
fn directive_lines(text: &str) -> Vec<bool> {
    let mut in_comment = false;
    let mut continued = false;
    let mut quote: Option<u8> = None;
    let mut line_comment = false;
    let mut ok = Vec::new();
    for line in text.split_inclusive('\n') {
        ok.push(!in_comment && !continued);
        if !continued {
            quote = None;
            line_comment = false;
        }
        let body = line.trim_end_matches(['\n', '\r']).as_bytes();
        let mut i = 0;
        while i < body.len() && !line_comment {
            let c = body[i];
            let next = body.get(i + 1).copied();
            if in_comment {
                if c == b'*' && next == Some(b'/') {
                    in_comment = false;
                    i += 1;
                }
            } else if let Some(q) = quote {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            } else if c == b'/' && next == Some(b'*') {
                in_comment = true;
                i += 1;
            } else if c == b'/' && next == Some(b'/') {
                line_comment = true;
            } else if c == b'"' || c == b'\'' {
                quote = Some(c);
            }
            i += 1;
        }
        continued = body.ends_with(b"\\");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn line_numbers_after_a_growing_hunk_return_to_the_original() {
        let src = "int a;\nint b;\nint c;\nint d;\n";
        let dir = tree(&[("x/f.c", src)]);
        let patch = "--- a/x/f.c\n+++ b/x/f.c\n@@ -1,2 +1,3 @@\n int a;\n+int a2;\n int b;\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "int a;\nint a2;\nint b;\n#line 3\nint c;\nint d;\n"
        );
        assert_eq!(files[0].kind, FileKind::CSource);
        assert!(files[0].touched_names.contains(&"a2".to_owned()));
    }

    #[test]
    fn the_line_directive_waits_for_the_end_of_a_comment_or_macro() {
        // The hunk's last context line opens a comment (as in a header
        // gaining two macros): the directive goes after the comment.
        let src = "#define A 1\n\n/*\n * text\n */\nint x;\n";
        let dir = tree(&[("f.h", src)]);
        let patch = "--- a/f.h\n+++ b/f.h\n@@ -1,3 +1,4 @@\n #define A 1\n+#define B 2\n \n /*\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "#define A 1\n#define B 2\n\n/*\n * text\n */\n#line 6\nint x;\n"
        );
        // ... and after a continued macro definition.
        let src = "int a;\n#define M(x) \\\n\t(x)\nint b;\n";
        let dir = tree(&[("g.c", src)]);
        let patch = "--- a/g.c\n+++ b/g.c\n@@ -1,2 +1,3 @@\n int a;\n+int a2;\n #define M(x) \\\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "int a;\nint a2;\n#define M(x) \\\n\t(x)\n#line 4\nint b;\n"
        );
    }

    #[test]
    fn comment_and_continuation_state_is_tracked_line_by_line() {
        let text = "a /* b\nc */ d\ne \"/*\" f\n// g /*\n#define h \\\n i\nj\n";
        assert_eq!(
            directive_lines(text),
            [true, false, true, true, true, false, true]
        );
    }

    #[test]
    fn same_length_hunks_need_no_line_directive() {
        let dir = tree(&[("f.h", "x\ny\n")]);
        let files = apply(
            "--- a/f.h\n+++ b/f.h\n@@ -1,2 +1,2 @@\n-x\n+z\n y\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(files[0].post_text, "z\ny\n");
        assert_eq!(files[0].kind, FileKind::Header);
    }

    #[test]
    fn unsupported_files_are_refused_with_the_reason() {
        let dir = tree(&[("arch/x86/entry/entry_64.S", "nop\n"), ("Makefile", "x\n")]);
        for (path, want) in [
            ("arch/x86/entry/entry_64.S", "assembly"),
            ("Makefile", "build configuration"),
        ] {
            let patch = format!("--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x\n+y\n");
            let err = apply(&patch, dir.path()).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = apply(
            "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1 @@\n+int x;\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("adding or deleting files"));
    }

    #[test]
    fn a_patch_that_does_not_apply_is_an_error() {
        let dir = tree(&[("f.c", "a\nb\n")]);
        let err = apply(
            "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n-q\n+z\n b\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not apply"), "{err}");
    }

    #[test]
    fn git_diffs_with_several_files_are_split() {
        let dir = tree(&[("a.c", "1\n"), ("b.h", "2\n")]);
        let patch = "diff --git a/a.c b/a.c\nindex 1..2 100644\n--- a/a.c\n+++ b/a.c\n@@ -1 +1 @@\n-1\n+one\ndiff --git a/b.h b/b.h\n--- a/b.h\n+++ b/b.h\n@@ -1 +1 @@\n-2\n+two\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].post_text, "one\n");
        assert_eq!(files[1].post_text, "two\n");
    }
}
