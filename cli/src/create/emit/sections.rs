//! `post.o` itself: the carried functions and data (one section each),
//! whole sections copied from the post object (string literals,
//! alternative replacements), the special-section entries of the carried
//! code, the places table and the payload.

use std::collections::HashMap;
use std::path::PathBuf;

use ksplice_core::payload::SymbolKind;
use object::elf;
use object::read::elf::SectionHeader as _;
use object::write::{self, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    Object as _, ObjectSection as _, RelocationFlags, SectionKind, SymbolFlags, SymbolScope,
};

use super::super::objdiff::{self, Item, PADDING};
use super::super::CreateError;
use super::{RawReloc, Unit};

/// The relocatable object being written.
pub struct PostElf {
    out: write::Object<'static>,
    stub_function: SymbolId,
    stub_data: SymbolId,
    undefined: HashMap<String, SymbolId>,
    /// One symbol per place, in payload order.
    places: Vec<SymbolId>,
    /// Carried functions without ENDBR: the places table takes their
    /// address, but nothing calls them indirectly (tells objtool so).
    no_endbr: Vec<SymbolId>,
    /// Symbols the object must name without using them (see
    /// [`PostElf::keep_addressable`]).
    addressable: Vec<SymbolId>,
}

/// A section copied whole from the post object.
pub struct Copied {
    /// Its id in `post.o`.
    pub id: SectionId,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Executable (alternative replacement code) rather than data.
    pub code: bool,
    /// Its contents.
    pub data: Vec<u8>,
    /// Its relocations against symbols, still to be added.
    pub relocs: Vec<RawReloc>,
}

fn post_o_error(e: impl std::fmt::Display) -> CreateError {
    CreateError::Elf {
        path: PathBuf::from("post.o"),
        why: e.to_string(),
    }
}

/// Whether `bytes` start with ENDBR64.
fn has_endbr(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa])
}

impl PostElf {
    /// An empty x86-64 relocatable object with the two stub symbols that
    /// references to non-exported symbols point at until ksplice.ko writes
    /// them (`__ksplice_unresolved`, `__ksplice_unresolved_data`, defined
    /// in the generated `main.c`).
    pub fn new() -> Self {
        let mut out = write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let stub_function = add_undefined(&mut out, "__ksplice_unresolved");
        let stub_data = add_undefined(&mut out, "__ksplice_unresolved_data");
        Self {
            out,
            stub_function,
            stub_data,
            undefined: HashMap::new(),
            places: Vec::new(),
            no_endbr: Vec::new(),
            addressable: Vec::new(),
        }
    }

    /// Makes the object name `symbol` from `.discard.addressable` (as the
    /// kernel's `__ADDRESSABLE()` does), for tools that look it up by name;
    /// the module's link drops the section.
    pub fn keep_addressable(&mut self, symbol: SymbolId) {
        if !self.addressable.contains(&symbol) {
            self.addressable.push(symbol);
        }
    }

    /// The stub a field naming a non-exported symbol of `kind` points at.
    pub fn stub(&self, kind: SymbolKind) -> SymbolId {
        if kind == SymbolKind::Function {
            self.stub_function
        } else {
            self.stub_data
        }
    }

    /// An undefined global, once per name: resolved by the module loader.
    pub fn undefined(&mut self, name: &str) -> SymbolId {
        if let Some(&id) = self.undefined.get(name) {
            return id;
        }
        let id = add_undefined(&mut self.out, name);
        self.undefined.insert(name.to_owned(), id);
        id
    }

    /// Appends `symbol` to the places table (the caller adds the payload
    /// record in the same order).
    pub fn add_place(&mut self, symbol: SymbolId) {
        self.places.push(symbol);
    }

