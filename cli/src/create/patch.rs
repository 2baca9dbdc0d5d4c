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
        let original_lines: Vec<&str> = original.lines().collect();
        for hunk in patch.hunks() {
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
        }
        let post_text = with_line_directives(&patched, &patch);
        touched_names.sort();
        touched_names.dedup();
        files.push(PatchedFile {
            pre_text: original.clone(),
            plain_post_text: patched.clone(),
            path,
            kind,
            post_text,
            touched_names,
        });
    }
    Ok(files)
}

/// `patched` with a `#line` directive after each run of changed lines that
/// changes the number of lines, as upstream klp-build does, so the lines
/// after it keep their original numbers: at the first line after the run
/// where a directive may go (not inside a comment or a continued macro),
/// before the next run.
fn with_line_directives(patched: &str, patch: &diffy::Patch<'_, str>) -> String {
    // (0-based index in `patched` of the line after a length-changing run,
    // that line's number in the original)
    let mut resume: Vec<(usize, usize)> = Vec::new();
    // 0-based indices in `patched` where runs of changed lines start.
    let mut runs: Vec<usize> = Vec::new();
    for hunk in patch.hunks() {
        let (old, new) = (hunk.old_range(), hunk.new_range());
        // An empty range names the line before it.
        let mut old_no = old.start() + usize::from(old.is_empty());
        let mut new_no = new.start() + usize::from(new.is_empty());
        let (mut inserted, mut deleted) = (0, 0);
        let mut in_run = false;
        for line in hunk.lines() {
            match line {
                diffy::Line::Context(_) => {
                    if in_run && inserted != deleted {
                        resume.push((new_no - 1, old_no));
                    }
                    (in_run, inserted, deleted) = (false, 0, 0);
                    old_no += 1;
                    new_no += 1;
                }
                diffy::Line::Insert(_) | diffy::Line::Delete(_) => {
                    if !in_run {
                        runs.push(new_no.saturating_sub(1));
                        in_run = true;
                    }
                    if matches!(line, diffy::Line::Insert(_)) {
                        inserted += 1;
                        new_no += 1;
                    } else {
                        deleted += 1;
                        old_no += 1;
                    }
                }
            }
        }
        if in_run && inserted != deleted {
            resume.push((new_no - 1, old_no));
        }
    }
    let mut lines: Vec<String> = patched.split_inclusive('\n').map(str::to_owned).collect();
    let directive_ok = directive_lines(patched);
    // Last first, so earlier insertion points stay valid.
    for &(after, old_no) in resume.iter().rev() {
        let limit = runs
            .iter()
            .copied()
            .find(|&r| r > after)
            .unwrap_or(lines.len())
            .min(lines.len());
        let at = (after..limit).find(|&i| directive_ok.get(i).copied().unwrap_or(false));
        if let Some(at) = at {
            lines.insert(at, format!("#line {}\n", old_no + (at - after)));
        }
    }
    lines.concat()
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

/// Whether two versions of a C file give the preprocessor the same tokens
/// on the same line numbers: they differ only in comments and in the
/// amount (not the presence) of whitespace between tokens. Then no object
/// that includes the file can change, so a header change of that kind needs
/// no object preprocessed. Line numbers count `#line` directives (those
/// [`apply`] inserts after hunks that change the number of lines), since
/// `__LINE__` reaches the code; backslash-newlines are joined first, as the
/// compiler does, so a token split across lines is one token.
pub fn same_tokens(pre: &str, post: &str) -> bool {
    token_lines(pre) == token_lines(post)
}

/// Marks, in [`token_lines`], a logical line that spans several physical
/// ones (no C line starts with a NUL).
const SPAN: char = '\0';

/// Ends, in [`token_lines`], a line whose block comment goes on.
const OPEN_COMMENT: char = '\u{1}';

/// Conditional nesting, as far as [`token_lines`] needs it: whether a line
/// is outside every `#if` group but a header's include guard (an `#ifndef`
/// that is the file's first directive).
#[derive(Default)]
struct Conditionals {
    depth: usize,
    directives: usize,
    /// The name the first directive, an `#ifndef`, tests.
    first_ifndef: Option<String>,
    guard: bool,
}

impl Conditionals {
    /// Follows the directive on normalised line `norm`, if it is one.
    fn track(&mut self, norm: &str) {
        let Some(rest) = norm.strip_prefix('#') else {
            return;
        };
        let mut words = rest.split_whitespace();
        let word = words.next().unwrap_or("");
        let name = words.next().unwrap_or("");
        self.directives += 1;
        match word {
            "if" | "ifdef" | "ifndef" => {
                if self.directives == 1 && word == "ifndef" {
                    self.first_ifndef = Some(name.to_owned());
                }
                self.depth += 1;
            }
            "endif" => self.depth = self.depth.saturating_sub(1),
            // `#ifndef X` then `#define X`: an include guard.
            "define" if self.directives == 2 => {
                self.guard = self.first_ifndef.as_deref() == Some(name);
            }
            _ => {}
        }
    }

    fn unconditional(&self) -> bool {
        self.depth <= usize::from(self.guard)
    }
}

/// The macros a header change is made of, when each token line it changes
/// (as [`same_tokens`] compares them) is a `#define` or an `#undef`: the
/// names those lines define or undefine. Then an object's preprocessed
/// source can only change where it expands, tests or mentions one of them.
/// `None` when the change touches anything else.
pub fn changed_macros(pre: &str, post: &str) -> Option<std::collections::BTreeSet<String>> {
    let mut count: std::collections::HashMap<(usize, String), i64> = Default::default();
    for line in token_lines(pre) {
        *count.entry(line).or_default() += 1;
    }
    for line in token_lines(post) {
        *count.entry(line).or_default() -= 1;
    }
    let mut names = std::collections::BTreeSet::new();
    for ((_, text), n) in count {
        if n == 0 {
            continue;
        }
        // A line that spans several: only a directive's may differ.
        let text = match text.strip_prefix(SPAN) {
            Some(marked) => marked.split_once(SPAN).map_or("", |(_, t)| t),
            None => &text,
        };
        names.insert(macro_directive_name(text)?.to_owned());
    }
    Some(names)
}

/// `NAME` of a normalised `#define NAME...` or `#undef NAME` line.
fn macro_directive_name(norm: &str) -> Option<&str> {
    let rest = norm.strip_prefix('#')?.trim_start();
    let rest = rest
        .strip_prefix("define ")
        .or_else(|| rest.strip_prefix("undef "))?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The normalised non-empty lines of C `text`, each with its line number:
/// comments become one space, whitespace runs one space, lines trimmed;
/// string and character literals are kept as they are.
fn token_lines(text: &str) -> Vec<(usize, String)> {
    // Joining backslash-newlines: each logical line remembers the number of
    // the physical line it starts on and how many it spans.
    let mut logical: Vec<(usize, usize, String)> = Vec::new();
    let mut physical = 0;
    let mut pending: Option<(usize, usize, String)> = None;
    for raw in text.split('\n') {
        physical += 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, span, mut joined) = pending.take().unwrap_or((physical, 0, String::new()));
        // gcc also joins a backslash followed by blanks.
        match line.trim_end_matches([' ', '\t']).strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, span + 1, joined));
            }
            None => {
                joined.push_str(line);
                logical.push((start, span + 1, joined));
            }
        }
    }
    logical.extend(pending);
    let mut out = Vec::new();
    let mut in_comment = false;
    let mut conditionals = Conditionals::default();
    // Line numbers as the compiler counts them after `#line N`.
    let mut offset: isize = 0;
    for (start, span, line) in logical {
        let number = start as isize + offset;
        let mut norm = String::new();
        let mut space = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.get(i) {
            let next = chars.get(i + 1).copied();
            if in_comment {
                if c == '*' && next == Some('/') {
                    in_comment = false;
                    space = true;
                    i += 1;
                }
            } else if let Some(q) = quote {
                norm.push(c);
                if c == '\\' {
                    if let Some(n) = next {
                        norm.push(n);
                        i += 1;
                    }
                } else if c == q {
                    quote = None;
                }
            } else if c == '/' && next == Some('*') {
                in_comment = true;
                i += 1;
            } else if c == '/' && next == Some('/') {
                break;
            } else if matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r') {
                space = true;
            } else {
                if space && !norm.is_empty() {
                    norm.push(' ');
                }
                space = false;
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                norm.push(c);
            }
            i += 1;
        }
        if in_comment && !norm.is_empty() {
            // A comment that goes on after tokens: what follows it on later
            // lines may still belong to this line's directive.
            norm.push(OPEN_COMMENT);
        }
        conditionals.track(&norm);
        if let Some(target) = line_directive(&norm) {
            // The line after the directive is number `target`, where the
            // compiler reads it: outside conditionals (the include guard
            // aside), since one in a skipped group is ignored. Elsewhere it
            // is left out, so what follows looks moved (never the same).
            if conditionals.unconditional() {
                offset = target as isize - (start + span) as isize;
                continue;
            }
        }
        if span > 1 {
            out.push((number.max(0) as usize, format!("{SPAN}{span}{SPAN}{norm}")));
        }
        if !norm.is_empty() {
            out.push((number.max(0) as usize, norm));
        }
    }
    out
}

