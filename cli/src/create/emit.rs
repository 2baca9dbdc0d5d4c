//! Turns the differences into `update.ko`: a relocatable `post.o` with the
//! new code and data, the payload, and a kbuild module linked against the
//! kernel build itself (so vermagic and `struct module` match).
//!
//! References from the new code to kernel symbols that are not exported
//! never reach the module loader: they point at a local stub
//! (`__ksplice_unresolved`, `__ksplice_unresolved_data`) and are listed in
//! the payload as post relocations, which ksplice.ko rewrites from the
//! run-pre results before any trampoline points at the new code.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ksplice_core::payload::{HeaderFields, SymbolKind, NAME_MAX, STRING_PREFIX};

/// Longest string literal whose text goes into the payload (as hex).
const STRING_MAX: usize = (NAME_MAX - STRING_PREFIX.len()) / 2;
use log::{debug, info};
use object::elf;
use object::read::elf::SectionHeader as _;
use object::write::{self, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, RelocationFlags, SectionKind, SymbolFlags,
    SymbolScope,
};

use super::kbuild::KernelTree;
use super::objdiff::{self, Item, Object, Target, PADDING};
use super::CreateError;
use ksplice_core::writer::{PayloadWriter, SymbolSpec};

/// One rebuilt object: both builds and their differences.
pub struct Unit {
    /// Path relative to the objtree, e.g. `fs/proc/loadavg.o`.
    pub object: String,
    /// The unpatched build.
    pub pre: Object,
    /// Where `pre` was read from.
    pub pre_path: PathBuf,
    /// The patched build.
    pub post: Object,
    /// Where `post` was read from.
    pub post_path: PathBuf,
    /// What changed.
    pub diff: objdiff::Diff,
}

/// What the update contains, for reports.
#[derive(Debug, Default)]
pub struct Summary {
    /// `(object, function)` pairs replaced.
    pub replaced: Vec<(String, String)>,
    /// `(object, function)` pairs added.
    pub added: Vec<(String, String)>,
    /// Number of functions whose pre code run-pre matching checks.
    pub matched: usize,
    /// Number of fields ksplice.ko writes after run-pre matching.
    pub post_relocs: usize,
}

struct Context<'a> {
    tree: &'a KernelTree,
    exports: &'a HashMap<String, String>,
    system_map: &'a HashMap<String, Vec<char>>,
    out: write::Object<'static>,
    payload: PayloadWriter,
    stub_function: SymbolId,
    stub_data: SymbolId,
    undefined: HashMap<String, SymbolId>,
    /// Non-exported globals the module loader resolves (`.klp.rela`).
    load_time: BTreeSet<String>,
    /// Carried functions without ENDBR: the places table takes their
    /// address, but nothing calls them indirectly (tells objtool so).
    no_endbr: Vec<SymbolId>,
    namespaces: BTreeSet<String>,
    places: Vec<SymbolId>,
    summary: Summary,
}

/// Per unit: where each post item and copied section went.
struct UnitOutput {
    symbols: HashMap<String, (SymbolId, u32)>,
    copied_sections: HashMap<object::SectionIndex, SectionId>,
    labels: HashMap<(object::SectionIndex, u64), SymbolId>,
    /// Pre functions run-pre must match (to learn their address or infer
    /// the symbols they reference), by name.
    matched: BTreeSet<String>,
    /// Existing data the new code references, by pre name.
    needed_data: BTreeSet<String>,
}

fn err(unit: &str, why: String) -> CreateError {
    CreateError::UnsupportedChange {
        path: unit.to_owned(),
        why,
    }
}

impl<'a> Context<'a> {
    fn undefined_symbol(&mut self, name: &str) -> SymbolId {
        if let Some(&id) = self.undefined.get(name) {
            return id;
        }
        let id = add_undefined(&mut self.out, name);
        self.undefined.insert(name.to_owned(), id);
        id
    }

