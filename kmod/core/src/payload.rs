//! The update payload: what `ksplice-create` embeds in `update.ko` and
//! `ksplice.ko` reads back.
//!
//! Layout (all integers little-endian, every record a fixed size):
//!
//! ```text
//! Header          HEADER_LEN bytes: magic, version, sizes, id, target kernel,
//!                 and one (offset, count) descriptor per table below
//! symbols         SymbolRec:      every symbol a relocation names
//! functions       FunctionRec:    pre code of each function run-pre matches
//! pre_relocs      RelocRec:       relocations of the pre code, by function
//! places          PlaceRec:       functions and data that update.ko holds,
//!                                 in the order of its `__ksplice_places` table
//! replacements    ReplacementRec: old function -> new place
//! post_relocs     PostRelocRec:   fields in update.ko the core must write
//! sites           SiteRec:        runtime-patched spots of the pre code
//!                                 (jump labels, alternatives), by function
//! objects         ObjectRec:      the loadable modules symbols live in
//!                                 (a symbol of object 0 is in vmlinux)
//! blob            bytes:          pre code and names, referenced by offset
//! ```
//!
//! [`Payload::parse`] validates every offset, length, count and index up
//! front, so the accessors afterwards cannot fail on a well-typed index. It
//! borrows the input and never allocates or panics.
#![forbid(unsafe_code)]

use core::fmt;

use super::reloc::RelocKind;
use super::uapi;

/// First bytes of every payload.
pub const MAGIC: [u8; 8] = *b"KSPLPAY\0";
/// The format version this code reads and writes.
pub const VERSION: u32 = 2;
/// Length of the kernel build id field (a SHA-1 `.note.gnu.build-id`).
pub const BUILD_ID_MAX: usize = 20;
/// Longest symbol name (the kernel's `KSYM_NAME_LEN` is 512).
pub const NAME_MAX: usize = 511;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 224;

const TABLES: usize = 9;
const TABLES_AT: usize = HEADER_LEN - TABLES * 8;

/// What a symbol is, which decides how the core may resolve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SymbolKind {
    /// A function: its address comes from run-pre matching.
    Function = 1,
    /// A variable: its address is inferred at relocation sites.
    Object = 2,
    /// An anonymous section (string literals): only checked for consistency.
    Section = 3,
}

/// A [`SymbolKind::Section`] symbol named with this prefix is a string
/// literal: the rest of the name is its bytes in hex (without the NUL), so
/// the kernel can check the live string, not just the code referring to it.
pub const STRING_PREFIX: &str = "str:";

/// Decodes the content of a [`STRING_PREFIX`] name into `out`; returns the
/// length, or `None` if `name` is not one or `out` is too small.
pub fn string_literal(name: &str, out: &mut [u8]) -> Option<usize> {
    let hex = name.strip_prefix(STRING_PREFIX)?.as_bytes();
    if hex.len() % 2 != 0 || hex.len() / 2 > out.len() {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    // A plain indexed loop: rustc's `zip` over `chunks_exact` leaves
    // objtool-confusing (fall-through) code in the kernel build.
    for (i, dst) in out.iter_mut().take(hex.len() / 2).enumerate() {
        let at = i.checked_mul(2)?;
        let hi = digit(*hex.get(at)?)?;
        let lo = digit(*hex.get(at.checked_add(1)?)?)?;
        *dst = u8::try_from(hi.checked_mul(16)?.checked_add(lo)?).ok()?;
    }
    Some(hex.len() / 2)
}

/// The symbol is file-local (`static`), so its name may be ambiguous.
pub const SYMBOL_LOCAL: u8 = 1;

/// Longest module name (the kernel's `MODULE_NAME_LEN` is 56 with the NUL).
pub const MODULE_NAME_MAX: usize = 55;

/// Whether `name` can be a loadable module's name as the kernel spells it
/// (kbuild turns `-` into `_`); `vmlinux` is object 0, never a module.
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MODULE_NAME_MAX
        && name != "vmlinux"
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why a payload is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its header, or than the size the header states.
    Truncated,
    /// Not a ksplice payload.
    BadMagic,
    /// Written by an incompatible ksplice version.
    UnsupportedVersion(u32),
    /// A header field has an impossible value.
    BadHeader(&'static str),
    /// A table lies outside the payload or overlaps the header.
    BadTable(&'static str),
    /// A record of a table is invalid.
    BadRecord {
        table: &'static str,
        index: u32,
        why: &'static str,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("payload is truncated"),
            Self::BadMagic => f.write_str("not a ksplice payload (bad magic)"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "payload format version {v} is not supported (want {VERSION})"
            ),
            Self::BadHeader(why) => write!(f, "bad payload header: {why}"),
            Self::BadTable(table) => write!(f, "payload table '{table}' lies outside the payload"),
            Self::BadRecord { table, index, why } => write!(f, "payload {table}[{index}]: {why}"),
        }
    }
}

/// A fixed-size little-endian record.
pub trait Record: Sized {
    /// Size in bytes.
    const SIZE: usize;
    /// Table name for error messages.
    const TABLE: &'static str;
    /// Decodes one record from exactly `SIZE` bytes.
    fn read(bytes: &[u8]) -> Option<Self>;
    /// Encodes the record; `out` has exactly `SIZE` bytes.
    fn write(&self, out: &mut [u8]) -> Option<()>;
}

/// An integer field of a record, stored little-endian.
trait Field: Sized + Copy {
    /// Reads the field at byte `at`, if it fits.
    fn get(b: &[u8], at: usize) -> Option<Self>;
    /// Writes the field at byte `at`, if it fits.
    fn put(self, out: &mut [u8], at: usize) -> Option<()>;
}

macro_rules! le_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            fn get(b: &[u8], at: usize) -> Option<Self> {
                let end = at.checked_add(core::mem::size_of::<$ty>())?;
                Some(<$ty>::from_le_bytes(b.get(at..end)?.try_into().ok()?))
            }
            fn put(self, out: &mut [u8], at: usize) -> Option<()> {
                put(out, at, &self.to_le_bytes())
            }
        }
    )*};
}
le_field!(u8, u16, u32, i64);

fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    u32::get(b, at)
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    out.get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

/// Defines a record from one field table: the struct, and its [`Record`]
/// decoding and encoding, each field at the byte offset given after `@`
/// (bytes not named are zero padding). The layout is checked at compile
/// time: every field lies inside the record, after the one before it.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident: $table:literal, $size:literal bytes {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ident @ $at:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Record for $name {
            const SIZE: usize = $size;
            const TABLE: &'static str = $table;
            fn read(b: &[u8]) -> Option<Self> {
                Some(Self { $( $field: <$ty as Field>::get(b, $at)?, )* })
            }
            fn write(&self, out: &mut [u8]) -> Option<()> {
                $( Field::put(self.$field, out, $at)?; )*
                Some(())
            }
        }

        const _: () = {
            let mut end = 0;
            $(
                assert!($at >= end, "record fields overlap or are out of order");
                end = $at + core::mem::size_of::<$ty>();
            )*
            assert!(end <= $size, "a record field lies outside the record");
        };
    };
}

record! {
    /// A symbol named by relocations or replacements.
    pub struct SymbolRec: "symbols", 12 bytes {
        /// Offset of the name in the blob.
        pub name_off: u32 @ 0,
        /// Length of the name.
        pub name_len: u16 @ 4,
        /// A [`SymbolKind`] value.
        pub kind: u8 @ 6,
        /// [`SYMBOL_LOCAL`] and future flags.
        pub flags: u8 @ 7,
        /// Where it lives: 0 for vmlinux, else 1 + an index into `objects`.
        pub object: u16 @ 8,
    }
}

record! {
    /// A loadable module that symbols of the update live in.
    pub struct ObjectRec: "objects", 8 bytes {
        /// Offset of the module name in the blob.
        pub name_off: u32 @ 0,
        /// Length of the name.
        pub name_len: u16 @ 4,
    }
}

record! {
    /// The pre code of one function, to be matched against the live kernel.
    pub struct FunctionRec: "functions", 20 bytes {
        /// Index of the function's symbol.
        pub symbol: u32 @ 0,
        /// Offset of the code in the blob.
        pub code_off: u32 @ 4,
        /// Length of the code (the symbol's size).
        pub code_len: u32 @ 8,
        /// First of this function's records in `pre_relocs`.
        pub reloc_first: u32 @ 12,
        /// Number of those records.
        pub reloc_count: u32 @ 16,
    }
}

record! {
    /// A relocation of pre code: `offset` is relative to the function start.
    pub struct RelocRec: "relocations", 24 bytes {
        /// Offset of the field in the function.
        pub offset: u32 @ 0,
        /// Index of the target symbol.
        pub symbol: u32 @ 4,
        /// A [`RelocKind`] value (the ELF type number).
        pub kind: u8 @ 8,
        /// The ELF addend.
        pub addend: i64 @ 16,
    }
}

record! {
    /// One entry of update.ko's `__ksplice_places` table: a new function or a
    /// data object the update carries.
    pub struct PlaceRec: "places", 16 bytes {
        /// Offset of the name in the blob.
        pub name_off: u32 @ 0,
        /// Length of the name.
        pub name_len: u16 @ 4,
        /// A [`SymbolKind`] value (function or object).
        pub kind: u8 @ 6,
        /// Reserved, zero.
        pub flags: u8 @ 7,
        /// Size in bytes; post relocations must lie inside it.
        pub size: u32 @ 8,
        /// The object whose code it replaces or serves (0 for vmlinux, as
        /// in [`SymbolRec::object`]): its post relocations are written
        /// when that object is there.
        pub object: u16 @ 12,
    }
}

record! {
    /// Redirect the function matched by `function` to the new code at `place`.
    /// The table is sorted by `function`.
    pub struct ReplacementRec: "replacements", 8 bytes {
        /// Index into `functions`: the old function (its pre code must match).
        pub function: u32 @ 0,
        /// Index into `places`: the replacement.
        pub place: u32 @ 4,
    }
}

record! {
    /// A field of update.ko that names a kernel symbol the module loader must
    /// not resolve; the core writes it from the run-pre results.
    pub struct PostRelocRec: "post relocations", 24 bytes {
        /// Index into `places`.
        pub place: u32 @ 0,
        /// Offset of the field in the place.
        pub offset: u32 @ 4,
        /// Index of the target symbol.
        pub symbol: u32 @ 8,
        /// A [`RelocKind`] value.
        pub kind: u8 @ 12,
        /// The ELF addend.
        pub addend: i64 @ 16,
    }
}

