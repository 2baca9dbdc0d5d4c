//! What a header change can reach in one preprocessed translation unit.
//!
//! A header most of the kernel includes puts the same changed declarations
//! into thousands of objects, and most of them never use those. The two
//! preprocessed versions of an object are split into top-level
//! declarations and compared declaration by declaration. When the changed
//! ones only declare names that nothing else in the unit mentions, and
//! none of them emits anything of its own (a prototype, an `extern`
//! declaration, a type, a `static` function or variable that nothing
//! keeps), the compiler drops them and the object code cannot differ, so
//! the object need not be compiled.
//!
//! Every guess here errs one way: a name that might be declared counts as
//! declared, a mention anywhere (a string literal, a pragma) counts as a
//! use, and a declaration that might emit code or data counts as emitting
//! it. Anything the parser does not follow is a difference in code.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Range;

/// How two preprocessed versions of a translation unit differ.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    /// The compiler gets the same tokens (line markers aside).
    None,
    /// Only in declarations that emit nothing of their own and whose names
    /// (listed) nothing else in the unit mentions: the code is the same.
    Unreferenced(Vec<String>),
    /// The code may differ: the object must be compiled.
    Code,
}

/// Compares two preprocessed versions (`cc -E` output) of one unit.
/// `prunable` is false when the compile command keeps unreferenced
/// functions or variables (`-O0`, `-fkeep-*`, `-fno-toplevel-reorder`), so
/// only identical tokens count as no difference.
pub fn compare(pre: &[u8], post: &[u8], prunable: bool) -> Difference {
    // `__builtin_LINE`/`__builtin_FILE` read the line markers.
    let markers = reads_markers(pre) || reads_markers(post);
    let (pre, post) = (lex(pre, markers), lex(post, markers));
    let (Some(pre_chunks), Some(post_chunks)) = (chunks(&pre), chunks(&post)) else {
        return if same_tokens(&pre, &post) {
            Difference::None
        } else {
            Difference::Code
        };
    };
    // Each distinct declaration (tokens and spacing) gets a number; the
    // diff compares the numbers.
    let mut ids: std::collections::HashMap<Chunk, usize> = Default::default();
    let mut numbered = [Vec::new(), Vec::new()];
    for (out, (tokens, ranges)) in numbered
        .iter_mut()
        .zip([(&pre, &pre_chunks), (&post, &post_chunks)])
    {
        for r in ranges {
            let next = ids.len();
            out.push(*ids.entry(Chunk::new(tokens, r)).or_insert(next));
        }
    }
    let [a, b] = numbered;
    let mut pre_changed = vec![false; a.len()];
    let mut post_changed = vec![false; b.len()];
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &a, &b) {
        let (tag, old, new) = op.as_tag_tuple();
        if tag != similar::DiffTag::Equal {
            pre_changed[old].fill(true);
            post_changed[new].fill(true);
        }
    }
    if !pre_changed.contains(&true) && !post_changed.contains(&true) {
        return Difference::None;
    }
    if !prunable {
        return Difference::Code;
    }
    let mut names: std::collections::BTreeSet<String> = Default::default();
    for (tokens, ranges, changed) in [
        (&pre, &pre_chunks, &pre_changed),
        (&post, &post_chunks, &post_changed),
    ] {
        let unit = Unit::read(tokens, ranges);
        for (decl, _) in unit.decls.iter().zip(changed.iter()).filter(|(_, c)| **c) {
            match decl {
                Some(d) if d.inert => names.extend(
                    d.names
                        .iter()
                        .map(|n| String::from_utf8_lossy(n).into_owned()),
                ),
                _ => return Difference::Code,
            }
        }
        if unit
            .live()
            .iter()
            .zip(changed.iter())
            .any(|(l, c)| *l && *c)
        {
            return Difference::Code;
        }
    }
    Difference::Unreferenced(names.into_iter().collect())
}

/// The top-level declarations of one version of a unit, read.
struct Unit<'t, 'a> {
    tokens: &'t [Token<'a>],
    ranges: &'t [Range<usize>],
    /// Per declaration; `None` where it could not be read.
    decls: Vec<Option<Declaration<'a>>>,
}

impl<'t, 'a> Unit<'t, 'a> {
    fn read(tokens: &'t [Token<'a>], ranges: &'t [Range<usize>]) -> Self {
        let typedefs = Typedefs::of(tokens, ranges);
        let decls = ranges
            .iter()
            .map(|r| declaration(&tokens[r.start..r.end], &typedefs))
            .collect();
        Self {
            tokens,
            ranges,
            decls,
        }
    }

    /// Which declarations can reach the object code: those that emit
    /// something of their own (or cannot be read), and every declaration
    /// of a name that a reaching one mentions, in code, in a string (asm
    /// names symbols in strings) or in a pragma.
    fn live(&self) -> Vec<bool> {
        let mut declaring: std::collections::HashMap<&[u8], Vec<usize>> = Default::default();
        for (i, d) in self.decls.iter().enumerate() {
            for name in d.iter().flat_map(|d| &d.names) {
                declaring.entry(name).or_default().push(i);
            }
        }
        let mut live: Vec<bool> = self
            .decls
            .iter()
            .map(|d| !d.as_ref().is_some_and(|d| d.inert))
            .collect();
        let mut work: Vec<usize> = (0..live.len()).filter(|&i| live[i]).collect();
        while let Some(i) = work.pop() {
            let range = &self.ranges[i];
            for t in &self.tokens[range.start..range.end] {
                let words: Box<dyn Iterator<Item = &[u8]>> = match t.kind {
                    Kind::Ident => Box::new(std::iter::once(t.text)),
                    Kind::Literal | Kind::Directive => Box::new(words(t.text)),
                    Kind::Number | Kind::Punct => continue,
                };
                for w in words {
                    for &j in declaring.get(w).into_iter().flatten() {
                        if !live[j] {
                            live[j] = true;
                            work.push(j);
                        }
                    }
                }
            }
        }
        live
    }
}

