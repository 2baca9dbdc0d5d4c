//! Pre-post differencing of one object file, function by function.
//!
//! Both objects come from the kernel's own compile command plus
//! `-ffunction-sections -fdata-sections`. A function changed when its bytes
//! or its relocations differ. Relocations are compared by what they point
//! at, never by symbol index: a named symbol by name, a string literal by
//! its text, an anonymous section offset by the symbol covering it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use object::elf;
use object::read::elf::{ElfFile64, SectionHeader as _};
use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, RelocationFlags, RelocationTarget,
    SectionIndex, SymbolIndex,
};

use super::CreateError;

/// Bytes of NOP padding gcc puts before each function
/// (`-fpatchable-function-entry=16,16`, CONFIG_CALL_PADDING).
pub const PADDING: usize = 16;

/// What a relocation points at, independent of symbol numbering.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A named symbol (function, variable, or undefined external).
    Named(String),
    /// A string literal in a mergeable string section, by content.
    Str(Vec<u8>),
    /// An offset into an anonymous section without a covering symbol.
    Section(String),
}

/// A relocation, normalised for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloc {
    /// Offset from the start of the function or object.
    pub offset: u64,
    /// ELF `R_X86_64_*` type.
    pub r_type: u32,
    /// For a PC-relative field in code: the distance to the end of its
    /// instruction, which the addend includes (see [`pc_adjust`]).
    pub pc_adjust: i64,
    /// What it points at.
    pub target: Target,
    /// Addend relative to `target` (for `Named`, relative to the symbol).
    pub addend: i64,
    /// The symbol index and addend as in the object, for copying.
    pub raw_symbol: SymbolIndex,
    /// The addend as in the object.
    pub raw_addend: i64,
}

/// A function or data object: its bytes and relocations.
#[derive(Clone, Debug)]
pub struct Item {
    /// Symbol name.
    pub name: String,
    /// Symbol index in its object.
    pub symbol: SymbolIndex,
    /// Section it lives in.
    pub section: SectionIndex,
    /// Name of that section.
    pub section_name: String,
    /// Offset of the symbol in its section.
    pub value: u64,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of the symbol (empty for .bss).
    pub bytes: Vec<u8>,
    /// Relocations inside it.
    pub relocs: Vec<Reloc>,
    /// File-local (`static`).
    pub local: bool,
    /// A weak definition (`__weak`): the kernel may have linked another
    /// file's definition of the name instead.
    pub weak: bool,
    /// `.bss`-like: no file contents.
    pub nobits: bool,
    /// The section is writable.
    pub writable: bool,
}

impl Item {
    /// Whether this item is `__init`/`__exit` code or data.
    pub fn is_init_or_exit(&self) -> bool {
        let s = &self.section_name;
        s.starts_with(".init.")
            || s.starts_with(".exit.")
            || s.starts_with(".head.text")
            || s == ".ref.text"
    }
}

/// One parsed object: its functions and data objects by name.
pub struct Object {
    /// The file contents (kept for re-reading sections).
    pub data: Vec<u8>,
    /// Functions by name.
    pub functions: BTreeMap<String, Item>,
    /// Data objects by name.
    pub objects: BTreeMap<String, Item>,
}

fn elf_error(path: &Path, e: impl std::fmt::Display) -> CreateError {
    CreateError::Elf {
        path: path.to_owned(),
        why: e.to_string(),
    }
}

impl Object {
    /// Reads an object file.
    pub fn read(path: &Path) -> Result<Self, CreateError> {
        let data = std::fs::read(path).map_err(|e| CreateError::io(path, e))?;
        let mut object = Self {
            data,
            functions: BTreeMap::new(),
            objects: BTreeMap::new(),
        };
        let (functions, objects) = {
            let file = object.elf(path)?;
            let mut functions = BTreeMap::new();
            let mut objects = BTreeMap::new();
            for sym in file.symbols() {
                let kind = sym.elf_symbol().st_type();
                if !(kind == elf::STT_FUNC || kind == elf::STT_OBJECT) || sym.size() == 0 {
                    continue;
                }
                let Some(section_index) = sym.section_index() else {
                    continue;
                };
                // Discarded at link time (e.g. __ADDRESSABLE): not in the kernel.
                let section = file
                    .section_by_index(section_index)
                    .map_err(|e| elf_error(path, e))?;
                let alloc = section.elf_section_header().sh_flags(file.endian())
                    & u64::from(elf::SHF_ALLOC)
                    != 0;
                // .modinfo holds strings for modinfo(8), never used at run time.
                let metadata = section
                    .name()
                    .is_ok_and(|n| n.starts_with(".discard") || n == ".modinfo");
                if !alloc || metadata {
                    continue;
                }
                let name = sym.name().map_err(|e| elf_error(path, e))?.to_owned();
                let item = read_item(&file, path, &sym, section_index)?;
                if kind == elf::STT_FUNC {
                    functions.insert(name, item);
                } else {
                    objects.insert(name, item);
                }
            }
            // Aliases (e.g. SYSCALL_DEFINE0's __x64_sys_x and __do_sys_x)
            // are one piece of code: keep the alphabetically first name.
            let mut seen = std::collections::HashSet::new();
            functions.retain(|_, f| seen.insert((f.section, f.value)));
            (functions, objects)
        };
        object.functions = functions;
        object.objects = objects;
        Ok(object)
    }