/// What kind of runtime patching a site of pre code undergoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SiteKind {
    /// A `static_branch` site: `jmp` in the object, NOP or `jmp` live.
    JumpLabel = 1,
    /// An `ALTERNATIVE()` site: live bytes are whichever variant boot chose.
    Alternative = 2,
}

impl SiteKind {
    /// Decodes the wire value.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::JumpLabel),
            2 => Some(Self::Alternative),
            _ => None,
        }
    }
}

record! {
    /// A spot in a function's pre code that the kernel patches at runtime.
    pub struct SiteRec: "sites", 12 bytes {
        /// Index into `functions`.
        pub function: u32 @ 0,
        /// Offset of the site in the function.
        pub offset: u32 @ 4,
        /// Length of the site in bytes.
        pub len: u16 @ 8,
        /// A [`SiteKind`] value.
        pub kind: u8 @ 10,
    }
}

/// A validated, borrowed table of records.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a, T> {
    bytes: &'a [u8],
    len: u32,
    _record: core::marker::PhantomData<T>,
}

impl<'a, T: Record + 'a> Table<'a, T> {
    fn new(payload: &'a [u8], offset: u32, count: u32) -> Result<Self, ParseError> {
        let bad = ParseError::BadTable(T::TABLE);
        let start = offset as usize;
        let len = (count as usize).checked_mul(T::SIZE).ok_or(bad)?;
        let end = start.checked_add(len).ok_or(bad)?;
        if start < HEADER_LEN {
            return Err(bad);
        }
        Ok(Self {
            bytes: payload.get(start..end).ok_or(bad)?,
            len: count,
            _record: core::marker::PhantomData,
        })
    }

    /// Number of records.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The record at `index`, if it exists.
    pub fn get(&self, index: u32) -> Option<T> {
        let start = (index as usize).checked_mul(T::SIZE)?;
        T::read(self.bytes.get(start..start.checked_add(T::SIZE)?)?)
    }

    /// All records in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let bytes = self.bytes;
        bytes.chunks_exact(T::SIZE).filter_map(T::read)
    }
}

/// A parsed and fully validated payload.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    id: &'a str,
    release: &'a str,
    build_id: &'a [u8],
    /// Every symbol named by relocations or replacements.
    pub symbols: Table<'a, SymbolRec>,
    /// Pre code to match.
    pub functions: Table<'a, FunctionRec>,
    /// Relocations of the pre code.
    pub pre_relocs: Table<'a, RelocRec>,
    /// What update.ko's `__ksplice_places` table holds.
    pub places: Table<'a, PlaceRec>,
    /// Old function -> new place.
    pub replacements: Table<'a, ReplacementRec>,
    /// Fields of update.ko the core writes.
    pub post_relocs: Table<'a, PostRelocRec>,
    /// Runtime-patched spots of the pre code, sorted by (function, offset).
    pub sites: Table<'a, SiteRec>,
    /// The modules symbols live in, each named once.
    pub objects: Table<'a, ObjectRec>,
    blob: &'a [u8],
}

fn text(bytes: &[u8]) -> Option<&str> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(bytes.get(..len)?).ok()
}

fn is_symbol_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && name.bytes().all(|b| b.is_ascii_graphic())
}