    fn kernel_symbol_kind(&self, name: &str) -> Option<SymbolKind> {
        let letters = self.system_map.get(name)?;
        Some(
            if letters.iter().any(|c| matches!(c, 'T' | 't' | 'W' | 'w')) {
                SymbolKind::Function
            } else {
                SymbolKind::Object
            },
        )
    }

    /// Copies a whole section of the post object (string literals, the
    /// alternatives' replacement code) once per unit.
    fn copy_section(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        index: object::SectionIndex,
    ) -> Result<SectionId, CreateError> {
        if let Some(&id) = out.copied_sections.get(&index) {
            return Ok(id);
        }
        let file = unit.post.elf(&unit.post_path)?;
        let section = file
            .section_by_index(index)
            .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        let name = section
            .name()
            .map_err(|e| CreateError::elf(&unit.post_path, e))?
            .to_owned();
        let header = section.elf_section_header();
        let flags = header.sh_flags(file.endian());
        let kind = if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
            SectionKind::Text
        } else {
            SectionKind::ReadOnlyData
        };
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), kind);
        let data = section
            .data()
            .map_err(|e| CreateError::elf(&unit.post_path, e))?
            .to_vec();
        self.out.set_section_data(id, data, section.align().max(1));
        self.out.section_mut(id).flags = object::SectionFlags::Elf { sh_flags: flags };
        out.copied_sections.insert(index, id);
        // Relocations inside the copied section (e.g. calls in replacement code).
        let relocs = objdiff::symbol_relocs(&section);
        // Data is used only once trampolines exist, so its references to
        // non-exported symbols can be post relocations: the copy becomes a
        // place. Code copied here (alternative replacements) is consumed at
        // load time, before ksplice.ko could write anything.
        let place = if kind == SectionKind::Text || relocs.is_empty() {
            None
        } else {
            let size = section.size();
            let symbol = self.out.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size,
                kind: object::SymbolKind::Data,
                scope: SymbolScope::Compilation,
                weak: false,
                section: SymbolSection::Section(id),
                flags: SymbolFlags::None,
            });
            let size = u32::try_from(size)
                .map_err(|_| err(&unit.object, format!("{name} is too large")))?;
            self.places.push(symbol);
            Some(
                self.payload
                    .add_place(&name, SymbolKind::Object, size)
                    .map_err(CreateError::Payload)?,
            )
        };
        self.copy_relocs(unit, out, id, &relocs, kind == SectionKind::Text, place)?;
        Ok(id)
    }

    /// Adds relocations `(offset, r_type, symbol, addend)` of the post
    /// object to output section `id`, retargeted. With a `place`, references
    /// to non-exported symbols become post relocations of that place;
    /// without one they are refused.
    fn copy_relocs(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        id: SectionId,
        relocs: &[(u64, u32, object::SymbolIndex, i64)],
        in_code: bool,
        place: Option<u32>,
    ) -> Result<(), CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        for &(offset, r_type, raw, addend) in relocs {
            let (target, norm_addend) =
                objdiff::normalise(&file, &unit.post_path, r_type, raw, addend, in_code)?;
            let post_reloc = place.map(|p| (p, offset as u32, r_type, norm_addend));
            let symbol = self.resolve(unit, out, &target, raw, post_reloc)?;
            // Named targets use the addend relative to the symbol; copied
            // sections keep the raw one.
            let addend = if matches!(target, Target::Named(_)) {
                norm_addend
            } else {
                addend
            };
            let flags = RelocationFlags::Elf { r_type };
            self.out
                .add_relocation(
                    id,
                    Relocation {
                        offset,
                        symbol,
                        addend,
                        flags,
                    },
                )
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        }
        Ok(())
    }

    /// The output symbol a post relocation should use. `post_reloc` is
    /// `(place, offset, r_type, addend)` when the field lies in a place, so
    /// a non-exported kernel symbol can become a post relocation.
    fn resolve(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        target: &Target,
        raw: object::SymbolIndex,
        post_reloc: Option<(u32, u32, u32, i64)>,
    ) -> Result<SymbolId, CreateError> {
        let name = match target {
            Target::Str(_) | Target::Section(_) => {
                let file = unit.post.elf(&unit.post_path)?;
                let sym = file
                    .symbol_by_index(raw)
                    .map_err(|e| CreateError::elf(&unit.post_path, e))?;
                let index = sym.section_index().ok_or_else(|| {
                    err(
                        &unit.object,
                        "relocation against an undefined section".into(),
                    )
                })?;
                let copy = self.copy_section(unit, out, index)?;
                if sym.elf_symbol().st_type() == elf::STT_SECTION {
                    return Ok(self.out.section_symbol(copy));
                }
                // A local label (`.LC30`): the same label in the copy keeps
                // the addend valid.
                let value = sym.address();
                if let Some(&id) = out.labels.get(&(index, value)) {
                    return Ok(id);
                }
                let id = self.out.add_symbol(Symbol {
                    name: Vec::new(),
                    value,
                    size: 0,
                    kind: object::SymbolKind::Label,
                    scope: SymbolScope::Compilation,
                    weak: false,
                    section: SymbolSection::Section(copy),
                    flags: SymbolFlags::None,
                });
                out.labels.insert((index, value), id);
                return Ok(id);
            }
            Target::Named(name) => name.as_str(),
        };
        if let Some(&(id, _)) = out.symbols.get(name) {
            return Ok(id);
        }
        // Defined in this file but not carried: existing kernel code or data.
        if let Some(item) = unit.post.functions.get(name) {
            if item.is_init_or_exit() {
                return Err(err(&unit.object, format!("new code references __init/__exit function {name}, which is gone after boot")));
            }
            out.matched.insert(name.to_owned());
            let kind = SymbolKind::Function;
            let spec = SymbolSpec {
                unit: item.local.then_some(unit.object.as_str()),
                name,
                kind,
            };
            return self.external(spec, post_reloc, &unit.object);
        }
        if let Some(item) = unit.post.objects.get(name) {
            let pre_name = objdiff::pre_object_name(&unit.pre, name)
                .ok_or_else(|| {
                    err(
                        &unit.object,
                        format!("cannot tell which existing variable {name} is"),
                    )
                })?
                .to_owned();
            if item.is_init_or_exit() {
                return Err(err(
                    &unit.object,
                    format!(
                        "new code references __init/__exit data {name}, which is gone after boot"
                    ),
                ));
            }
            let spec = SymbolSpec {
                unit: item.local.then_some(unit.object.as_str()),
                name: &pre_name,
                kind: SymbolKind::Object,
            };
            out.needed_data.insert(pre_name.clone());
            return self.external(spec, post_reloc, &unit.object);
        }
        // Undefined here: another file's global.
        // Exports reserved for named modules ("module:kvm") are not ours to
        // import: treat them like any non-exported symbol.
        if let Some(namespace) = self
            .exports
            .get(name)
            .filter(|ns| !ns.starts_with("module:"))
        {
            if !namespace.is_empty() {
                self.namespaces.insert(namespace.clone());
            }
            return Ok(self.undefined_symbol(name));
        }
        let kind = self.kernel_symbol_kind(name).ok_or_else(|| {
            err(
                &unit.object,
                format!("{name} is neither exported nor in System.map"),
            )
        })?;
        self.external(
            SymbolSpec {
                unit: None,
                name,
                kind,
            },
            post_reloc,
            &unit.object,
        )
    }

    /// A reference to an existing, non-exported kernel symbol.
    fn external(
        &mut self,
        spec: SymbolSpec<'_>,
        post_reloc: Option<(u32, u32, u32, i64)>,
        unit: &str,
    ) -> Result<SymbolId, CreateError> {
        let Some((place, offset, r_type, addend)) = post_reloc else {
            // Consumed at load time (jump-label keys, ...): the module
            // loader must resolve it, through a livepatch relocation
            // (`.klp.rela`), which needs a unique global name.
            let unique = self.system_map.get(spec.name).is_some_and(|t| t.len() == 1);
            if spec.unit.is_some() || !unique || !self.tree.config("CONFIG_LIVEPATCH") {
                return Err(err(
                    unit,
                    format!(
                        "a special section entry references {}, which is not exported \
                         (load-time resolution needs a unique global and CONFIG_LIVEPATCH)",
                        spec.name
                    ),
                ));
            }
            self.load_time.insert(spec.name.to_owned());
            return Ok(self.undefined_symbol(spec.name));
        };
        let symbol = self.payload.symbol(&spec).map_err(CreateError::Payload)?;
        self.payload
            .add_post_reloc(place, offset, symbol, r_type as u8, addend);
        self.summary.post_relocs += 1;
        Ok(if spec.kind == SymbolKind::Function {
            self.stub_function
        } else {
            self.stub_data
        })
    }

    /// Adds one carried function or object to `post.o`.
    fn add_item(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        item: &Item,
        kind: SymbolKind,
    ) -> Result<(), CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let section = file
            .section_by_index(item.section)
            .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        let header = section.elf_section_header();
        let flags = header.sh_flags(file.endian());
        // Carry the call padding in front of functions, as gcc laid it out.
        let pad = if kind == SymbolKind::Function && item.value as usize >= PADDING {
            let data = section
                .data()
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
            let start = item.value as usize - PADDING;
            if data
                .get(start..item.value as usize)
                .is_some_and(|p| p.iter().all(|&b| b == 0x90))
            {
                PADDING
            } else {
                0
            }
        } else {
            0
        };
        let (prefix, section_kind) = match kind {
            SymbolKind::Function => (".text.", SectionKind::Text),
            _ if item.nobits => (".bss.", SectionKind::UninitializedData),
            _ if item.writable => (".data.", SectionKind::Data),
            _ => (".rodata.", SectionKind::ReadOnlyData),
        };
        let id = self.out.add_section(
            Vec::new(),
            format!("{prefix}{}", item.name).into_bytes(),
            section_kind,
        );
        let align = section.align().max(1);
        if item.nobits {
            self.out.append_section_bss(id, item.size, align);
        } else {
            let mut bytes = vec![0x90u8; pad];
            bytes.extend_from_slice(&item.bytes);
            self.out.set_section_data(id, bytes, align);
        }
        self.out.section_mut(id).flags = object::SectionFlags::Elf { sh_flags: flags };
        let symbol = self.out.add_symbol(Symbol {
            name: item.name.as_bytes().to_vec(),
            value: pad as u64,
            size: item.size,
            kind: if kind == SymbolKind::Function {
                object::SymbolKind::Text
            } else {
                object::SymbolKind::Data
            },
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(id),
            flags: SymbolFlags::None,
        });
        let size = u32::try_from(item.size)
            .map_err(|_| err(&unit.object, format!("{} is too large", item.name)))?;
        let place = self
            .payload
            .add_place(&item.name, kind, size)
            .map_err(CreateError::Payload)?;
        self.places.push(symbol);
        if kind == SymbolKind::Function && !item.bytes.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
            self.no_endbr.push(symbol);
        }
        out.symbols.insert(item.name.clone(), (symbol, place));
        Ok(())
    }

    /// Adds the relocations of a carried item (after all items exist, so
    /// references between new items resolve to each other).
    fn add_item_relocs(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        item: &Item,
    ) -> Result<(), CreateError> {
        let (symbol_id, place) = out.symbols[&item.name];
        let section = self
            .out
            .symbol(symbol_id)
            .section
            .id()
            .ok_or_else(|| err(&unit.object, "carried item without a section".into()))?;
        let base = self.out.symbol(symbol_id).value;
        for r in &item.relocs {
            let post_reloc = Some((place, r.offset as u32, r.r_type, r.addend));
            let target_symbol = self.resolve(unit, out, &r.target, r.raw_symbol, post_reloc)?;
            // Named targets use the addend relative to the symbol; copied
            // sections keep the raw one.
            let addend = if matches!(r.target, Target::Named(_)) {
                r.addend
            } else {
                r.raw_addend
            };
            self.out
                .add_relocation(
                    section,
                    Relocation {
                        offset: base + r.offset,
                        symbol: target_symbol,
                        addend,
                        flags: RelocationFlags::Elf { r_type: r.r_type },
                    },
                )
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        }
        Ok(())
    }

    /// Copies the entries of special sections that describe carried code.
    fn add_special_entries(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
    ) -> Result<(), CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        for special in objdiff::special_sections(self.tree.config("CONFIG_DEBUG_BUGVERBOSE")) {
            let Some(section) = file.section_by_name(special.name) else {
                continue;
            };
            let data = section
                .data()
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
            let size = special.entry_size;
            if data.len() % size != 0 {
                return Err(err(
                    &unit.object,
                    format!(
                        "{} is {} bytes, not a multiple of its {size}-byte entries",
                        special.name,
                        data.len()
                    ),
                ));
            }
            let relocs = objdiff::symbol_relocs(&section);
            let mut kept = Vec::new();
            let mut kept_relocs = Vec::new();
            for entry in 0..data.len() / size {
                let start = (entry * size) as u64;
                let in_entry: Vec<_> = relocs
                    .iter()
                    .filter(|r| r.0 >= start && r.0 < start + size as u64)
                    .copied()
                    .collect();
                let Some(anchor) = in_entry.iter().find(|r| r.0 == start) else {
                    return Err(err(
                        &unit.object,
                        format!(
                            "{} entry {entry} has no relocation at its start",
                            special.name
                        ),
                    ));
                };
                let (target, _) = objdiff::normalise(
                    &file,
                    &unit.post_path,
                    anchor.1,
                    anchor.2,
                    anchor.3,
                    false,
                )?;
                let carried = matches!(&target, Target::Named(n) if unit.post.functions.contains_key(n) && out.symbols.contains_key(n));
                if !carried {
                    continue;
                }
                let new_start = (kept.len()) as u64;
                kept.extend_from_slice(&data[start as usize..start as usize + size]);
                for &(off, r_type, raw, addend) in &in_entry {
                    kept_relocs.push((new_start + off - start, r_type, raw, addend));
                }
            }
            if kept.is_empty() {
                continue;
            }
            let header = section.elf_section_header();
            let flags = header.sh_flags(file.endian());
            let id = self.out.add_section(
                Vec::new(),
                special.name.as_bytes().to_vec(),
                SectionKind::Data,
            );
            self.out.set_section_data(id, kept, section.align().max(1));
            self.out.section_mut(id).flags = object::SectionFlags::Elf { sh_flags: flags };
            self.copy_relocs(unit, out, id, &kept_relocs, false, None)?;
        }
        Ok(())
    }

    /// Adds the pre code of `name` (a function of `unit`) to the payload.
    fn add_pre_function(&mut self, unit: &Unit, name: &str) -> Result<u32, CreateError> {
        let item = unit
            .pre
            .functions
            .get(name)
            .ok_or_else(|| err(&unit.object, format!("{name} has no pre code")))?;
        if item.is_init_or_exit() {
            return Err(err(
                &unit.object,
                format!("{name} is __init/__exit code, which is gone after boot"),
            ));
        }
        let spec = SymbolSpec {
            unit: item.local.then_some(unit.object.as_str()),
            name,
            kind: SymbolKind::Function,
        };
        let symbol = self.payload.symbol(&spec).map_err(CreateError::Payload)?;
        let mut relocs = Vec::new();
        for r in &item.relocs {
            let string_name;
            let target_spec = match &r.target {
                Target::Named(n) => {
                    let defined = unit
                        .pre
                        .functions
                        .get(n)
                        .map(|i| (i, SymbolKind::Function))
                        .or_else(|| unit.pre.objects.get(n).map(|i| (i, SymbolKind::Object)));
                    match defined {
                        Some((i, kind)) => SymbolSpec {
                            unit: i.local.then_some(unit.object.as_str()),
                            name: n,
                            kind,
                        },
                        None => SymbolSpec {
                            unit: None,
                            name: n,
                            kind: self.kernel_symbol_kind(n).unwrap_or(SymbolKind::Object),
                        },
                    }
                }
                // String literals: named by their text so the kernel checks it.
                Target::Str(text) if text.len() <= STRING_MAX => {
                    string_name = format!(
                        "{STRING_PREFIX}{}",
                        text.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    );
                    SymbolSpec {
                        unit: Some(unit.object.as_str()),
                        name: &string_name,
                        kind: SymbolKind::Section,
                    }
                }
                Target::Str(_) => SymbolSpec {
                    unit: Some(unit.object.as_str()),
                    name: ".rodata.str",
                    kind: SymbolKind::Section,
                },
                Target::Section(s) => SymbolSpec {
                    unit: Some(unit.object.as_str()),
                    name: s,
                    kind: SymbolKind::Section,
                },
            };
            let target = self
                .payload
                .symbol(&target_spec)
                .map_err(CreateError::Payload)?;
            // A string symbol is the string's first byte: the addend is then
            // the PC adjustment alone.
            let addend = match &r.target {
                Target::Str(_) => -objdiff::pc_adjust(r.r_type),
                _ => r.addend,
            };
            relocs.push((r.offset as u32, target, r.r_type as u8, addend));
        }
        let fresh = !self.payload.has_function(symbol);
        let index = self
            .payload
            .add_function(symbol, &item.bytes, &relocs)
            .map_err(CreateError::Payload)?;
        if fresh {
            for (offset, len, kind) in objdiff::patched_sites(&unit.pre, &unit.pre_path, item)? {
                self.payload.add_site(index, offset, len, kind);
            }
        }
        self.summary.matched = self.summary.matched.max(index as usize + 1);
        Ok(index)
    }
}

