//! Writes payloads: the one encoder of the format [`super::payload`]
//! parses, used by `ksplice-create` and by the core's own tests.
//!
//! [`Tables`] holds records in wire form and encodes them; its fields are
//! public so tests can also write payloads the parser must refuse.
//! [`PayloadWriter`] is what the tool uses: it names each symbol once,
//! stores each function's pre code once and orders the tables as the
//! parser requires. Only built with the `alloc` feature (and in tests):
//! `ksplice.ko` reads payloads and never includes this file.
#![forbid(unsafe_code)]

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::payload::{
    encode_header, is_module_name, FunctionRec, HeaderFields, ObjectRec, PlaceRec, PostRelocRec,
    Record, RelocRec, ReplacementRec, SiteKind, SiteRec, SymbolKind, SymbolRec, HEADER_LEN,
    NAME_MAX, SYMBOL_LOCAL, TABLE_COUNT,
};

/// Why a payload cannot be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// A symbol or place name is empty or longer than [`NAME_MAX`].
    BadName(String),
    /// Not a name a loadable module can have.
    BadModuleName(String),
    /// The payload would not fit the format's 32-bit offsets and counts.
    TooLarge,
    /// The update id, release or build id does not fit the header.
    HeaderField,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(name) => write!(
                f,
                "symbol name '{name}' is empty or longer than {NAME_MAX} bytes"
            ),
            Self::BadModuleName(name) => write!(f, "'{name}' is not a module name"),
            Self::TooLarge => f.write_str("the payload exceeds the format's 32-bit sizes"),
            Self::HeaderField => {
                f.write_str("the update id, kernel release or build id is too long")
            }
        }
    }
}

fn index(len: usize) -> Result<u32, WriteError> {
    u32::try_from(len).map_err(|_| WriteError::TooLarge)
}

/// The records of a payload and the blob their names and code live in.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// Every symbol a relocation or function names.
    pub symbols: Vec<SymbolRec>,
    /// Pre code, by function.
    pub functions: Vec<FunctionRec>,
    /// Relocations of the pre code, function by function.
    pub pre_relocs: Vec<RelocRec>,
    /// What update.ko's `__ksplice_places` table holds.
    pub places: Vec<PlaceRec>,
    /// Old function -> new place.
    pub replacements: Vec<ReplacementRec>,
    /// Fields of update.ko the core writes.
    pub post_relocs: Vec<PostRelocRec>,
    /// Runtime-patched sites of the pre code.
    pub sites: Vec<SiteRec>,
    /// The modules symbols live in.
    pub objects: Vec<ObjectRec>,
    /// Names and code, referenced by offset.
    pub blob: Vec<u8>,
}

impl Tables {
    /// Appends `bytes` to the blob; returns their offset.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<u32, WriteError> {
        let at = index(self.blob.len())?;
        index(self.blob.len().saturating_add(bytes.len()))?;
        self.blob.extend_from_slice(bytes);
        Ok(at)
    }

    /// Appends a name to the blob; returns its offset and length.
    pub fn add_name(&mut self, name: &str) -> Result<(u32, u16), WriteError> {
        let len = u16::try_from(name.len()).map_err(|_| WriteError::BadName(name.to_owned()))?;
        Ok((self.add_bytes(name.as_bytes())?, len))
    }

    /// Adds a symbol record; returns its index.
    pub fn add_symbol(
        &mut self,
        name: &str,
        kind: SymbolKind,
        flags: u8,
    ) -> Result<u32, WriteError> {
        let (name_off, name_len) = self.add_name(name)?;
        self.symbols.push(SymbolRec {
            name_off,
            name_len,
            kind: kind as u8,
            flags,
            object: 0,
        });
        index(self.symbols.len() - 1)
    }

    /// Adds a module to the objects table; returns its object number
    /// (1 + its index; 0 is vmlinux).
    pub fn add_object(&mut self, name: &str) -> Result<u16, WriteError> {
        let (name_off, name_len) = self.add_name(name)?;
        self.objects.push(ObjectRec { name_off, name_len });
        u16::try_from(self.objects.len()).map_err(|_| WriteError::TooLarge)
    }

    /// Adds the pre code of the function `symbol` with its relocations
    /// `(offset, symbol, ELF type, addend)`; returns its index.
    pub fn add_function(
        &mut self,
        symbol: u32,
        code: &[u8],
        relocs: &[(u32, u32, u8, i64)],
    ) -> Result<u32, WriteError> {
        let code_off = self.add_bytes(code)?;
        let reloc_first = index(self.pre_relocs.len())?;
        for &(offset, symbol, kind, addend) in relocs {
            self.pre_relocs.push(RelocRec {
                offset,
                symbol,
                kind,
                addend,
            });
        }
        self.functions.push(FunctionRec {
            symbol,
            code_off,
            code_len: index(code.len())?,
            reloc_first,
            reloc_count: index(relocs.len())?,
        });
        index(self.functions.len() - 1)
    }

    /// Adds a place of `size` bytes; returns its index, which is its slot
    /// in `__ksplice_places`.
    pub fn add_place(
        &mut self,
        name: &str,
        kind: SymbolKind,
        size: u32,
    ) -> Result<u32, WriteError> {
        let (name_off, name_len) = self.add_name(name)?;
        self.places.push(PlaceRec {
            name_off,
            name_len,
            kind: kind as u8,
            flags: 0,
            size,
            object: 0,
        });
        index(self.places.len() - 1)
    }

    /// Encodes the header, the tables in header order, then the blob.
    pub fn encode(&self, header: &HeaderFields<'_>) -> Result<Vec<u8>, WriteError> {
        let mut out = vec![0u8; HEADER_LEN];
        let tables: [(u32, u32); TABLE_COUNT] = [
            append(&mut out, &self.symbols)?,
            append(&mut out, &self.functions)?,
            append(&mut out, &self.pre_relocs)?,
            append(&mut out, &self.places)?,
            append(&mut out, &self.replacements)?,
            append(&mut out, &self.post_relocs)?,
            append(&mut out, &self.sites)?,
            append(&mut out, &self.objects)?,
            {
                let at = index(out.len())?;
                out.extend_from_slice(&self.blob);
                (at, index(self.blob.len())?)
            },
        ];
        let total = index(out.len())?;
        let encoded = encode_header(header, tables, total).ok_or(WriteError::HeaderField)?;
        out.get_mut(..HEADER_LEN)
            .ok_or(WriteError::TooLarge)?
            .copy_from_slice(&encoded);
        Ok(out)
    }
}

