//! Compares the types two builds of one object use.
//!
//! Named types (`struct foo`, `union foo`, `enum foo`, `typedef foo_t`) are
//! matched by kind and name and compared definition against definition;
//! anonymous ones are compared structurally where they sit (an anonymous
//! union's members as members of the struct around it, an anonymous struct
//! behind a pointer by its whole description). Starting from the roots (the
//! subprograms of the replaced and new functions, and the variables they
//! and changed data name), every named type reachable through members,
//! pointers, arrays, typedefs, qualifiers and function types is compared,
//! and named after the root that reaches it; then every other named type
//! both builds define (code can use a type through a cast, which its DWARF
//! does not show).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::rc::Rc;

use gimli::constants;

use super::dwarf::{DieId, Dies};
use crate::create::objdiff::strip_static_suffix;
use crate::create::CreateError;

/// How deeply anonymous types may nest in one description.
const MAX_DEPTH: usize = 64;

/// What kind of named type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Struct,
    Union,
    Enum,
    Typedef,
}

/// A named type, as both builds know it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeKey {
    pub kind: Kind,
    pub name: String,
    /// The function a local type is declared in; empty at file scope.
    pub scope: String,
}

impl fmt::Display for TypeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Enum => "enum",
            Kind::Typedef => "typedef",
        };
        write!(f, "{kind} {}", self.name)?;
        if !self.scope.is_empty() {
            write!(f, " (local to {})", self.scope)?;
        }
        Ok(())
    }
}

/// A type reduced to text that is equal in both builds exactly when the
/// layouts agree (named types by name only), with the named types it
/// mentions.
struct Described {
    text: String,
    refs: Vec<TypeKey>,
}

/// One member of a struct or union, anonymous members flattened into it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    /// `a`, `s.a` for a member of the anonymous-typed member `s`, or
    /// `(struct bar)` for an unnamed member of a named type.
    name: String,
    bit_offset: u64,
    bit_size: Option<u64>,
    alignment: Option<u64>,
    ty: String,
}

impl Field {
    fn position(&self) -> String {
        position(self.bit_offset, self.bit_size)
    }

    fn typed(&self) -> String {
        match self.bit_size {
            Some(bits) => format!("{}:{bits}", self.ty),
            None => self.ty.clone(),
        }
    }

    fn same_slot(&self, other: &Field) -> bool {
        self.bit_offset == other.bit_offset
            && self.bit_size == other.bit_size
            && self.alignment == other.alignment
            && self.ty == other.ty
    }
}

