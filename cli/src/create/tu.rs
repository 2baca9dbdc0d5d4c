//! What a header change can reach in one preprocessed translation unit.
//!
//! A header most of the kernel includes puts the same changed declarations
//! into thousands of objects, and most of them never use those. The two
//! preprocessed versions of an object are split into top-level
//! declarations and compared declaration by declaration. When every
//! changed one emits nothing of its own (a prototype, an `extern`
//! declaration, a type, a `static` function or variable that nothing
//! keeps) and nothing the object does emit reaches its names, the compiler
//! drops them and the object code cannot differ, so the object need not be
//! compiled.
//!
//! Every guess here errs one way: a name that might be declared counts as
//! declared, a mention anywhere (a string literal, a pragma) counts as a
//! use, and a declaration that might emit code or data, or change how
//! other code compiles, counts as emitting it. Anything the reader does
//! not follow is a difference in code.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;

/// How two preprocessed versions of a translation unit differ.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    /// The compiler gets the same tokens (line markers aside).
    None,
    /// Only in declarations that emit nothing of their own and that no
    /// emitted code reaches, declaring these names: the code is the same.
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
    let (Some(pre), Some(post)) = (Src::new(&pre), Src::new(&post)) else {
        return if same_tokens(&pre, &post) {
            Difference::None
        } else {
            Difference::Code
        };
    };
    // Each distinct declaration (tokens and spacing) gets a number; the
    // diff compares the numbers.
    let mut ids: HashMap<Chunk, usize> = HashMap::new();
    let mut numbered = [Vec::new(), Vec::new()];
    for (out, src) in numbered.iter_mut().zip([&pre, &post]) {
        for r in &src.chunks {
            let next = ids.len();
            out.push(*ids.entry(Chunk::new(src.tokens, r)).or_insert(next));
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
    // An optimisation pragma can keep code the compiler would drop.
    if !prunable || pre.tunes_optimisation() || post.tunes_optimisation() {
        return Difference::Code;
    }
    let mut names = BTreeSet::new();
    for (src, changed) in [(&pre, &pre_changed), (&post, &post_changed)] {
        let decls = src.declarations();
        for (decl, _) in decls.iter().zip(changed).filter(|(_, c)| **c) {
            match decl {
                Some(d) if d.inert && !d.names.iter().any(|n| is_implicit_callee(n)) => names
                    .extend(
                        d.names
                            .iter()
                            .map(|n| String::from_utf8_lossy(n).into_owned()),
                    ),
                _ => return Difference::Code,
            }
        }
        if src.live(&decls).iter().zip(changed).any(|(l, c)| *l && *c) {
            return Difference::Code;
        }
    }
    Difference::Unreferenced(names.into_iter().collect())
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

/// Functions the compiler calls on its own (a struct copy becomes
/// `memcpy`, instrumentation calls its runtime): a changed declaration of
/// one (an asm label, an attribute) reaches code that never names it.
fn is_implicit_callee(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"memcpy",
        b"memmove",
        b"memset",
        b"memcmp",
        b"bcmp",
        b"strlen",
        b"strcpy",
        b"strcmp",
        b"abort",
        b"__fentry__",
        b"mcount",
        b"__stack_chk_fail",
        b"__stack_chk_guard",
    ];
    const PREFIXES: &[&[u8]] = &[
        b"__builtin_",
        b"__sanitizer_",
        b"__asan_",
        b"__hwasan_",
        b"__ubsan_",
        b"__tsan_",
        b"__msan_",
        b"__kcsan_",
        b"__kasan_",
        b"__gcov_",
        b"__x86_",
        b"__cyg_profile_",
    ];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
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
    /// Line breaks before it, counted only where line numbers reach the
    /// code (`__builtin_LINE`): `cc -E` writes up to 8 of them instead of
    /// a line marker.
    breaks: u16,
}

impl Token<'_> {
    fn is(&self, s: &str) -> bool {
        self.text == s.as_bytes()
    }

    fn same(&self, other: &Self) -> bool {
        self.text == other.text && self.spaced == other.spaced && self.breaks == other.breaks
    }

    fn opens(&self) -> bool {
        self.kind == Kind::Punct && matches!(self.text, b"(" | b"[" | b"{" | b"<:" | b"<%")
    }

    fn closes(&self) -> bool {
        self.kind == Kind::Punct && matches!(self.text, b")" | b"]" | b"}" | b":>" | b"%>")
    }

    fn is_brace(&self) -> bool {
        self.kind == Kind::Punct && matches!(self.text, b"{" | b"<%")
    }
}