/// The result of [`build_post_object`].
pub struct PostObject {
    /// The relocatable object with new code, data and payload.
    pub elf: Vec<u8>,
    /// Namespaces the module must import.
    pub namespaces: BTreeSet<String>,
    /// Non-exported globals the module loader must resolve.
    pub load_time: BTreeSet<String>,
    /// What it contains.
    pub summary: Summary,
}

/// Builds `post.o` (new code, special-section entries, the places table
/// and the payload) from the differences of every unit.
pub fn build_post_object(
    tree: &KernelTree,
    id: &str,
    units: &[Unit],
) -> Result<PostObject, CreateError> {
    let exports = tree.exports()?;
    let system_map = tree.system_map()?;
    let mut out = write::Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::X86_64,
        object::Endianness::Little,
    );
    let stub_function = add_undefined(&mut out, "__ksplice_unresolved");
    let stub_data = add_undefined(&mut out, "__ksplice_unresolved_data");
    let mut cx = Context {
        tree,
        exports: &exports,
        system_map: &system_map,
        out,
        payload: PayloadWriter::default(),
        stub_function,
        stub_data,
        undefined: HashMap::new(),
        load_time: BTreeSet::new(),
        no_endbr: Vec::new(),
        namespaces: BTreeSet::new(),
        places: Vec::new(),
        summary: Summary::default(),
    };

    for unit in units {
        let mut out = UnitOutput {
            symbols: HashMap::new(),
            copied_sections: HashMap::new(),
            labels: HashMap::new(),
            matched: BTreeSet::new(),
            needed_data: BTreeSet::new(),
        };
        let d = &unit.diff;
        let functions: Vec<&Item> = d
            .changed
            .keys()
            .chain(d.new_functions.iter())
            .map(|n| &unit.post.functions[n])
            .collect();
        let data: Vec<&Item> = d
            .changed_rodata
            .iter()
            .chain(d.new_data.iter())
            .map(|n| &unit.post.objects[n])
            .collect();
        for item in &functions {
            cx.add_item(unit, &mut out, item, SymbolKind::Function)?;
        }
        for item in &data {
            cx.add_item(unit, &mut out, item, SymbolKind::Object)?;
        }
        for item in functions.iter().chain(data.iter()) {
            cx.add_item_relocs(unit, &mut out, item)?;
        }
        cx.add_special_entries(unit, &mut out)?;

        // Run-pre: the replaced functions, plus every existing function
        // whose address the new code needs.
        for name in d.changed.keys() {
            let function = cx.add_pre_function(unit, name)?;
            let (_, place) = out.symbols[name];
            cx.payload.add_replacement(function, place);
            cx.summary
                .replaced
                .push((unit.object.clone(), name.clone()));
        }
        for name in d.new_functions.iter() {
            cx.summary.added.push((unit.object.clone(), name.clone()));
        }
        for name in out.matched.clone() {
            cx.add_pre_function(unit, &name)?;
        }
        // Existing static data must be seen at a relocation site of some
        // matched function; pick the smallest function that references it.
        for data_name in out.needed_data.clone() {
            let target = Target::Named(data_name.clone());
            let already = d.changed.keys().chain(out.matched.iter()).any(|f| {
                unit.pre
                    .functions
                    .get(f)
                    .is_some_and(|i| i.relocs.iter().any(|r| r.target == target))
            });
            if already {
                continue;
            }
            let referrer = unit
                .pre
                .functions
                .values()
                .filter(|f| !f.is_init_or_exit() && f.relocs.iter().any(|r| r.target == target))
                .min_by_key(|f| f.size);
            match referrer {
                Some(f) => {
                    debug!("{}: matching {} to locate {data_name}", unit.object, f.name);
                    cx.add_pre_function(unit, &f.name.clone())?;
                }
                None if !unit.pre.objects.get(&data_name).is_some_and(|o| o.local) => {}
                // ksplice.ko then takes it from kallsyms, where it is unique.
                None if cx.system_map.get(&data_name).is_some_and(|t| t.len() == 1) => {}
                None => return Err(err(&unit.object, format!("no function references static {data_name} and its name is not unique, so it cannot be located"))),
            }
        }
    }
    if cx.payload.replacement_count() == 0 && cx.summary.added.is_empty() {
        return Err(CreateError::NoChanges);
    }

    // The places table: one 8-byte address per carried item, in payload order.
    let places = cx.out.add_section(
        Vec::new(),
        b".rodata.ksplice_places".to_vec(),
        SectionKind::ReadOnlyData,
    );
    cx.out
        .set_section_data(places, vec![0u8; 8 * cx.places.len()], 8);
    for (i, &symbol) in cx.places.clone().iter().enumerate() {
        cx.out
            .add_relocation(
                places,
                Relocation {
                    offset: 8 * i as u64,
                    symbol,
                    addend: 0,
                    flags: RelocationFlags::Elf {
                        r_type: elf::R_X86_64_64,
                    },
                },
            )
            .map_err(|e| CreateError::Elf {
                path: PathBuf::from("post.o"),
                why: e.to_string(),
            })?;
    }
    // ANNOTATE_NOENDBR for each: `.long fn - .; .long ANNOTYPE_NOENDBR`.
    if !cx.no_endbr.is_empty() {
        const ANNOTYPE_NOENDBR: u32 = 1;
        let notes = cx.out.add_section(
            Vec::new(),
            b".discard.annotate_insn".to_vec(),
            SectionKind::Other,
        );
        let mut data = Vec::new();
        for _ in &cx.no_endbr {
            data.extend_from_slice(&0u32.to_le_bytes());
            data.extend_from_slice(&ANNOTYPE_NOENDBR.to_le_bytes());
        }
        cx.out.set_section_data(notes, data, 4);
        cx.out.section_mut(notes).flags = object::SectionFlags::Elf { sh_flags: 0 };
        for (i, &symbol) in cx.no_endbr.clone().iter().enumerate() {
            let flags = RelocationFlags::Elf {
                r_type: elf::R_X86_64_PC32,
            };
            cx.out
                .add_relocation(
                    notes,
                    Relocation {
                        offset: 8 * i as u64,
                        symbol,
                        addend: 0,
                        flags,
                    },
                )
                .map_err(|e| CreateError::Elf {
                    path: PathBuf::from("post.o"),
                    why: e.to_string(),
                })?;
        }
    }
    add_global(
        &mut cx.out,
        places,
        "__ksplice_places",
        8 * cx.places.len() as u64,
    );

    let build_id = tree.build_id()?;
    let header = HeaderFields {
        id,
        release: &tree.release,
        build_id: &build_id,
    };
    let payload = std::mem::take(&mut cx.payload)
        .finish(&header)
        .map_err(CreateError::Payload)?;
    info!("payload: {} bytes", payload.len());
    let section = cx.out.add_section(
        Vec::new(),
        b".rodata.ksplice_payload".to_vec(),
        SectionKind::ReadOnlyData,
    );
    cx.out.set_section_data(section, payload.clone(), 8);
    add_global(
        &mut cx.out,
        section,
        "__ksplice_payload",
        payload.len() as u64,
    );
    // Modules must not ask for an executable stack.
    let note = cx
        .out
        .add_section(Vec::new(), b".note.GNU-stack".to_vec(), SectionKind::Other);
    cx.out.section_mut(note).flags = object::SectionFlags::Elf { sh_flags: 0 };

    let elf = cx.out.write().map_err(|e| CreateError::Elf {
        path: PathBuf::from("post.o"),
        why: e.to_string(),
    })?;
    Ok(PostObject {
        elf,
        namespaces: cx.namespaces,
        load_time: cx.load_time,
        summary: cx.summary,
    })
}