/// Appends `records`; returns the table's (offset, count).
fn append<T: Record>(out: &mut Vec<u8>, records: &[T]) -> Result<(u32, u32), WriteError> {
    let at = index(out.len())?;
    for r in records {
        let start = out.len();
        out.resize(start.saturating_add(T::SIZE), 0);
        out.get_mut(start..)
            .and_then(|slot| r.write(slot))
            .ok_or(WriteError::TooLarge)?;
    }
    index(out.len())?;
    Ok((at, index(records.len())?))
}

/// A symbol as `ksplice-create` names it.
#[derive(Clone, Copy, Debug)]
pub struct SymbolSpec<'a> {
    /// The object file it is local to, or `None` for a global.
    pub unit: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// Function, object or anonymous section.
    pub kind: SymbolKind,
    /// The loadable module it lives in, or `None` for vmlinux.
    pub module: Option<&'a str>,
}

/// Collects the records of one update and encodes them.
#[derive(Debug, Default)]
pub struct PayloadWriter {
    tables: Tables,
    symbol_index: BTreeMap<(Option<String>, Option<String>, String), u32>,
    object_index: BTreeMap<String, u16>,
    function_index: BTreeMap<u32, u32>,
}

impl PayloadWriter {
    /// The index of a symbol, adding it on first use. Locals are distinct
    /// per unit: two files may each have a `static` helper of one name,
    /// and globals per module.
    pub fn symbol(&mut self, spec: &SymbolSpec<'_>) -> Result<u32, WriteError> {
        let key = (
            spec.module.map(str::to_owned),
            spec.unit.map(str::to_owned),
            spec.name.to_owned(),
        );
        if let Some(&i) = self.symbol_index.get(&key) {
            return Ok(i);
        }
        if spec.name.is_empty() || spec.name.len() > NAME_MAX {
            return Err(WriteError::BadName(spec.name.to_owned()));
        }
        let object = match spec.module {
            None => 0,
            Some(m) => self.object(m)?,
        };
        let flags = if spec.unit.is_some() { SYMBOL_LOCAL } else { 0 };
        let i = self.tables.add_symbol(spec.name, spec.kind, flags)?;
        if let Some(rec) = self.tables.symbols.last_mut() {
            rec.object = object;
        }
        self.symbol_index.insert(key, i);
        Ok(i)
    }

    /// The object number of module `name`, adding it on first use.
    fn object(&mut self, name: &str) -> Result<u16, WriteError> {
        if let Some(&o) = self.object_index.get(name) {
            return Ok(o);
        }
        if !is_module_name(name) {
            return Err(WriteError::BadModuleName(name.to_owned()));
        }
        let o = self.tables.add_object(name)?;
        self.object_index.insert(name.to_owned(), o);
        Ok(o)
    }

