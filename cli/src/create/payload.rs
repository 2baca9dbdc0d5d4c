//! Writes the payload format defined in `ksplice_core::payload`.

use std::collections::HashMap;

use ksplice_core::payload::{
    encode_header, FunctionRec, HeaderFields, PlaceRec, PostRelocRec, Record, RelocRec,
    ReplacementRec, SiteKind, SiteRec, SymbolKind, SymbolRec, SYMBOL_LOCAL,
};

/// Collects records, deduplicating symbols, and encodes them.
#[derive(Default)]
pub struct PayloadWriter {
    symbols: Vec<SymbolRec>,
    symbol_index: HashMap<(Option<String>, String), u32>,
    functions: Vec<FunctionRec>,
    function_index: HashMap<u32, u32>,
    pre_relocs: Vec<RelocRec>,
    places: Vec<PlaceRec>,
    replacements: Vec<ReplacementRec>,
    post_relocs: Vec<PostRelocRec>,
    sites: Vec<SiteRec>,
    blob: Vec<u8>,
}

/// A symbol as the writer is told about it.
pub struct SymbolSpec<'a> {
    /// The object file it is local to, or `None` for a global.
    pub unit: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// Function, object or anonymous section.
    pub kind: SymbolKind,
}

impl PayloadWriter {
    fn add_name(&mut self, name: &str) -> (u32, u16) {
        let off = self.blob.len() as u32;
        self.blob.extend_from_slice(name.as_bytes());
        (off, name.len() as u16)
    }

    /// The index of a symbol, adding it on first use. Locals are distinct
    /// per unit: two files may each have a `static` helper of one name.
    pub fn symbol(&mut self, spec: &SymbolSpec<'_>) -> u32 {
        let key = (spec.unit.map(str::to_owned), spec.name.to_owned());
        if let Some(&i) = self.symbol_index.get(&key) {
            return i;
        }
        let (name_off, name_len) = self.add_name(spec.name);
        let flags = if spec.unit.is_some() { SYMBOL_LOCAL } else { 0 };
        self.symbols.push(SymbolRec {
            name_off,
            name_len,
            kind: spec.kind as u8,
            flags,
        });
        let index = self.symbols.len() as u32 - 1;
        self.symbol_index.insert(key, index);
        index
    }

    /// Whether the function of symbol `symbol` already has pre code.
    pub fn has_function(&self, symbol: u32) -> bool {
        self.function_index.contains_key(&symbol)
    }