/// An undefined global symbol: resolved by the link (stubs in main.c) or by
/// the module loader (exports).
fn add_undefined(out: &mut write::Object<'static>, name: &str) -> SymbolId {
    out.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind: object::SymbolKind::Unknown,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    })
}

fn add_global(out: &mut write::Object<'static>, section: SectionId, name: &str, size: u64) {
    out.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size,
        kind: object::SymbolKind::Data,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(section),
        flags: SymbolFlags::None,
    });
}

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
    let output = std::process::Command::new("make")
        .arg("-C")
        .arg(&tree.objtree)
        .arg(format!("M={}", dir.display()))
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .arg("modules")
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
    let unexpected_undefined = log
        .lines()
        .filter(|l| l.contains("undefined!"))
        .any(|l| !post.load_time.iter().any(|s| l.contains(&format!("'{s}'"))));
    if unexpected_undefined {
        return Err(CreateError::KbuildFailed {
            dir: dir.to_owned(),
            log: tail(&log, 40),
        });
    }
    let ko = dir.join(format!("{name}.ko"));
    if !post.load_time.is_empty() {
        to_livepatch_relocs(&ko, &post.load_time)?;
    }
    Ok(ko)
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
#include <linux/module.h>
#include <linux/printk.h>

/*
 * Targets of references to kernel symbols that are not exported. ksplice.ko
 * rewrites every such reference from its run-pre matching results before
 * any trampoline points at this module's code, so neither is ever used.
 */
void __ksplice_unresolved(void);
extern char __ksplice_unresolved_data[64];
noinline void __ksplice_unresolved(void) {{ }}
char __ksplice_unresolved_data[64] __aligned(64);

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