    /// The parsed ELF file.
    pub fn elf<'a>(&'a self, path: &Path) -> Result<ElfFile64<'a>, CreateError> {
        ElfFile64::parse(&*self.data).map_err(|e| elf_error(path, e))
    }

    /// The names of the symbols the object refers to but does not define.
    pub fn undefined(&self, path: &Path) -> Result<Vec<String>, CreateError> {
        let file = self.elf(path)?;
        let mut names = Vec::new();
        for sym in file.symbols().filter(|s| s.is_undefined()) {
            let name = sym.name().map_err(|e| elf_error(path, e))?;
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

/// The defined functions and variables of a linked module (`.ko`), as
/// `System.map` would list them: name -> one type letter per definition
/// (`T`/`t` for code, `D`/`d` for data; upper case for globals).
pub fn symbol_map(path: &Path) -> Result<HashMap<String, Vec<char>>, CreateError> {
    let data = std::fs::read(path).map_err(|e| CreateError::io(path, e))?;
    let file = ElfFile64::<object::Endianness>::parse(&*data).map_err(|e| elf_error(path, e))?;
    let mut map: HashMap<String, Vec<char>> = HashMap::new();
    for sym in file.symbols() {
        let kind = sym.elf_symbol().st_type();
        if sym.is_undefined() || !(kind == elf::STT_FUNC || kind == elf::STT_OBJECT) {
            continue;
        }
        let letter = match (kind == elf::STT_FUNC, sym.is_global()) {
            (true, true) => 'T',
            (true, false) => 't',
            (false, true) => 'D',
            (false, false) => 'd',
        };
        let name = sym.name().map_err(|e| elf_error(path, e))?;
        map.entry(name.to_owned()).or_default().push(letter);
    }
    Ok(map)
}

/// Whether a relocation type is PC-relative, so its addend also holds the
/// distance from the field to the end of its instruction.
fn pc_relative(r_type: u32) -> bool {
    matches!(r_type, elf::R_X86_64_PC32 | elf::R_X86_64_PLT32)
}

/// Where each instruction of `code` ends, by decoding it from the start
/// (empty from the first byte that does not decode).
pub fn instruction_ends(code: &[u8]) -> Vec<u64> {
    let mut ends = Vec::new();
    let mut at = 0usize;
    while let Some(rest) = code.get(at..).filter(|r| !r.is_empty()) {
        let Ok(insn) = ksplice_core::x86::decode(rest) else {
            break;
        };
        at += usize::from(insn.len);
        ends.push(at as u64);
    }
    ends
}

/// How far the end of the instruction holding a field at `offset` lies
/// beyond the field: what a PC-relative addend includes besides the
/// offset into its target (`lea x(%rip)` 4, `cmpb $0, x(%rip)` 5). Zero
/// for other relocation types; 4 where `ends` does not reach `offset`.
pub fn pc_adjust(r_type: u32, offset: u64, ends: &[u64]) -> i64 {
    if !pc_relative(r_type) {
        return 0;
    }
    match ends.iter().find(|&&end| end > offset) {
        Some(&end) if end - offset >= 4 => (end - offset) as i64,
        _ => 4,
    }
}

/// Normalises the target of a relocation in `file`. `pc_adjust` is what
/// [`pc_adjust`] says for a field in code; in data (`.long x - .`) the
/// addend is exact and it is 0.
pub fn normalise(
    file: &ElfFile64<'_>,
    path: &Path,
    symbol: SymbolIndex,
    addend: i64,
    pc_adjust: i64,
) -> Result<(Target, i64), CreateError> {
    let sym = file
        .symbol_by_index(symbol)
        .map_err(|e| elf_error(path, e))?;
    // Local labels such as gcc's `.LC30` name an offset in a section, like
    // section symbols do.
    let label = sym.elf_symbol().st_type() == elf::STT_NOTYPE
        && sym.is_local()
        && sym.section_index().is_some();
    if sym.elf_symbol().st_type() != elf::STT_SECTION && !label {
        let name = sym.name().map_err(|e| elf_error(path, e))?;
        return Ok((Target::Named(name.to_owned()), addend));
    }
    let addend = if label {
        addend.wrapping_add(sym.address() as i64)
    } else {
        addend
    };
    let section_index = sym
        .section_index()
        .ok_or_else(|| elf_error(path, "section symbol without a section"))?;
    let section = file
        .section_by_index(section_index)
        .map_err(|e| elf_error(path, e))?;
    let section_name = section.name().map_err(|e| elf_error(path, e))?.to_owned();
    let flags = section.elf_section_header().sh_flags(file.endian());
    let at = addend.wrapping_add(pc_adjust);
    let strings = u64::from(elf::SHF_MERGE | elf::SHF_STRINGS);
    if flags & strings == strings {
        let data = section.data().map_err(|e| elf_error(path, e))?;
        let start = usize::try_from(at)
            .ok()
            .filter(|&s| s <= data.len())
            .ok_or_else(|| elf_error(path, "string offset outside its section"))?;
        let end = data[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |n| start + n);
        return Ok((Target::Str(data[start..end].to_vec()), 0));
    }
    // An anonymous reference into a section: name the symbol covering it.
    let covering = file.symbols().find(|s| {
        let t = s.elf_symbol().st_type();
        (t == elf::STT_FUNC || t == elf::STT_OBJECT)
            && s.section_index() == Some(section_index)
            && at >= s.address() as i64
            && at < (s.address() + s.size().max(1)) as i64
    });
    match covering {
        Some(s) => Ok((
            Target::Named(s.name().map_err(|e| elf_error(path, e))?.to_owned()),
            addend - s.address() as i64,
        )),
        None => Ok((Target::Section(section_name), addend)),
    }
}

fn read_item(
    file: &ElfFile64<'_>,
    path: &Path,
    sym: &object::read::elf::ElfSymbol64<'_, '_>,
    section_index: SectionIndex,
) -> Result<Item, CreateError> {
    let section = file
        .section_by_index(section_index)
        .map_err(|e| elf_error(path, e))?;
    let header = section.elf_section_header();
    let nobits = header.sh_type(file.endian()) == elf::SHT_NOBITS;
    let writable = header.sh_flags(file.endian()) & u64::from(elf::SHF_WRITE) != 0;
    let (value, size) = (sym.address(), sym.size());
    let bytes = if nobits {
        Vec::new()
    } else {
        let data = section.data().map_err(|e| elf_error(path, e))?;
        data.get(value as usize..(value + size) as usize)
            .ok_or_else(|| elf_error(path, "symbol outside its section"))?
            .to_vec()
    };
    let in_code = header.sh_flags(file.endian()) & u64::from(elf::SHF_EXECINSTR) != 0;
    let ends = if in_code {
        instruction_ends(&bytes)
    } else {
        Vec::new()
    };
    let mut relocs = Vec::new();
    for (offset, reloc) in section.relocations() {
        if offset < value || offset >= value + size {
            continue;
        }
        let RelocationFlags::Elf { r_type } = reloc.flags() else {
            return Err(elf_error(path, "non-ELF relocation"));
        };
        let RelocationTarget::Symbol(raw_symbol) = reloc.target() else {
            return Err(elf_error(path, "relocation without a symbol"));
        };
        let adjust = if in_code {
            pc_adjust(r_type, offset - value, &ends)
        } else {
            0
        };
        let (target, addend) = normalise(file, path, raw_symbol, reloc.addend(), adjust)?;
        relocs.push(Reloc {
            offset: offset - value,
            r_type,
            pc_adjust: adjust,
            target,
            addend,
            raw_symbol,
            raw_addend: reloc.addend(),
        });
    }
    relocs.sort_by_key(|r| r.offset);
    Ok(Item {
        name: sym.name().map_err(|e| elf_error(path, e))?.to_owned(),
        symbol: sym.index(),
        section: section_index,
        section_name: section.name().map_err(|e| elf_error(path, e))?.to_owned(),
        value,
        size,
        bytes,
        relocs,
        local: sym.is_local(),
        weak: sym.is_weak(),
        nobits,
        writable,
    })
}

/// Why a function is in the update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its machine code differs.
    ChangedBytes(usize),
    /// What its relocations point at differs.
    ChangedRelocations,
    /// It is new in the patched source.
    NewFunction,
    /// It refers to read-only data the patch changed, which the update
    /// carries as a new copy.
    UsesChangedData(String),
    /// Its `.cold` part changed (gcc moved the changed code, an inlined
    /// `pr_info_once` say, out of line): only the new function reaches the
    /// new part.
    ChangedColdPart(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChangedBytes(n) => write!(f, "changed bytes ({n} differ)"),
            Self::ChangedRelocations => f.write_str("changed relocations"),
            Self::NewFunction => f.write_str("new function"),
            Self::UsesChangedData(name) => write!(f, "uses changed read-only data {name}"),
            Self::ChangedColdPart(name) => write!(f, "its cold part {name} changed"),
        }
    }
}

