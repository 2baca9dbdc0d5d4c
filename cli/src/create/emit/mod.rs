//! Turns the differences into `update.ko`: a relocatable `post.o` with the
//! new code and data, the payload, and a kbuild module linked against the
//! kernel build itself (so vermagic and `struct module` match).
//!
//! References from the new code to kernel symbols that are not exported
//! never reach the module loader: they point at a local stub
//! (`__ksplice_unresolved`, `__ksplice_unresolved_data`) and are listed in
//! the payload as post relocations, which ksplice.ko rewrites from the
//! run-pre results before any trampoline points at the new code.
//!
//! - `resolve`: where each reference of the new code leads (the policy);
//! - `sections`: `post.o` itself: carried items, copied sections,
//!   special-section entries, the places table;
//! - `pre_code`: the run-pre side of the payload;
//! - `link`: the kbuild link and the livepatch-relocation rewrite.
//!
//! This file walks each unit and wires the pieces together.

mod link;
mod pre_code;
mod resolve;
mod sections;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use ksplice_core::payload::{HeaderFields, SymbolKind};
use ksplice_core::writer::{PayloadWriter, SymbolSpec};
use log::info;
use object::read::elf::SectionHeader as _;
use object::write::{SectionId, SymbolId};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionIndex, SymbolIndex};

pub use self::link::{build_module, module_name};
use self::pre_code::RunPre;
use self::resolve::{Binding, Existing, KernelSymbols, Locate};
use self::sections::PostElf;
use super::kbuild::KernelTree;
use super::objdiff::{self, Item, Object, Target};
use super::CreateError;