/// Whether a compile command lets the compiler drop unreferenced static
/// functions and variables (see [`compare`]).
pub fn drops_unreferenced(argv: &[String]) -> bool {
    let optimizes = argv
        .iter()
        .rev()
        .find(|a| a.starts_with("-O"))
        .is_some_and(|a| a != "-O0");
    optimizes
        && !argv.iter().any(|a| {
            a.starts_with("-fkeep-") || a == "-fno-toplevel-reorder" || a == "-fno-unit-at-a-time"
        })
}

fn reads_markers(text: &[u8]) -> bool {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    has(b"__builtin_LINE") || has(b"__builtin_FILE")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Number,
    /// A string or character literal, prefix included.
    Literal,
    Punct,
    /// A line of `cc -E` output that starts with `#`: a pragma, or a line
    /// marker when markers count.
    Directive,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a [u8],
    /// Whitespace comes before it: two texts whose tokens and spacing are
    /// the same are the same program, however the lexer splits them.
    spaced: bool,
}

impl Token<'_> {
    fn is(&self, s: &str) -> bool {
        self.text == s.as_bytes()
    }
}

fn same_tokens(a: &[Token], b: &[Token]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.text == y.text && x.spaced == y.spaced)
}

/// The punctuators of more than one character, longest first (digraphs
/// included, as the compiler reads them).
const PUNCTUATORS: [&[u8]; 25] = [
    b"%:%:", b"...", b"<<=", b">>=", b"->", b"++", b"--", b"<<", b">>", b"<=", b">=", b"==", b"!=",
    b"&&", b"||", b"*=", b"/=", b"%=", b"+=", b"-=", b"&=", b"^=", b"|=", b"##", b"<:",
];
const DIGRAPHS: [&[u8]; 4] = [b":>", b"<%", b"%>", b"%:"];

/// The tokens of preprocessed C. Line markers are left out unless
/// `markers`; other lines starting with `#` are one token each.
fn lex(text: &[u8], markers: bool) -> Vec<Token<'_>> {
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut tokens = Vec::with_capacity(text.len() / 4);
    let mut i = 0;
    let mut line_start = true;
    let mut spaced = true;
    while i < text.len() {
        let c = text[i];
        if c == b'\n' {
            line_start = true;
            spaced = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let start = i;
        let kind = if line_start && c == b'#' {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
            if !markers && super::compile::is_line_marker(text[start..i].trim_ascii()) {
                continue;
            }
            Kind::Directive
        } else if c == b'"' || c == b'\'' {
            i = literal_end(text, i);
            Kind::Literal
        } else if c.is_ascii_digit()
            || (c == b'.' && text.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < text.len() {
                let d = text[i];
                let exponent_sign =
                    matches!(d, b'+' | b'-') && matches!(text[i - 1], b'e' | b'E' | b'p' | b'P');
                if !(exponent_sign || is_ident(d) || d == b'.') {
                    break;
                }
                i += 1;
            }
            Kind::Number
        } else if is_ident(c) {
            while i < text.len() && is_ident(text[i]) {
                i += 1;
            }
            let prefix = matches!(&text[start..i], b"L" | b"u" | b"U" | b"u8");
            if prefix && matches!(text.get(i), Some(b'"' | b'\'')) {
                i = literal_end(text, i);
                Kind::Literal
            } else {
                Kind::Ident
            }
        } else {
            let rest = &text[i..];
            let len = PUNCTUATORS
                .iter()
                .chain(&DIGRAPHS)
                .find(|p| rest.starts_with(p))
                .map_or(1, |p| p.len());
            i += len;
            Kind::Punct
        };
        tokens.push(Token {
            kind,
            text: &text[start..i],
            spaced,
        });
        line_start = false;
        spaced = false;
    }
    tokens
}

/// The end of the literal opening at `i` (a quote), escapes followed; an
/// unterminated one ends at the line's end.
fn literal_end(text: &[u8], mut i: usize) -> usize {
    let quote = text[i];
    i += 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

/// The identifier-like words of a literal or directive.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80))
        .filter(|w| !w.is_empty())
}

/// A top-level declaration as the diff compares it: its tokens and their
/// spacing (the first token's spacing aside).
struct Chunk<'t, 'a> {
    tokens: &'t [Token<'a>],
    hash: u64,
}

impl<'t, 'a> Chunk<'t, 'a> {
    fn new(tokens: &'t [Token<'a>], range: &Range<usize>) -> Self {
        let tokens = &tokens[range.start..range.end];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (i, t) in tokens.iter().enumerate() {
            t.text.hash(&mut h);
            (i > 0 && t.spaced).hash(&mut h);
        }
        Self {
            tokens,
            hash: h.finish(),
        }
    }
}