/// The result of comparing the pre and post builds of one object.
#[derive(Debug, Default)]
pub struct Diff {
    /// Functions to replace, with reasons.
    pub changed: BTreeMap<String, Vec<Reason>>,
    /// Functions that exist only after the patch.
    pub new_functions: BTreeSet<String>,
    /// Read-only data whose contents changed: post code uses new copies.
    pub changed_rodata: BTreeSet<String>,
    /// Data objects that exist only after the patch.
    pub new_data: BTreeSet<String>,
    /// Writable data whose initial value changed: refused, once the layout
    /// check has had its say.
    pub changed_data: BTreeSet<String>,
    /// The pre name of every post data object that existed before
    /// (static locals are renumbered by gcc; see [`pair_objects`]).
    pub pre_names: BTreeMap<String, String>,
    /// Human-readable notes (skipped init code, ...).
    pub notes: Vec<String>,
    /// Why changed read-only data cannot be followed: refused, once the
    /// layout check has had its say (a changed type says more).
    pub rodata_refusal: Option<CreateError>,
}

fn differing_bytes(a: &Item, b: &Item) -> usize {
    let common = a.bytes.iter().zip(&b.bytes).filter(|(x, y)| x != y).count();
    common + a.bytes.len().abs_diff(b.bytes.len())
}

/// Whether `a` (pre) and `b` (post) relocate alike; a post target that
/// `pairs` maps is compared by its pre name.
fn same_relocs(a: &Item, b: &Item, pairs: &BTreeMap<String, String>) -> bool {
    let pre_name = |t: &Target| match t {
        Target::Named(n) => pairs
            .get(n)
            .map_or_else(|| t.clone(), |p| Target::Named(p.clone())),
        t => t.clone(),
    };
    a.relocs.len() == b.relocs.len()
        && a.relocs.iter().zip(&b.relocs).all(|(x, y)| {
            x.offset == y.offset
                && x.r_type == y.r_type
                && x.target == pre_name(&y.target)
                && x.addend == y.addend
        })
}

/// Whether `name` is the out-of-line cold part gcc split from a function.
pub fn is_cold_part(name: &str) -> bool {
    name.split('.').skip(1).any(|part| part == "cold")
}

/// The function a `.cold` part belongs to: `foo.constprop.0.cold` and
/// `foo.cold.1` are parts of `foo.constprop.0` and `foo`.
pub fn cold_parent(name: &str) -> Option<&str> {
    let at = name.find(".cold")?;
    let rest = &name[at + ".cold".len()..];
    (rest.is_empty() || rest.starts_with('.')).then(|| &name[..at])
}

/// gcc numbers static locals (`count.3`) and `__UNIQUE_ID_x_123` uses
/// `__COUNTER__`; the numbers shift when a patch adds another, so compare
/// without them.
pub fn strip_static_suffix(name: &str) -> &str {
    let separator = if name.starts_with("__UNIQUE_ID_") {
        '_'
    } else {
        '.'
    };
    match name.rsplit_once(separator) {
        Some((base, n))
            if !base.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() =>
        {
            base
        }
        _ => name,
    }
}

/// The function or datum a (possibly gcc-cloned) name belongs to:
/// `foo.isra.0`, `foo.constprop.1`, `foo.part.0` and `foo.cold` are `foo`.
fn owner_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// How a data object is used in its object file: the items (by owner
/// name) that refer to it and, per reference, what the relocations just
/// before and after it name (the string literal, the callee, ...).
#[derive(Debug, Default, PartialEq, Eq)]
struct Usage {
    users: BTreeSet<String>,
    signature: BTreeSet<(String, Option<Target>, Option<Target>)>,
    /// The signature without the users: what the relocations before and
    /// after each use point at (a lock's name string beside its lockdep
    /// key), for code that moved to another function (inlined elsewhere).
    neighbours: BTreeSet<(Option<Target>, Option<Target>)>,
    /// The object's own bytes and what its relocations point at.
    contents: (Vec<u8>, Vec<Target>),
    /// Read-only (its contents are all there is to it).
    read_only: bool,
}

fn neutral(target: &Target) -> Target {
    match target {
        Target::Named(n) => Target::Named(strip_static_suffix(owner_name(n)).to_owned()),
        t => t.clone(),
    }
}

