//! The DWARF of one relocatable object, read into a flat tree of the
//! entries the layout comparison needs.
//!
//! In a `.o` file the DWARF sections still carry relocations (`strp`
//! offsets into `.debug_str`, for instance, are zero plus an addend), so
//! they are applied before gimli parses them.

use std::collections::HashMap;
use std::path::Path;

use gimli::{constants, AttributeValue, DwTag, EndianSlice, LittleEndian, SectionId};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

use crate::create::CreateError;

/// Index of an entry in [`Dies::entries`].
pub type DieId = usize;

/// One debugging information entry, reduced to what layouts depend on.
/// Line numbers and other declaration attributes are not kept.
#[derive(Debug)]
pub struct Die {
    pub tag: DwTag,
    pub name: Option<String>,
    /// `DW_AT_type`.
    pub ty: Option<DieId>,
    /// `DW_AT_abstract_origin` or `DW_AT_specification`.
    pub origin: Option<DieId>,
    pub byte_size: Option<u64>,
    pub bit_size: Option<u64>,
    /// `DW_AT_data_bit_offset` (DWARF 4 and later).
    pub data_bit_offset: Option<u64>,
    /// `DW_AT_bit_offset` (DWARF 2 and 3, counted from the most
    /// significant bit of a `byte_size` storage unit).
    pub legacy_bit_offset: Option<u64>,
    /// `DW_AT_data_member_location`, in bytes.
    pub member_location: Option<u64>,
    pub alignment: Option<u64>,
    pub encoding: Option<u8>,
    /// `DW_AT_const_value` of an enumerator, as its raw form gave it.
    pub const_value: Option<ConstValue>,
    /// Elements of an array dimension (`DW_AT_count` or upper bound + 1);
    /// `None` for a flexible or variable-length one.
    pub count: Option<u64>,
    pub declaration: bool,
    /// `DW_AT_location` is a static address (`DW_OP_addr`): a global or a
    /// static local, not an automatic variable.
    pub static_address: bool,
    pub parent: Option<DieId>,
    pub children: Vec<DieId>,
}

impl Die {
    fn new(tag: DwTag, parent: Option<DieId>) -> Self {
        Self {
            tag,
            name: None,
            ty: None,
            origin: None,
            byte_size: None,
            bit_size: None,
            data_bit_offset: None,
            legacy_bit_offset: None,
            member_location: None,
            alignment: None,
            encoding: None,
            const_value: None,
            count: None,
            declaration: false,
            static_address: false,
            parent,
            children: Vec::new(),
        }
    }
}

/// An enumerator value before the enum's signedness is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstValue {
    Signed(i64),
    Unsigned(u64),
    /// A fixed-size form (`data1` ... `data8`): its bytes, and their count.
    Fixed(u64, u8),
}

impl ConstValue {
    /// The value, sign-extended when the enum is signed.
    pub fn value(self, signed: bool) -> i128 {
        match self {
            Self::Signed(v) => v.into(),
            Self::Unsigned(v) => v.into(),
            Self::Fixed(v, bytes) => {
                let bits = u32::from(bytes) * 8;
                if signed && bits < 64 && v >> (bits - 1) & 1 == 1 {
                    i128::from(v) - (1i128 << bits)
                } else if signed && bits == 64 {
                    i128::from(v as i64)
                } else {
                    v.into()
                }
            }
        }
    }
}

/// Every entry of every unit of one object, with references resolved.
pub struct Dies {
    pub entries: Vec<Die>,
    /// The root (`DW_TAG_compile_unit`) of each unit.
    pub units: Vec<DieId>,
}

fn dwarf_error(path: &Path, why: impl std::fmt::Display) -> CreateError {
    CreateError::Elf {
        path: path.to_owned(),
        why: format!("DWARF: {why}"),
    }
}

/// Whether the object file `data` has any DWARF (`.debug_info`).
pub fn has_debug_info(data: &[u8]) -> bool {
    object::File::parse(data).is_ok_and(|file| {
        file.section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0)
    })
}

