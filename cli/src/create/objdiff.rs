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
                if !alloc || section.name().is_ok_and(|n| n.starts_with(".discard")) {
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
}

/// Offset a PC-relative field is from the end of its instruction, assumed
/// when locating what a relocation against a section symbol points at.
pub fn pc_adjust(r_type: u32) -> i64 {
    match r_type {
        elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => 4,
        _ => 0,
    }
}

/// Normalises the target of a relocation in `file`. `in_code`: the field
/// is an instruction operand (PC-relative ones then end 4 bytes before the
/// next instruction); in data (`.long x - .`) the addend is exact.
pub fn normalise(
    file: &ElfFile64<'_>,
    path: &Path,
    r_type: u32,
    symbol: SymbolIndex,
    addend: i64,
    in_code: bool,
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
    let at = if in_code {
        addend.wrapping_add(pc_adjust(r_type))
    } else {
        addend
    };
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
        let in_code = header.sh_flags(file.endian()) & u64::from(elf::SHF_EXECINSTR) != 0;
        let (target, addend) = normalise(file, path, r_type, raw_symbol, reloc.addend(), in_code)?;
        relocs.push(Reloc {
            offset: offset - value,
            r_type,
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
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChangedBytes(n) => write!(f, "changed bytes ({n} differ)"),
            Self::ChangedRelocations => f.write_str("changed relocations"),
            Self::NewFunction => f.write_str("new function"),
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
    /// Human-readable notes (skipped init code, ...).
    pub notes: Vec<String>,
}

fn differing_bytes(a: &Item, b: &Item) -> usize {
    let common = a.bytes.iter().zip(&b.bytes).filter(|(x, y)| x != y).count();
    common + a.bytes.len().abs_diff(b.bytes.len())
}

fn same_relocs(a: &Item, b: &Item) -> bool {
    a.relocs.len() == b.relocs.len()
        && a.relocs.iter().zip(&b.relocs).all(|(x, y)| {
            x.offset == y.offset
                && x.r_type == y.r_type
                && x.target == y.target
                && x.addend == y.addend
        })
}

/// Whether `name` is the out-of-line cold part gcc split from a function.
pub fn is_cold_part(name: &str) -> bool {
    name.split('.').skip(1).any(|part| part == "cold")
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

/// Finds the pre-side counterpart of a post data object.
pub fn pre_object_name<'a>(pre: &'a Object, post_name: &str) -> Option<&'a str> {
    if let Some((name, _)) = pre.objects.get_key_value(post_name) {
        return Some(name);
    }
    let base = strip_static_suffix(post_name);
    let mut candidates = pre
        .objects
        .keys()
        .filter(|n| strip_static_suffix(n) == base);
    let first = candidates.next()?;
    candidates.next().is_none().then_some(first.as_str())
}

/// Compares the pre and post builds of `object_name`.
pub fn diff(object_name: &str, pre: &Object, post: &Object) -> Result<Diff, CreateError> {
    let mut d = Diff::default();
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
        if !same_relocs(before, after) {
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
    for (name, after) in &post.objects {
        let Some(pre_name) = pre_object_name(pre, name) else {
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
        let same =
            before.size == after.size && before.bytes == after.bytes && same_relocs(before, after);
        if same || after.is_init_or_exit() {
            continue;
        }
        if after.writable || after.nobits {
            d.changed_data.insert(name.clone());
            continue;
        }
        d.changed_rodata.insert(name.clone());
    }
    Ok(d)
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
        for (offset, r_type, sym, addend) in symbol_relocs(&section) {
            if offset as usize % size != 0 {
                continue;
            }
            let (target, at) = normalise(&file, path, r_type, sym, addend, false)?;
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
    fn cold_parts_are_recognised_by_name() {
        assert!(is_cold_part("loadavg_proc_show.cold"));
        assert!(is_cold_part("foo.constprop.0.cold"));
        assert!(!is_cold_part("cold_start"));
        assert!(!is_cold_part("foo.isra.0"));
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