impl<'a> Payload<'a> {
    /// Validates `bytes` completely and returns a view of it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let header = bytes.get(..HEADER_LEN).ok_or(ParseError::Truncated)?;
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(ParseError::BadMagic);
        }
        let field = |at| get_u32(header, at).ok_or(ParseError::Truncated);
        let version = field(8)?;
        if version != VERSION {
            return Err(ParseError::UnsupportedVersion(version));
        }
        if field(12)? as usize != HEADER_LEN {
            return Err(ParseError::BadHeader("header size"));
        }
        let total = field(16)? as usize;
        if total > bytes.len() {
            return Err(ParseError::Truncated);
        }
        if total < bytes.len() {
            return Err(ParseError::BadHeader(
                "trailing bytes after the stated size",
            ));
        }
        if field(20)? != 0 {
            return Err(ParseError::BadHeader("unknown flags"));
        }
        let id = header
            .get(24..24 + uapi::ID_MAX_LEN + 1)
            .and_then(text)
            .ok_or(ParseError::BadHeader("id"))?;
        if !uapi::is_valid_id(id) {
            return Err(ParseError::BadHeader(
                "id must be 1-31 characters of [A-Za-z0-9_.-]",
            ));
        }
        let release = header
            .get(56..56 + uapi::RELEASE_LEN)
            .and_then(text)
            .ok_or(ParseError::BadHeader("release"))?;
        if release.is_empty() || !release.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::BadHeader("target kernel release"));
        }
        let build_id_len = field(124)? as usize;
        if build_id_len > BUILD_ID_MAX {
            return Err(ParseError::BadHeader("build id length"));
        }
        let build_id = header
            .get(128..128 + build_id_len)
            .ok_or(ParseError::BadHeader("build id"))?;

        let desc = |i: usize| -> Result<(u32, u32), ParseError> {
            let at = TABLES_AT + i * 8;
            Ok((field(at)?, field(at + 4)?))
        };
        let (o, n) = desc(0)?;
        let symbols = Table::new(bytes, o, n)?;
        let (o, n) = desc(1)?;
        let functions = Table::new(bytes, o, n)?;
        let (o, n) = desc(2)?;
        let pre_relocs = Table::new(bytes, o, n)?;
        let (o, n) = desc(3)?;
        let places = Table::new(bytes, o, n)?;
        let (o, n) = desc(4)?;
        let replacements = Table::new(bytes, o, n)?;
        let (o, n) = desc(5)?;
        let post_relocs = Table::new(bytes, o, n)?;
        let (o, n) = desc(6)?;
        let sites = Table::new(bytes, o, n)?;
        let (o, n) = desc(7)?;
        let objects = Table::new(bytes, o, n)?;
        let (o, n) = desc(8)?;
        let blob = Table::<u8>::blob(bytes, o, n)?;

        let payload = Self {
            id,
            release,
            build_id,
            symbols,
            functions,
            pre_relocs,
            places,
            replacements,
            post_relocs,
            sites,
            objects,
            blob,
        };
        payload.validate()?;
        Ok(payload)
    }

    fn validate(&self) -> Result<(), ParseError> {
        if self.objects.len() > u32::from(u16::MAX) - 1 {
            return Err(ParseError::BadTable(ObjectRec::TABLE));
        }
        for (i, o) in (0u32..).zip(self.objects.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: ObjectRec::TABLE,
                index: i,
                why,
            };
            let name = self
                .name(o.name_off, o.name_len)
                .ok_or(bad("name outside the blob"))?;
            if !is_module_name(name) {
                return Err(bad("not a module name"));
            }
            let earlier = (0..i).any(|j| self.object_name(j + 1) == Some(name));
            if earlier {
                return Err(bad("module named twice"));
            }
        }
        for (i, s) in (0u32..).zip(self.symbols.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: SymbolRec::TABLE,
                index: i,
                why,
            };
            let name = self
                .name(s.name_off, s.name_len)
                .ok_or(bad("name outside the blob or not printable"))?;
            if !is_symbol_name(name) {
                return Err(bad("name is empty, too long or not printable"));
            }
            if !matches!(s.kind, 1..=3) {
                return Err(bad("unknown kind"));
            }
            if s.flags & !SYMBOL_LOCAL != 0 {
                return Err(bad("unknown flags"));
            }
            if u32::from(s.object) > self.objects.len() {
                return Err(bad("object index out of range"));
            }
        }
        let mut next_reloc = 0u32;
        for (i, f) in (0u32..).zip(self.functions.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: FunctionRec::TABLE,
                index: i,
                why,
            };
            let sym = self
                .symbols
                .get(f.symbol)
                .ok_or(bad("symbol index out of range"))?;
            if sym.kind != SymbolKind::Function as u8 {
                return Err(bad("symbol is not a function"));
            }
            if f.code_len == 0 {
                return Err(bad("empty code"));
            }
            self.blob_slice(f.code_off, f.code_len)
                .ok_or(bad("code outside the blob"))?;
            // Relocations are stored function by function, in order.
            if f.reloc_first != next_reloc {
                return Err(bad("relocations out of order"));
            }
            next_reloc = f
                .reloc_first
                .checked_add(f.reloc_count)
                .ok_or(bad("relocation count overflows"))?;
            if next_reloc > self.pre_relocs.len() {
                return Err(bad("relocations outside the table"));
            }
            let mut end_of_last = 0u64;
            for r in f.reloc_first..next_reloc {
                let rec = self.pre_relocs.get(r).ok_or(bad("relocation missing"))?;
                let bad = |why| ParseError::BadRecord {
                    table: RelocRec::TABLE,
                    index: r,
                    why,
                };
                let kind = RelocKind::from_elf(u32::from(rec.kind))
                    .map_err(|_| bad("unknown relocation kind"))?;
                if rec.symbol >= self.symbols.len() {
                    return Err(bad("symbol index out of range"));
                }
                let start = u64::from(rec.offset);
                let end = start + kind.width() as u64;
                if start < end_of_last || end > u64::from(f.code_len) {
                    return Err(bad("field overlaps another or lies outside the function"));
                }
                end_of_last = end;
            }
        }
        if next_reloc != self.pre_relocs.len() {
            return Err(ParseError::BadTable(
                "relocations not owned by any function",
            ));
        }
        for (i, p) in (0u32..).zip(self.places.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: PlaceRec::TABLE,
                index: i,
                why,
            };
            let name = self
                .name(p.name_off, p.name_len)
                .ok_or(bad("name outside the blob"))?;
            if !is_symbol_name(name) || !matches!(p.kind, 1 | 2) || p.flags != 0 || p.size == 0 {
                return Err(bad("bad name, kind, flags or size"));
            }
            if u32::from(p.object) > self.objects.len() {
                return Err(bad("object index out of range"));
            }
        }
        let mut previous: Option<u32> = None;
        for (i, r) in (0u32..).zip(self.replacements.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: ReplacementRec::TABLE,
                index: i,
                why,
            };
            if r.function >= self.functions.len() {
                return Err(bad("function index out of range"));
            }
            // Sorted by function, so no old function is replaced twice.
            if previous.is_some_and(|p| r.function <= p) {
                return Err(bad("not sorted by function, or a function replaced twice"));
            }
            previous = Some(r.function);
            let place = self
                .places
                .get(r.place)
                .ok_or(bad("place index out of range"))?;
            if place.kind != SymbolKind::Function as u8 {
                return Err(bad("replacement is not a function"));
            }
            if place.object != self.function_object(r.function) {
                return Err(bad("replacement serves another object than the function"));
            }
        }
        for (i, r) in (0u32..).zip(self.post_relocs.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: PostRelocRec::TABLE,
                index: i,
                why,
            };
            let kind = RelocKind::from_elf(u32::from(r.kind))
                .map_err(|_| bad("unknown relocation kind"))?;
            let place = self
                .places
                .get(r.place)
                .ok_or(bad("place index out of range"))?;
            if r.symbol >= self.symbols.len() {
                return Err(bad("symbol index out of range"));
            }
            // vmlinux's code cannot refer into a module, which may be absent.
            if place.object == 0 && self.symbol_object(r.symbol) != 0 {
                return Err(bad("vmlinux's code refers to a module's symbol"));
            }
            if u64::from(r.offset) + kind.width() as u64 > u64::from(place.size) {
                return Err(bad("field lies outside its place"));
            }
        }
        let mut previous: Option<(u32, u32)> = None;
        for (i, site) in (0u32..).zip(self.sites.iter()) {
            let bad = |why| ParseError::BadRecord {
                table: SiteRec::TABLE,
                index: i,
                why,
            };
            let f = self
                .functions
                .get(site.function)
                .ok_or(bad("function index out of range"))?;
            if SiteKind::from_u8(site.kind).is_none() || site.len == 0 {
                return Err(bad("unknown kind or empty site"));
            }
            let end = u64::from(site.offset) + u64::from(site.len);
            if end > u64::from(f.code_len) {
                return Err(bad("site lies outside its function"));
            }
            // Sorted and disjoint, so lookups can stop early.
            if let Some((pf, pend)) = previous {
                if site.function < pf || (site.function == pf && site.offset < pend) {
                    return Err(bad("sites out of order or overlapping"));
                }
            }
            previous = Some((site.function, end as u32));
        }
        Ok(())
    }

    /// The runtime-patched sites of a function record's code.
    pub fn sites_of(&self, function: u32) -> impl Iterator<Item = SiteRec> + 'a {
        self.sites.iter().filter(move |s| s.function == function)
    }

    fn blob_slice(&self, off: u32, len: u32) -> Option<&'a [u8]> {
        let start = off as usize;
        self.blob.get(start..start.checked_add(len as usize)?)
    }

    fn name(&self, off: u32, len: u16) -> Option<&'a str> {
        core::str::from_utf8(self.blob_slice(off, u32::from(len))?).ok()
    }

    /// The update id.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// `uname -r` of the kernel the update was built for.
    pub fn release(&self) -> &'a str {
        self.release
    }

    /// The GNU build id of that kernel's vmlinux (may be empty).
    pub fn build_id(&self) -> &'a [u8] {
        self.build_id
    }

    /// The name of symbol `index` ("?" if out of range).
    pub fn symbol_name(&self, index: u32) -> &'a str {
        self.symbols
            .get(index)
            .and_then(|s| self.name(s.name_off, s.name_len))
            .unwrap_or("?")
    }

    /// The object symbol `index` lives in: 0 for vmlinux, else 1 + an
    /// index into `objects` (see [`Self::object_name`]).
    pub fn symbol_object(&self, index: u32) -> u16 {
        self.symbols.get(index).map_or(0, |s| s.object)
    }

    /// The module name of object `object` (1-based), `None` for vmlinux
    /// (0) or out of range.
    pub fn object_name(&self, object: u32) -> Option<&'a str> {
        let o = self.objects.get(object.checked_sub(1)?)?;
        self.name(o.name_off, o.name_len)
    }

    /// The object function record `index`'s code lives in.
    pub fn function_object(&self, index: u32) -> u16 {
        self.functions
            .get(index)
            .map_or(0, |f| self.symbol_object(f.symbol))
    }

    /// The kind of symbol `index`.
    pub fn symbol_kind(&self, index: u32) -> Option<SymbolKind> {
        match self.symbols.get(index)?.kind {
            1 => Some(SymbolKind::Function),
            2 => Some(SymbolKind::Object),
            3 => Some(SymbolKind::Section),
            _ => None,
        }
    }

    /// The name of place `index` ("?" if out of range).
    pub fn place_name(&self, index: u32) -> &'a str {
        self.places
            .get(index)
            .and_then(|p| self.name(p.name_off, p.name_len))
            .unwrap_or("?")
    }

    /// The pre code of a function record.
    pub fn code(&self, function: &FunctionRec) -> &'a [u8] {
        self.blob_slice(function.code_off, function.code_len)
            .unwrap_or(&[])
    }

    /// The relocations of a function record, in offset order.
    pub fn relocs(&self, function: &FunctionRec) -> impl Iterator<Item = RelocRec> + 'a {
        let table = self.pre_relocs;
        (function.reloc_first..function.reloc_first.saturating_add(function.reloc_count))
            .filter_map(move |i| table.get(i))
    }
}