/// The contents of each DWARF section of `file`, relocations applied.
fn relocated_sections(
    file: &object::File<'_>,
    path: &Path,
) -> Result<HashMap<String, Vec<u8>>, CreateError> {
    let mut sections = HashMap::new();
    for section in file.sections() {
        let Ok(name) = section.name() else { continue };
        if !name.starts_with(".debug_") {
            continue;
        }
        let mut data = section
            .uncompressed_data()
            .map_err(|e| dwarf_error(path, e))?
            .into_owned();
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(index) = reloc.target() else {
                continue;
            };
            if reloc.kind() != object::RelocationKind::Absolute {
                continue;
            }
            let symbol = file
                .symbol_by_index(index)
                .map_err(|e| dwarf_error(path, e))?;
            let start = usize::try_from(offset).map_err(|e| dwarf_error(path, e))?;
            let width = usize::from(reloc.size() / 8);
            let field = data
                .get_mut(start..start + width)
                .ok_or_else(|| dwarf_error(path, format!("relocation outside {name}")))?;
            // REL relocations (32-bit objects) keep the addend in the field.
            let addend = if !reloc.has_implicit_addend() {
                reloc.addend() as u64
            } else if let Ok(bytes) = <[u8; 4]>::try_from(&*field) {
                u32::from_le_bytes(bytes).into()
            } else if let Ok(bytes) = <[u8; 8]>::try_from(&*field) {
                u64::from_le_bytes(bytes)
            } else {
                0
            };
            let value = symbol.address().wrapping_add(addend);
            match width {
                4 => field.copy_from_slice(&(value as u32).to_le_bytes()),
                8 => field.copy_from_slice(&value.to_le_bytes()),
                _ => {
                    return Err(dwarf_error(
                        path,
                        format!("{width}-byte relocation in {name}"),
                    ))
                }
            }
        }
        sections.insert(name.to_owned(), data);
    }
    Ok(sections)
}

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// A reference attribute, not yet resolved to an entry.
enum Pending {
    Type,
    Origin,
}