fn same_tokens(a: &[Token], b: &[Token]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
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
    let mut breaks = 0u16;
    while i < text.len() {
        let c = text[i];
        if c == b'\n' {
            line_start = true;
            spaced = true;
            if markers {
                breaks = breaks.saturating_add(1);
            }
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
            let word = &text[start..i];
            let quote = text.get(i).copied();
            if matches!(word, b"R" | b"LR" | b"uR" | b"UR" | b"u8R") && quote == Some(b'"') {
                i = raw_literal_end(text, i);
                Kind::Literal
            } else if matches!(word, b"L" | b"u" | b"U" | b"u8")
                && matches!(quote, Some(b'"' | b'\''))
            {
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
            breaks,
        });
        line_start = false;
        spaced = false;
        breaks = 0;
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

/// The end of the raw string literal `"delim( ... )delim"` opening at `i`
/// (which GNU C accepts); one without its delimiter runs to the end.
fn raw_literal_end(text: &[u8], i: usize) -> usize {
    let rest = &text[i + 1..];
    let Some(open) = rest.iter().position(|&b| b == b'(') else {
        return text.len();
    };
    let mut close = Vec::with_capacity(open + 2);
    close.push(b')');
    close.extend_from_slice(&rest[..open]);
    close.push(b'"');
    rest[open..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map_or(text.len(), |p| i + 1 + open + p + close.len())
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
            (i > 0 && t.spaced, t.breaks).hash(&mut h);
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
                .all(|(i, (x, y))| {
                    x.text == y.text && x.breaks == y.breaks && (i == 0 || x.spaced == y.spaced)
                })
    }
}

impl Eq for Chunk<'_, '_> {}

impl Hash for Chunk<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

/// One version of a unit: its tokens, where each bracket's partner is, and
/// its top-level declarations.
struct Src<'t, 'a> {
    tokens: &'t [Token<'a>],
    /// For each bracket, the index of the one that pairs with it.
    pair: Vec<usize>,
    chunks: Vec<Range<usize>>,
}

/// How deep declarators may nest before the reader gives up (a
/// difference in code).
const MAX_DEPTH: usize = 64;

impl<'t, 'a> Src<'t, 'a> {
    /// `None` when the brackets do not balance.
    fn new(tokens: &'t [Token<'a>]) -> Option<Self> {
        let mut pair = vec![usize::MAX; tokens.len()];
        let mut open: Vec<usize> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if t.opens() {
                open.push(i);
            } else if t.closes() {
                let o = open.pop()?;
                let kind = |t: &Token| match t.text {
                    b"(" | b")" => 0,
                    b"[" | b"]" | b"<:" | b":>" => 1,
                    _ => 2,
                };
                if kind(&tokens[o]) != kind(t) {
                    return None;
                }
                pair[o] = i;
                pair[i] = o;
            }
        }
        if !open.is_empty() {
            return None;
        }
        let mut src = Src {
            tokens,
            pair,
            chunks: Vec::new(),
        };
        src.chunks = src.split();
        Some(src)
    }

    /// Splits the tokens into top-level declarations: each ends with a `;`
    /// outside brackets, or with the `}` of a function body; a directive
    /// between declarations is one of its own.
    fn split(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        // Whether the current declaration has a top-level `=`.
        let mut assigns = false;
        while i < self.tokens.len() {
            let t = &self.tokens[i];
            if t.kind == Kind::Directive && start == i {
                out.push(i..i + 1);
                start = i + 1;
            } else if t.is_brace() {
                let close = self.pair[i];
                if !assigns && self.brace_kind(start, i) == Brace::FunctionBody {
                    out.push(start..close + 1);
                    start = close + 1;
                    assigns = false;
                }
                i = close;
            } else if t.opens() {
                i = self.pair[i];
            } else if t.is(";") {
                out.push(start..i + 1);
                start = i + 1;
                assigns = false;
            } else if t.is("=") {
                assigns = true;
            }
            i += 1;
        }
        if start < self.tokens.len() {
            out.push(start..self.tokens.len());
        }
        out
    }

    /// What the top-level `{` at `brace` opens, from the tokens of its
    /// declaration before it (from `start`; the caller knows there is no
    /// top-level `=`): a function body follows the `)` of a parameter
    /// list, a tag body `struct`/`union`/`enum` and maybe a tag;
    /// attributes between are skipped.
    fn brace_kind(&self, start: usize, brace: usize) -> Brace {
        let mut j = brace;
        loop {
            if j == start {
                return Brace::Unknown;
            }
            j -= 1;
            let t = &self.tokens[j];
            let before = |k: usize| (k > start).then(|| &self.tokens[k - 1]);
            if t.is(")") || t.is("]") {
                let open = self.pair[j];
                if t.is("]") && self.is_std_attribute(open) {
                    j = open;
                    continue;
                }
                match before(open) {
                    Some(a) if is_attribute_keyword(a) => j = open - 1,
                    _ if t.is(")") => return Brace::FunctionBody,
                    _ => return Brace::Unknown,
                }
            } else if is_tag_keyword(t) {
                return Brace::TagBody;
            } else if t.kind == Kind::Ident && !is_keyword(t) {
                return if before(j).is_some_and(is_tag_keyword) {
                    Brace::TagBody
                } else {
                    Brace::Unknown
                };
            } else {
                return Brace::Unknown;
            }
        }
    }

    /// Whether the `[` at `open` starts a `[[...]]` attribute.
    fn is_std_attribute(&self, open: usize) -> bool {
        let outer = |i: usize| {
            self.tokens.get(i).is_some_and(|t| t.is("["))
                && self.tokens.get(i + 1).is_some_and(|t| t.is("["))
                && self.pair.get(i + 1).is_some_and(|&c| c + 1 == self.pair[i])
        };
        outer(open) || (open > 0 && outer(open - 1))
    }

    /// Whether a pragma tunes optimisation (which can keep unreferenced
    /// static code).
    fn tunes_optimisation(&self) -> bool {
        self.tokens.iter().any(|t| {
            t.kind == Kind::Directive
                && words(t.text).any(|w| w == b"optimize" || w == b"push_options")
        })
    }

    /// Each top-level declaration, read; `None` where it cannot be.
    fn declarations(&self) -> Vec<Option<Declaration<'a>>> {
        let typedefs = self.typedefs();
        self.chunks
            .iter()
            .map(|r| self.declaration(r.clone(), &typedefs))
            .collect()
    }

    /// Which declarations can reach the object code: those that emit
    /// something of their own (or cannot be read), and every declaration
    /// of a name that a reaching one mentions, in code, in a string (asm
    /// names symbols in strings) or in a pragma.
    fn live(&self, decls: &[Option<Declaration<'a>>]) -> Vec<bool> {
        let mut declaring: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, d) in decls.iter().enumerate() {
            for name in d.iter().flat_map(|d| &d.names) {
                declaring.entry(name).or_default().push(i);
            }
        }
        let mut live: Vec<bool> = decls
            .iter()
            .map(|d| !d.as_ref().is_some_and(|d| d.inert))
            .collect();
        let mut work: Vec<usize> = (0..live.len()).filter(|&i| live[i]).collect();
        while let Some(i) = work.pop() {
            let range = &self.chunks[i];
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

/// What a `{` at a declaration's top level opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Brace {
    FunctionBody,
    /// The members of a struct or union, or the enumerators of an enum.
    TagBody,
    Initializer,
    Unknown,
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
    "__thread",
    "alignas",
    "alignof",
    "static_assert",
    "thread_local",
    "constexpr",
    "nullptr",
    "true",
    "false",
    "bool",
    "__alignof__",
    "__alignof",
    "__seg_gs",
    "__seg_fs",
    "__real__",
    "__imag__",
    "__complex__",
    "__builtin_offsetof",
    "__builtin_types_compatible_p",
    "__builtin_choose_expr",
    "__builtin_has_attribute",
    // Types the compiler defines.
    "__int128",
    "__int128_t",
    "__uint128_t",
    "__builtin_va_list",
    "_Float16",
    "_Float32",
    "_Float64",
    "_Float128",
    "_Float32x",
    "_Float64x",
    "_Float128x",
    "__float80",
    "__float128",
    "__ibm128",
    "__ieee128",
    "__bf16",
    "__fp16",
    "_Decimal32",
    "_Decimal64",
    "_Decimal128",
    "_Sat",
    "_Fract",
    "_Accum",
];

fn is_keyword(t: &Token) -> bool {
    t.kind == Kind::Ident && KEYWORDS.iter().any(|k| t.is(k))
}

fn is_tag_keyword(t: &Token) -> bool {
    t.is("struct") || t.is("union") || t.is("enum")
}

fn is_volatile(t: &Token) -> bool {
    t.is("volatile") || t.is("__volatile__") || t.is("__volatile")
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

/// Attributes that keep a function or variable whether or not anything
/// refers to it, make a declaration a definition, or change how it is
/// compiled.
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
    "copy",
    "optimize",
];

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

impl<'t, 'a> Src<'t, 'a> {
    /// The indices of `range`'s tokens outside every bracket (brackets
    /// themselves left out).
    fn top_level(&self, range: Range<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = range.start;
        while i < range.end {
            if self.tokens[i].opens() {
                i = self.pair[i];
            } else {
                out.push(i);
            }
            i += 1;
        }
        out
    }

    /// Past the struct/union/enum keyword at `i`: its attributes and tag.
    /// Returns (index after them, the tag).
    fn skip_tag(&self, i: usize, end: usize) -> (usize, Option<&'a [u8]>) {
        let j = self.skip_attributes(i + 1, end);
        match self.tokens.get(j) {
            Some(n) if j < end && n.kind == Kind::Ident && !is_keyword(n) => {
                (self.skip_attributes(j + 1, end), Some(n.text))
            }
            _ => (j, None),
        }
    }

    /// Past `__attribute__((...))`s and `[[...]]`s from `j`.
    fn skip_attributes(&self, mut j: usize, end: usize) -> usize {
        while j < end {
            let t = &self.tokens[j];
            if is_attribute_keyword(t) && self.tokens.get(j + 1).is_some_and(|n| n.is("(")) {
                j = self.pair[j + 1] + 1;
            } else if t.is("[") && self.is_std_attribute(j) {
                j = self.pair[j] + 1;
            } else {
                break;
            }
        }
        j
    }

    fn typedefs(&self) -> Typedefs<'a> {
        let mut t = Typedefs {
            exact: HashSet::new(),
            all: HashSet::new(),
        };
        for range in &self.chunks {
            let top = self.top_level(range.clone());
            let Some(&at) = top.iter().find(|&&i| self.tokens[i].is("typedef")) else {
                continue;
            };
            t.all.extend(
                self.tokens[range.clone()]
                    .iter()
                    .filter(|x| x.kind == Kind::Ident && !is_keyword(x))
                    .map(|x| x.text),
            );
            self.typedef_names(at + 1..range.end, &mut t.exact, 0);
        }
        t
    }

    /// Names a `typedef` declaration certainly declares or uses as types:
    /// the identifiers outside brackets (but tags and attributes), and
    /// those of parenthesised declarators `(*name)`, recursively.
    fn typedef_names(&self, range: Range<usize>, out: &mut HashSet<&'a [u8]>, depth: usize) {
        let mut i = range.start;
        while i < range.end {
            let t = &self.tokens[i];
            if is_tag_keyword(t) {
                i = self.skip_tag(i, range.end).0;
                continue;
            }
            if is_attribute_keyword(t) {
                i = self.skip_attributes(i, range.end).max(i + 1);
                continue;
            }
            if t.opens() {
                let close = self.pair[i];
                let pointer = self.tokens.get(i + 1).is_some_and(|n| n.is("*"));
                if t.is("(") && pointer && depth < MAX_DEPTH {
                    self.typedef_names(i + 1..close, out, depth + 1);
                }
                i = close + 1;
                continue;
            }
            if t.kind == Kind::Ident && !is_keyword(t) {
                out.insert(t.text);
            }
            i += 1;
        }
    }

    /// The declaration `range` (one chunk), or `None` when it cannot be
    /// read.
    fn declaration(&self, range: Range<usize>, typedefs: &Typedefs<'a>) -> Option<Declaration<'a>> {
        let tokens = &self.tokens[range.clone()];
        let not_inert = |names| {
            Some(Declaration {
                names,
                inert: false,
            })
        };
        let first = tokens.iter().find(|t| !t.is("__extension__"))?;
        if first.kind == Kind::Directive
            || first.is("asm")
            || first.is("__asm__")
            || first.is("__asm")
        {
            // A pragma, or asm at file scope: emitted as it is.
            return not_inert(Vec::new());
        }
        // A pragma inside (packing, weak symbols) changes what follows;
        // diagnostics alone change no code.
        let pragma = |t: &Token| {
            t.kind == Kind::Directive && words(t.text).nth(2).is_none_or(|w| w != b"diagnostic")
        };
        if tokens.iter().any(pragma) {
            return not_inert(Vec::new());
        }
        let mut names = Vec::new();
        self.tags_and_enumerators(range.clone(), &mut names);
        if first.is("_Static_assert") || first.is("static_assert") {
            // Checked at compile time; no code, but what it defines counts.
            return Some(Declaration { names, inert: true });
        }
        let top = self.top_level(range.clone());
        let keyword = |k: &str| top.iter().any(|&i| self.tokens[i].is(k));
        let typedef = keyword("typedef");
        // Braces at the top level, and what they open.
        let mut braces = Vec::new();
        let mut assigns = false;
        let mut i = range.start;
        while i < range.end {
            let t = &self.tokens[i];
            if t.is("=") {
                assigns = true;
            }
            if t.opens() {
                if t.is_brace() {
                    braces.push(if assigns {
                        Brace::Initializer
                    } else {
                        self.brace_kind(range.start, i)
                    });
                }
                i = self.pair[i];
            }
            i += 1;
        }
        if braces.contains(&Brace::Unknown) {
            return None;
        }
        let mut groups = Vec::new();
        if !self.declarators(range.clone(), typedefs, typedef, &mut names, &mut groups, 0) {
            return None;
        }
        let attributes = self.attribute_words(range.clone());
        let keeps = attributes.iter().any(|t| attribute_in(t, KEEPS));
        let body = braces.contains(&Brace::FunctionBody);
        let initialized = top.iter().any(|&i| self.tokens[i].is("="));
        // A volatile object is kept even when nothing reads it.
        let volatile = !body && self.outside_braces(range.clone()).any(|t| is_volatile(t));
        let inert = if typedef {
            true
        } else if keeps || volatile {
            false
        } else if keyword("static") {
            true
        } else if keyword("extern") {
            !body && !initialized
        } else if body || initialized {
            false
        } else {
            // No storage class: a type's definition alone, or a prototype.
            let comma = top.iter().any(|&i| self.tokens[i].is(","));
            let tag_only = is_tag_keyword(first) && tokens.last().is_some_and(|t| t.is(";")) && {
                // Outside brackets, only the keyword, its tag and
                // attributes, and the final `;`.
                let start = range.start + tokens.iter().position(is_tag_keyword).unwrap_or(0);
                let (after, _) = self.skip_tag(start, range.end);
                let after = if self.tokens.get(after).is_some_and(Token::is_brace) {
                    self.skip_attributes(self.pair[after] + 1, range.end)
                } else {
                    after
                };
                after + 1 == range.end && !comma
            };
            // One function declarator: a name, its parameters, maybe
            // attributes or an asm label, the `;`.
            let declarator_groups: Vec<&Group> =
                groups.iter().filter(|g| **g != Group::Operand).collect();
            let prototype =
                !comma && declarator_groups == [&Group::Parameters] && self.ends_after_group(range);
            tag_only || prototype
        };
        Some(Declaration { names, inert })
    }

    /// The tokens of `range` outside every brace (they may be inside
    /// parentheses).
    fn outside_braces(&self, range: Range<usize>) -> impl Iterator<Item = &Token<'a>> + '_ {
        let mut i = range.start;
        std::iter::from_fn(move || {
            while i < range.end && self.tokens[i].is_brace() {
                i = self.pair[i] + 1;
            }
            let t = self.tokens[..range.end].get(i)?;
            i += 1;
            Some(t)
        })
    }

    /// The words of the `__attribute__((...))` and `[[...]]` operands of
    /// `range` outside every brace: the attributes of what it declares.
    fn attribute_words(&self, range: Range<usize>) -> Vec<&Token<'a>> {
        let mut out = Vec::new();
        let mut i = range.start;
        while i < range.end {
            let t = &self.tokens[i];
            if t.is_brace() {
                i = self.pair[i];
            } else if (t.is("__attribute__") || t.is("__attribute"))
                && self.tokens.get(i + 1).is_some_and(|n| n.is("("))
            {
                let close = self.pair[i + 1];
                out.extend(&self.tokens[i + 1..close]);
                i = close;
            } else if t.is("[") && self.is_std_attribute(i) {
                let close = self.pair[i];
                out.extend(&self.tokens[i..close]);
                i = close;
            }
            i += 1;
        }
        out
    }

    /// Whether the declaration ends, after its last top-level group (and
    /// any attributes or asm label after it), with its `;`.
    fn ends_after_group(&self, range: Range<usize>) -> bool {
        if !self.tokens[range.clone()].last().is_some_and(|t| t.is(";")) {
            return false;
        }
        let mut j = range.end - 1;
        loop {
            if j == range.start {
                return false;
            }
            j -= 1;
            if !self.tokens[j].is(")") {
                return false;
            }
            let open = self.pair[j];
            match (open > range.start).then(|| &self.tokens[open - 1]) {
                Some(a) if is_attribute_keyword(a) => j = open - 1,
                _ => return true,
            }
        }
    }

    /// The names the declarators of `range` declare, at its top level and
    /// in parenthesised declarators; parameter lists, attribute operands,
    /// array sizes, bodies and initializers are skipped. `groups` receives
    /// the kind of each top-level group, in order. False when the
    /// declarators nest too deep to read.
    fn declarators(
        &self,
        range: Range<usize>,
        typedefs: &Typedefs<'a>,
        typedef: bool,
        names: &mut Vec<&'a [u8]>,
        groups: &mut Vec<Group>,
        depth: usize,
    ) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let mut prev = Prev::Start;
        let mut i = range.start;
        while i < range.end {
            let t = &self.tokens[i];
            match t.kind {
                // The tag after it is a type (a definition of one is found
                // by `tags_and_enumerators`).
                Kind::Ident if is_tag_keyword(t) => {
                    i = self.skip_tag(i, range.end).0;
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
                _ if t.is("[") && self.is_std_attribute(i) => {
                    i = self.pair[i] + 1;
                    continue;
                }
                _ if t.opens() => {
                    let close = self.pair[i];
                    if t.is("(") {
                        let group = match prev {
                            Prev::Attribute => Group::Operand,
                            Prev::Name(n) if !typedefs.all.contains(n) => Group::Parameters,
                            Prev::Group(Group::Declarator | Group::Parameters) => Group::Parameters,
                            _ => Group::Declarator,
                        };
                        if group == Group::Declarator {
                            let mut inner = Vec::new();
                            let read = self.declarators(
                                i + 1..close,
                                typedefs,
                                typedef,
                                names,
                                &mut inner,
                                depth + 1,
                            );
                            if !read {
                                return false;
                            }
                        }
                        groups.push(group);
                        prev = Prev::Group(group);
                    } else if t.is_brace() {
                        prev = Prev::Other;
                    } else {
                        // An array's size: after it, a group is parameters.
                        prev = Prev::Group(Group::Declarator);
                    }
                    i = close + 1;
                    continue;
                }
                _ if t.is("=") || t.is(":") => {
                    // An initializer or a bit-field width: up to the next
                    // declarator.
                    i += 1;
                    while i < range.end && !self.tokens[i].is(",") && !self.tokens[i].is(";") {
                        if self.tokens[i].opens() {
                            i = self.pair[i];
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
        true
    }

    /// Tags that `range` defines or declares on their own (`struct s
    /// {...}`, `struct s;`) and enumerators, at any depth: both are the
    /// unit's names even inside another definition.
    fn tags_and_enumerators(&self, range: Range<usize>, names: &mut Vec<&'a [u8]>) {
        for i in range.clone() {
            let t = &self.tokens[i];
            if !is_tag_keyword(t) {
                continue;
            }
            let (j, tag) = self.skip_tag(i, range.end);
            let next = self.tokens[..range.end].get(j);
            let body = next.is_some_and(Token::is_brace);
            if let Some(tag) = tag {
                if body || next.is_some_and(|n| n.is(";")) {
                    names.push(tag);
                }
            }
            if body && t.is("enum") {
                // The first identifier of each comma-separated item.
                let close = self.pair[j];
                let mut expect = true;
                let mut k = j + 1;
                while k < close {
                    let e = &self.tokens[k];
                    if expect && e.kind == Kind::Ident {
                        names.push(e.text);
                        expect = false;
                    } else if e.is(",") {
                        expect = true;
                    } else if e.opens() {
                        k = self.pair[k];
                    }
                    k += 1;
                }
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

    /// `compare` of two complete units.
    fn units(pre: &str, post: &str) -> Difference {
        compare(pre.as_bytes(), post.as_bytes(), true)
    }

    #[test]
    fn declarations_the_compiler_keeps_unreferenced_are_code() {
        let code = |pre: &str, post: &str| assert_eq!(units(pre, post), Difference::Code, "{post}");
        // volatile objects are kept.
        code(
            "static volatile int keep = 1;",
            "static volatile int keep = 2;",
        );
        code(
            "static void (*volatile hook)(void) = 0;",
            "static void (*volatile hook)(void) = (void *)8;",
        );
        // Attributes that keep, on a declaration of its own too.
        let f = "static void init(void);\nstatic void init(void) { asm volatile(\"nop\"); }";
        code(
            f,
            "static void init(void);\nvoid init(void) __attribute__((constructor));\n\
             static void init(void) { asm volatile(\"nop\"); }",
        );
        code(
            "static int keep [[gnu::used]] = 1;",
            "static int keep [[gnu::used]] = 2;",
        );
        code(
            "static void f(void) __attribute__((used));\nstatic void f(void) {}\n\
             static void g(void) __attribute__((copy(f)));\nstatic void g(void) {}",
            "static void f(void) __attribute__((used));\nstatic void f(void) {}\n\
             static void g(void) __attribute__((copy(f)));\nstatic void g(void) { f(); }",
        );
        code(
            "static inline __attribute__((optimize(\"-O0\"))) int g(int x) { return x; }",
            "static inline __attribute__((optimize(\"-O0\"))) int g(int x) { return x + 1; }",
        );
        // A pragma before keeps what follows.
        code(
            "#pragma GCC optimize(\"O0\")\nstatic int f(int x) { return x * 3; }",
            "#pragma GCC optimize(\"O0\")\nstatic int f(int x) { return x * 5; }",
        );
        // A tentative definition of a compiler-defined type is no prototype.
        code("int x;", "int x;\n__int128_t (v);");
    }

    #[test]
    fn a_pragma_inside_a_declaration_is_code_unless_it_is_about_diagnostics() {
        let user = "struct s { char a; int b; };\nint get(struct s *p) { return p->b; }";
        assert_eq!(
            units(
                &format!("static inline void f(void) {{ }}\n{user}"),
                &format!("static inline void f(void) {{\n#pragma pack(1)\n}}\n{user}")
            ),
            Difference::Code
        );
        assert_eq!(
            units(
                "static inline int f(void) { return 1; }\nint x;",
                "static inline int f(void) {\n#pragma GCC diagnostic push\nreturn 2;\n\
                 #pragma GCC diagnostic pop\n}\nint x;"
            ),
            unreferenced(&["f"])
        );
    }

    #[test]
    fn a_new_declaration_of_a_function_the_compiler_calls_itself_is_code() {
        let rest =
            "struct big { char b[65536]; };\nvoid copy(struct big *a, struct big *b) { *a = *b; }";
        assert_eq!(
            units(
                rest,
                &format!(
                    "extern void *memcpy(void *, const void *, unsigned long) \
                     __asm__(\"__memcpy\");\n{rest}"
                )
            ),
            Difference::Code
        );
    }

    #[test]
    fn names_hidden_behind_attributes_tags_and_assertions_are_found() {
        // The tag `stat` is no typedef name, so the function `stat` counts.
        let tag = "typedef struct __attribute__((packed)) stat { int a; } stat_t;\n";
        assert_eq!(
            units(
                &format!("{tag}static inline int stat(void) {{ return 1; }}\nint get(void) {{ return stat(); }}"),
                &format!("{tag}static inline int stat(void) {{ return 2; }}\nint get(void) {{ return stat(); }}")
            ),
            Difference::Code
        );
        // An enumerator defined inside a static assertion.
        assert_eq!(
            units(
                "_Static_assert(sizeof(enum { FOO = 3 }) == 4, \"x\");\nint get(void) { return FOO; }",
                "_Static_assert(sizeof(enum { FOO = 4 }) == 4, \"x\");\nint get(void) { return FOO; }"
            ),
            Difference::Code
        );
    }

    #[test]
    fn raw_strings_are_one_token() {
        assert_eq!(
            units(
                "const char *s = R\"(x\" a  b )\";",
                "const char *s = R\"(x\" a b )\";"
            ),
            Difference::Code
        );
    }

    #[test]
    fn line_breaks_count_where_builtin_line_reads_them() {
        let pre = "int a = 1;\nint f(void) { return __builtin_LINE(); }\n";
        let post = "int a = 1;\n\nint f(void) { return __builtin_LINE(); }\n";
        assert_eq!(units(pre, post), Difference::Code);
        // Elsewhere only tokens count.
        let pre = "int a = 1;\nint f(void) { return 2; }\n";
        let post = "int a = 1;\n\nint f(void) { return 2; }\n";
        assert_eq!(units(pre, post), Difference::None);
    }

    #[test]
    fn deep_nesting_is_code_not_a_crash() {
        let deep = format!("int {}x{};", "(".repeat(20_000), ")".repeat(20_000));
        assert_eq!(
            units("int y;", &format!("int y;\n{deep}")),
            Difference::Code
        );
        let braces = "{}".repeat(50_000);
        assert_eq!(
            units("int y;", &format!("int y;\n{braces}")),
            Difference::Code
        );
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