/// `N` of a normalised `#line N` directive.
fn line_directive(norm: &str) -> Option<usize> {
    let rest = norm.strip_prefix('#')?.trim_start().strip_prefix("line")?;
    let rest = rest.trim();
    rest.parse().ok()
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
    fn a_comment_only_change_keeps_the_same_tokens() {
        let pre = "/* old */\n#define A(x) (x + 1) // one\nstruct s { int a; };\n";
        let post = "/* new, and\n * longer */\n#line 2\n#define A(x)  (x +  1)\nstruct s {\tint a; }; /* c */\n";
        assert!(same_tokens(pre, post));
    }

    #[test]
    fn token_changes_whitespace_presence_and_line_moves_are_differences() {
        let pre = "#define A(x) (x + 1)\nint f(void);\n";
        // A token changed.
        assert!(!same_tokens(pre, "#define A(x) (x + 2)\nint f(void);\n"));
        // `A (x)` is an object-like macro: whitespace presence counts.
        assert!(!same_tokens(pre, "#define A (x) (x + 1)\nint f(void);\n"));
        // A comment that shifts later lines, with no `#line`: __LINE__ moves.
        assert!(!same_tokens(
            pre,
            "/* c */\n#define A(x) (x + 1)\nint f(void);\n"
        ));
        // A new macro.
        assert!(!same_tokens(
            pre,
            "#define A(x) (x + 1)\n#define B 1\nint f(void);\n"
        ));
    }

    #[test]
    fn comment_markers_inside_literals_and_continued_lines_are_not_comments() {
        let pre = "const char *s = \"/* not a comment */\";\n";
        assert!(!same_tokens(pre, "const char *s = \"\";\n"));
        // A backslash-newline joins a token: `ab` is not `a b`.
        assert!(!same_tokens("int a\\\nb;\n", "int a\\\n b;\n"));
        // A `//` comment continued by a backslash swallows the next line.
        assert!(same_tokens(
            "// x \\\nint y;\nint z;\n",
            "// x \\\n int w;\nint z;\n"
        ));
    }

    #[test]
    fn a_line_directive_inside_a_conditional_is_not_trusted() {
        // gcc ignores `#line` in a skipped group: __LINE__ below moves.
        let pre = "#if 0\n/* a */\n#endif\nint y = __LINE__;\n";
        let post = "#if 0\n/* a\n */\n#line 3\n#endif\nint y = __LINE__;\n";
        assert!(!same_tokens(pre, post));
        // An include guard is no conditional.
        let pre = "#ifndef _H\n#define _H\n/* a */\nint y = __LINE__;\n#endif\n";
        let post = "#ifndef _H\n#define _H\n/* a\n */\n#line 4\nint y = __LINE__;\n#endif\n";
        assert!(same_tokens(pre, post));
    }

    #[test]
    fn continuations_comments_in_directives_and_odd_blanks_are_not_glossed_over() {
        // A backslash and blanks still continue the line.
        assert!(!same_tokens("int a\\ \nb;\n", "int a\\ \n b;\n"));
        // A comment that spans lines keeps the directive going.
        assert!(!same_tokens("#define A 1 /*\n*/ x\n", "#define A 1\nx\n"));
        // A no-break space is a stray character to gcc, not a blank.
        assert!(!same_tokens("int a;\n", "int\u{a0}a;\n"));
        // Joining two lines of code moves __LINE__: no macro change.
        assert_eq!(
            changed_macros("int x = \\\n__LINE__;\n", "int x = __LINE__;\n"),
            None
        );
    }

    #[test]
    fn a_comment_hunk_patched_with_a_line_directive_keeps_the_same_tokens() {
        let src = "struct a {\n\tint x;\n};\nstatic inline int f(void) { return __LINE__; }\n";
        let dir = tree(&[("include/linux/h.h", src)]);
        let patch = "--- a/include/linux/h.h\n+++ b/include/linux/h.h\n@@ -1,3 +1,6 @@\n+/*\n+ * A comment.\n+ */\n struct a {\n-\tint x;\n+\tint  x; /* x */\n };\n";
        let files = apply(patch, dir.path()).unwrap();
        assert!(same_tokens(&files[0].pre_text, &files[0].post_text));
        assert!(!same_tokens(&files[0].pre_text, &files[0].plain_post_text));
    }

    #[test]
    fn a_change_of_only_define_lines_names_its_macros() {
        let src = "#define A 1\n#define M(x) \\\n\t(x)\nstruct s { int a; };\n";
        let dir = tree(&[("include/linux/h.h", src)]);
        // A macro added, one changed across a continuation, spacing elsewhere.
        let patch = "--- a/include/linux/h.h\n+++ b/include/linux/h.h\n@@ -1,4 +1,5 @@\n #define A 1\n+#define B 2\n #define M(x) \\\n-\t(x)\n+\t((x) + 1)\n-struct s { int a; };\n+struct s {  int a; };\n";
        let files = apply(patch, dir.path()).unwrap();
        let names = changed_macros(&files[0].pre_text, &files[0].post_text).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["B", "M"]);
        // A changed declaration is not a macro change.
        let patch = "--- a/include/linux/h.h\n+++ b/include/linux/h.h\n@@ -4,1 +4,1 @@\n-struct s { int a; };\n+struct s { long a; };\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            changed_macros(&files[0].pre_text, &files[0].post_text),
            None
        );
        // Nor is a conditional.
        assert_eq!(
            changed_macros("#ifdef A\n#endif\n", "#ifdef B\n#endif\n"),
            None
        );
    }

    #[test]
    fn line_numbers_after_a_growing_hunk_return_to_the_original() {
        let src = "int a;\nint b;\nint c;\nint d;\n";
        let dir = tree(&[("x/f.c", src)]);
        let patch = "--- a/x/f.c\n+++ b/x/f.c\n@@ -1,2 +1,3 @@\n int a;\n+int a2;\n int b;\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "int a;\nint a2;\n#line 2\nint b;\nint c;\nint d;\n"
        );
        assert_eq!(files[0].kind, FileKind::CSource);
        assert!(files[0].touched_names.contains(&"a2".to_owned()));
    }

    #[test]
    fn the_line_directive_waits_for_the_end_of_a_comment_or_macro() {
        // A line added inside a comment: the directive goes after it.
        let src = "#define A 1\n/*\n * text\n */\nint x;\n";
        let dir = tree(&[("f.h", src)]);
        let patch =
            "--- a/f.h\n+++ b/f.h\n@@ -1,3 +1,4 @@\n #define A 1\n /*\n+ * more\n  * text\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "#define A 1\n/*\n * more\n * text\n */\n#line 5\nint x;\n"
        );
        // ... and inside a continued macro definition.
        let src = "int a;\n#define M(x) \\\n\t(x)\nint b;\n";
        let dir = tree(&[("g.c", src)]);
        let patch =
            "--- a/g.c\n+++ b/g.c\n@@ -2,2 +2,3 @@\n #define M(x) \\\n+\t(x) + \\\n \t(x)\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "int a;\n#define M(x) \\\n\t(x) + \\\n\t(x)\n#line 4\nint b;\n"
        );
    }

    #[test]
    fn each_run_of_changes_in_a_hunk_gets_its_own_line_directive() {
        let src = "a;\nb;\nc;\nd;\ne;\n";
        let dir = tree(&[("h.c", src)]);
        let patch = "--- a/h.c\n+++ b/h.c\n@@ -1,5 +1,5 @@\n+x;\n a;\n b;\n-c;\n-d;\n+cd;\n e;\n";
        let files = apply(patch, dir.path()).unwrap();
        assert_eq!(
            files[0].post_text,
            "x;\n#line 1\na;\nb;\ncd;\n#line 5\ne;\n"
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