impl Dies {
    /// Reads the DWARF of the object file `data` (read from `path`).
    pub fn read(data: &[u8], path: &Path) -> Result<Self, CreateError> {
        let file = object::File::parse(data).map_err(|e| dwarf_error(path, e))?;
        let sections = relocated_sections(&file, path)?;
        let empty: &[u8] = &[];
        let dwarf = gimli::Dwarf::load(|id: SectionId| -> Result<Reader<'_>, gimli::Error> {
            Ok(EndianSlice::new(
                sections.get(id.name()).map_or(empty, Vec::as_slice),
                LittleEndian,
            ))
        })
        .map_err(|e| dwarf_error(path, e))?;
        let mut dies = Dies {
            entries: Vec::new(),
            units: Vec::new(),
        };
        let mut by_offset: HashMap<usize, DieId> = HashMap::new();
        let mut pending: Vec<(DieId, Pending, usize)> = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next().map_err(|e| dwarf_error(path, e))? {
            let unit = dwarf.unit(header).map_err(|e| dwarf_error(path, e))?;
            dies.read_unit(&dwarf, &unit, path, &mut by_offset, &mut pending)?;
        }
        for (id, kind, target) in pending {
            let Some(&to) = by_offset.get(&target) else {
                return Err(dwarf_error(
                    path,
                    format!("reference to {target:#x}, which is no entry"),
                ));
            };
            match kind {
                Pending::Type => dies.entries[id].ty = Some(to),
                Pending::Origin => dies.entries[id].origin = Some(to),
            }
        }
        Ok(dies)
    }

    fn read_unit(
        &mut self,
        dwarf: &gimli::Dwarf<Reader<'_>>,
        unit: &gimli::Unit<Reader<'_>>,
        path: &Path,
        by_offset: &mut HashMap<usize, DieId>,
        pending: &mut Vec<(DieId, Pending, usize)>,
    ) -> Result<(), CreateError> {
        let reference = |value: AttributeValue<Reader<'_>>| -> Result<usize, CreateError> {
            match value {
                AttributeValue::UnitRef(offset) => offset
                    .to_debug_info_offset(&unit.header)
                    .map(|o| o.0)
                    .ok_or_else(|| dwarf_error(path, "type reference outside .debug_info")),
                AttributeValue::DebugInfoRef(offset) => Ok(offset.0),
                other => Err(dwarf_error(
                    path,
                    format!("unsupported reference form {other:?}"),
                )),
            }
        };
        let mut stack: Vec<DieId> = Vec::new();
        let mut depth: isize = 0;
        let mut cursor = unit.entries();
        while let Some((delta, entry)) = cursor.next_dfs().map_err(|e| dwarf_error(path, e))? {
            depth += delta;
            stack.truncate(usize::try_from(depth).unwrap_or(0));
            let id = self.entries.len();
            let mut die = Die::new(entry.tag(), stack.last().copied());
            if let Some(offset) = entry.offset().to_debug_info_offset(&unit.header) {
                by_offset.insert(offset.0, id);
            }
            let mut attrs = entry.attrs();
            while let Some(attr) = attrs.next().map_err(|e| dwarf_error(path, e))? {
                let value = attr.value();
                match attr.name() {
                    constants::DW_AT_name => {
                        let s = dwarf
                            .attr_string(unit, value)
                            .map_err(|e| dwarf_error(path, e))?;
                        die.name = Some(s.to_string_lossy().into_owned());
                    }
                    constants::DW_AT_type => pending.push((id, Pending::Type, reference(value)?)),
                    constants::DW_AT_abstract_origin | constants::DW_AT_specification => {
                        pending.push((id, Pending::Origin, reference(value)?));
                    }
                    constants::DW_AT_byte_size => die.byte_size = value.udata_value(),
                    constants::DW_AT_bit_size => die.bit_size = value.udata_value(),
                    constants::DW_AT_data_bit_offset => die.data_bit_offset = value.udata_value(),
                    constants::DW_AT_bit_offset => die.legacy_bit_offset = value.udata_value(),
                    constants::DW_AT_data_member_location => {
                        die.member_location = Some(member_location(&value).ok_or_else(|| {
                            dwarf_error(path, format!("unsupported member location {value:?}"))
                        })?);
                    }
                    constants::DW_AT_alignment => die.alignment = value.udata_value(),
                    constants::DW_AT_encoding => {
                        if let AttributeValue::Encoding(e) = value {
                            die.encoding = Some(e.0);
                        }
                    }
                    constants::DW_AT_const_value => {
                        die.const_value = match value {
                            AttributeValue::Sdata(v) => Some(ConstValue::Signed(v)),
                            AttributeValue::Udata(v) => Some(ConstValue::Unsigned(v)),
                            AttributeValue::Data1(v) => Some(ConstValue::Fixed(v.into(), 1)),
                            AttributeValue::Data2(v) => Some(ConstValue::Fixed(v.into(), 2)),
                            AttributeValue::Data4(v) => Some(ConstValue::Fixed(v.into(), 4)),
                            AttributeValue::Data8(v) => Some(ConstValue::Fixed(v, 8)),
                            _ => None,
                        };
                    }
                    constants::DW_AT_count => die.count = value.udata_value(),
                    constants::DW_AT_upper_bound => {
                        // -1 is how some producers write a zero-length array.
                        die.count = match value.sdata_value() {
                            Some(-1) => Some(0),
                            _ => value.udata_value().map(|u| u.wrapping_add(1)),
                        };
                    }
                    constants::DW_AT_location => {
                        die.static_address = matches!(&value, AttributeValue::Exprloc(e)
                            if e.0.slice().first() == Some(&constants::DW_OP_addr.0));
                    }
                    constants::DW_AT_declaration => {
                        die.declaration = !matches!(value, AttributeValue::Flag(false));
                    }
                    _ => {}
                }
            }
            if let Some(&parent) = stack.last() {
                self.entries[parent].children.push(id);
            } else {
                self.units.push(id);
            }
            self.entries.push(die);
            stack.push(id);
        }
        Ok(())
    }

    /// The entry's name, or the name of the entry it is an instance or a
    /// definition of.
    pub fn name_of(&self, mut id: DieId) -> Option<&str> {
        for _ in 0..8 {
            let die = &self.entries[id];
            if let Some(name) = &die.name {
                return Some(name);
            }
            id = die.origin?;
        }
        None
    }

    /// The entry's type, through its origin if it has none itself.
    pub fn type_of(&self, mut id: DieId) -> Option<DieId> {
        for _ in 0..8 {
            let die = &self.entries[id];
            if die.ty.is_some() {
                return die.ty;
            }
            id = die.origin?;
        }
        None
    }
}

/// A member offset: a constant, or the `DW_OP_plus_uconst N` expression
/// older producers write.
fn member_location(value: &AttributeValue<Reader<'_>>) -> Option<u64> {
    if let Some(v) = value.udata_value() {
        return Some(v);
    }
    let AttributeValue::Exprloc(expr) = value else {
        return None;
    };
    let bytes = expr.0.slice();
    let (&op, rest) = bytes.split_first()?;
    if op != constants::DW_OP_plus_uconst.0 {
        return None;
    }
    let mut value = 0u64;
    for (i, &b) in rest.iter().enumerate() {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return (i + 1 == rest.len()).then_some(value);
        }
    }
    None
}