/// One rebuilt object: both builds and their differences.
pub struct Unit {
    /// Path relative to the objtree, e.g. `fs/proc/loadavg.o`.
    pub object: String,
    /// The loadable module it is linked into, or `None` for vmlinux.
    pub module: Option<String>,
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

/// A relocation as the post object has it: `(offset, r_type, symbol,
/// addend)`.
type RawReloc = (u64, u32, SymbolIndex, i64);

/// A field of a place that ksplice.ko may write: `(place, offset, r_type,
/// addend)`.
type PostField = (u32, u32, u32, i64);

/// The kernel's exports and, for updates that use shadow data, those of
/// ksplice.ko, which is always loaded before an update.
pub fn exports_with_ksplice(tree: &KernelTree) -> Result<HashMap<String, String>, CreateError> {
    let mut exports = tree.exports()?;
    for name in super::hooks::EXPORTS {
        exports.insert(name.to_owned(), String::new());
    }
    Ok(exports)
}

/// What the update's references may lead to: vmlinux's exports and
/// symbols, and, when it patches module code, what modules export and
/// the symbol tables of the modules its code may refer into.
fn kernel_symbols(tree: &KernelTree, units: &[Unit]) -> Result<KernelSymbols, CreateError> {
    let kernel = KernelSymbols::new(
        exports_with_ksplice(tree)?,
        tree.system_map()?,
        tree.config("CONFIG_LIVEPATCH"),
    );
    if units.iter().all(|u| u.module.is_none()) {
        return Ok(kernel);
    }
    let module_exports: HashMap<String, String> = tree
        .module_exports()?
        .into_iter()
        .map(|(name, (module, _))| (name, module))
        .collect();
    let mut needed = BTreeSet::new();
    for unit in units {
        let Some(module) = &unit.module else { continue };
        needed.insert(module.clone());
        for name in unit.post.undefined(&unit.post_path)? {
            if let Some(m) = module_exports.get(&name) {
                needed.insert(m.clone());
            }
        }
    }
    let mut maps = HashMap::new();
    for module in needed {
        let path = tree.module_file(&module)?.ok_or_else(|| {
            refuse(
                &module,
                "the built module is not in the kernel tree's modules.order",
            )
        })?;
        maps.insert(module, objdiff::symbol_map(&path)?);
    }
    Ok(kernel.with_modules(module_exports, maps))
}

/// A special section of a post object: (name, its section in post.o if
/// any entry was kept, entry size, (old offset, new offset) per kept entry).
type Special = (&'static str, Option<SectionId>, u64, Vec<(u64, u64)>);

/// A refusal concerning `unit`.
fn refuse(unit: &str, why: impl Into<String>) -> CreateError {
    CreateError::UnsupportedChange {
        path: unit.to_owned(),
        why: why.into(),
    }
}

/// Builds `post.o` (new code, special-section entries, the places table
/// and the payload) from the differences of every unit.
pub fn build_post_object(
    tree: &KernelTree,
    id: &str,
    units: &[Unit],
) -> Result<PostObject, CreateError> {
    let mut e = Emitter {
        bug_verbose: tree.config("CONFIG_DEBUG_BUGVERBOSE"),
        hooks: Vec::new(),
        kernel: kernel_symbols(tree, units)?,
        elf: PostElf::new(),
        payload: PayloadWriter::default(),
        load_time: BTreeSet::new(),
        namespaces: BTreeSet::new(),
        summary: Summary::default(),
        globals: HashMap::new(),
    };
    // Every unit's items first, so a unit's new code can call a new
    // function another unit carries.
    let mut outputs = Vec::with_capacity(units.len());
    for unit in units {
        outputs.push(e.carry_unit(unit)?);
    }
    for (unit, mut out) in units.iter().zip(outputs) {
        e.link_unit(unit, &mut out)?;
    }
    if e.payload.replacement_count() == 0 && e.summary.added.is_empty() {
        return Err(CreateError::NoChanges);
    }
    e.summary.matched = e.payload.function_count();
    let build_id = tree.build_id()?;
    let header = HeaderFields {
        id,
        release: &tree.release,
        build_id: &build_id,
    };
    let payload = e.payload.finish(&header).map_err(CreateError::Payload)?;
    info!("payload: {} bytes", payload.len());
    Ok(PostObject {
        elf: e.elf.finish(&payload, &e.hooks)?,
        namespaces: e.namespaces,
        load_time: e.load_time,
        summary: e.summary,
    })
}

struct Emitter {
    bug_verbose: bool,
    /// The hooks of every unit: kind number and the carried function.
    hooks: Vec<(u64, SymbolId)>,
    kernel: KernelSymbols,
    elf: PostElf,
    payload: PayloadWriter,
    /// Non-exported globals the module loader resolves (`.klp.rela`).
    load_time: BTreeSet<String>,
    namespaces: BTreeSet<String>,
    summary: Summary,
    /// Global functions and data carried by any unit, for the others.
    globals: HashMap<String, SymbolId>,
}

/// Per unit: where each carried item and copied section went.
#[derive(Default)]
struct UnitOutput {
    /// Carried items: their symbol and place.
    symbols: HashMap<String, (SymbolId, u32)>,
    copied_sections: HashMap<SectionIndex, SectionId>,
    labels: HashMap<(SectionIndex, u64), SymbolId>,
    /// Existing functions run-pre must match (to learn their address).
    matched: BTreeSet<String>,
    /// Existing data of the unit the new code references, by pre name.
    needed_data: BTreeSet<String>,
    /// Special sections of the post object: where their kept entries
    /// went, as (name, section in post.o, entry size, (old offset, new
    /// offset) per kept entry).
    special: HashMap<SectionIndex, Special>,
}

impl Emitter {
    /// The carried items of `unit`.
    fn items(unit: &Unit) -> (Vec<&Item>, Vec<&Item>) {
        let d = &unit.diff;
        let functions = d
            .changed
            .keys()
            .chain(d.new_functions.iter())
            .map(|n| &unit.post.functions[n])
            .collect();
        let data = d
            .changed_rodata
            .iter()
            .chain(d.new_data.iter())
            .map(|n| &unit.post.objects[n])
            .collect();
        (functions, data)
    }

    /// Adds the new functions and data of `unit` to `post.o`.
    fn carry_unit(&mut self, unit: &Unit) -> Result<UnitOutput, CreateError> {
        let mut out = UnitOutput::default();
        let (functions, data) = Self::items(unit);
        for item in &functions {
            self.carry(unit, &mut out, item, SymbolKind::Function)?;
        }
        for item in &data {
            self.carry(unit, &mut out, item, SymbolKind::Object)?;
        }
        Ok(out)
    }

    /// Adds the special-section entries and relocations of `unit`'s
    /// carried items, and the pre code run-pre matching needs.
    fn link_unit(&mut self, unit: &Unit, out: &mut UnitOutput) -> Result<(), CreateError> {
        let d = &unit.diff;
        let (functions, data) = Self::items(unit);
        // Before the items' relocations: code refers to its own entries
        // (a WARN passes its __bug_table entry).
        self.add_special_entries(unit, out)?;
        // After every item exists, so references between them resolve.
        for item in functions.iter().chain(data.iter()) {
            self.add_item_relocs(unit, out, item)?;
        }
        for hook in super::hooks::in_object(&unit.post.data, &unit.post_path)? {
            let Some(&(symbol, _)) = out.symbols.get(&hook.function) else {
                return Err(refuse(
                    &unit.object,
                    format!("hook {} is not new code of the patch", hook.function),
                ));
            };
            self.hooks.push((hook.kind, symbol));
        }

        // Run-pre: the replaced functions, plus every existing function
        // whose address the new code needs.
        let mut run_pre = RunPre {
            payload: &mut self.payload,
            kernel: &self.kernel,
            unit,
        };
        for name in d.changed.keys() {
            let function = run_pre.add_function(name)?;
            let (_, place) = out.symbols[name];
            run_pre.payload.add_replacement(function, place);
            self.summary
                .replaced
                .push((unit.object.clone(), name.clone()));
        }
        for name in &out.matched {
            run_pre.add_function(name)?;
        }
        run_pre.locate_data(&out.needed_data, &out.matched)?;
        for name in &d.new_functions {
            self.summary.added.push((unit.object.clone(), name.clone()));
        }
        Ok(())
    }

    /// Adds a carried function or object to `post.o` and as a place.
    fn carry(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        item: &Item,
        kind: SymbolKind,
    ) -> Result<(), CreateError> {
        let symbol = self.elf.add_item(unit, item, kind)?;
        let place = self.place(unit, symbol, &item.name, kind, item.size)?;
        out.symbols.insert(item.name.clone(), (symbol, place));
        if !item.local {
            self.globals.entry(item.name.clone()).or_insert(symbol);
        }
        Ok(())
    }

    /// Makes `symbol` a place: the next slot of the places table and the
    /// next payload place record, always together.
    fn place(
        &mut self,
        unit: &Unit,
        symbol: SymbolId,
        name: &str,
        kind: SymbolKind,
        size: u64,
    ) -> Result<u32, CreateError> {
        let size = u32::try_from(size)
            .map_err(|_| refuse(&unit.object, format!("{name} is too large")))?;
        self.elf.add_place(symbol);
        self.payload
            .add_place(name, kind, size, unit.module.as_deref())
            .map_err(CreateError::Payload)
    }

    /// Adds the relocations of a carried item.
    fn add_item_relocs(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        item: &Item,
    ) -> Result<(), CreateError> {
        let (symbol, place) = out.symbols[&item.name];
        let (section, base) = self
            .elf
            .item_section(symbol)
            .ok_or_else(|| refuse(&unit.object, "carried item without a section"))?;
        for r in &item.relocs {
            let special =
                self.special_target(unit, out, r.raw_symbol, r.raw_addend, r.pc_adjust)?;
            if let Some((symbol, addend)) = special {
                self.elf
                    .relocate(section, base + r.offset, symbol, addend, r.r_type)?;
                continue;
            }
            let addend = match r.target {
                Target::Str(_) => -r.pc_adjust,
                _ => r.addend,
            };
            let field = Some((place, r.offset as u32, r.r_type, addend));
            let target = self.reference(unit, out, &r.target, r.raw_symbol, field)?;
            // Named targets use the addend relative to the symbol; copied
            // sections keep the raw one.
            let addend = if matches!(r.target, Target::Named(_)) {
                r.addend
            } else {
                r.raw_addend
            };
            self.elf
                .relocate(section, base + r.offset, target, addend, r.r_type)?;
        }
        Ok(())
    }

    /// Copies section `index` of the post object whole, once per unit
    /// (string literals, alternative replacement code).
    fn copy_section(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        index: SectionIndex,
    ) -> Result<SectionId, CreateError> {
        if let Some(&id) = out.copied_sections.get(&index) {
            return Ok(id);
        }
        let copied = self.elf.copy_section(unit, index)?;
        out.copied_sections.insert(index, copied.id);
        // Data is used only once trampolines exist, so its references to
        // non-exported symbols can be post relocations: the copy becomes a
        // place. Code copied here (alternative replacements) is consumed at
        // load time, before ksplice.ko could write anything.
        let place = if copied.code || copied.relocs.is_empty() {
            None
        } else {
            let symbol = self.elf.section_place_symbol(&copied);
            Some(self.place(unit, symbol, &copied.name, SymbolKind::Object, copied.size)?)
        };
        let code = copied.code.then_some(copied.data.as_slice());
        self.copy_relocs(unit, out, copied.id, &copied.relocs, code, place)?;
        Ok(copied.id)
    }

    /// Adds relocations of the post object to output section `id`,
    /// retargeted; `code` is the section's bytes if it holds instructions. With a `place`, references to non-exported symbols
    /// become post relocations of that place; without one, the module
    /// loader must resolve them.
    fn copy_relocs(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        id: SectionId,
        relocs: &[RawReloc],
        code: Option<&[u8]>,
        place: Option<u32>,
    ) -> Result<(), CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let ends = match code {
            Some(bytes) => objdiff::instruction_ends(bytes),
            None => Vec::new(),
        };
        for &(offset, r_type, raw, addend) in relocs {
            let adjust = if code.is_some() {
                objdiff::pc_adjust(r_type, offset, &ends)
            } else {
                0
            };
            if let Some((symbol, addend)) = self.special_target(unit, out, raw, addend, adjust)? {
                self.elf.relocate(id, offset, symbol, addend, r_type)?;
                continue;
            }
            let (target, norm_addend) =
                objdiff::normalise(&file, &unit.post_path, raw, addend, adjust)?;
            let field_addend = match target {
                Target::Str(_) => -adjust,
                _ => norm_addend,
            };
            let field = place.map(|p| (p, offset as u32, r_type, field_addend));
            let symbol = self.reference(unit, out, &target, raw, field)?;
            let addend = if matches!(target, Target::Named(_)) {
                norm_addend
            } else {
                addend
            };
            self.elf.relocate(id, offset, symbol, addend, r_type)?;
        }
        Ok(())
    }

    /// The output symbol a relocation of carried code or data should use.
    /// `field` is set when the field lies in a place, so a non-exported
    /// kernel symbol can become a post relocation.
    fn reference(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        target: &Target,
        raw: SymbolIndex,
        field: Option<PostField>,
    ) -> Result<SymbolId, CreateError> {
        let name = match target {
            Target::Str(text) => {
                return match field {
                    Some(field) if pre_code::replaced_code_uses(unit, text) => {
                        self.existing_string(unit, text, field)
                    }
                    _ => self.copied_target(unit, out, raw),
                }
            }
            Target::Section(_) => return self.copied_target(unit, out, raw),
            Target::Named(name) => name.as_str(),
        };
        if let Some(&(id, _)) = out.symbols.get(name) {
            return Ok(id);
        }
        // Not defined in this file: another unit may carry it (a function
        // the patch adds in one file and calls from another).
        let here = unit.post.functions.contains_key(name) || unit.post.objects.contains_key(name);
        if let Some(&id) = self.globals.get(name).filter(|_| !here) {
            return Ok(id);
        }
        match self
            .kernel
            .resolve(unit, name)
            .map_err(|why| refuse(&unit.object, why))?
        {
            Binding::Export { namespace } => {
                if !namespace.is_empty() {
                    self.namespaces.insert(namespace);
                }
                // objtool's static call site for this call (made at the
                // module's link) names the key when the object names it, as
                // the kernel's own build does (`__STATIC_CALL_ADDRESSABLE`);
                // else the trampoline, which the module loader refuses
                // unless it was exported with EXPORT_STATIC_CALL_TRAMP.
                if let Some(call) = name.strip_prefix("__SCT__") {
                    let key = format!("__SCK__{call}");
                    if let Some(namespace) = self.kernel.export_namespace(&key) {
                        if !namespace.is_empty() {
                            self.namespaces.insert(namespace.to_owned());
                        }
                        let key = self.elf.undefined(&key);
                        self.elf.keep_addressable(key);
                    }
                }
                Ok(self.elf.undefined(name))
            }
            Binding::Existing(existing) => {
                match existing.locate {
                    Locate::MatchFunction => {
                        out.matched.insert(name.to_owned());
                    }
                    Locate::UnitData => {
                        out.needed_data.insert(existing.name.clone());
                    }
                    Locate::ByName => {}
                }
                self.existing(unit, &existing, field)
            }
        }
    }

    /// A reference to a string literal the running kernel has: the code
    /// being replaced uses the same text, so run-pre matching learns (and
    /// checks) its address, and the new code shares it. Lockdep, for one,
    /// tells lock classes apart by the address of their name.
    fn existing_string(
        &mut self,
        unit: &Unit,
        text: &[u8],
        (place, offset, r_type, addend): PostField,
    ) -> Result<SymbolId, CreateError> {
        let name = pre_code::string_symbol(text);
        let symbol = self
            .payload
            .symbol(&SymbolSpec {
                unit: Some(&unit.object),
                name: &name,
                kind: SymbolKind::Section,
                module: unit.module.as_deref(),
            })
            .map_err(CreateError::Payload)?;
        self.payload
            .add_post_reloc(place, offset, symbol, r_type as u8, addend);
        self.summary.post_relocs += 1;
        Ok(self.elf.stub(SymbolKind::Object))
    }

    /// For a reference into a special section (`raw` + `addend`, the
    /// field's instruction ending `adjust` bytes after it): the symbol and
    /// addend that point at the same entry where update.ko keeps it. Only
    /// entries of carried code are kept; a reference to another is refused.
    fn special_target(
        &mut self,
        unit: &Unit,
        out: &UnitOutput,
        raw: SymbolIndex,
        addend: i64,
        adjust: i64,
    ) -> Result<Option<(SymbolId, i64)>, CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let sym = file
            .symbol_by_index(raw)
            .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        let Some((name, id, size, moved)) = sym.section_index().and_then(|i| out.special.get(&i))
        else {
            return Ok(None);
        };
        let label = if sym.elf_symbol().st_type() == object::elf::STT_SECTION {
            0
        } else {
            sym.address() as i64
        };
        let at = label + addend + adjust;
        let entry = moved
            .iter()
            .find(|&&(old, _)| at >= old as i64 && at < (old + size) as i64);
        let (Some(&(old, new)), Some(id)) = (entry, *id) else {
            return Err(refuse(
                &unit.object,
                format!(
                    "new code refers to an entry of {name} that describes code it does not carry"
                ),
            ));
        };
        Ok(Some((
            self.elf.section_symbol(id),
            at - old as i64 + new as i64 - adjust,
        )))
    }