fn usage(object: &Object, name: &str) -> Usage {
    let target = Target::Named(name.to_owned());
    let mut u = Usage::default();
    if let Some(item) = object.objects.get(name) {
        u.contents = (
            item.bytes.clone(),
            item.relocs.iter().map(|r| neutral(&r.target)).collect(),
        );
        u.read_only = !item.writable && !item.nobits;
    }
    for item in object.functions.values().chain(object.objects.values()) {
        for (i, r) in item.relocs.iter().enumerate() {
            if r.target != target {
                continue;
            }
            let user = strip_static_suffix(owner_name(&item.name)).to_owned();
            let around = |j: Option<usize>| {
                j.and_then(|j| item.relocs.get(j))
                    .map(|r| neutral(&r.target))
            };
            let (before, after) = (around(i.checked_sub(1)), around(Some(i + 1)));
            u.neighbours.insert((before.clone(), after.clone()));
            u.signature.insert((user.clone(), before, after));
            u.users.insert(user);
        }
    }
    u
}

/// Whether `item` is a "warn once" flag: one byte in `.data..once` (which
/// the kernel clears itself, see clear_warn_once) or in `.data..unlikely`
/// (RCU_LOCKDEP_WARN's).
fn is_once_flag(item: &Item) -> bool {
    item.size == 1
        && matches!(
            item.section_name.as_str(),
            ".data..once" | ".data..unlikely"
        )
}

/// Whether `name` carries a number gcc or `__COUNTER__` gave it.
fn numbered(name: &str) -> bool {
    strip_static_suffix(name) != name
}

/// Votes from the functions and data both builds have: their relocations, aligned
/// by the longest common prefix and suffix of what they point at (numbers
/// aside), pair the numbered objects they name at the same place. The
/// alignment is taken twice, favouring the prefix and favouring the
/// suffix; only places both agree on vote, so code the patch inserted
/// never pairs with code that was already there.
fn votes(pre: &Object, post: &Object) -> Vec<(String, String)> {
    let mut votes = Vec::new();
    let both = post
        .functions
        .iter()
        .chain(&post.objects)
        .filter_map(|(name, after)| {
            let before = pre.functions.get(name).or_else(|| pre.objects.get(name))?;
            Some((before, after))
        });
    for (before, after) in both {
        let a: Vec<Target> = before.relocs.iter().map(|r| neutral(&r.target)).collect();
        let b: Vec<Target> = after.relocs.iter().map(|r| neutral(&r.target)).collect();
        let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let suffix = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let short = a.len().min(b.len());
        // (pre index, post index) pairs of each alignment.
        let align = |p: usize, s: usize| -> BTreeSet<(usize, usize)> {
            (0..p)
                .map(|i| (i, i))
                .chain((1..=s).map(|k| (a.len() - k, b.len() - k)))
                .collect()
        };
        let by_prefix = align(prefix, suffix.min(short - prefix));
        let by_suffix = align(prefix.min(short - suffix), suffix);
        for &(i, j) in by_prefix.intersection(&by_suffix) {
            if let (Target::Named(x), Target::Named(y)) =
                (&before.relocs[i].target, &after.relocs[j].target)
            {
                if numbered(x) && pre.objects.contains_key(x) && post.objects.contains_key(y) {
                    votes.push((y.clone(), x.clone()));
                }
            }
        }
    }
    votes
}

/// Pairs the post data objects of an object file with their pre
/// counterparts (post name -> pre name). Names gcc numbers (`__key.3`,
/// `__warned.12`, `__UNIQUE_ID_x_77`) are static locals and macro
/// instances whose numbers shift when the patch adds one, so they are
/// paired by how they are used instead: first where the functions and
/// data both builds have refer to them at the same place (see [`votes`]), then, for
/// the rest, by having the same users, the same relocations around each
/// use, overlapping users, the same relocations around each use in
/// whichever function (code gcc inlined elsewhere), or (for constants and
/// objects nothing uses) the
/// same contents, each only when exactly one candidate fits on both sides. A post object left without a counterpart is new data,
/// unless a pre object of the same base name is left too: then which is
/// which cannot be told, and that is refused.
pub fn pair_objects(pre: &Object, post: &Object) -> Result<BTreeMap<String, String>, String> {
    let mut pairs = BTreeMap::new();
    let mut groups: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for name in post.objects.keys() {
        if !numbered(name) {
            if pre.objects.contains_key(name) {
                pairs.insert(name.clone(), name.clone());
            }
        } else {
            groups
                .entry(strip_static_suffix(name))
                .or_default()
                .1
                .push(name);
        }
    }
    for name in pre.objects.keys().filter(|n| numbered(n)) {
        if let Some(group) = groups.get_mut(strip_static_suffix(name)) {
            group.0.push(name);
        }
    }
    // Votes that agree both ways pair at once.
    let mut by_post: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_pre: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (q, p) in votes(pre, post) {
        by_post.entry(q.clone()).or_default().insert(p.clone());
        by_pre.entry(p).or_default().insert(q);
    }
    let voted: BTreeMap<&str, &str> = by_post
        .iter()
        .filter_map(|(q, ps)| {
            let p = (ps.len() == 1).then(|| ps.first())??;
            (by_pre.get(p)?.len() == 1).then_some((q.as_str(), p.as_str()))
        })
        .collect();
    for (mut pre_left, mut post_left) in groups.into_values() {
        post_left.retain(|q| match voted.get(q) {
            Some(p) if pre_left.contains(p) => {
                pairs.insert((*q).to_owned(), (*p).to_owned());
                pre_left.retain(|n| n != p);
                false
            }
            _ => true,
        });
        let pre_use: BTreeMap<&str, Usage> = pre_left.iter().map(|n| (*n, usage(pre, n))).collect();
        let post_use: BTreeMap<&str, Usage> =
            post_left.iter().map(|n| (*n, usage(post, n))).collect();
        type Fits = fn(&Usage, &Usage) -> bool;
        let rules: [Fits; 5] = [
            |a, b| a.users == b.users,
            |a, b| !a.signature.is_empty() && a.signature == b.signature,
            |a, b| !a.users.is_disjoint(&b.users),
            // Only where a string literal (a lock's name) marks each use:
            // a bare use that moved could as well be new code's.
            |a, b| {
                let named = |(x, y): &(Option<Target>, Option<Target>)| {
                    matches!(x, Some(Target::Str(_))) || matches!(y, Some(Target::Str(_)))
                };
                !a.neighbours.is_empty()
                    && a.neighbours.iter().all(named)
                    && a.neighbours == b.neighbours
            },
            // Constants (compound literals, tables) and objects nothing
            // uses: by contents. Never state that code uses: two flags
            // that start at zero are not the same flag.
            |a, b| {
                let inert =
                    (a.read_only && b.read_only) || (a.users.is_empty() && b.users.is_empty());
                inert && a.contents == b.contents
            },
        ];
        for fits in rules {
            loop {
                let unique = post_left.iter().find_map(|&q| {
                    let mut ps = pre_left
                        .iter()
                        .filter(|&&p| fits(&pre_use[p], &post_use[q]));
                    let p = *ps.next()?;
                    let only_p = ps.next().is_none();
                    let only_q = post_left
                        .iter()
                        .filter(|&&q2| fits(&pre_use[p], &post_use[q2]))
                        .count()
                        == 1;
                    (only_p && only_q).then_some((p, q))
                });
                let Some((p, q)) = unique else { break };
                pairs.insert(q.to_owned(), p.to_owned());
                pre_left.retain(|&n| n != p);
                post_left.retain(|&n| n != q);
            }
        }
        // A once flag (pr_*_once, WARN_ONCE, RCU's lockdep warning) left
        // over may be new: a fresh copy at worst warns once more, as after
        // the kernel's own clear_warn_once.
        post_left.retain(|q| !post.objects.get(*q).is_some_and(is_once_flag));
        if !pre_left.is_empty() && !post_left.is_empty() {
            return Err(format!(
                "cannot tell which of the static variables {} are new and which are {} \
                 (gcc's numbering is no guide)",
                post_left.join(", "),
                pre_left.join(", ")
            ));
        }
    }
    Ok(pairs)
}