fn position(bit_offset: u64, bit_size: Option<u64>) -> String {
    let (byte, bit) = (bit_offset / 8, bit_offset % 8);
    match bit_size {
        Some(1) => format!("offset {byte} bit {bit} (1 bit)"),
        Some(width) => format!("offset {byte} bit {bit} ({width} bits)"),
        None if bit == 0 => format!("offset {byte}"),
        None => format!("offset {byte} bit {bit}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Composite {
    union: bool,
    size: Option<u64>,
    alignment: Option<u64>,
    fields: Vec<Field>,
}

#[derive(Debug, PartialEq, Eq)]
struct Enumeration {
    size: Option<u64>,
    underlying: String,
    values: Vec<(String, i128)>,
}

/// The definition of a named type.
#[derive(Debug, PartialEq, Eq)]
enum Definition {
    Composite(Composite),
    Enum(Enumeration),
    /// A typedef of anything but an anonymous struct, union or enum.
    Alias(String),
}

/// The type information of one build of an object, indexed.
pub struct Types {
    dies: Dies,
    definitions: HashMap<TypeKey, DieId>,
    functions: HashMap<String, Vec<DieId>>,
    variables: HashMap<String, Vec<DieId>>,
    described: RefCell<HashMap<DieId, Rc<Described>>>,
}

/// Names the comparison starts from.
#[derive(Default)]
pub struct Roots {
    /// Functions whose pre code is replaced.
    pub pre_functions: Vec<String>,
    /// Functions whose post code goes into the update.
    pub post_functions: Vec<String>,
    /// Variables (globals, statics, per-CPU) that code or changed data of
    /// the update names: live data, so their own types are compared too.
    pub variables: Vec<String>,
    /// Data the update carries a copy of (changed read-only data, new
    /// data): only the types they reach are compared, as nothing live
    /// has their layout.
    pub copied: Vec<String>,
}

/// A layout difference, and which root reaches the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// E.g. `struct foo: member bar added at offset 48, size 48 -> 64`.
    pub text: String,
    /// What reaches the type: `used by f` for a function's code, `used
    /// by variable v`; `None` when the change is the root variable's own
    /// type.
    pub via: Option<String>,
}

/// The outcome for one object.
#[derive(Debug, Default)]
pub struct Findings {
    pub changes: Vec<Change>,
    /// Accepted differences: renamed members and enumerators.
    pub renames: Vec<String>,
    /// Named types compared (present in both builds).
    pub compared: usize,
    /// Roots without DWARF, for which every type was compared.
    pub unlocated: Vec<String>,
}

fn too_deep() -> CreateError {
    CreateError::Elf {
        path: "<DWARF>".into(),
        why: format!("anonymous types nest more than {MAX_DEPTH} deep"),
    }
}

impl Types {
    /// Reads and indexes the DWARF of the object file `data`.
    pub fn read(data: &[u8], path: &Path) -> Result<Self, CreateError> {
        let dies = Dies::read(data, path)?;
        if dies.units.is_empty() {
            // Never compare nothing with nothing and call it equal.
            return Err(CreateError::Elf {
                path: path.to_owned(),
                why: "no DWARF compile unit to read types from".into(),
            });
        }
        Ok(Self::index(dies))
    }

    fn index(dies: Dies) -> Self {
        let mut types = Types {
            definitions: HashMap::new(),
            functions: HashMap::new(),
            variables: HashMap::new(),
            described: RefCell::new(HashMap::new()),
            dies,
        };
        for id in 0..types.dies.entries.len() {
            let die = &types.dies.entries[id];
            match die.tag {
                constants::DW_TAG_subprogram => {
                    if let Some(name) = types.dies.name_of(id) {
                        types.functions.entry(name.to_owned()).or_default().push(id);
                    }
                }
                constants::DW_TAG_variable => {
                    let file_scope = die.parent.is_some_and(|p| {
                        types.dies.entries[p].tag == constants::DW_TAG_compile_unit
                    });
                    if file_scope || die.static_address {
                        if let Some(name) = types.dies.name_of(id) {
                            types.variables.entry(name.to_owned()).or_default().push(id);
                        }
                    }
                }
                _ => {
                    if let Some(key) = types.key(id) {
                        if !die.declaration {
                            types.definitions.entry(key).or_insert(id);
                        }
                    }
                }
            }
        }
        types
    }

    /// The key of a named struct, union, enum or typedef.
    fn key(&self, id: DieId) -> Option<TypeKey> {
        let die = &self.dies.entries[id];
        let kind = match die.tag {
            constants::DW_TAG_structure_type => Kind::Struct,
            constants::DW_TAG_union_type => Kind::Union,
            constants::DW_TAG_enumeration_type => Kind::Enum,
            constants::DW_TAG_typedef => Kind::Typedef,
            _ => return None,
        };
        let name = die.name.clone()?;
        let mut scope = String::new();
        let mut up = die.parent;
        while let Some(p) = up {
            if self.dies.entries[p].tag == constants::DW_TAG_subprogram {
                scope = self.dies.name_of(p).unwrap_or("?").to_owned();
                break;
            }
            up = self.dies.entries[p].parent;
        }
        Some(TypeKey { kind, name, scope })
    }

    fn is_anonymous_composite(&self, id: DieId) -> bool {
        let die = &self.dies.entries[id];
        die.name.is_none()
            && matches!(
                die.tag,
                constants::DW_TAG_structure_type | constants::DW_TAG_union_type
            )
    }

    /// The description of the type `ty` (`None`: void).
    fn describe(&self, ty: Option<DieId>, depth: usize) -> Result<Rc<Described>, CreateError> {
        let Some(id) = ty else {
            return Ok(Rc::new(Described {
                text: "void".into(),
                refs: Vec::new(),
            }));
        };
        if let Some(d) = self.described.borrow().get(&id) {
            return Ok(Rc::clone(d));
        }
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let d = Rc::new(self.describe_uncached(id, depth)?);
        self.described.borrow_mut().insert(id, Rc::clone(&d));
        Ok(d)
    }

    fn describe_uncached(&self, id: DieId, depth: usize) -> Result<Described, CreateError> {
        let die = &self.dies.entries[id];
        let mut refs = Vec::new();
        let inner = |refs: &mut Vec<TypeKey>| -> Result<String, CreateError> {
            let d = self.describe(die.ty, depth + 1)?;
            refs.extend(d.refs.iter().cloned());
            Ok(d.text.clone())
        };
        let text = if let Some(key) = self.key(id) {
            // A typedef reads as its name; tags keep their keyword.
            let text = match key.kind {
                Kind::Typedef => key.name.clone(),
                _ => key.to_string(),
            };
            refs.push(key);
            text
        } else {
            match die.tag {
                constants::DW_TAG_base_type | constants::DW_TAG_unspecified_type => die
                    .name
                    .clone()
                    .unwrap_or_else(|| "<unnamed base type>".into()),
                constants::DW_TAG_pointer_type => format!("{} *", inner(&mut refs)?),
                constants::DW_TAG_reference_type => format!("{} &", inner(&mut refs)?),
                // gcc writes a const array as const (array of const T).
                constants::DW_TAG_const_type => qualified("const", inner(&mut refs)?),
                constants::DW_TAG_volatile_type => qualified("volatile", inner(&mut refs)?),
                constants::DW_TAG_restrict_type => format!("restrict {}", inner(&mut refs)?),
                constants::DW_TAG_atomic_type => format!("_Atomic {}", inner(&mut refs)?),
                constants::DW_TAG_array_type => {
                    let mut text = inner(&mut refs)?;
                    for &child in &die.children {
                        let sub = &self.dies.entries[child];
                        if sub.tag == constants::DW_TAG_subrange_type {
                            match sub.count {
                                Some(n) => text.push_str(&format!("[{n}]")),
                                None => text.push_str("[]"),
                            }
                        }
                    }
                    text
                }
                constants::DW_TAG_subroutine_type => {
                    let ret = inner(&mut refs)?;
                    let mut params = Vec::new();
                    for &child in &die.children {
                        let p = &self.dies.entries[child];
                        match p.tag {
                            constants::DW_TAG_formal_parameter => {
                                let d = self.describe(p.ty, depth + 1)?;
                                refs.extend(d.refs.iter().cloned());
                                params.push(d.text.clone());
                            }
                            constants::DW_TAG_unspecified_parameters => params.push("...".into()),
                            _ => {}
                        }
                    }
                    format!("{ret} ({})", params.join(", "))
                }
                constants::DW_TAG_structure_type | constants::DW_TAG_union_type => {
                    let c = self.composite(id, depth + 1, &mut refs)?;
                    let fields: Vec<String> = c
                        .fields
                        .iter()
                        .map(|f| format!("{} {} at {}", f.typed(), f.name, f.position()))
                        .collect();
                    format!(
                        "{} {{ {} }} ({} bytes)",
                        if c.union { "union" } else { "struct" },
                        fields.join("; "),
                        c.size.map_or("?".into(), |s| s.to_string())
                    )
                }
                constants::DW_TAG_enumeration_type => {
                    let e = self.enumeration(id, depth + 1, &mut refs)?;
                    let values: Vec<String> =
                        e.values.iter().map(|(n, v)| format!("{n} = {v}")).collect();
                    format!(
                        "enum {{ {} }} ({} bytes)",
                        values.join(", "),
                        e.size.map_or("?".into(), |s| s.to_string())
                    )
                }
                other => format!("<{other}> {}", inner(&mut refs)?),
            }
        };
        Ok(Described { text, refs })
    }

    fn composite(
        &self,
        id: DieId,
        depth: usize,
        refs: &mut Vec<TypeKey>,
    ) -> Result<Composite, CreateError> {
        let die = &self.dies.entries[id];
        let mut fields = Vec::new();
        self.flatten(id, 0, "", depth, refs, &mut fields)?;
        Ok(Composite {
            union: die.tag == constants::DW_TAG_union_type,
            size: die.byte_size,
            alignment: die.alignment,
            fields,
        })
    }

    /// The members of the struct or union `id`, at `base_bits`, with the
    /// members of anonymous struct and union members among them.
    fn flatten(
        &self,
        id: DieId,
        base_bits: u64,
        prefix: &str,
        depth: usize,
        refs: &mut Vec<TypeKey>,
        out: &mut Vec<Field>,
    ) -> Result<(), CreateError> {
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        for &child in &self.dies.entries[id].children {
            let m = &self.dies.entries[child];
            if m.tag != constants::DW_TAG_member {
                continue;
            }
            let bit_offset = base_bits + self.member_bits(child);
            let ty = self.dies.type_of(child);
            let anonymous = ty.filter(|&t| self.is_anonymous_composite(t));
            match (&m.name, anonymous) {
                (None, Some(inner)) => {
                    self.flatten(inner, bit_offset, prefix, depth + 1, refs, out)?;
                }
                (Some(name), Some(inner)) => {
                    let inner_die = &self.dies.entries[inner];
                    let kind = if inner_die.tag == constants::DW_TAG_union_type {
                        "union"
                    } else {
                        "struct"
                    };
                    out.push(Field {
                        name: format!("{prefix}{name}"),
                        bit_offset,
                        bit_size: m.bit_size,
                        alignment: m.alignment,
                        ty: format!(
                            "anonymous {kind} of {} bytes",
                            inner_die.byte_size.map_or("?".into(), |s| s.to_string())
                        ),
                    });
                    let prefix = format!("{prefix}{name}.");
                    self.flatten(inner, bit_offset, &prefix, depth + 1, refs, out)?;
                }
                (name, _) => {
                    let d = self.describe(ty, depth + 1)?;
                    refs.extend(d.refs.iter().cloned());
                    out.push(Field {
                        name: match name {
                            Some(name) => format!("{prefix}{name}"),
                            None => format!("{prefix}({})", d.text),
                        },
                        bit_offset,
                        bit_size: m.bit_size,
                        alignment: m.alignment,
                        ty: d.text.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Offset of a member in bits from the start of its struct.
    fn member_bits(&self, id: DieId) -> u64 {
        let m = &self.dies.entries[id];
        if let Some(bits) = m.data_bit_offset {
            return bits;
        }
        let bytes = m.member_location.unwrap_or(0) * 8;
        // The storage unit: the member's own byte size, else its type's.
        let unit = m.byte_size.or_else(|| {
            self.dies
                .type_of(id)
                .and_then(|t| self.dies.entries[t].byte_size)
        });
        match (m.legacy_bit_offset, m.bit_size, unit) {
            (Some(from_msb), Some(width), Some(unit)) => {
                (bytes + unit * 8).saturating_sub(from_msb + width)
            }
            _ => bytes,
        }
    }

    fn enumeration(
        &self,
        id: DieId,
        depth: usize,
        refs: &mut Vec<TypeKey>,
    ) -> Result<Enumeration, CreateError> {
        let die = &self.dies.entries[id];
        let underlying = self.describe(die.ty, depth + 1)?;
        refs.extend(underlying.refs.iter().cloned());
        let encoding = die
            .encoding
            .or_else(|| die.ty.and_then(|t| self.dies.entries[t].encoding));
        let signed = matches!(
            encoding.map(gimli::DwAte),
            Some(constants::DW_ATE_signed | constants::DW_ATE_signed_char)
        );
        let values = die
            .children
            .iter()
            .map(|&c| &self.dies.entries[c])
            .filter(|e| e.tag == constants::DW_TAG_enumerator)
            .map(|e| {
                (
                    e.name.clone().unwrap_or_default(),
                    e.const_value.map_or(0, |v| v.value(signed)),
                )
            })
            .collect();
        Ok(Enumeration {
            size: die.byte_size,
            underlying: if die.ty.is_some() {
                underlying.text.clone()
            } else {
                String::new()
            },
            values,
        })
    }

    /// The definition of a named type, and the named types it mentions.
    fn definition(&self, key: &TypeKey) -> Result<Option<(Definition, Vec<TypeKey>)>, CreateError> {
        let Some(&id) = self.definitions.get(key) else {
            return Ok(None);
        };
        let mut refs = Vec::new();
        let mut target = id;
        if key.kind == Kind::Typedef {
            match self.dies.entries[id].ty {
                Some(t)
                    if self.dies.entries[t].name.is_none()
                        && matches!(
                            self.dies.entries[t].tag,
                            constants::DW_TAG_structure_type
                                | constants::DW_TAG_union_type
                                | constants::DW_TAG_enumeration_type
                        ) =>
                {
                    target = t;
                }
                ty => {
                    let d = self.describe(ty, 0)?;
                    return Ok(Some((Definition::Alias(d.text.clone()), d.refs.clone())));
                }
            }
        }
        let def = if self.dies.entries[target].tag == constants::DW_TAG_enumeration_type {
            Definition::Enum(self.enumeration(target, 0, &mut refs)?)
        } else {
            Definition::Composite(self.composite(target, 0, &mut refs)?)
        };
        Ok(Some((def, refs)))
    }

    /// The subprogram entries of a function symbol (`foo.isra.0` and
    /// `foo.cold` are parts of `foo`).
    fn function(&self, symbol: &str) -> Option<&[DieId]> {
        let base = symbol.split('.').next().unwrap_or(symbol);
        self.functions.get(base).map(Vec::as_slice)
    }

    /// The named types the code of the subprogram `root` uses: its
    /// return type, parameters, locals, lexical blocks and inlined
    /// subroutines, with their abstract origins.
    fn function_refs(&self, root: DieId, refs: &mut Vec<TypeKey>) -> Result<(), CreateError> {
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let die = &self.dies.entries[id];
            if die.ty.is_some() {
                refs.extend(self.describe(die.ty, 0)?.refs.iter().cloned());
            }
            stack.extend(die.origin);
            stack.extend(die.children.iter().copied());
        }
        Ok(())
    }

    /// The types of the variables called `symbol` (a static local's
    /// `count.3` is `count`), as descriptions.
    fn variable(&self, symbol: &str) -> Result<Vec<Rc<Described>>, CreateError> {
        let mut found = Vec::new();
        let name = strip_static_suffix(symbol);
        for &id in self.variables.get(name).map_or(&[][..], Vec::as_slice) {
            if let Some(ty) = self.dies.type_of(id) {
                let d = self.describe(Some(ty), 0)?;
                if !found.iter().any(|f: &Rc<Described>| f.text == d.text) {
                    found.push(d);
                }
            }
        }
        Ok(found)
    }
}

/// Named types to compare, each once, with what first reached it.
#[derive(Default)]
struct Worklist {
    queue: VecDeque<(TypeKey, Rc<str>)>,
    seen: HashSet<TypeKey>,
}

impl Worklist {
    fn push(&mut self, refs: impl IntoIterator<Item = TypeKey>, via: &Rc<str>) {
        for key in refs {
            if self.seen.insert(key.clone()) {
                self.queue.push_back((key, Rc::clone(via)));
            }
        }
    }
}

/// What reaches the types no root's DWARF leads to.
const UNREACHED: &str = "used by the object, not through the replaced code's DWARF (a cast, say)";

/// Compares the types of the two builds of one object: first what `roots`
/// reach, then every other named type both builds define. gcc emits only
/// types a unit uses, but a cast (`((struct foo *)p)->x`) leaves no trace
/// in the DWARF of the function that does it.
pub fn compare(pre: &Types, post: &Types, roots: &Roots) -> Result<Findings, CreateError> {
    let mut findings = Findings::default();
    let mut work = Worklist::default();
    for (types, functions) in [(pre, &roots.pre_functions), (post, &roots.post_functions)] {
        for function in functions {
            let via: Rc<str> = Rc::from(format!("used by {function}"));
            let mut refs = Vec::new();
            match types.function(function) {
                Some(dies) => {
                    for &die in dies {
                        types.function_refs(die, &mut refs)?;
                    }
                }
                None => {
                    // No DWARF for it: every type of the object may be its.
                    findings.unlocated.push(function.clone());
                    refs.extend(types.definitions.keys().cloned());
                    refs.sort();
                }
            }
            work.push(refs, &via);
        }
    }
    let variables = roots.variables.iter().map(|v| (v, true));
    for (variable, live) in variables.chain(roots.copied.iter().map(|v| (v, false))) {
        let via: Rc<str> = Rc::from(format!("used by variable {variable}"));
        let (before, after) = (pre.variable(variable)?, post.variable(variable)?);
        if let ([b], [a], true) = (before.as_slice(), after.as_slice(), live) {
            if b.text != a.text {
                findings.changes.push(Change {
                    text: format!(
                        "variable {}: type {} -> {}",
                        strip_static_suffix(variable),
                        b.text,
                        a.text
                    ),
                    via: None,
                });
            }
        }
        for d in before.iter().chain(&after) {
            work.push(d.refs.iter().cloned(), &via);
        }
    }
    compare_queued(pre, post, &mut work, &mut findings)?;

    let mut rest: Vec<TypeKey> = pre
        .definitions
        .keys()
        .filter(|k| post.definitions.contains_key(*k))
        .cloned()
        .collect();
    rest.sort();
    work.push(rest, &Rc::from(UNREACHED));
    compare_queued(pre, post, &mut work, &mut findings)?;
    Ok(findings)
}

fn compare_queued(
    pre: &Types,
    post: &Types,
    work: &mut Worklist,
    findings: &mut Findings,
) -> Result<(), CreateError> {
    while let Some((key, via)) = work.queue.pop_front() {
        let before = pre.definition(&key)?;
        let after = post.definition(&key)?;
        if let (Some((b, _)), Some((a, _))) = (&before, &after) {
            findings.compared += 1;
            let (changes, renames) = differences(b, a);
            if !changes.is_empty() {
                findings.changes.push(Change {
                    text: format!("{key}: {}", changes.join(", ")),
                    via: Some(via.to_string()),
                });
            }
            findings
                .renames
                .extend(renames.into_iter().map(|r| format!("{key}: {r}")));
        }
        for (_, refs) in before.into_iter().chain(after) {
            work.push(refs, &via);
        }
    }
    Ok(())
}

/// The differences between two definitions of one named type, as
/// (layout changes, accepted renames).
fn differences(before: &Definition, after: &Definition) -> (Vec<String>, Vec<String>) {
    match (before, after) {
        (Definition::Composite(b), Definition::Composite(a)) => composite_differences(b, a),
        (Definition::Enum(b), Definition::Enum(a)) => enum_differences(b, a),
        (Definition::Alias(b), Definition::Alias(a)) if b == a => (Vec::new(), Vec::new()),
        (Definition::Alias(b), Definition::Alias(a)) => {
            (vec![format!("type {b} -> {a}")], Vec::new())
        }
        _ => (vec!["now a different kind of type".into()], Vec::new()),
    }
}

/// How many members that only moved a layout change names.
const MOVES_SHOWN: usize = 3;

fn composite_differences(b: &Composite, a: &Composite) -> (Vec<String>, Vec<String>) {
    // (bit offset, text), sorted by where the change is.
    let mut changes: Vec<(u64, String)> = Vec::new();
    // Members that only moved: a member added near the start of a big
    // struct moves hundreds, and the first few say enough.
    let mut moved: Vec<(u64, String)> = Vec::new();
    let mut renames = Vec::new();
    let before: BTreeMap<&str, &Field> = b.fields.iter().map(|f| (f.name.as_str(), f)).collect();
    let after: BTreeMap<&str, &Field> = a.fields.iter().map(|f| (f.name.as_str(), f)).collect();
    for f in &a.fields {
        let Some(old) = before.get(f.name.as_str()) else {
            continue;
        };
        let mut what = Vec::new();
        if old.bit_offset != f.bit_offset {
            what.push(format!("moved from {} to {}", old.position(), f.position()));
        }
        if old.typed() != f.typed() {
            what.push(format!("type {} -> {}", old.typed(), f.typed()));
        }
        if old.alignment != f.alignment {
            what.push(format!(
                "alignment {} -> {}",
                show(old.alignment),
                show(f.alignment)
            ));
        }
        if what.len() == 1 && old.bit_offset != f.bit_offset {
            moved.push((
                f.bit_offset,
                format!("member {} {}", f.name, what.join(" and ")),
            ));
        } else if !what.is_empty() {
            changes.push((
                f.bit_offset,
                format!("member {} {}", f.name, what.join(" and ")),
            ));
        }
    }
    let mut removed: Vec<&Field> = b
        .fields
        .iter()
        .filter(|f| !after.contains_key(f.name.as_str()))
        .collect();
    for f in a
        .fields
        .iter()
        .filter(|f| !before.contains_key(f.name.as_str()))
    {
        if let Some(i) = removed.iter().position(|old| old.same_slot(f)) {
            let old = removed.remove(i);
            renames.push(format!(
                "member {} renamed to {} ({}, {})",
                old.name,
                f.name,
                f.position(),
                f.typed()
            ));
        } else {
            changes.push((
                f.bit_offset,
                format!("member {} added at {}", f.name, f.position()),
            ));
        }
    }
    for old in removed {
        changes.push((
            old.bit_offset,
            format!("member {} removed from {}", old.name, old.position()),
        ));
    }
    moved.sort_by_key(|c| c.0);
    let more_moved = moved.len().saturating_sub(MOVES_SHOWN);
    changes.extend(moved.into_iter().take(MOVES_SHOWN));
    changes.sort_by_key(|c| c.0);
    let mut changes: Vec<String> = changes.into_iter().map(|c| c.1).collect();
    if more_moved > 0 {
        changes.push(format!("{more_moved} more members moved"));
    }
    if b.union != a.union {
        changes.push(format!(
            "{} -> {}",
            if b.union { "union" } else { "struct" },
            if a.union { "union" } else { "struct" }
        ));
    }
    if b.size != a.size {
        changes.push(format!("size {} -> {}", show(b.size), show(a.size)));
    }
    if b.alignment != a.alignment {
        changes.push(format!(
            "alignment {} -> {}",
            show(b.alignment),
            show(a.alignment)
        ));
    }
    (changes, renames)
}

fn enum_differences(b: &Enumeration, a: &Enumeration) -> (Vec<String>, Vec<String>) {
    let mut changes = Vec::new();
    let mut renames = Vec::new();
    let before: BTreeMap<&str, i128> = b.values.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let after: BTreeMap<&str, i128> = a.values.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    for (name, value) in &a.values {
        if let Some(&old) = before.get(name.as_str()) {
            if old != *value {
                changes.push(format!("enumerator {name} value {old} -> {value}"));
            }
        }
    }
    let mut removed: Vec<&(String, i128)> = b
        .values
        .iter()
        .filter(|(n, _)| !after.contains_key(n.as_str()))
        .collect();
    for (name, value) in a
        .values
        .iter()
        .filter(|(n, _)| !before.contains_key(n.as_str()))
    {
        if let Some(i) = removed.iter().position(|(_, v)| v == value) {
            let (old, _) = removed.remove(i);
            renames.push(format!("enumerator {old} renamed to {name} (= {value})"));
        } else {
            changes.push(format!("enumerator {name} = {value} added"));
        }
    }
    for (name, value) in removed {
        changes.push(format!("enumerator {name} = {value} removed"));
    }
    if b.underlying != a.underlying {
        changes.push(format!(
            "underlying type {} -> {}",
            b.underlying, a.underlying
        ));
    }
    if b.size != a.size {
        changes.push(format!("size {} -> {}", show(b.size), show(a.size)));
    }
    (changes, renames)
}

fn qualified(qualifier: &str, ty: String) -> String {
    if ty.starts_with(qualifier) && ty[qualifier.len()..].starts_with(' ') {
        ty
    } else {
        format!("{qualifier} {ty}")
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unset".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    //! Each test compiles two versions of a small C file with the host C
    //! compiler and compares them as ksplice-create would.

    use super::*;

    fn types_of(source: &str, flags: &[&str]) -> Types {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("t.c");
        let o = dir.path().join("t.o");
        std::fs::write(&c, source).unwrap();
        let out = std::process::Command::new("cc")
            .args(["-O2", "-c", "-o"])
            .arg(&o)
            .args(flags)
            .arg(&c)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Types::read(&std::fs::read(&o).unwrap(), &o).unwrap()
    }

    fn compare_sources(pre: &str, post: &str, functions: &[&str], variables: &[&str]) -> Findings {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let roots = Roots {
            pre_functions: names(functions),
            post_functions: names(functions),
            variables: names(variables),
            copied: Vec::new(),
        };
        let pre = types_of(pre, &["-g"]);
        let post = types_of(post, &["-g"]);
        compare(&pre, &post, &roots).unwrap()
    }

    fn texts(f: &Findings) -> Vec<&str> {
        f.changes.iter().map(|c| c.text.as_str()).collect()
    }

    const READER: &str = "long get(struct foo *p) { return p->a; }\n";

    #[test]
    fn a_member_added_at_the_end_is_a_change_with_its_offset_and_the_new_size() {
        let f = compare_sources(
            &format!("struct foo {{ long a; long b; }};\n{READER}"),
            &format!("struct foo {{ long a; long b; long bar; }};\n{READER}"),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct foo: member bar added at offset 16, size 16 -> 24"]
        );
        assert_eq!(f.changes[0].via.as_deref(), Some("used by get"));
    }

    #[test]
    fn a_member_added_at_the_start_of_a_big_struct_names_the_first_moves_only() {
        let f = compare_sources(
            &format!("struct foo {{ long a; int b; int c; int d; int e; int g; }};\n{READER}"),
            &format!(
                "struct foo {{ long x; long a; int b; int c; int d; int e; int g; }};\n{READER}"
            ),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct foo: member x added at offset 0, member a moved from offset 0 to offset 8, \
              member b moved from offset 8 to offset 16, member c moved from offset 12 to offset 20, \
              3 more members moved, size 32 -> 40"]
        );
    }

    #[test]
    fn a_member_added_in_the_middle_moves_the_ones_after_it() {
        let f = compare_sources(
            &format!("struct foo {{ long a; int b; int c; }};\n{READER}"),
            &format!("struct foo {{ long a; long lock; int b; int c; }};\n{READER}"),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct foo: member lock added at offset 8, member b moved from offset 8 to offset 16, \
              member c moved from offset 12 to offset 20, size 16 -> 24"]
        );
    }

    #[test]
    fn bitfields_turned_into_bools_change_type_and_position() {
        let f = compare_sources(
            &format!("struct foo {{ long a; unsigned int x:1, y:1; }};\n{READER}"),
            &format!("struct foo {{ long a; _Bool x; _Bool y; }};\n{READER}"),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct foo: member x type unsigned int:1 -> _Bool, \
              member y moved from offset 8 bit 1 (1 bit) to offset 9 and type unsigned int:1 -> _Bool"]
        );
    }

    #[test]
    fn a_changed_enumerator_value_is_a_change() {
        let f = compare_sources(
            "enum mode { OFF, ON, AUTO };\nint is_on(enum mode m) { return m == ON; }\n",
            "enum mode { OFF, AUTO, ON };\nint is_on(enum mode m) { return m == ON; }\n",
            &["is_on"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["enum mode: enumerator AUTO value 2 -> 1, enumerator ON value 1 -> 2"]
        );
    }

    #[test]
    fn a_widened_global_variable_is_a_change() {
        let f = compare_sources(
            "int counter;\nvoid bump(void) { counter++; }\n",
            "long counter;\nvoid bump(void) { counter++; }\n",
            &["bump"],
            &["counter"],
        );
        assert_eq!(texts(&f), ["variable counter: type int -> long int"]);
    }

    #[test]
    fn a_copied_read_only_table_may_change_its_own_type_but_not_the_types_it_reaches() {
        let pre = "struct ops { int (*f)(void); };\nstatic int f(void) { return 1; }\n\
                   const struct ops table[1] = { { f } };\n";
        let post = "struct ops { long tag; int (*f)(void); };\nstatic int f(void) { return 1; }\n\
                    const struct ops table[2] = { { 0, f }, { 1, f } };\n";
        let (pre, post) = (types_of(pre, &["-g"]), types_of(post, &["-g"]));
        let roots = |variables: Vec<String>, copied: Vec<String>| Roots {
            variables,
            copied,
            ..Roots::default()
        };
        let copied = compare(&pre, &post, &roots(Vec::new(), vec!["table".into()])).unwrap();
        assert_eq!(
            texts(&copied),
            [
                "struct ops: member tag added at offset 0, member f moved from offset 0 to \
              offset 8, size 8 -> 16"
            ]
        );
        let live = compare(&pre, &post, &roots(vec!["table".into()], Vec::new())).unwrap();
        assert_eq!(
            texts(&live)[0],
            "variable table: type const struct ops[1] -> const struct ops[2]"
        );
    }

    #[test]
    fn a_member_renamed_in_place_is_accepted_and_reported() {
        let f = compare_sources(
            &format!("struct foo {{ long a; int old_name; }};\n{READER}"),
            &format!("struct foo {{ long a; int new_name; }};\n{READER}"),
            &["get"],
            &[],
        );
        assert!(f.changes.is_empty(), "{:?}", f.changes);
        assert_eq!(
            f.renames,
            ["struct foo: member old_name renamed to new_name (offset 8, int)"]
        );
    }

    #[test]
    fn a_type_reached_only_through_pointer_members_is_named_after_the_function() {
        // get() has no local of type struct priv *: it reads d->p->x.
        let code = "int get(struct dev *d) { return d->p->x; }\n";
        let f = compare_sources(
            &format!("struct priv {{ int x; }};\nstruct dev {{ struct priv *p; }};\n{code}"),
            &format!(
                "struct priv {{ int lock; int x; }};\nstruct dev {{ struct priv *p; }};\n{code}"
            ),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct priv: member lock added at offset 0, member x moved from offset 0 to offset 4, \
              size 4 -> 8"]
        );
        assert_eq!(f.changes[0].via.as_deref(), Some("used by get"));
    }

    #[test]
    fn members_of_an_anonymous_union_are_compared_as_members_of_their_struct() {
        let f = compare_sources(
            "struct foo { int kind; union { int i; long l; }; };\n\
             long get(struct foo *p) { return p->l; }\n",
            "struct foo { int kind; union { int i; long l; char name[16]; }; };\n\
             long get(struct foo *p) { return p->l; }\n",
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["struct foo: member name added at offset 8, size 16 -> 24"]
        );
    }

    #[test]
    fn a_nested_struct_member_is_compared_by_its_path() {
        let f = compare_sources(
            "struct foo { struct { int a; int b; } s; };\n\
             int get(struct foo *p) { return p->s.b; }\n",
            "struct foo { struct { int a; short c; int b; } s; };\n\
             int get(struct foo *p) { return p->s.b; }\n",
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            [
                "struct foo: member s type anonymous struct of 8 bytes -> anonymous struct of \
              12 bytes, member s.c added at offset 4, member s.b moved from offset 4 to offset 8, \
              size 8 -> 12"
            ]
        );
    }

    #[test]
    fn a_struct_behind_a_typedef_chain_is_compared_under_its_typedef() {
        let f = compare_sources(
            "typedef struct { int a; } base_t;\ntypedef base_t mid_t;\n\
             int get(mid_t *m) { return m->a; }\n",
            "typedef struct { int a; int b; } base_t;\ntypedef base_t mid_t;\n\
             int get(mid_t *m) { return m->a; }\n",
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            ["typedef base_t: member b added at offset 4, size 4 -> 8"]
        );
    }

    #[test]
    fn a_type_only_the_patched_build_has_is_not_a_change() {
        let f = compare_sources(
            "int get(int *p) { return *p; }\n",
            "struct brand_new { int q; };\n\
             int get(int *p) { struct brand_new n = { *p }; return n.q; }\n",
            &["get"],
            &[],
        );
        assert!(f.changes.is_empty(), "{:?}", f.changes);
    }

    #[test]
    fn a_type_used_only_through_a_cast_is_compared_all_the_same() {
        // get() has no DWARF entry that leads to struct foo.
        let code = "long get(void *v) { return ((struct foo *)v)->b; }\n";
        let f = compare_sources(
            &format!("struct foo {{ long a; long b; }};\n{code}"),
            &format!("struct foo {{ long a; long lock; long b; }};\n{code}"),
            &["get"],
            &[],
        );
        assert_eq!(
            texts(&f),
            [
                "struct foo: member lock added at offset 8, member b moved from offset 8 to \
              offset 16, size 16 -> 24"
            ]
        );
        assert_eq!(f.changes[0].via.as_deref(), Some(UNREACHED));
    }

    #[test]
    fn a_function_without_dwarf_is_taken_to_use_every_type_of_its_object() {
        let f = compare_sources(
            "struct unrelated { int z; };\nint other(struct unrelated *u) { return u->z; }\n",
            "struct unrelated { long y; int z; };\nint other(struct unrelated *u) { return u->z; }\n",
            &["not_in_dwarf"],
            &[],
        );
        assert_eq!(f.unlocated, ["not_in_dwarf", "not_in_dwarf"]);
        assert_eq!(f.changes.len(), 1, "{:?}", f.changes);
        assert_eq!(f.changes[0].via.as_deref(), Some("used by not_in_dwarf"));
    }

    #[test]
    fn names_in_32_bit_objects_with_rel_relocations_are_read_right() {
        // REL relocations keep the string offsets in .debug_info itself.
        let roots = Roots {
            pre_functions: vec!["get".into()],
            post_functions: vec!["get".into()],
            ..Roots::default()
        };
        let pre = types_of(
            &format!("struct foo {{ long a; long b; }};\n{READER}"),
            &["-g", "-m32"],
        );
        let post = types_of(
            &format!("struct foo {{ long a; long b; long bar; }};\n{READER}"),
            &["-g", "-m32"],
        );
        let f = compare(&pre, &post, &roots).unwrap();
        assert_eq!(
            texts(&f),
            ["struct foo: member bar added at offset 8, size 8 -> 12"]
        );
    }

    #[test]
    fn dwarf2_4_and_5_member_encodings_give_the_same_positions() {
        let src = "struct foo { char c; unsigned int x:3, y:7; unsigned long z:40; };\n\
                   int get(struct foo *p) { return p->y + p->z; }\n";
        let roots = Roots {
            pre_functions: vec!["get".into()],
            post_functions: vec!["get".into()],
            ..Roots::default()
        };
        let v5 = types_of(src, &["-gdwarf-5"]);
        // DWARF 4: DW_AT_bit_offset from the top; DWARF 2: offsets as
        // DW_OP_plus_uconst expressions.
        for older in ["-gdwarf-4", "-gdwarf-2"] {
            let f = compare(&types_of(src, &[older]), &v5, &roots).unwrap();
            assert!(f.changes.is_empty(), "{older}: {:?}", f.changes);
            assert_eq!(f.compared, 1);
        }
    }
}