    /// Adds a carried function or object as a section of its own (with
    /// the call padding gcc put in front of functions); returns its symbol
    /// and where its section starts relative to it.
    pub fn add_item(
        &mut self,
        unit: &Unit,
        item: &Item,
        kind: SymbolKind,
    ) -> Result<SymbolId, CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let section = file
            .section_by_index(item.section)
            .map_err(|e| CreateError::elf(&unit.post_path, e))?;
        let flags = section.elf_section_header().sh_flags(file.endian());
        let pad = if kind == SymbolKind::Function && item.value as usize >= PADDING {
            let data = section
                .data()
                .map_err(|e| CreateError::elf(&unit.post_path, e))?;
            let start = item.value as usize - PADDING;
            let nops = data
                .get(start..item.value as usize)
                .is_some_and(|p| p.iter().all(|&b| b == 0x90));
            if nops {
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
        if kind == SymbolKind::Function && !has_endbr(&item.bytes) {
            self.no_endbr.push(symbol);
        }
        Ok(symbol)
    }

    /// The section of a symbol `add_item` made and the symbol's offset in it.
    pub fn item_section(&self, symbol: SymbolId) -> Option<(SectionId, u64)> {
        let s = self.out.symbol(symbol);
        Some((s.section.id()?, s.value))
    }

    /// Copies section `index` of the post object whole.
    pub fn copy_section(
        &mut self,
        unit: &Unit,
        index: object::SectionIndex,
    ) -> Result<Copied, CreateError> {
        let file = unit.post.elf(&unit.post_path)?;
        let bad = |e: object::Error| CreateError::elf(&unit.post_path, e);
        let section = file.section_by_index(index).map_err(bad)?;
        let name = section.name().map_err(bad)?.to_owned();
        let flags = section.elf_section_header().sh_flags(file.endian());
        let code = flags & u64::from(elf::SHF_EXECINSTR) != 0;
        let kind = if code {
            SectionKind::Text
        } else {
            SectionKind::ReadOnlyData
        };
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), kind);
        let data = section.data().map_err(bad)?.to_vec();
        self.out
            .set_section_data(id, data.clone(), section.align().max(1));
        self.out.section_mut(id).flags = object::SectionFlags::Elf { sh_flags: flags };
        Ok(Copied {
            id,
            name,
            size: section.size(),
            code,
            data,
            relocs: objdiff::symbol_relocs(&section),
        })
    }

    /// A local symbol covering a whole copied section (to make it a place).
    pub fn section_place_symbol(&mut self, copied: &Copied) -> SymbolId {
        self.out.add_symbol(Symbol {
            name: copied.name.as_bytes().to_vec(),
            value: 0,
            size: copied.size,
            kind: object::SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(copied.id),
            flags: SymbolFlags::None,
        })
    }

    /// The section symbol of a copied section.
    pub fn section_symbol(&mut self, id: SectionId) -> SymbolId {
        self.out.section_symbol(id)
    }

    /// An anonymous local label at `value` in a copied section (for
    /// references to gcc's `.LC30` labels, whose addends are relative to
    /// the label).
    pub fn label(&mut self, section: SectionId, value: u64) -> SymbolId {
        self.out.add_symbol(Symbol {
            name: Vec::new(),
            value,
            size: 0,
            kind: object::SymbolKind::Label,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        })
    }

    /// Adds a relocation of type `r_type` at `offset` in `section`.
    pub fn relocate(
        &mut self,
        section: SectionId,
        offset: u64,
        symbol: SymbolId,
        addend: i64,
        r_type: u32,
    ) -> Result<(), CreateError> {
        self.out
            .add_relocation(
                section,
                Relocation {
                    offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf { r_type },
                },
            )
            .map_err(post_o_error)
    }

    /// Adds a special section holding the `entries` kept for carried code.
    pub fn add_special(
        &mut self,
        name: &str,
        entries: Vec<u8>,
        align: u64,
        flags: u64,
    ) -> SectionId {
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::Data);
        self.out.set_section_data(id, entries, align);
        self.out.section_mut(id).flags = object::SectionFlags::Elf { sh_flags: flags };
        id
    }

    /// Adds the hook table, the places table (`__ksplice_places`: one 8-byte
    /// address per place, in payload order), the NOENDBR annotations, the payload
    /// (`__ksplice_payload`) and the GNU-stack note, and writes the object.
    pub fn finish(
        mut self,
        payload: &[u8],
        hooks: &[(u64, SymbolId)],
    ) -> Result<Vec<u8>, CreateError> {
        if !self.addressable.is_empty() {
            let symbols = std::mem::take(&mut self.addressable);
            let section = self.add_special(
                ".discard.addressable",
                vec![0; symbols.len() * 8],
                8,
                u64::from(object::elf::SHF_ALLOC | object::elf::SHF_WRITE),
            );
            for (i, symbol) in symbols.into_iter().enumerate() {
                self.relocate(section, i as u64 * 8, symbol, 0, object::elf::R_X86_64_64)?;
            }
        }
        // The hook table (`__ksplice_hooks`): (kind, function) pairs.
        if !hooks.is_empty() {
            let table = self.out.add_section(
                Vec::new(),
                b".rodata.ksplice_hooks".to_vec(),
                SectionKind::ReadOnlyData,
            );
            let mut data = Vec::new();
            for &(kind, _) in hooks {
                data.extend_from_slice(&kind.to_le_bytes());
                data.extend_from_slice(&0u64.to_le_bytes());
            }
            self.out.set_section_data(table, data, 8);
            for (i, &(_, symbol)) in hooks.iter().enumerate() {
                self.relocate(table, 16 * i as u64 + 8, symbol, 0, elf::R_X86_64_64)?;
            }
            add_global(
                &mut self.out,
                table,
                "__ksplice_hooks",
                16 * hooks.len() as u64,
            );
        }
        let places = self.out.add_section(
            Vec::new(),
            b".rodata.ksplice_places".to_vec(),
            SectionKind::ReadOnlyData,
        );
        self.out
            .set_section_data(places, vec![0u8; 8 * self.places.len()], 8);
        for (i, &symbol) in self.places.clone().iter().enumerate() {
            self.relocate(places, 8 * i as u64, symbol, 0, elf::R_X86_64_64)?;
        }
        add_global(
            &mut self.out,
            places,
            "__ksplice_places",
            8 * self.places.len() as u64,
        );
        // ANNOTATE_NOENDBR for each: `.long fn - .; .long ANNOTYPE_NOENDBR`.
        if !self.no_endbr.is_empty() {
            const ANNOTYPE_NOENDBR: u32 = 1;
            let notes = self.out.add_section(
                Vec::new(),
                b".discard.annotate_insn".to_vec(),
                SectionKind::Other,
            );
            let mut data = Vec::new();
            for _ in &self.no_endbr {
                data.extend_from_slice(&0u32.to_le_bytes());
                data.extend_from_slice(&ANNOTYPE_NOENDBR.to_le_bytes());
            }
            self.out.set_section_data(notes, data, 4);
            self.out.section_mut(notes).flags = object::SectionFlags::Elf { sh_flags: 0 };
            for (i, &symbol) in self.no_endbr.clone().iter().enumerate() {
                self.relocate(notes, 8 * i as u64, symbol, 0, elf::R_X86_64_PC32)?;
            }
        }
        let section = self.out.add_section(
            Vec::new(),
            b".rodata.ksplice_payload".to_vec(),
            SectionKind::ReadOnlyData,
        );
        self.out.set_section_data(section, payload.to_vec(), 8);
        add_global(
            &mut self.out,
            section,
            "__ksplice_payload",
            payload.len() as u64,
        );
        // Modules must not ask for an executable stack.
        let note =
            self.out
                .add_section(Vec::new(), b".note.GNU-stack".to_vec(), SectionKind::Other);
        self.out.section_mut(note).flags = object::SectionFlags::Elf { sh_flags: 0 };
        self.out.write().map_err(post_o_error)
    }
}