/// Compares the pre and post builds of `object_name`.
pub fn diff(object_name: &str, pre: &Object, post: &Object) -> Result<Diff, CreateError> {
    let pre_names = pair_objects(pre, post).map_err(|why| CreateError::UnsupportedChange {
        path: object_name.to_owned(),
        why,
    })?;
    let mut d = Diff {
        pre_names,
        ..Diff::default()
    };
    for (name, after) in &post.functions {
        let Some(before) = pre.functions.get(name) else {
            if after.is_init_or_exit() {
                d.notes.push(format!(
                    "{object_name}: new __init/__exit function {name} skipped"
                ));
            } else {
                d.new_functions.insert(name.clone());
            }
            continue;
        };
        let mut reasons = Vec::new();
        if before.bytes != after.bytes {
            reasons.push(Reason::ChangedBytes(differing_bytes(before, after)));
        }
        if !same_relocs(before, after, &d.pre_names) {
            reasons.push(Reason::ChangedRelocations);
        }
        if reasons.is_empty() {
            continue;
        }
        if after.is_init_or_exit() {
            d.notes.push(format!("{object_name}: {name} is __init/__exit code; change skipped (it does not run again)"));
            continue;
        }
        // A `.cold` part is only entered from its own function: it is carried
        // as new code for the new function, never redirected on its own
        // (old code jumping into a new cold part would mix frame layouts).
        if is_cold_part(name) {
            d.new_functions.insert(name.clone());
            continue;
        }
        d.changed.insert(name.clone(), reasons);
    }
    replace_parents_of_changed_cold_parts(object_name, pre, post, &mut d)?;
    for (name, after) in &post.objects {
        let Some(pre_name) = d.pre_names.get(name) else {
            if after.is_init_or_exit() {
                continue;
            }
            if after.section_name.starts_with(".data..percpu") {
                return Err(CreateError::UnsupportedChange {
                    path: object_name.to_owned(),
                    why: format!("new per-CPU variable {name} is not supported"),
                });
            }
            d.new_data.insert(name.clone());
            continue;
        };
        let before = &pre.objects[pre_name];
        let same = before.size == after.size
            && before.bytes == after.bytes
            && same_relocs(before, after, &d.pre_names);
        if same || after.is_init_or_exit() {
            continue;
        }
        if after.writable || after.nobits {
            d.changed_data.insert(name.clone());
            continue;
        }
        d.changed_rodata.insert(name.clone());
    }
    if let Err(refusal) = follow_changed_rodata(object_name, post, &mut d) {
        d.rodata_refusal = Some(refusal);
    }
    Ok(d)
}

/// A changed `.cold` part is new code only its own function enters: the
/// function is replaced too, even when its own bytes are the same (they
/// jump to the part by name), or the running kernel would go on entering
/// the old part and the fix would never run. A part of `__init`/`__exit`
/// code is dropped with its function's change.
fn replace_parents_of_changed_cold_parts(
    object_name: &str,
    pre: &Object,
    post: &Object,
    d: &mut Diff,
) -> Result<(), CreateError> {
    let changed_parts: Vec<String> = d
        .new_functions
        .iter()
        .filter(|n| is_cold_part(n) && pre.functions.contains_key(*n))
        .cloned()
        .collect();
    for part in changed_parts {
        let parent = cold_parent(&part)
            .filter(|p| post.functions.contains_key(*p))
            .ok_or_else(|| CreateError::UnsupportedChange {
                path: object_name.to_owned(),
                why: format!("the cold part {part} changed, but its function is not in the object"),
            })?
            .to_owned();
        if post.functions[&parent].is_init_or_exit() {
            d.new_functions.remove(&part);
            d.notes.push(format!(
                "{object_name}: {part} is part of __init/__exit code; change skipped (it does not run again)"
            ));
            continue;
        }
        if d.new_functions.contains(&parent) {
            continue;
        }
        d.changed
            .entry(parent)
            .or_default()
            .push(Reason::ChangedColdPart(part));
    }
    Ok(())
}