impl Table<'_, u8> {
    fn blob(payload: &[u8], offset: u32, len: u32) -> Result<&[u8], ParseError> {
        let start = offset as usize;
        let end = start
            .checked_add(len as usize)
            .ok_or(ParseError::BadTable("blob"))?;
        if start < HEADER_LEN {
            return Err(ParseError::BadTable("blob"));
        }
        payload.get(start..end).ok_or(ParseError::BadTable("blob"))
    }
}

/// The fixed header fields a writer supplies.
#[derive(Clone, Copy, Debug)]
pub struct HeaderFields<'a> {
    /// The update id.
    pub id: &'a str,
    /// Target kernel release.
    pub release: &'a str,
    /// Target vmlinux build id (at most [`BUILD_ID_MAX`] bytes).
    pub build_id: &'a [u8],
}

/// Encodes the header for tables of the given (offset, count) and total
/// size. Used by the writer and by tests; `None` if a field is too long.
pub fn encode_header(
    fields: &HeaderFields<'_>,
    tables: [(u32, u32); TABLES],
    total: u32,
) -> Option<[u8; HEADER_LEN]> {
    let mut h = [0u8; HEADER_LEN];
    put(&mut h, 0, &MAGIC)?;
    put(&mut h, 8, &VERSION.to_le_bytes())?;
    put(&mut h, 12, &(HEADER_LEN as u32).to_le_bytes())?;
    put(&mut h, 16, &total.to_le_bytes())?;
    if fields.id.len() > uapi::ID_MAX_LEN
        || fields.release.len() >= uapi::RELEASE_LEN
        || fields.build_id.len() > BUILD_ID_MAX
    {
        return None;
    }
    put(&mut h, 24, fields.id.as_bytes())?;
    put(&mut h, 56, fields.release.as_bytes())?;
    put(&mut h, 124, &(fields.build_id.len() as u32).to_le_bytes())?;
    put(&mut h, 128, fields.build_id)?;
    for (i, (off, count)) in tables.iter().enumerate() {
        put(&mut h, TABLES_AT + i * 8, &off.to_le_bytes())?;
        put(&mut h, TABLES_AT + i * 8 + 4, &count.to_le_bytes())?;
    }
    Some(h)
}