/// The entries kept from a special section: their bytes, their
/// relocations rebased to them, and where each came from (old offset, new
/// offset).
pub type Kept = (Vec<u8>, Vec<RawReloc>, Vec<(u64, u64)>);

/// Keeps the entries of special section `name` of `unit` (`entry_size`
/// bytes each) that `carried` accepts, judged by the relocation at each
/// entry's start. A section that is not a whole number of anchored entries
/// is refused, not guessed at.
pub fn carried_entries(
    unit: &str,
    name: &str,
    data: &[u8],
    entry_size: usize,
    relocs: &[RawReloc],
    mut carried: impl FnMut(&RawReloc) -> Result<bool, CreateError>,
) -> Result<Kept, CreateError> {
    let refuse = |why: String| super::refuse(unit, format!("{name} {why}"));
    if entry_size == 0 || data.len() % entry_size != 0 {
        return Err(refuse(format!(
            "is {} bytes, not a multiple of its {entry_size}-byte entries",
            data.len()
        )));
    }
    let mut kept = Vec::new();
    let mut kept_relocs = Vec::new();
    let mut moved = Vec::new();
    for (entry, bytes) in data.chunks_exact(entry_size).enumerate() {
        let start = (entry * entry_size) as u64;
        let end = start + entry_size as u64;
        let Some(anchor) = relocs.iter().find(|r| r.0 == start) else {
            return Err(refuse(format!(
                "entry {entry} has no relocation at its start"
            )));
        };
        if !carried(anchor)? {
            continue;
        }
        let new_start = kept.len() as u64;
        moved.push((start, new_start));
        kept.extend_from_slice(bytes);
        kept_relocs.extend(
            relocs
                .iter()
                .filter(|r| r.0 >= start && r.0 < end)
                .map(|&(off, r_type, raw, addend)| (new_start + off - start, r_type, raw, addend)),
        );
    }
    Ok((kept, kept_relocs, moved))
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

#[cfg(test)]
mod tests {
    use object::SymbolIndex;

    use super::*;

    fn reloc(offset: u64, symbol: usize) -> RawReloc {
        (offset, elf::R_X86_64_PC32, SymbolIndex(symbol), 0)
    }

    #[test]
    fn only_entries_anchored_in_carried_code_are_kept_and_rebased() {
        // Three 8-byte entries; the second and third describe carried code
        // (symbol 2); each has a second relocation at +4.
        let data: Vec<u8> = (0..24).collect();
        let relocs = [
            reloc(0, 1),
            reloc(4, 9),
            reloc(8, 2),
            reloc(12, 9),
            reloc(16, 2),
            reloc(20, 9),
        ];
        let (kept, kept_relocs, moved) = carried_entries("u.o", "__x", &data, 8, &relocs, |r| {
            Ok(r.2 == SymbolIndex(2))
        })
        .unwrap();
        assert_eq!(kept, (8..24).collect::<Vec<u8>>());
        assert_eq!(moved, [(8, 0), (16, 8)]);
        assert_eq!(
            kept_relocs,
            [reloc(0, 2), reloc(4, 9), reloc(8, 2), reloc(12, 9)]
        );
    }

    #[test]
    fn a_malformed_special_section_is_refused_not_guessed() {
        let relocs = [reloc(0, 1)];
        let uneven = carried_entries("u.o", "__x", &[0; 12], 8, &relocs, |_| Ok(true));
        assert!(uneven.is_err_and(|e| e.to_string().contains("__x is 12 bytes, not a multiple")));
        let unanchored = carried_entries("u.o", "__x", &[0; 16], 8, &relocs, |_| Ok(true));
        assert!(unanchored
            .is_err_and(|e| e.is_refusal() && e.to_string().contains("entry 1 has no relocation")));
    }

    #[test]
    fn functions_without_endbr_are_recognised() {
        assert!(has_endbr(&[0xf3, 0x0f, 0x1e, 0xfa, 0xc3]));
        assert!(!has_endbr(&[0x55, 0xc3]));
    }
}