/// The users of changed read-only data must move to its new copy: read-only
/// data pointing at it is copied too, functions referring to it are
/// replaced. Where the running kernel may hold the old copy's address
/// (the data is global, so other files use it; init code registered it;
/// writable data points at it) the new copy would go unused: refused.
fn follow_changed_rodata(
    object_name: &str,
    post: &Object,
    d: &mut Diff,
) -> Result<(), CreateError> {
    let refuse = |why: String| CreateError::UnsupportedChange {
        path: object_name.to_owned(),
        why: format!("{why}; data changes need a hook"),
    };
    let mut pending: Vec<String> = d.changed_rodata.iter().cloned().collect();
    while let Some(changed) = pending.pop() {
        if post.objects.get(&changed).is_some_and(|i| !i.local) {
            return Err(refuse(format!(
                "read-only data {changed} changes, but it is global: other files keep using the old copy"
            )));
        }
        let target = Target::Named(changed.clone());
        let uses = |i: &Item| i.relocs.iter().any(|r| r.target == target);
        for (name, item) in &post.objects {
            if !uses(item) || d.changed_rodata.contains(name) || d.new_data.contains(name) {
                continue;
            }
            if item.writable || item.nobits || item.is_init_or_exit() {
                return Err(refuse(format!(
                    "{name} points at read-only data {changed}, which the patch changes"
                )));
            }
            d.changed_rodata.insert(name.clone());
            pending.push(name.clone());
        }
        for (name, item) in &post.functions {
            if !uses(item) || d.new_functions.contains(name) {
                continue;
            }
            if item.is_init_or_exit() {
                return Err(refuse(format!(
                    "read-only data {changed} changes, but {name} (init code, which does not run \
                     again) is what gave its address away"
                )));
            }
            if is_cold_part(name) {
                d.new_functions.insert(name.clone());
                continue;
            }
            d.changed
                .entry(name.clone())
                .or_default()
                .push(Reason::UsesChangedData(changed.clone()));
        }
    }
    Ok(())
}

/// A special section whose fixed-size entries each describe one place in
/// the code; update.ko keeps the entries of the functions it carries.
pub struct SpecialSection {
    /// Section name.
    pub name: &'static str,
    /// Entry size in bytes.
    pub entry_size: usize,
}

/// The special sections of a per-file kernel object on x86-64 for `tree`.
pub fn special_sections(bug_verbose: bool) -> Vec<SpecialSection> {
    // struct bug_entry: addr, format (x86-64), [file, line], flags; 4-aligned.
    let bug = if bug_verbose { 16 } else { 12 };
    vec![
        SpecialSection {
            name: "__ex_table",
            entry_size: 12,
        },
        SpecialSection {
            name: "__jump_table",
            entry_size: 16,
        },
        SpecialSection {
            name: ".altinstructions",
            entry_size: 14,
        },
        SpecialSection {
            name: "__bug_table",
            entry_size: bug,
        },
        SpecialSection {
            name: "__mcount_loc",
            entry_size: 8,
        },
        SpecialSection {
            name: ".discard.annotate_insn",
            entry_size: 8,
        },
    ]
}

/// The runtime constants an object's code uses (`runtime_const_ptr(SYM)`,
/// `runtime_const_shift_right_32(x, SYM)`), as (SYM, function): the
/// kernel writes their values into its own code at boot, over a
/// placeholder, and leaves module code alone (`asm/runtime-const.h` is
/// refused in modules). Sections `runtime_ptr_SYM` and `runtime_shift_SYM`
/// hold one 32-bit reference to each such instruction's operand.
pub fn runtime_constants(
    object: &Object,
    path: &Path,
) -> Result<Vec<(String, String)>, CreateError> {
    let file = object.elf(path)?;
    let mut uses = Vec::new();
    for section in file.sections() {
        let Ok(name) = section.name() else { continue };
        let Some(constant) = name
            .strip_prefix("runtime_ptr_")
            .or_else(|| name.strip_prefix("runtime_shift_"))
        else {
            continue;
        };
        for (_, _, symbol, addend) in symbol_relocs(&section) {
            let function = match normalise(&file, path, symbol, addend, 0)?.0 {
                Target::Named(n) => n,
                Target::Section(s) => s,
                Target::Str(_) => "a string".into(),
            };
            uses.push((constant.to_owned(), function));
        }
    }
    Ok(uses)
}

/// Names of symbols defined in `object` (functions and data).
pub fn defined_names(object: &Object) -> HashMap<&str, &Item> {
    object
        .functions
        .iter()
        .chain(object.objects.iter())
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// A section's relocations against symbols, as `(offset, r_type, symbol,
/// addend)`, in offset order.
pub fn symbol_relocs<'a>(
    section: &impl object::ObjectSection<'a>,
) -> Vec<(u64, u32, SymbolIndex, i64)> {
    let mut relocs: Vec<_> = section
        .relocations()
        .filter_map(|(off, r)| match (r.flags(), r.target()) {
            (RelocationFlags::Elf { r_type }, RelocationTarget::Symbol(s)) => {
                Some((off, r_type, s, r.addend()))
            }
            _ => None,
        })
        .collect();
    relocs.sort_by_key(|r| r.0);
    relocs
}

