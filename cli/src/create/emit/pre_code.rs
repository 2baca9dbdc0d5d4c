//! The run-pre side of the payload: the pre code of every function
//! ksplice.ko must find in the running kernel (those replaced, and those
//! whose address the new code needs), with relocations named by what they
//! point at, and the runtime-patched sites of that code.

use std::collections::BTreeSet;

use ksplice_core::payload::{SymbolKind, NAME_MAX, STRING_PREFIX};
use ksplice_core::writer::{PayloadWriter, SymbolSpec};
use log::debug;

use super::super::objdiff::{self, Target};
use super::super::CreateError;
use super::resolve::KernelSymbols;
use super::{refuse, Unit};

/// Longest string literal whose text goes into the payload (as hex).
const STRING_MAX: usize = (NAME_MAX - STRING_PREFIX.len()) / 2;

/// The payload name of a string literal: its bytes in hex after
/// [`STRING_PREFIX`], so ksplice.ko compares the live string too. Longer
/// literals are matched as wildcards (one shared name).
pub fn string_symbol(text: &[u8]) -> String {
    if text.len() <= STRING_MAX {
        let hex: String = text.iter().map(|b| format!("{b:02x}")).collect();
        format!("{STRING_PREFIX}{hex}")
    } else {
        ".rodata.str".to_owned()
    }
}

/// Whether the pre code of a function `unit` replaces refers to the string
/// literal `text` (short enough to be named by content), so run-pre
/// matching will locate the running kernel's copy.
pub fn replaced_code_uses(unit: &Unit, text: &[u8]) -> bool {
    let target = Target::Str(text.to_vec());
    text.len() <= STRING_MAX
        && unit.diff.changed.keys().any(|f| {
            unit.pre.functions.get(f).is_some_and(|i| {
                !i.is_init_or_exit() && i.relocs.iter().any(|r| r.target == target)
            })
        })
}

/// Adds the pre code of one unit's functions to the payload.
pub struct RunPre<'a> {
    /// Where the records go.
    pub payload: &'a mut PayloadWriter,
    /// To name the kind of symbols defined elsewhere.
    pub kernel: &'a KernelSymbols,
    /// The unit whose pre object holds the functions.
    pub unit: &'a Unit,
}

impl RunPre<'_> {
    /// Adds the pre code of function `name` (once); returns its index.
    pub fn add_function(&mut self, name: &str) -> Result<u32, CreateError> {
        let unit = self.unit;
        let object = unit.object.as_str();
        let item = unit
            .pre
            .functions
            .get(name)
            .ok_or_else(|| refuse(object, format!("{name} has no pre code")))?;
        if item.is_init_or_exit() {
            return Err(refuse(
                object,
                format!("{name} is __init/__exit code, which is gone after boot"),
            ));
        }
        let module = unit.module.as_deref();
        let symbol = self.symbol(&SymbolSpec {
            unit: item.local.then_some(object),
            name,
            kind: SymbolKind::Function,
            module,
        })?;
        let mut relocs = Vec::new();
        for r in &item.relocs {
            let target = match &r.target {
                Target::Named(n) => {
                    let defined = unit
                        .pre
                        .functions
                        .get(n)
                        .map(|i| (i, SymbolKind::Function))
                        .or_else(|| unit.pre.objects.get(n).map(|i| (i, SymbolKind::Object)));
                    let (local, kind, home) = match defined {
                        Some((i, kind)) => (i.local, kind, unit.module.clone()),
                        None => {
                            let home = self.kernel.home_of(module, n);
                            let kind = self.kernel.kind_of(home.as_deref(), n);
                            (false, kind.unwrap_or(SymbolKind::Object), home)
                        }
                    };
                    self.symbol(&SymbolSpec {
                        unit: local.then_some(object),
                        name: n,
                        kind,
                        module: home.as_deref(),
                    })?
                }
                Target::Str(text) => self.symbol(&SymbolSpec {
                    unit: Some(object),
                    name: &string_symbol(text),
                    kind: SymbolKind::Section,
                    module,
                })?,
                Target::Section(s) => self.symbol(&SymbolSpec {
                    unit: Some(object),
                    name: s,
                    kind: SymbolKind::Section,
                    module,
                })?,
            };
            // A string symbol is the string's first byte: the addend is then
            // the PC adjustment alone.
            let addend = match &r.target {
                Target::Str(_) => -r.pc_adjust,
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
        Ok(index)
    }

    /// Makes sure ksplice.ko can locate each existing variable of the unit
    /// in `data` (pre names) that the new code references: it must appear
    /// at a relocation site of some matched function (`matched`), so the
    /// smallest function referencing it is matched too; failing that, its
    /// name must be unique in kallsyms.
    pub fn locate_data(
        &mut self,
        data: &BTreeSet<String>,
        matched: &BTreeSet<String>,
    ) -> Result<(), CreateError> {
        let unit = self.unit;
        for data_name in data {
            let target = Target::Named(data_name.clone());
            let references = |f: &objdiff::Item| f.relocs.iter().any(|r| r.target == target);
            let already = matched
                .iter()
                .chain(unit.diff.changed.keys())
                .any(|f| unit.pre.functions.get(f).is_some_and(references));
            if already {
                continue;
            }
            let referrer = unit
                .pre
                .functions
                .values()
                .filter(|f| !f.is_init_or_exit() && references(f))
                .min_by_key(|f| f.size);
            match referrer {
                Some(f) => {
                    debug!("{}: matching {} to locate {data_name}", unit.object, f.name);
                    self.add_function(&f.name)?;
                }
                // A global: ksplice.ko takes it from kallsyms by name.
                None if !unit.pre.objects.get(data_name).is_some_and(|o| o.local) => {}
                // A static whose name is unique in kallsyms.
                None if self.kernel.is_unique(unit.module.as_deref(), data_name) => {}
                None => {
                    return Err(refuse(
                        &unit.object,
                        format!(
                            "no function references static {data_name} and its name is not \
                             unique, so it cannot be located"
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    fn symbol(&mut self, spec: &SymbolSpec<'_>) -> Result<u32, CreateError> {
        self.payload.symbol(spec).map_err(CreateError::Payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_are_named_by_their_text_up_to_the_name_limit() {
        assert_eq!(string_symbol(b"kspl"), "str:6b73706c");
        assert_eq!(string_symbol(b""), "str:");
        let longest = vec![b'x'; STRING_MAX];
        assert!(string_symbol(&longest).len() <= NAME_MAX);
        assert_eq!(string_symbol(&vec![b'x'; STRING_MAX + 1]), ".rodata.str");
    }
}