    /// Whether the function of symbol `symbol` already has pre code.
    pub fn has_function(&self, symbol: u32) -> bool {
        self.function_index.contains_key(&symbol)
    }

    /// Adds the pre code of the function `symbol` (once; later calls
    /// return the first index). Relocations are `(offset, symbol, ELF
    /// type, addend)` in offset order.
    pub fn add_function(
        &mut self,
        symbol: u32,
        code: &[u8],
        relocs: &[(u32, u32, u8, i64)],
    ) -> Result<u32, WriteError> {
        if let Some(&i) = self.function_index.get(&symbol) {
            return Ok(i);
        }
        let i = self.tables.add_function(symbol, code, relocs)?;
        self.function_index.insert(symbol, i);
        Ok(i)
    }

    /// Number of functions with pre code so far.
    pub fn function_count(&self) -> usize {
        self.tables.functions.len()
    }

    /// Adds a place (a function or object update.ko carries for the code
    /// of `module`, or of vmlinux if `None`); its index is its slot in
    /// `__ksplice_places`.
    pub fn add_place(
        &mut self,
        name: &str,
        kind: SymbolKind,
        size: u32,
        module: Option<&str>,
    ) -> Result<u32, WriteError> {
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(WriteError::BadName(name.to_owned()));
        }
        let object = match module {
            None => 0,
            Some(m) => self.object(m)?,
        };
        let i = self.tables.add_place(name, kind, size)?;
        if let Some(rec) = self.tables.places.last_mut() {
            rec.object = object;
        }
        Ok(i)
    }

    /// Redirects the function with pre code `function` to `place`.
    pub fn add_replacement(&mut self, function: u32, place: u32) {
        self.tables
            .replacements
            .push(ReplacementRec { function, place });
    }

    /// Number of replacements.
    pub fn replacement_count(&self) -> usize {
        self.tables.replacements.len()
    }

    /// A field of `place` the core must write.
    pub fn add_post_reloc(&mut self, place: u32, offset: u32, symbol: u32, kind: u8, addend: i64) {
        self.tables.post_relocs.push(PostRelocRec {
            place,
            offset,
            symbol,
            kind,
            addend,
        });
    }

    /// A runtime-patched site of the pre code of `function`.
    pub fn add_site(&mut self, function: u32, offset: u32, len: u16, kind: SiteKind) {
        self.tables.sites.push(SiteRec {
            function,
            offset,
            len,
            kind: kind as u8,
        });
    }

    /// Orders the tables as the parser requires and encodes them.
    pub fn finish(mut self, header: &HeaderFields<'_>) -> Result<Vec<u8>, WriteError> {
        let t = &mut self.tables;
        t.replacements.sort_by_key(|r| r.function);
        // Nested alternatives share an offset: keep the outer (longest) site.
        t.sites
            .sort_by_key(|s| (s.function, s.offset, core::cmp::Reverse(s.len)));
        t.sites.dedup_by_key(|s| (s.function, s.offset));
        t.encode(header)
    }
}

#[cfg(test)]
mod tests {
    use super::super::payload::{ParseError, Payload};
    use super::*;