/// The runtime-patched sites of `function` in `object`: jump-label `jmp`s
/// (from `__jump_table`) and alternatives (from `.altinstructions`), as
/// `(offset, length, kind)`.
pub fn patched_sites(
    object: &Object,
    path: &Path,
    function: &Item,
) -> Result<Vec<(u32, u16, ksplice_core::payload::SiteKind)>, CreateError> {
    use ksplice_core::payload::SiteKind;
    let file = object.elf(path)?;
    let mut sites = Vec::new();
    for (name, size, kind) in [
        ("__jump_table", 16usize, SiteKind::JumpLabel),
        (".altinstructions", 14, SiteKind::Alternative),
    ] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let data = section.data().map_err(|e| elf_error(path, e))?;
        for (offset, _, sym, addend) in symbol_relocs(&section) {
            if offset as usize % size != 0 {
                continue;
            }
            let (target, at) = normalise(&file, path, sym, addend, 0)?;
            if target != Target::Named(function.name.clone())
                || at < 0
                || at as u64 >= function.size
            {
                continue;
            }
            let len = match kind {
                // The jump-label instruction itself: `jmp` or a NOP.
                SiteKind::JumpLabel => ksplice_core::x86::decode(&function.bytes[at as usize..])
                    .map_err(|e| elf_error(path, e))?
                    .len
                    .into(),
                // struct alt_instr: instrlen is byte 12.
                SiteKind::Alternative => u16::from(
                    *data
                        .get(offset as usize + 12)
                        .ok_or_else(|| elf_error(path, "short .altinstructions"))?,
                ),
            };
            if len > 0 {
                sites.push((at as u32, len, kind));
            }
        }
    }
    sites.sort_by_key(|s| (s.0, s.1));
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_relative_addends_are_adjusted_to_the_end_of_their_instruction() {
        // cmpb $0x0,x(%rip) (an immediate follows the field); lea x(%rip),%rdi;
        // call f; mov $x,%rdi (absolute).
        let code = [
            0x80, 0x3d, 0, 0, 0, 0, 0x00, //
            0x48, 0x8d, 0x3d, 0, 0, 0, 0, //
            0xe8, 0, 0, 0, 0, //
            0x48, 0xc7, 0xc7, 0, 0, 0, 0,
        ];
        let ends = instruction_ends(&code);
        assert_eq!(ends, [7, 14, 19, 26]);
        assert_eq!(pc_adjust(elf::R_X86_64_PC32, 2, &ends), 5);
        assert_eq!(pc_adjust(elf::R_X86_64_PC32, 10, &ends), 4);
        assert_eq!(pc_adjust(elf::R_X86_64_PLT32, 15, &ends), 4);
        assert_eq!(pc_adjust(elf::R_X86_64_32S, 22, &ends), 0);
        // Undecodable code: the usual 4.
        assert_eq!(pc_adjust(elf::R_X86_64_PC32, 2, &[]), 4);
    }

    #[test]
    fn cold_parts_are_recognised_by_name() {
        assert!(is_cold_part("loadavg_proc_show.cold"));
        assert!(is_cold_part("foo.constprop.0.cold"));
        assert!(!is_cold_part("cold_start"));
        assert!(!is_cold_part("foo.isra.0"));
        assert_eq!(
            cold_parent("loadavg_proc_show.cold"),
            Some("loadavg_proc_show")
        );
        assert_eq!(cold_parent("foo.constprop.0.cold"), Some("foo.constprop.0"));
        assert_eq!(cold_parent("foo.cold.1"), Some("foo"));
        assert_eq!(cold_parent("foo.coldish"), None);
        assert_eq!(cold_parent("cold_start"), None);
    }

    /// Debian's gcc moves an inlined pr_info_once out of line: a patch of
    /// its string changes only `cap_validate_magic.cold`. The function is
    /// replaced too, so the new part is reached (kernel/capability.c).
    #[test]
    fn a_changed_cold_part_replaces_its_function() {
        let parent = item("cap_validate_magic", &[named("cap_validate_magic.cold")]);
        let pre = object(
            vec![
                parent.clone(),
                item("cap_validate_magic.cold", &[text("warning: `%s'")]),
            ],
            &[],
        );
        let post = object(
            vec![
                parent,
                item(
                    "cap_validate_magic.cold",
                    &[text("warning (ksplice): `%s'")],
                ),
            ],
            &[],
        );
        let d = diff("kernel/capability.o", &pre, &post).unwrap();
        assert_eq!(
            d.changed["cap_validate_magic"],
            [Reason::ChangedColdPart("cap_validate_magic.cold".into())]
        );
        assert!(d.new_functions.contains("cap_validate_magic.cold"));
    }

    /// An item named `name` whose relocations name `targets`, in order.
    fn item(name: &str, targets: &[Target]) -> Item {
        Item {
            name: name.to_owned(),
            symbol: SymbolIndex(0),
            section: SectionIndex(0),
            section_name: format!(".text.{name}"),
            value: 0,
            size: 64,
            bytes: vec![0; 64],
            relocs: targets
                .iter()
                .enumerate()
                .map(|(i, t)| Reloc {
                    offset: 4 * i as u64,
                    r_type: elf::R_X86_64_PC32,
                    pc_adjust: 4,
                    target: t.clone(),
                    addend: -4,
                    raw_symbol: SymbolIndex(0),
                    raw_addend: -4,
                })
                .collect(),
            local: true,
            weak: false,
            nobits: true,
            writable: true,
        }
    }

    fn named(n: &str) -> Target {
        Target::Named(n.to_owned())
    }

    fn text(s: &str) -> Target {
        Target::Str(s.as_bytes().to_vec())
    }

    fn object(functions: Vec<Item>, data: &[&str]) -> Object {
        Object {
            data: Vec::new(),
            functions: functions.into_iter().map(|f| (f.name.clone(), f)).collect(),
            objects: data.iter().map(|n| (n.to_string(), item(n, &[]))).collect(),
        }
    }

    /// `init(key, name)`: the relocations of `spin_lock_init(name)` and
    /// friends: a string literal, the key, the init function.
    fn init(key: &str, name: &str, function: &str) -> [Target; 3] {
        [text(name), named(key), named(function)]
    }

    #[test]
    fn a_new_lockdep_key_is_new_data_and_the_renumbered_old_ones_are_paired() {
        let pre = object(
            vec![item(
                "alloc_pid",
                &[
                    init("__key.0", "&pid->lock", "__raw_spin_lock_init"),
                    init("__key.1", "&pid->wait_pidfd", "__init_waitqueue_head"),
                ]
                .concat(),
            )],
            &["__key.0", "__key.1", "pid_max"],
        );
        // The fix adds an init_rwsem() before the others: gcc numbers the
        // new key 0 and shifts the rest.
        let post = object(
            vec![item(
                "alloc_pid",
                &[
                    init("__key.0", "&sem", "__init_rwsem"),
                    init("__key.1", "&pid->lock", "__raw_spin_lock_init"),
                    init("__key.2", "&pid->wait_pidfd", "__init_waitqueue_head"),
                ]
                .concat(),
            )],
            &["__key.0", "__key.1", "__key.2", "pid_max"],
        );
        let pairs = pair_objects(&pre, &post).unwrap();
        assert_eq!(pairs.get("__key.1").map(String::as_str), Some("__key.0"));
        assert_eq!(pairs.get("__key.2").map(String::as_str), Some("__key.1"));
        assert_eq!(
            pairs.get("__key.0"),
            None,
            "the new key has no pre counterpart"
        );
        assert_eq!(pairs.get("pid_max").map(String::as_str), Some("pid_max"));
    }

    #[test]
    fn lockdep_keys_of_code_inlined_into_another_function_are_paired_by_their_lock_names() {
        // io_uring 7.2.11: io_ring_ctx_alloc was inlined into io_uring_setup
        // and is now inlined into io_uring_create, which no longer is.
        let keys = |names: &[&str]| -> Vec<Target> {
            names
                .iter()
                .enumerate()
                .flat_map(|(i, n)| init(&format!("__key.{i}"), n, "__init_waitqueue_head"))
                .collect()
        };
        let pre = object(
            vec![item(
                "io_uring_setup",
                &keys(&["&ctx->cq_wait", "&ctx->poll_wq"]),
            )],
            &["__key.0", "__key.1"],
        );
        let mut setup = item("io_uring_setup", &[named("io_uring_create")]);
        setup.relocs.truncate(1);
        let post = object(
            vec![
                setup,
                // gcc numbered them the other way round this time.
                item(
                    "io_uring_create",
                    &keys(&["&ctx->poll_wq", "&ctx->cq_wait"]),
                ),
            ],
            &["__key.0", "__key.1"],
        );
        let pairs = pair_objects(&pre, &post).unwrap();
        assert_eq!(pairs.get("__key.1").map(String::as_str), Some("__key.0"));
        assert_eq!(pairs.get("__key.0").map(String::as_str), Some("__key.1"));
    }

    #[test]
    fn static_locals_are_paired_by_owning_function_not_by_number() {
        // f's counter was count.1, g's count.2; after the patch gcc numbers
        // them the other way round.
        let pre = object(
            vec![
                item("f", &[named("count.1")]),
                item("g.isra.0", &[named("count.2")]),
            ],
            &["count.1", "count.2"],
        );
        let post = object(
            vec![
                item("f", &[named("count.2")]),
                item("g.constprop.0", &[named("count.1")]),
            ],
            &["count.1", "count.2"],
        );
        let pairs = pair_objects(&pre, &post).unwrap();
        assert_eq!(pairs.get("count.2").map(String::as_str), Some("count.1"));
        assert_eq!(pairs.get("count.1").map(String::as_str), Some("count.2"));
    }

    #[test]
    fn a_static_local_that_may_be_new_or_old_is_refused() {
        // The old counter of f is gone and h has a new one: h could be f's
        // code moved out of line (then it is the same state), so refuse.
        let pre = object(vec![item("f", &[named("count.1")])], &["count.1"]);
        let post = object(
            vec![item("f", &[]), item("h", &[named("count.4")])],
            &["count.4"],
        );
        let err = pair_objects(&pre, &post).unwrap_err();
        assert!(err.contains("count.4") && err.contains("count.1"), "{err}");
        // With no old counter left over, h's is plainly new.
        let pre = object(vec![item("f", &[])], &[]);
        assert_eq!(pair_objects(&pre, &post).unwrap().get("count.4"), None);
    }

    #[test]
    fn an_ambiguous_once_flag_starts_afresh_but_other_state_is_refused() {
        // A WARN_ONCE moved from f into a new helper h: its flag may be new.
        let flag = |name: &str, section: &str| Item {
            size: 1,
            section_name: section.to_owned(),
            ..item(name, &[])
        };
        let mk = |functions: Vec<Item>, data: Vec<Item>| Object {
            data: Vec::new(),
            functions: functions.into_iter().map(|f| (f.name.clone(), f)).collect(),
            objects: data.into_iter().map(|o| (o.name.clone(), o)).collect(),
        };
        let pre = mk(
            vec![item("f", &[named("__already_done.1")])],
            vec![flag("__already_done.1", ".data..once")],
        );
        let post = mk(
            vec![item("f", &[]), item("h", &[named("__already_done.2")])],
            vec![flag("__already_done.2", ".data..once")],
        );
        assert_eq!(
            pair_objects(&pre, &post).unwrap().get("__already_done.2"),
            None
        );
        let pre = mk(
            vec![item("f", &[named("state.1")])],
            vec![flag("state.1", ".data")],
        );
        let post = mk(
            vec![item("f", &[]), item("h", &[named("state.2")])],
            vec![flag("state.2", ".data")],
        );
        assert!(pair_objects(&pre, &post).is_err());
    }

    #[test]
    fn changed_constants_move_their_users_unless_the_old_copy_stays_reachable() {
        let table = |bytes: &[u8], local: bool| Item {
            bytes: bytes.to_vec(),
            local,
            writable: false,
            nobits: false,
            ..item("ops", &[])
        };
        let mk = |t: Item| Object {
            data: Vec::new(),
            functions: [("probe".to_owned(), item("probe", &[named("ops")]))].into(),
            objects: [("ops".to_owned(), t)].into(),
        };
        let d = diff("x.o", &mk(table(b"a", true)), &mk(table(b"b", true))).unwrap();
        assert_eq!(d.changed_rodata, ["ops".to_owned()].into());
        assert_eq!(d.changed["probe"], [Reason::UsesChangedData("ops".into())]);
        // Refused, but only after the layout check (rodata_refusal).
        let d = diff("x.o", &mk(table(b"a", false)), &mk(table(b"b", false))).unwrap();
        let err = d
            .rodata_refusal
            .expect("a global constant's change is refused");
        assert!(err.to_string().contains("global"), "{err}");
    }

    #[test]
    fn objects_no_code_uses_are_paired_by_contents() {
        let with = |name: &str, bytes: &[u8]| Item {
            bytes: bytes.to_vec(),
            ..item(name, &[])
        };
        let object = |items: Vec<Item>| Object {
            data: Vec::new(),
            functions: BTreeMap::new(),
            objects: items.into_iter().map(|i| (i.name.clone(), i)).collect(),
        };
        let pre = object(vec![
            with("__UNIQUE_ID_x_7", b"a"),
            with("__UNIQUE_ID_x_8", b"b"),
        ]);
        let post = object(vec![
            with("__UNIQUE_ID_x_9", b"b"),
            with("__UNIQUE_ID_x_10", b"a"),
        ]);
        let pairs = pair_objects(&pre, &post).unwrap();
        assert_eq!(pairs["__UNIQUE_ID_x_9"], "__UNIQUE_ID_x_8");
        assert_eq!(pairs["__UNIQUE_ID_x_10"], "__UNIQUE_ID_x_7");
    }

    #[test]
    fn gcc_numbering_of_static_locals_and_unique_ids_is_ignored() {
        assert_eq!(strip_static_suffix("count.3"), "count");
        assert_eq!(
            strip_static_suffix("__UNIQUE_ID_addressable_x_343"),
            "__UNIQUE_ID_addressable_x"
        );
        assert_eq!(strip_static_suffix("foo.isra"), "foo.isra");
        assert_eq!(strip_static_suffix("plain"), "plain");
    }
}