    /// The symbol for a reference into a copied section: its section
    /// symbol, or the same local label in the copy (keeping the addend).
    fn copied_target(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
        raw: SymbolIndex,
    ) -> Result<SymbolId, CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let sym = file
            .symbol_by_index(raw)
            .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        let index = sym
            .section_index()
            .ok_or_else(|| refuse(&unit.object, "relocation against an undefined section"))?;
        let copy = self.copy_section(unit, out, index)?;
        if sym.elf_symbol().st_type() == object::elf::STT_SECTION {
            return Ok(self.elf.section_symbol(copy));
        }
        let value = sym.address();
        if let Some(&id) = out.labels.get(&(index, value)) {
            return Ok(id);
        }
        let id = self.elf.label(copy, value);
        out.labels.insert((index, value), id);
        Ok(id)
    }

    /// A reference to an existing, non-exported kernel symbol: a post
    /// relocation of `field`, or, for entries the loader consumes, a
    /// load-time livepatch relocation.
    fn existing(
        &mut self,
        unit: &Unit,
        existing: &Existing,
        field: Option<PostField>,
    ) -> Result<SymbolId, CreateError> {
        let Some((place, offset, r_type, addend)) = field else {
            self.kernel
                .loader_can_resolve(existing)
                .map_err(|why| refuse(&unit.object, why))?;
            self.load_time.insert(existing.name.clone());
            return Ok(self.elf.undefined(&existing.name));
        };
        let symbol = self
            .payload
            .symbol(&SymbolSpec {
                unit: existing.unit.as_deref(),
                name: &existing.name,
                kind: existing.kind,
                module: existing.module.as_deref(),
            })
            .map_err(CreateError::Payload)?;
        self.payload
            .add_post_reloc(place, offset, symbol, r_type as u8, addend);
        self.summary.post_relocs += 1;
        Ok(self.elf.stub(existing.kind))
    }

    /// Copies the entries of special sections that describe carried code.
    fn add_special_entries(
        &mut self,
        unit: &Unit,
        out: &mut UnitOutput,
    ) -> Result<(), CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        for special in objdiff::special_sections(self.bug_verbose) {
            let Some(section) = file.section_by_name(special.name) else {
                continue;
            };
            let data = section
                .data()
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
            let relocs = objdiff::symbol_relocs(&section);
            let (kept, kept_relocs, moved) = sections::carried_entries(
                &unit.object,
                special.name,
                data,
                special.entry_size,
                &relocs,
                |&(_, _, raw, addend)| {
                    let (target, _) = objdiff::normalise(&file, &unit.post_path, raw, addend, 0)?;
                    Ok(matches!(&target, Target::Named(n)
                        if unit.post.functions.contains_key(n) && out.symbols.contains_key(n)))
                },
            )?;
            let size = special.entry_size as u64;
            if kept.is_empty() {
                out.special
                    .insert(section.index(), (special.name, None, size, moved));
                continue;
            }
            let flags = section.elf_section_header().sh_flags(file.endian());
            let id = self
                .elf
                .add_special(special.name, kept, section.align().max(1), flags);
            out.special
                .insert(section.index(), (special.name, Some(id), size, moved));
            self.copy_relocs(unit, out, id, &kept_relocs, None, None)?;
        }
        Ok(())
    }
}