    /// Adds the pre code of the function `symbol`; relocations are
    /// `(offset, symbol, r_type, addend)` in offset order.
    pub fn add_function(
        &mut self,
        symbol: u32,
        code: &[u8],
        relocs: &[(u32, u32, u8, i64)],
    ) -> u32 {
        if let Some(&i) = self.function_index.get(&symbol) {
            return i;
        }
        let code_off = self.blob.len() as u32;
        self.blob.extend_from_slice(code);
        let reloc_first = self.pre_relocs.len() as u32;
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
            code_len: code.len() as u32,
            reloc_first,
            reloc_count: relocs.len() as u32,
        });
        let index = self.functions.len() as u32 - 1;
        self.function_index.insert(symbol, index);
        index
    }

    /// Adds a place (a function or object update.ko carries); its index is
    /// its slot in `__ksplice_places`.
    pub fn add_place(&mut self, name: &str, kind: SymbolKind, size: u32) -> u32 {
        let (name_off, name_len) = self.add_name(name);
        self.places.push(PlaceRec {
            name_off,
            name_len,
            kind: kind as u8,
            flags: 0,
            size,
        });
        self.places.len() as u32 - 1
    }

    /// Number of places so far.
    pub fn place_count(&self) -> usize {
        self.places.len()
    }

    /// Redirects the function with pre code `function` to `place`.
    pub fn add_replacement(&mut self, function: u32, place: u32) {
        self.replacements.push(ReplacementRec { function, place });
    }

    /// A field of `place` the core must write.
    pub fn add_post_reloc(&mut self, place: u32, offset: u32, symbol: u32, kind: u8, addend: i64) {
        self.post_relocs.push(PostRelocRec {
            place,
            offset,
            symbol,
            kind,
            addend,
        });
    }

    /// A runtime-patched site of the pre code of `function`.
    pub fn add_site(&mut self, function: u32, offset: u32, len: u16, kind: SiteKind) {
        self.sites.push(SiteRec {
            function,
            offset,
            len,
            kind: kind as u8,
        });
    }

    /// Number of replacements.
    pub fn replacement_count(&self) -> usize {
        self.replacements.len()
    }

    /// Encodes everything; `None` if a header field does not fit.
    pub fn finish(mut self, header: &HeaderFields<'_>) -> Option<Vec<u8>> {
        self.replacements.sort_by_key(|r| r.function);
        // Nested alternatives share an offset: keep the outer (longest) site.
        self.sites
            .sort_by_key(|s| (s.function, s.offset, std::cmp::Reverse(s.len)));
        self.sites.dedup_by_key(|s| (s.function, s.offset));
        let mut out = vec![0u8; ksplice_core::payload::HEADER_LEN];
        let tables = [
            table(&mut out, &self.symbols),
            table(&mut out, &self.functions),
            table(&mut out, &self.pre_relocs),
            table(&mut out, &self.places),
            table(&mut out, &self.replacements),
            table(&mut out, &self.post_relocs),
            table(&mut out, &self.sites),
            {
                let at = out.len() as u32;
                out.extend_from_slice(&self.blob);
                (at, self.blob.len() as u32)
            },
        ];
        let total = u32::try_from(out.len()).ok()?;
        let encoded = encode_header(header, tables, total)?;
        out[..encoded.len()].copy_from_slice(&encoded);
        Some(out)
    }
}

fn table<T: Record>(out: &mut Vec<u8>, records: &[T]) -> (u32, u32) {
    let at = out.len() as u32;
    for r in records {
        let start = out.len();
        out.resize(start + T::SIZE, 0);
        // The slice has exactly T::SIZE bytes, so writing cannot fail.
        let _ = r.write(&mut out[start..]);
    }
    (at, records.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ksplice_core::payload::Payload;

    #[test]
    fn written_payload_is_accepted_by_the_shared_parser() {
        let mut w = PayloadWriter::default();
        let f = w.symbol(&SymbolSpec {
            unit: Some("fs/proc/loadavg.o"),
            name: "loadavg_proc_show",
            kind: SymbolKind::Function,
        });
        let again = w.symbol(&SymbolSpec {
            unit: Some("fs/proc/loadavg.o"),
            name: "loadavg_proc_show",
            kind: SymbolKind::Function,
        });
        let other_unit = w.symbol(&SymbolSpec {
            unit: Some("kernel/x.o"),
            name: "loadavg_proc_show",
            kind: SymbolKind::Function,
        });
        assert_eq!(f, again);
        assert_ne!(f, other_unit);
        let callee = w.symbol(&SymbolSpec {
            unit: None,
            name: "seq_printf",
            kind: SymbolKind::Function,
        });
        let func = w.add_function(f, &[0xe8, 0, 0, 0, 0, 0xc3], &[(1, callee, 4, -4)]);
        let place = w.add_place("loadavg_proc_show", SymbolKind::Function, 32);
        w.add_replacement(func, place);
        w.add_post_reloc(place, 10, callee, 4, -4);
        let bytes = w
            .finish(&HeaderFields {
                id: "abc",
                release: "7.3.4",
                build_id: &[1, 2, 3],
            })
            .unwrap();
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.id(), "abc");
        assert_eq!(p.symbols.len(), 3);
        assert_eq!(p.symbol_name(callee), "seq_printf");
        assert_eq!(p.replacements.len(), 1);
        assert_eq!(p.post_relocs.len(), 1);
    }
}