    const HEADER: HeaderFields<'static> = HeaderFields {
        id: "abc",
        release: "7.3.4",
        build_id: &[1, 2, 3],
    };

    fn spec<'a>(unit: Option<&'a str>, name: &'a str, kind: SymbolKind) -> SymbolSpec<'a> {
        SymbolSpec {
            unit,
            name,
            kind,
            module: None,
        }
    }

    #[test]
    fn symbols_of_modules_name_their_module_once_and_are_distinct_per_module() {
        let mut w = PayloadWriter::default();
        let in_module = |module| SymbolSpec {
            module,
            ..spec(None, "helper", SymbolKind::Function)
        };
        let a = w.symbol(&in_module(Some("ext2"))).unwrap();
        let b = w.symbol(&in_module(Some("loop"))).unwrap();
        let c = w.symbol(&in_module(None)).unwrap();
        assert_eq!(w.symbol(&in_module(Some("ext2"))).unwrap(), a);
        assert!(a != b && b != c && a != c);
        let f = w.add_function(a, &[0xc3], &[]).unwrap();
        let p = w
            .add_place("helper", SymbolKind::Function, 1, Some("ext2"))
            .unwrap();
        w.add_replacement(f, p);
        let bytes = w.finish(&HEADER).unwrap();
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.object_name(u32::from(p.symbol_object(a))), Some("ext2"));
        assert_eq!(p.object_name(u32::from(p.symbol_object(b))), Some("loop"));
        assert_eq!(p.symbol_object(c), 0);
        assert_eq!(p.object_name(0), None);
        assert_eq!(p.function_object(f), p.symbol_object(a));
        assert!(matches!(w_bad_module(), Err(WriteError::BadModuleName(_))));
    }

    fn w_bad_module() -> Result<u32, WriteError> {
        PayloadWriter::default().symbol(&SymbolSpec {
            module: Some("vmlinux"),
            ..spec(None, "f", SymbolKind::Function)
        })
    }

    #[test]
    fn a_written_payload_is_accepted_by_the_parser_and_names_each_symbol_once() {
        let mut w = PayloadWriter::default();
        let local = spec(
            Some("fs/proc/loadavg.o"),
            "loadavg_proc_show",
            SymbolKind::Function,
        );
        let f = w.symbol(&local).unwrap();
        assert_eq!(w.symbol(&local).unwrap(), f);
        let other_unit = spec(
            Some("kernel/x.o"),
            "loadavg_proc_show",
            SymbolKind::Function,
        );
        assert_ne!(w.symbol(&other_unit).unwrap(), f);
        let callee = w
            .symbol(&spec(None, "seq_printf", SymbolKind::Function))
            .unwrap();
        let code = [0xe8, 0, 0, 0, 0, 0xc3];
        let func = w.add_function(f, &code, &[(1, callee, 4, -4)]).unwrap();
        assert_eq!(
            w.add_function(f, &code, &[]).unwrap(),
            func,
            "pre code once"
        );
        let place = w
            .add_place("loadavg_proc_show", SymbolKind::Function, 32, None)
            .unwrap();
        w.add_replacement(func, place);
        w.add_post_reloc(place, 10, callee, 4, -4);
        let bytes = w.finish(&HEADER).unwrap();
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.id(), "abc");
        assert_eq!(p.symbols.len(), 3);
        assert_eq!(p.symbol_name(callee), "seq_printf");
        assert_eq!(p.symbols.get(f).unwrap().flags, SYMBOL_LOCAL);
        assert_eq!(p.symbols.get(callee).unwrap().flags, 0);
        assert_eq!(p.functions.len(), 1);
        assert_eq!(p.replacements.len(), 1);
        assert_eq!(p.post_relocs.len(), 1);
    }

    #[test]
    fn replacements_are_sorted_and_nested_sites_keep_the_outer_one() {
        let mut w = PayloadWriter::default();
        let mut functions = Vec::new();
        for name in ["a", "b"] {
            let s = w.symbol(&spec(None, name, SymbolKind::Function)).unwrap();
            functions.push(w.add_function(s, &[0x90; 16], &[]).unwrap());
        }
        let pa = w.add_place("a", SymbolKind::Function, 16, None).unwrap();
        let pb = w.add_place("b", SymbolKind::Function, 16, None).unwrap();
        w.add_replacement(functions[1], pb);
        w.add_replacement(functions[0], pa);
        w.add_site(functions[0], 4, 2, SiteKind::Alternative);
        w.add_site(functions[0], 4, 5, SiteKind::Alternative);
        w.add_site(functions[0], 0, 2, SiteKind::JumpLabel);
        let bytes = w.finish(&HEADER).unwrap();
        let p = Payload::parse(&bytes).unwrap();
        let order: Vec<u32> = p.replacements.iter().map(|r| r.function).collect();
        assert_eq!(order, [functions[0], functions[1]]);
        let sites: Vec<(u32, u16)> = p.sites.iter().map(|s| (s.offset, s.len)).collect();
        assert_eq!(sites, [(0, 2), (4, 5)]);
    }

    #[test]
    fn names_and_header_fields_that_do_not_fit_are_errors() {
        let mut w = PayloadWriter::default();
        let long = "x".repeat(NAME_MAX + 1);
        assert!(matches!(
            w.symbol(&spec(None, &long, SymbolKind::Function)),
            Err(WriteError::BadName(_))
        ));
        assert!(w.symbol(&spec(None, "", SymbolKind::Function)).is_err());
        assert!(w.add_place("", SymbolKind::Function, 1, None).is_err());
        let header = HeaderFields {
            id: "an-id-much-longer-than-thirty-one-characters",
            ..HEADER
        };
        assert_eq!(
            PayloadWriter::default().finish(&header),
            Err(WriteError::HeaderField)
        );
    }

    #[test]
    fn raw_tables_can_encode_what_the_parser_refuses() {
        let mut t = Tables::default();
        let s = t.add_symbol("f", SymbolKind::Function, 0).unwrap();
        t.add_function(s, &[0xc3], &[]).unwrap();
        t.replacements.push(ReplacementRec {
            function: 1,
            place: 0,
        });
        assert!(matches!(
            Payload::parse(&t.encode(&HEADER).unwrap()),
            Err(ParseError::BadRecord {
                table: "replacements",
                ..
            })
        ));
    }
}