/// Number of tables in the header, in the order of the layout above.
pub const TABLE_COUNT: usize = TABLES;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use super::super::writer::Tables;

    /// Encodes `tables` under the header every test here uses.
    pub(crate) fn build(tables: &Tables, id: &str) -> Vec<u8> {
        let fields = HeaderFields {
            id,
            release: "7.3.4",
            build_id: &[0xab; 20],
        };
        tables.encode(&fields).unwrap()
    }

    /// A payload replacing `loadavg_proc_show`, whose pre code calls `seq_printf`.
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = Tables::default();
        let old = b
            .add_symbol("loadavg_proc_show", SymbolKind::Function, SYMBOL_LOCAL)
            .unwrap();
        let callee = b.add_symbol("seq_printf", SymbolKind::Function, 0).unwrap();
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0xc3];
        let f = b
            .add_function(old, &code, &[(5, callee, RelocKind::Plt32 as u8, -4)])
            .unwrap();
        let new = b
            .add_place("loadavg_proc_show", SymbolKind::Function, 64)
            .unwrap();
        b.replacements.push(ReplacementRec {
            function: f,
            place: new,
        });
        b.post_relocs.push(PostRelocRec {
            place: new,
            offset: 10,
            symbol: callee,
            kind: RelocKind::Plt32 as u8,
            addend: -4,
        });
        build(&b, "fix-loadavg")
    }

    #[test]
    fn a_written_payload_parses_back_field_for_field() {
        let bytes = sample();
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.id(), "fix-loadavg");
        assert_eq!(p.release(), "7.3.4");
        assert_eq!(p.build_id(), &[0xab; 20]);
        assert_eq!(p.symbols.len(), 2);
        assert_eq!(p.symbol_name(0), "loadavg_proc_show");
        assert_eq!(p.symbol_kind(1), Some(SymbolKind::Function));
        let f = p.functions.get(0).unwrap();
        assert_eq!(
            p.code(&f),
            &[0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0xc3]
        );
        let relocs: Vec<_> = p.relocs(&f).collect();
        assert_eq!(
            relocs,
            vec![RelocRec {
                offset: 5,
                symbol: 1,
                kind: 4,
                addend: -4
            }]
        );
        assert_eq!(p.place_name(0), "loadavg_proc_show");
        assert_eq!(
            p.replacements.iter().collect::<Vec<_>>(),
            vec![ReplacementRec {
                function: 0,
                place: 0
            }]
        );
        assert_eq!(p.post_relocs.get(0).unwrap().offset, 10);
        assert_eq!(p.post_relocs.get(1), None);
    }

    /// Encodes `r` and checks the bytes, then that they decode back to `r`.
    fn golden<T: Record + PartialEq + fmt::Debug>(r: T, bytes: &[u8]) {
        let mut out = vec![0u8; T::SIZE];
        r.write(&mut out).unwrap();
        assert_eq!(out, bytes, "{} encoding changed", T::TABLE);
        assert_eq!(T::read(bytes), Some(r));
    }

    #[test]
    fn every_record_keeps_its_wire_encoding() {
        golden(
            SymbolRec {
                name_off: 0x0403_0201,
                name_len: 0x0605,
                kind: 7,
                flags: 8,
                object: 0x0a09,
            },
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0],
        );
        golden(
            ObjectRec {
                name_off: 0x0403_0201,
                name_len: 0x0605,
            },
            &[1, 2, 3, 4, 5, 6, 0, 0],
        );
        golden(
            FunctionRec {
                symbol: 0x0403_0201,
                code_off: 0x0807_0605,
                code_len: 0x0c0b_0a09,
                reloc_first: 0x100f_0e0d,
                reloc_count: 0x1413_1211,
            },
            &(1..=20).collect::<Vec<u8>>(),
        );
        golden(
            RelocRec {
                offset: 0x0403_0201,
                symbol: 0x0807_0605,
                kind: 9,
                addend: -2,
            },
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff,
            ],
        );
        golden(
            PlaceRec {
                name_off: 0x0403_0201,
                name_len: 0x0605,
                kind: 7,
                flags: 8,
                size: 0x0c0b_0a09,
                object: 0x0e0d,
            },
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0, 0],
        );
        golden(
            ReplacementRec {
                function: 0x0403_0201,
                place: 0x0807_0605,
            },
            &(1..=8).collect::<Vec<u8>>(),
        );
        golden(
            PostRelocRec {
                place: 0x0403_0201,
                offset: 0x0807_0605,
                symbol: 0x0c0b_0a09,
                kind: 13,
                addend: 0x1817_1615_1413_1211,
            },
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0, 0x11, 0x12, 0x13, 0x14, 0x15,
                0x16, 0x17, 0x18,
            ],
        );
        golden(
            SiteRec {
                function: 0x0403_0201,
                offset: 0x0807_0605,
                len: 0x0a09,
                kind: 11,
            },
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0],
        );
    }

    #[test]
    fn string_literal_names_decode_and_bad_ones_are_refused() {
        let mut out = [0u8; 8];
        assert_eq!(string_literal("str:6b73706c", &mut out), Some(4));
        assert_eq!(&out[..4], b"kspl");
        assert_eq!(string_literal("str:", &mut out), Some(0));
        assert_eq!(string_literal("str:6", &mut out), None);
        assert_eq!(string_literal("str:zz", &mut out), None);
        assert_eq!(string_literal("seq_printf", &mut out), None);
        assert_eq!(
            string_literal("str:000102030405060708", &mut out),
            None,
            "too long for out"
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                Payload::parse(&bytes[..len]).is_err(),
                "truncated to {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn header_corruption_is_refused_with_a_reason() {
        let good = sample();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Payload::parse(&bad).unwrap_err(), ParseError::BadMagic);
        let mut bad = good.clone();
        bad[8] = 1;
        assert_eq!(
            Payload::parse(&bad).unwrap_err(),
            ParseError::UnsupportedVersion(1)
        );
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(
            Payload::parse(&bad),
            Err(ParseError::BadHeader(_))
        ));
        let mut bad = good.clone();
        bad[24] = b'/';
        assert!(matches!(
            Payload::parse(&bad),
            Err(ParseError::BadHeader(_))
        ));
        let mut bad = good.clone();
        bad[124] = 21;
        assert_eq!(
            Payload::parse(&bad).unwrap_err(),
            ParseError::BadHeader("build id length")
        );
    }

    #[test]
    fn huge_counts_and_offsets_are_refused() {
        let good = sample();
        for table in 0..TABLES {
            for (field, value) in [(0, u32::MAX), (4, u32::MAX), (4, 0x1000_0000), (0, 0)] {
                let mut bad = good.clone();
                let at = TABLES_AT + table * 8 + field;
                bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
                assert!(
                    Payload::parse(&bad).is_err(),
                    "table {table} field {field} = {value:#x} accepted"
                );
            }
        }
    }

    #[test]
    fn objects_must_be_distinct_module_names_and_symbols_must_name_one() {
        let parse = |modules: &[&str], object: u16| {
            let mut t = Tables::default();
            let s = t.add_symbol("f", SymbolKind::Function, 0).unwrap();
            t.symbols[s as usize].object = object;
            for m in modules {
                t.add_object(m).unwrap();
            }
            t.add_function(s, &[0xc3], &[]).unwrap();
            let bytes = build(&t, "objects");
            Payload::parse(&bytes).map(|p| {
                p.object_name(u32::from(p.function_object(0)))
                    .map(str::to_owned)
            })
        };
        assert_eq!(parse(&["ext2"], 1), Ok(Some("ext2".into())));
        assert_eq!(parse(&["ext2"], 0), Ok(None));
        for (modules, object, table) in [
            (&["ext2"][..], 2, "symbols"),
            (&["vmlinux"][..], 0, "objects"),
            (&["ext-2"][..], 0, "objects"),
            (&["ext2", "ext2"][..], 0, "objects"),
        ] {
            assert!(
                matches!(parse(modules, object), Err(ParseError::BadRecord { table: t, .. }) if t == table),
                "{modules:?} object {object}"
            );
        }
    }

    #[test]
    fn code_of_an_object_is_replaced_and_served_only_by_places_of_that_object() {
        // f lives in module m; its replacement is a place of `place_object`,
        // whose post relocation names a symbol of `symbol_object`.
        let parse = |place_object: u16, symbol_object: u16| {
            let mut t = Tables::default();
            t.add_object("m").unwrap();
            let f = t.add_symbol("f", SymbolKind::Function, 0).unwrap();
            t.symbols[f as usize].object = 1;
            let g = t.add_symbol("g", SymbolKind::Function, 0).unwrap();
            t.symbols[g as usize].object = symbol_object;
            t.add_function(f, &[0xc3], &[]).unwrap();
            let place = t.add_place("f", SymbolKind::Function, 8).unwrap();
            t.places[place as usize].object = place_object;
            t.replacements.push(ReplacementRec { function: 0, place });
            t.post_relocs.push(PostRelocRec {
                place,
                offset: 0,
                symbol: g,
                kind: RelocKind::Plt32 as u8,
                addend: -4,
            });
            let bytes = build(&t, "objects");
            Payload::parse(&bytes).map(|_| ())
        };
        assert_eq!(parse(1, 1), Ok(()));
        assert_eq!(parse(1, 0), Ok(()));
        assert!(matches!(
            parse(0, 0),
            Err(ParseError::BadRecord {
                table: "replacements",
                ..
            })
        ));
        let mut t = Tables::default();
        t.add_object("m").unwrap();
        let g = t.add_symbol("g", SymbolKind::Function, 0).unwrap();
        t.symbols[g as usize].object = 1;
        let place = t.add_place("h", SymbolKind::Function, 8).unwrap();
        t.post_relocs.push(PostRelocRec {
            place,
            offset: 0,
            symbol: g,
            kind: RelocKind::Plt32 as u8,
            addend: -4,
        });
        assert!(matches!(
            Payload::parse(&build(&t, "objects")),
            Err(ParseError::BadRecord {
                table: "post relocations",
                ..
            })
        ));
    }

    #[test]
    fn dangling_indexes_are_refused() {
        let mut b = Tables::default();
        let s = b.add_symbol("f", SymbolKind::Function, 0).unwrap();
        b.add_function(s, &[0xc3], &[]).unwrap();
        let place = b.add_place("f", SymbolKind::Function, 1).unwrap();
        b.replacements.push(ReplacementRec { function: 1, place });
        assert!(matches!(
            Payload::parse(&build(&b, "x")),
            Err(ParseError::BadRecord {
                table: "replacements",
                ..
            })
        ));

        b.replacements[0] = ReplacementRec {
            function: 0,
            place: 7,
        };
        assert!(matches!(
            Payload::parse(&build(&b, "x")),
            Err(ParseError::BadRecord {
                table: "replacements",
                ..
            })
        ));

        b.replacements[0] = ReplacementRec { function: 0, place };
        b.post_relocs.push(PostRelocRec {
            place,
            offset: 0,
            symbol: 0,
            kind: RelocKind::Pc32 as u8,
            addend: 0,
        });
        // A 4-byte field does not fit a 1-byte place.
        assert!(matches!(
            Payload::parse(&build(&b, "x")),
            Err(ParseError::BadRecord {
                table: "post relocations",
                ..
            })
        ));
    }

    #[test]
    fn relocations_outside_or_overlapping_their_function_are_refused() {
        let mut b = Tables::default();
        let s = b.add_symbol("f", SymbolKind::Function, 0).unwrap();
        b.add_function(
            s,
            &[0xe8, 0, 0, 0, 0],
            &[
                (1, s, RelocKind::Pc32 as u8, -4),
                (3, s, RelocKind::Pc32 as u8, -4),
            ],
        )
        .unwrap();
        assert!(matches!(
            Payload::parse(&build(&b, "x")),
            Err(ParseError::BadRecord {
                table: "relocations",
                ..
            })
        ));
        b.pre_relocs.truncate(1);
        b.functions[0].reloc_count = 1;
        b.pre_relocs[0].offset = 2;
        assert!(Payload::parse(&build(&b, "x")).is_err());
        b.pre_relocs[0].offset = 1;
        assert!(Payload::parse(&build(&b, "x")).is_ok());
        b.pre_relocs[0].kind = 3;
        assert!(
            Payload::parse(&build(&b, "x")).is_err(),
            "unknown relocation kind accepted"
        );
    }

    #[test]
    fn a_function_replaced_twice_is_refused() {
        let mut b = Tables::default();
        let s = b.add_symbol("f", SymbolKind::Function, 0).unwrap();
        b.add_function(s, &[0xc3], &[]).unwrap();
        let p = b.add_place("f", SymbolKind::Function, 1).unwrap();
        b.replacements.push(ReplacementRec {
            function: 0,
            place: p,
        });
        b.replacements.push(ReplacementRec {
            function: 0,
            place: p,
        });
        assert!(Payload::parse(&build(&b, "x")).is_err());
    }

    /// Bounded random mutation: no input makes the parser panic, and what it
    /// accepts is self-consistent. `KSPLICE_FUZZ_ITERS` runs it longer.
    #[test]
    fn parser_survives_random_mutations() {
        let iters: u64 = std::env::var("KSPLICE_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let seed = sample();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut accepted = 0u64;
        for _ in 0..iters {
            let mut input = seed.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % input.len();
                match next() % 4 {
                    0 => input[at] = next() as u8,
                    1 => input[at] ^= 1 << (next() % 8),
                    2 => input.truncate(at.max(1)),
                    _ => {
                        let word = [0u32, 1, 0xff, 0xffff_ffff, 0x8000_0000][(next() % 5) as usize];
                        let end = (at + 4).min(input.len());
                        let n = end - at;
                        input[at..end].copy_from_slice(&word.to_le_bytes()[..n]);
                    }
                }
            }
            if let Ok(p) = Payload::parse(&input) {
                accepted += 1;
                for f in p.functions.iter() {
                    let code = p.code(&f);
                    for r in p.relocs(&f) {
                        let kind = RelocKind::from_elf(u32::from(r.kind)).unwrap();
                        assert!(r.offset as usize + kind.width() <= code.len());
                        let _ = p.symbol_name(r.symbol);
                    }
                }
            }
        }
        eprintln!("payload fuzz: {iters} inputs, {accepted} accepted");
    }
}