impl PartialEq for Chunk<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.tokens.len() == other.tokens.len()
            && self
                .tokens
                .iter()
                .zip(other.tokens)
                .enumerate()
                .all(|(i, (x, y))| x.text == y.text && (i == 0 || x.spaced == y.spaced))
    }
}

impl Eq for Chunk<'_, '_> {}

impl Hash for Chunk<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

/// Splits the tokens into top-level declarations: each ends with a `;`
/// outside brackets, or with the `}` of a function body; a directive
/// between declarations is one of its own. `None` when the brackets do not
/// balance.
fn chunks(tokens: &[Token]) -> Option<Vec<Range<usize>>> {
    let mut out = Vec::new();
    let mut start = 0;
    // Open brackets, each with whether it is a function's body.
    let mut open: Vec<(u8, bool)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let first = t.text.first().copied().unwrap_or(0);
        if t.kind == Kind::Directive {
            if open.is_empty() && start == i {
                out.push(i..i + 1);
                start = i + 1;
            }
            continue;
        }
        if t.kind != Kind::Punct {
            continue;
        }
        match t.text {
            b"(" | b"[" | b"{" | b"<:" | b"<%" => {
                let body = open.is_empty()
                    && matches!(t.text, b"{" | b"<%")
                    && brace_kind(&tokens[start..i]) == Brace::FunctionBody;
                open.push((first, body));
            }
            b")" | b"]" | b"}" | b":>" | b"%>" => {
                let close = match t.text {
                    b")" => b'(',
                    b"]" | b":>" => b'[',
                    _ => b'{',
                };
                let (opened, body) = open.pop()?;
                let opened = match opened {
                    b'<' if close == b'[' => b'[',
                    b'<' | b'%' => b'{',
                    o => o,
                };
                if opened != close {
                    return None;
                }
                if body && open.is_empty() {
                    out.push(start..i + 1);
                    start = i + 1;
                }
            }
            b";" if open.is_empty() => {
                out.push(start..i + 1);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !open.is_empty() {
        return None;
    }
    if start < tokens.len() {
        out.push(start..tokens.len());
    }
    Some(out)
}

/// What a `{` at a declaration's top level opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Brace {
    FunctionBody,
    /// The members of a struct or union, or the enumerators of an enum.
    TagBody,
    Initializer,
    Unknown,
}

/// Tells, from the tokens of the declaration before it, what a top-level
/// `{` opens: a function body follows the `)` of a parameter list, a tag
/// body `struct`/`union`/`enum` and maybe a tag, an initializer `=`;
/// attributes between are skipped.
fn brace_kind(before: &[Token]) -> Brace {
    if top_level(before).any(|i| before[i].is("=")) {
        return Brace::Initializer;
    }
    let mut j = before.len();
    loop {
        let Some(t) = j.checked_sub(1).and_then(|k| before.get(k)) else {
            return Brace::Unknown;
        };
        j -= 1;
        if t.is(")") {
            let Some(open) = matching_open(before, j) else {
                return Brace::Unknown;
            };
            match open.checked_sub(1).and_then(|k| before.get(k)) {
                Some(a) if is_attribute_keyword(a) => j = open - 1,
                _ => return Brace::FunctionBody,
            }
        } else if is_tag_keyword(t) {
            return Brace::TagBody;
        } else if t.kind == Kind::Ident && !is_keyword(t) {
            let tagged = j
                .checked_sub(1)
                .and_then(|k| before.get(k))
                .is_some_and(is_tag_keyword);
            return if tagged {
                Brace::TagBody
            } else {
                Brace::Unknown
            };
        } else if t.is("=") {
            return Brace::Initializer;
        } else {
            return Brace::Unknown;
        }
    }
}

/// The index of the `(` that the `)` at `close` closes.
fn matching_open(tokens: &[Token], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for k in (0..=close).rev() {
        let t = tokens.get(k)?;
        if t.is(")") {
            depth += 1;
        } else if t.is("(") {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// The index of the bracket that closes the one opening at `open`.
fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        if t.kind != Kind::Punct {
            continue;
        }
        match t.text {
            b"(" | b"[" | b"{" | b"<:" | b"<%" => depth += 1,
            b")" | b"]" | b"}" | b":>" | b"%>" => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

const KEYWORDS: &[&str] = &[
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_Bool",
    "_Complex",
    "_Generic",
    "_Imaginary",
    "_Noreturn",
    "_Static_assert",
    "_Thread_local",
    "__attribute__",
    "__attribute",
    "__asm__",
    "__asm",
    "asm",
    "__typeof__",
    "__typeof",
    "typeof",
    "typeof_unqual",
    "__typeof_unqual__",
    "__inline__",
    "__inline",
    "__volatile__",
    "__volatile",
    "__const__",
    "__const",
    "__restrict__",
    "__restrict",
    "__signed__",
    "__signed",
    "__extension__",
    "__label__",
    "__auto_type",
    "__int128",
    "__thread",
    "_Float16",
    "_Float32",
    "_Float64",
    "_Float128",
    "__builtin_va_list",
    "__alignof__",
    "__alignof",
    "alignas",
    "alignof",
    "static_assert",
    "thread_local",
    "constexpr",
    "nullptr",
    "true",
    "false",
    "bool",
    "__seg_gs",
    "__seg_fs",
    "__real__",
    "__imag__",
    "__builtin_offsetof",
    "__builtin_types_compatible_p",
    "__builtin_choose_expr",
    "__builtin_has_attribute",
];

fn is_keyword(t: &Token) -> bool {
    t.kind == Kind::Ident && KEYWORDS.iter().any(|k| t.is(k))
}

fn is_tag_keyword(t: &Token) -> bool {
    t.is("struct") || t.is("union") || t.is("enum")
}

/// A keyword whose parenthesised operand declares nothing: attributes, asm
/// labels, `typeof`, alignment, assertions.
fn is_attribute_keyword(t: &Token) -> bool {
    [
        "__attribute__",
        "__attribute",
        "__asm__",
        "__asm",
        "asm",
        "__typeof__",
        "__typeof",
        "typeof",
        "typeof_unqual",
        "__typeof_unqual__",
        "_Alignas",
        "alignas",
        "_Alignof",
        "alignof",
        "__alignof__",
        "__alignof",
        "sizeof",
        "_Static_assert",
        "static_assert",
        "_Generic",
        "__builtin_offsetof",
        "__builtin_types_compatible_p",
        "__builtin_choose_expr",
        "__builtin_has_attribute",
    ]
    .iter()
    .any(|k| t.is(k))
}

/// Attributes that make a definition emitted, or a declaration a
/// definition, whether or not anything refers to it.
const KEEPS: &[&str] = &[
    "used",
    "constructor",
    "destructor",
    "section",
    "alias",
    "weak",
    "weakref",
    "externally_visible",
    "retain",
    "no_reorder",
    "visibility",
    "ifunc",
    "symver",
];

/// Of [`KEEPS`], those that make a declaration (no body, no initializer)
/// a definition.
const DEFINES: &[&str] = &["alias", "weakref", "ifunc", "symver"];

fn attribute_in(t: &Token, list: &[&str]) -> bool {
    if t.kind != Kind::Ident {
        return false;
    }
    let text = t.text;
    let bare = text
        .strip_prefix(b"__")
        .and_then(|s| s.strip_suffix(b"__"))
        .unwrap_or(text);
    list.iter().any(|k| bare == k.as_bytes())
}

/// The typedef names of a unit: `exact` holds only names certainly
/// declared by a `typedef` (to tell a type from a declared name), `all`
/// every identifier of a `typedef` declaration (to tell a parameter list
/// from a parenthesised declarator, where a type name is the safe guess).
struct Typedefs<'a> {
    exact: HashSet<&'a [u8]>,
    all: HashSet<&'a [u8]>,
}

impl<'a> Typedefs<'a> {
    fn of(tokens: &[Token<'a>], chunks: &[Range<usize>]) -> Self {
        let mut t = Typedefs {
            exact: HashSet::new(),
            all: HashSet::new(),
        };
        for range in chunks {
            let decl = &tokens[range.start..range.end];
            if !top_level(decl).any(|i| decl[i].is("typedef")) {
                continue;
            }
            t.all.extend(
                decl.iter()
                    .filter(|x| x.kind == Kind::Ident && !is_keyword(x))
                    .map(|x| x.text),
            );
            typedef_names(decl, &mut t.exact);
        }
        t
    }
}

/// The indices of a declaration's tokens outside every bracket.
fn top_level<'t>(decl: &'t [Token]) -> impl Iterator<Item = usize> + 't {
    let mut depth = 0usize;
    (0..decl.len()).filter(move |&i| {
        let t = &decl[i];
        let at_top = depth == 0;
        if t.kind == Kind::Punct {
            match t.text {
                b"(" | b"[" | b"{" | b"<:" | b"<%" => depth += 1,
                b")" | b"]" | b"}" | b":>" | b"%>" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        at_top && depth == 0
    })
}

/// Names a `typedef` declaration certainly declares or uses as types: the
/// identifiers outside brackets (but tags), and those of parenthesised
/// declarators `(*name)`, recursively.
fn typedef_names<'a>(decl: &[Token<'a>], out: &mut HashSet<&'a [u8]>) {
    let mut i = 0;
    while i < decl.len() {
        let t = &decl[i];
        if t.kind == Kind::Punct && matches!(t.text, b"(" | b"[" | b"{" | b"<:" | b"<%") {
            let Some(close) = matching_close(decl, i) else {
                return;
            };
            let prev_attr = i
                .checked_sub(1)
                .and_then(|k| decl.get(k))
                .is_some_and(is_attribute_keyword);
            if t.is("(") && !prev_attr && decl.get(i + 1).is_some_and(|n| n.is("*")) {
                typedef_names(&decl[i + 1..close], out);
            }
            i = close + 1;
            continue;
        }
        let tagged = i
            .checked_sub(1)
            .and_then(|k| decl.get(k))
            .is_some_and(is_tag_keyword);
        if t.kind == Kind::Ident && !is_keyword(t) && !tagged {
            out.insert(t.text);
        }
        i += 1;
    }
}

/// What a changed top-level declaration declares, and whether it emits
/// nothing of its own.
struct Declaration<'a> {
    names: Vec<&'a [u8]>,
    inert: bool,
}

/// What a parenthesised group of a declarator is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `(*name)`: declares what it holds.
    Declarator,
    /// A function's parameters: their names are not the unit's.
    Parameters,
    /// An attribute's, asm label's or `typeof`'s operand.
    Operand,
}

/// What came before, at one level of a declarator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev<'a> {
    Start,
    /// A name that may be the declared one (a function's, if a group
    /// follows).
    Name(&'a [u8]),
    /// A keyword, typedef name or tag: a type.
    Type,
    Attribute,
    Group(Group),
    Other,
}

/// The declaration `decl` (one chunk), or `None` when it cannot be read.
fn declaration<'a>(decl: &[Token<'a>], typedefs: &Typedefs<'a>) -> Option<Declaration<'a>> {
    let mut names = Vec::new();
    let first = decl.iter().find(|t| !t.is("__extension__"))?;
    if first.kind == Kind::Directive || first.is("asm") || first.is("__asm__") || first.is("__asm")
    {
        // A pragma, or asm at file scope: emitted as it is.
        return Some(Declaration {
            names,
            inert: false,
        });
    }
    if first.is("_Static_assert") || first.is("static_assert") {
        // Checked at compile time; no code.
        return Some(Declaration { names, inert: true });
    }
    let top: Vec<usize> = top_level(decl).collect();
    let keyword = |k: &str| top.iter().any(|&i| decl[i].is(k));
    let typedef = keyword("typedef");
    // Braces at the top level, and what they open (`top_level` leaves out
    // brackets themselves: a top-level `{` follows a top-level token or
    // starts the declaration).
    let mut braces = Vec::new();
    let mut depth = 0usize;
    for (i, t) in decl.iter().enumerate() {
        if t.kind != Kind::Punct {
            continue;
        }
        match t.text {
            b"{" | b"<%" => {
                if depth == 0 {
                    braces.push(brace_kind(&decl[..i]));
                }
                depth += 1;
            }
            b"(" | b"[" | b"<:" => depth += 1,
            b")" | b"]" | b"}" | b":>" | b"%>" => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if braces.contains(&Brace::Unknown) {
        return None;
    }
    let mut groups = Vec::new();
    declarators(decl, typedefs, typedef, &mut names, &mut groups);
    tags_and_enumerators(decl, &mut names);

    // The attributes of the declared thing itself (not of what a body
    // holds).
    let attributes = attribute_words(decl);
    let keeps = attributes.iter().any(|t| attribute_in(t, KEEPS));
    let defines = attributes.iter().any(|t| attribute_in(t, DEFINES));
    let body = braces.contains(&Brace::FunctionBody);
    let initialized = top.iter().any(|&i| decl[i].is("="));
    let inert = if typedef {
        true
    } else if keyword("static") {
        !keeps
    } else if keyword("extern") {
        !body && !initialized && !defines
    } else if body || initialized || defines {
        false
    } else {
        // No storage class: a type's definition alone, or a prototype.
        let comma = top.iter().any(|&i| decl[i].is(","));
        let tag_only = is_tag_keyword(first) && decl.last().is_some_and(|t| t.is(";")) && {
            // Outside brackets, nothing but the tag keyword, the tag,
            // attributes and the final `;`.
            let rest = top
                .iter()
                .filter(|&&i| !(is_tag_keyword(&decl[i]) || is_attribute_keyword(&decl[i])))
                .filter(|&&i| {
                    !(i > 0 && is_tag_keyword(&decl[i - 1]) && decl[i].kind == Kind::Ident)
                })
                .count();
            rest == 1 && !comma
        };
        // One function declarator: a name, its parameters, maybe
        // attributes or an asm label, the `;`.
        let declarator_groups: Vec<&Group> =
            groups.iter().filter(|g| **g != Group::Operand).collect();
        let prototype =
            !comma && declarator_groups == [&Group::Parameters] && ends_after_group(decl);
        tag_only || prototype
    };
    Some(Declaration { names, inert })
}

/// The words inside the `__attribute__((...))` operands of `decl` that
/// lie outside every brace (the attributes of what it declares).
fn attribute_words<'t, 'a>(decl: &'t [Token<'a>]) -> Vec<&'t Token<'a>> {
    let mut out = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < decl.len() {
        let t = &decl[i];
        if t.kind == Kind::Punct && matches!(t.text, b"{" | b"<%") {
            braces += 1;
        } else if t.kind == Kind::Punct && matches!(t.text, b"}" | b"%>") {
            braces = braces.saturating_sub(1);
        } else if braces == 0
            && (t.is("__attribute__") || t.is("__attribute"))
            && decl.get(i + 1).is_some_and(|n| n.is("("))
        {
            let close = matching_close(decl, i + 1).unwrap_or(decl.len());
            out.extend(decl[i + 1..close.min(decl.len())].iter());
            i = close;
        }
        i += 1;
    }
    out
}

/// Whether the declaration ends, after its last top-level group (and any
/// attributes or asm label after it), with its `;`.
fn ends_after_group(decl: &[Token]) -> bool {
    let mut j = decl.len();
    if !decl.last().is_some_and(|t| t.is(";")) {
        return false;
    }
    j -= 1;
    // Skip trailing attribute groups: `) __attribute__((x)) ;`
    loop {
        let Some(t) = j.checked_sub(1).and_then(|k| decl.get(k)) else {
            return false;
        };
        if !t.is(")") {
            return false;
        }
        let Some(open) = matching_open(decl, j - 1) else {
            return false;
        };
        match open.checked_sub(1).and_then(|k| decl.get(k)) {
            Some(a) if is_attribute_keyword(a) => j = open - 1,
            _ => return true,
        }
    }
}

/// The names the declarators of `decl` declare, at its top level and in
/// parenthesised declarators; parameter lists, attribute operands, array
/// sizes, bodies and initializers are skipped. `groups` receives the kind
/// of each top-level group, in order.
fn declarators<'a>(
    decl: &[Token<'a>],
    typedefs: &Typedefs<'a>,
    typedef: bool,
    names: &mut Vec<&'a [u8]>,
    groups: &mut Vec<Group>,
) {
    let mut prev = Prev::Start;
    let mut i = 0;
    while i < decl.len() {
        let t = &decl[i];
        match t.kind {
            Kind::Ident if is_tag_keyword(t) => {
                // The tag after it is a type (a definition of one is found
                // by `tags_and_enumerators`).
                i += 1;
                while decl.get(i).is_some_and(is_attribute_keyword) {
                    i = decl
                        .get(i + 1)
                        .filter(|n| n.is("("))
                        .and_then(|_| matching_close(decl, i + 1))
                        .map_or(i + 1, |c| c + 1);
                }
                if decl
                    .get(i)
                    .is_some_and(|n| n.kind == Kind::Ident && !is_keyword(n))
                {
                    i += 1;
                }
                prev = Prev::Type;
                continue;
            }
            Kind::Ident if is_attribute_keyword(t) => prev = Prev::Attribute,
            Kind::Ident if is_keyword(t) => prev = Prev::Type,
            Kind::Ident if typedef => {
                names.push(t.text);
                prev = Prev::Name(t.text);
            }
            Kind::Ident if typedefs.exact.contains(t.text) => prev = Prev::Type,
            Kind::Ident => {
                names.push(t.text);
                prev = Prev::Name(t.text);
            }
            Kind::Punct if matches!(t.text, b"(" | b"[" | b"{" | b"<:" | b"<%") => {
                let close = matching_close(decl, i).unwrap_or(decl.len().saturating_sub(1));
                if t.is("(") {
                    let group = match prev {
                        Prev::Attribute => Group::Operand,
                        Prev::Name(n) if !typedefs.all.contains(n) => Group::Parameters,
                        Prev::Group(Group::Declarator | Group::Parameters) => Group::Parameters,
                        _ => Group::Declarator,
                    };
                    if group == Group::Declarator {
                        let mut inner = Vec::new();
                        declarators(&decl[i + 1..close], typedefs, typedef, names, &mut inner);
                    }
                    groups.push(group);
                    prev = Prev::Group(group);
                } else if matches!(t.text, b"[" | b"<:") {
                    // An array's size: after it, a group is parameters.
                    prev = Prev::Group(Group::Declarator);
                } else {
                    prev = Prev::Other;
                }
                i = close + 1;
                continue;
            }
            Kind::Punct if t.is("=") || t.is(":") => {
                // An initializer or a bit-field width: up to the next
                // declarator.
                i += 1;
                while i < decl.len() && !decl[i].is(",") && !decl[i].is(";") {
                    if matches!(decl[i].text, b"(" | b"[" | b"{" | b"<:" | b"<%")
                        && decl[i].kind == Kind::Punct
                    {
                        i = matching_close(decl, i).unwrap_or(decl.len());
                    }
                    i += 1;
                }
                prev = Prev::Other;
                continue;
            }
            _ => prev = Prev::Other,
        }
        i += 1;
    }
}

/// Tags that `decl` defines or declares on their own (`struct s {...}`,
/// `struct s;`) and enumerators, at any depth: both are the unit's names
/// even inside another definition.
fn tags_and_enumerators<'a>(decl: &[Token<'a>], names: &mut Vec<&'a [u8]>) {
    let skip_attributes = |mut j: usize| {
        while decl.get(j).is_some_and(is_attribute_keyword) {
            j = decl
                .get(j + 1)
                .filter(|n| n.is("("))
                .and_then(|_| matching_close(decl, j + 1))
                .map_or(j + 1, |c| c + 1);
        }
        j
    };
    for (i, t) in decl.iter().enumerate() {
        if !is_tag_keyword(t) {
            continue;
        }
        let mut j = skip_attributes(i + 1);
        let mut tag = None;
        if let Some(n) = decl
            .get(j)
            .filter(|n| n.kind == Kind::Ident && !is_keyword(n))
        {
            tag = Some(n.text);
            j = skip_attributes(j + 1);
        }
        let next = decl.get(j);
        let body = next.is_some_and(|n| n.is("{") || n.is("<%"));
        if let Some(tag) = tag {
            if body || next.is_some_and(|n| n.is(";")) {
                names.push(tag);
            }
        }
        if body && t.is("enum") {
            let close = matching_close(decl, j).unwrap_or(decl.len());
            // The first identifier of each comma-separated item.
            let mut expect = true;
            let mut k = j + 1;
            while k < close {
                let e = &decl[k];
                if expect && e.kind == Kind::Ident {
                    names.push(e.text);
                    expect = false;
                } else if e.is(",") {
                    expect = true;
                } else if e.kind == Kind::Punct
                    && matches!(e.text, b"(" | b"[" | b"{" | b"<:" | b"<%")
                {
                    k = matching_close(decl, k).unwrap_or(close);
                }
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit: a changed "header" part (pre, post) and the rest.
    fn unit(before: &str, header: &str, after: &str) -> Vec<u8> {
        format!("# 1 \"a.c\"\n{before}\n# 1 \"h.h\" 1\n{header}\n# 3 \"a.c\" 2\n{after}\n")
            .into_bytes()
    }

    fn cmp(pre_header: &str, post_header: &str, rest: &str) -> Difference {
        compare(
            &unit("typedef unsigned long long u64;", pre_header, rest),
            &unit("typedef unsigned long long u64;", post_header, rest),
            true,
        )
    }

    fn unreferenced(names: &[&str]) -> Difference {
        Difference::Unreferenced(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn line_markers_and_line_breaks_are_no_difference() {
        let pre = b"# 1 \"a.c\"\nint f(void)\n{ return 1; }\n";
        let post = b"# 1 \"a.c\"\n\n\n# 7 \"a.c\"\nint f(void)\n{ return 1; }\n";
        assert_eq!(compare(pre, post, true), Difference::None);
    }

    #[test]
    fn spacing_that_joins_tokens_is_a_difference() {
        let pre = b"int f(int a, int b) { return a - -b; }\n";
        let post = b"int f(int a, int b) { return a --b; }\n";
        assert_eq!(compare(pre, post, true), Difference::Code);
    }

    #[test]
    fn a_new_prototype_nothing_calls_is_unreferenced() {
        let rest = "int user(struct nsproxy *ns) { return ns != 0; }";
        assert_eq!(
            cmp(
                "struct nsproxy;",
                "struct nsproxy;\nvoid nsproxy_free(struct nsproxy *ns);",
                rest
            ),
            unreferenced(&["nsproxy_free"])
        );
    }

    #[test]
    fn a_new_prototype_the_unit_calls_is_code() {
        let rest = "void user(struct nsproxy *ns) { nsproxy_free(ns); }";
        assert_eq!(
            cmp(
                "struct nsproxy;",
                "struct nsproxy;\nvoid nsproxy_free(struct nsproxy *ns);",
                rest
            ),
            Difference::Code
        );
    }

    #[test]
    fn parameter_names_are_not_declared_names() {
        // `ns` and `u64` are everywhere; only the function's name counts.
        let rest = "u64 ns; u64 other(u64 now) { return now + ns; }";
        assert_eq!(
            cmp(
                "static inline u64 clock_of(u64 now, int *ns) { return now; }",
                "static inline u64 clock_of(u64 now, int *ns) { return now + *ns; }",
                rest
            ),
            unreferenced(&["clock_of"])
        );
    }

    #[test]
    fn a_changed_inline_function_the_unit_calls_is_code() {
        let rest = "u64 other(u64 now) { return clock_of(now, 0); }";
        assert_eq!(
            cmp(
                "static inline u64 clock_of(u64 now, int *ns) { return now; }",
                "static inline u64 clock_of(u64 now, int *ns) { return now + 1; }",
                rest
            ),
            Difference::Code
        );
    }

    #[test]
    fn an_inline_function_counts_where_code_that_is_emitted_reaches_it() {
        let pre = "static inline u64 clock_of(u64 now, int *ns) { return now; }";
        let post = "static inline u64 clock_of(u64 now, int *ns) { return now + 1; }";
        // Only another inline function, which nothing calls, mentions it.
        let wrapper = "static inline u64 wrapper(void) { return clock_of(1, 0); }";
        assert_eq!(cmp(pre, post, wrapper), unreferenced(&["clock_of"]));
        // A function the object defines calls the wrapper.
        let used = format!("{wrapper}\nu64 user(void) {{ return wrapper(); }}");
        assert_eq!(cmp(pre, post, &used), Difference::Code);
        // So does a static one that a used variable points to.
        let pointed = format!(
            "{wrapper}\nstatic u64 cb(void) {{ return wrapper(); }}\nu64 (*hook)(void) = cb;"
        );
        assert_eq!(cmp(pre, post, &pointed), Difference::Code);
        // A static one nothing keeps is dropped with what it calls.
        let dropped = format!("{wrapper}\nstatic u64 cb(void) {{ return wrapper(); }}");
        assert_eq!(cmp(pre, post, &dropped), unreferenced(&["clock_of"]));
    }

    #[test]
    fn a_struct_member_added_is_code_where_the_struct_is_named() {
        let rest = "int get(struct s *p) { return p->a; }";
        assert_eq!(
            cmp("struct s { int a; };", "struct s { int a; int b; };", rest),
            Difference::Code
        );
        assert_eq!(
            cmp(
                "struct s { int a; };",
                "struct s { int a; int b; };",
                "int x(void) { return 1; }"
            ),
            unreferenced(&["s"])
        );
    }

    #[test]
    fn an_anonymous_struct_counts_by_the_variable_it_declares() {
        let rest = "int get(void) { return g.a; }";
        assert_eq!(
            cmp(
                "extern struct { int a; } g;",
                "extern struct { int b; int a; } g;",
                rest
            ),
            Difference::Code
        );
    }

    #[test]
    fn enumerators_are_names_even_inside_a_struct() {
        let rest = "int get(void) { return B; }";
        assert_eq!(
            cmp(
                "struct s { enum { A, B } e; };",
                "struct s { enum { A, Z, B } e; };",
                rest
            ),
            Difference::Code
        );
    }

    #[test]
    fn a_changed_typedef_is_code_where_its_name_is_used() {
        let rest = "my_t v(void) { return 0; }";
        assert_eq!(
            cmp("typedef int my_t;", "typedef long my_t;", rest),
            Difference::Code
        );
        assert_eq!(
            cmp(
                "typedef void (*cb_t)(int x);",
                "typedef void (*cb_t)(long x);",
                "cb_t f;"
            ),
            Difference::Code
        );
    }

    #[test]
    fn a_function_pointer_variable_is_a_definition() {
        // `void (*hook)(int);` without extern defines a variable.
        assert_eq!(cmp("", "void (*hook)(int);", "int x;"), Difference::Code);
        assert_eq!(
            cmp("", "extern void (*hook)(int);", "int x;"),
            unreferenced(&["hook"])
        );
        assert_eq!(
            cmp("", "extern void (*hook)(int);", "void f(void) { hook(1); }"),
            Difference::Code
        );
    }

    #[test]
    fn definitions_that_emit_on_their_own_are_code() {
        let rest = "int unrelated;";
        for post in [
            "int counter;",
            "int helper(void) { return 1; }",
            "static int keep __attribute__((__used__)) = 1;",
            "static void init(void) __attribute__((constructor)); static void init(void) {}",
            "asm(\".globl marker\");",
            "void alias_of(void) __attribute__((alias(\"unrelated_fn\")));",
            "extern inline int gi(void) { return 1; }",
        ] {
            assert_eq!(cmp("", post, rest), Difference::Code, "{post}");
        }
    }

    #[test]
    fn a_pragma_is_code() {
        let pre = b"int a;\n";
        let post = b"#pragma GCC optimize(\"O0\")\nint a;\n";
        assert_eq!(compare(pre, post, true), Difference::Code);
    }

    #[test]
    fn a_name_in_a_string_counts_as_used() {
        let rest = "void f(void) { asm volatile(\"call helper_fn\"); }";
        assert_eq!(
            cmp(
                "static inline void helper_fn(void) {}",
                "static inline void helper_fn(void) { f(); }",
                rest
            ),
            Difference::Code
        );
    }

    #[test]
    fn a_static_variable_nothing_reads_is_unreferenced() {
        assert_eq!(
            cmp(
                "static const int table[] = { 1 };",
                "static const int table[] = { 1, 2 };",
                "int x;"
            ),
            unreferenced(&["table"])
        );
    }

    #[test]
    fn without_dropping_unreferenced_code_only_equal_tokens_count() {
        let pre = unit("", "", "int x;");
        let post = unit("", "void nsproxy_free(void *ns);", "int x;");
        assert_eq!(compare(&pre, &post, false), Difference::Code);
        assert_eq!(compare(&pre, &pre, false), Difference::None);
    }

    #[test]
    fn unbalanced_brackets_are_code() {
        assert_eq!(compare(b"int a;", b"int f( ;", true), Difference::Code);
    }

    #[test]
    fn builtin_line_makes_line_markers_count() {
        let pre = b"# 1 \"a.c\"\nint f(void) { return __builtin_LINE(); }\n";
        let post = b"# 2 \"a.c\"\nint f(void) { return __builtin_LINE(); }\n";
        assert_eq!(compare(pre, post, true), Difference::Code);
    }

    #[test]
    fn a_prototype_with_a_typedef_return_and_attributes() {
        let rest = "u64 now(void) { return 0; }";
        assert_eq!(
            cmp(
                "",
                "extern u64 perf_clock(void) __attribute__((__warn_unused_result__));",
                rest
            ),
            unreferenced(&["perf_clock"])
        );
        assert_eq!(
            cmp("", "u64 perf_clock(u64 now);", rest),
            unreferenced(&["perf_clock"])
        );
    }

    #[test]
    fn a_moved_declaration_counts_as_changed() {
        let pre = b"int f(void);\nint g(void);\nint use(void) { return f() + g(); }\n";
        let post = b"int g(void);\nint f(void);\nint use(void) { return f() + g(); }\n";
        assert_eq!(compare(pre, post, true), Difference::Code);
        let post = b"int g(void);\nint f(void);\nint use(void) { return 0; }\n";
        let pre = b"int f(void);\nint g(void);\nint use(void) { return 0; }\n";
        assert!(matches!(
            compare(pre, post, true),
            Difference::Unreferenced(_)
        ));
    }

    #[test]
    fn drops_unreferenced_follows_the_optimisation_flags() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(drops_unreferenced(&argv(&["gcc", "-O2", "-c"])));
        assert!(!drops_unreferenced(&argv(&["gcc", "-O2", "-O0"])));
        assert!(!drops_unreferenced(&argv(&[
            "gcc",
            "-O2",
            "-fno-toplevel-reorder"
        ])));
        assert!(!drops_unreferenced(&argv(&[
            "gcc",
            "-O2",
            "-fkeep-static-functions"
        ])));
        assert!(!drops_unreferenced(&argv(&["gcc", "-c"])));
    }
}
