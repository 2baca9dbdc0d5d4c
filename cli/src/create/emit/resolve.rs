//! Where a reference of the update leads: the policy that decides, for
//! each symbol a carried function, datum or special-section entry names
//! and the update does not carry, whether the module loader resolves it
//! (an export) or ksplice.ko locates it in the running kernel, and how.
//!
//! Pure: it reads the unit's objects and the kernel's symbol lists, and
//! writes nothing, so it is tested on in-memory symbol maps.

use std::collections::HashMap;

use ksplice_core::payload::SymbolKind;

use super::Unit;

/// What the running kernel offers a reference: its exports and symbols.
pub struct KernelSymbols {
    /// Exported vmlinux symbols and their namespaces (`Module.symvers`).
    exports: HashMap<String, String>,
    /// `System.map`: the type letter of each definition of a name.
    system_map: HashMap<String, Vec<char>>,
    /// `CONFIG_LIVEPATCH`: the loader applies `.klp.rela` relocations.
    livepatch: bool,
    /// Symbols loadable modules export: name -> module.
    module_exports: HashMap<String, String>,
    /// The symbol table (name -> type letters) of each module the update
    /// patches, from its built `.ko`.
    module_maps: HashMap<String, HashMap<String, Vec<char>>>,
}

/// An existing kernel symbol, as the payload names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// The loadable module it lives in, or `None` for vmlinux.
    pub module: Option<String>,
    /// The object file it is local to, or `None` for a global.
    pub unit: Option<String>,
    /// Its name in the running kernel (a static local's pre-side name).
    pub name: String,
    /// Function or variable.
    pub kind: SymbolKind,
    /// How ksplice.ko learns its address.
    pub locate: Locate,
}

/// How ksplice.ko learns the address of an [`Existing`] symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locate {
    /// A function of the unit: run-pre matches its pre code.
    MatchFunction,
    /// A variable of the unit: inferred at a relocation site of matched
    /// pre code (or from kallsyms where its name is unique).
    UnitData,
    /// Another file's symbol: from kallsyms, or inferred where matched
    /// pre code refers to it.
    ByName,
}

/// Where a reference to a symbol the update does not carry leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// An export: left undefined for the module loader; `namespace` (if
    /// not empty) must be imported.
    Export {
        /// `EXPORT_SYMBOL_NS` namespace, or empty.
        namespace: String,
    },
    /// Not exported: ksplice.ko writes the field after run-pre matching
    /// (or, in entries the loader consumes, a livepatch relocation).
    Existing(Existing),
}

impl KernelSymbols {
    /// The kernel's exports (name -> namespace), `System.map` (name ->
    /// type letters) and whether it has `CONFIG_LIVEPATCH`.
    pub fn new(
        exports: HashMap<String, String>,
        system_map: HashMap<String, Vec<char>>,
        livepatch: bool,
    ) -> Self {
        Self {
            exports,
            system_map,
            livepatch,
            module_exports: HashMap::new(),
            module_maps: HashMap::new(),
        }
    }

    /// Adds what loadable modules export (name -> module) and the symbol
    /// tables of the modules the update patches.
    pub fn with_modules(
        mut self,
        module_exports: HashMap<String, String>,
        module_maps: HashMap<String, HashMap<String, Vec<char>>>,
    ) -> Self {
        self.module_exports = module_exports;
        self.module_maps = module_maps;
        self
    }

    /// `System.map` for vmlinux, the `.ko`'s symbol table for a module.
    fn map_of(&self, module: Option<&str>) -> Option<&HashMap<String, Vec<char>>> {
        match module {
            None => Some(&self.system_map),
            Some(m) => self.module_maps.get(m),
        }
    }

    /// Function or variable, from the type letters of `name` in `module`
    /// (vmlinux if `None`).
    pub fn kind_of(&self, module: Option<&str>, name: &str) -> Option<SymbolKind> {
        let letters = self.map_of(module)?.get(name)?;
        Some(
            if letters.iter().any(|c| matches!(c, 'T' | 't' | 'W' | 'w')) {
                SymbolKind::Function
            } else {
                SymbolKind::Object
            },
        )
    }

    /// Whether exactly one symbol of `module` (vmlinux if `None`) has
    /// this name.
    pub fn is_unique(&self, module: Option<&str>, name: &str) -> bool {
        self.map_of(module)
            .and_then(|m| m.get(name))
            .is_some_and(|t| t.len() == 1)
    }

    /// Where a global that code of `module` (vmlinux if `None`) refers to
    /// but does not define lives: module code reaches vmlinux through its
    /// exports, another module through that module's exports, and else
    /// its own module's other files.
    pub fn home_of(&self, module: Option<&str>, name: &str) -> Option<String> {
        let module = module?;
        if self.exports.contains_key(name) {
            return None;
        }
        Some(
            self.module_exports
                .get(name)
                .cloned()
                .unwrap_or_else(|| module.to_owned()),
        )
    }

    /// The namespace of an export this module may import. Exports reserved
    /// for named modules (`module:kvm`) are not ours to import.
    pub fn export_namespace(&self, name: &str) -> Option<&str> {
        self.exports
            .get(name)
            .map(String::as_str)
            .filter(|ns| !ns.starts_with("module:"))
    }

    /// Where a reference from `unit`'s carried code to `name`, which the
    /// update does not carry, leads; `Err` says why it cannot be made.
    pub fn resolve(&self, unit: &Unit, name: &str) -> Result<Binding, String> {
        let local_to = |local: bool| local.then(|| unit.object.clone());
        let module = unit.module.clone();
        // Defined in this file but not carried: existing code or data. A
        // weak function is not: the kernel may run another file's
        // definition (Debian's x86 arch_proc_pid_thread_features overrides
        // fs/proc/array.c's empty one), so it is found by name.
        if let Some(item) = unit.post.functions.get(name).filter(|i| !i.weak) {
            if item.is_init_or_exit() {
                return Err(format!(
                    "new code references __init/__exit function {name}, which is gone after boot"
                ));
            }
            return Ok(Binding::Existing(Existing {
                module,
                unit: local_to(item.local),
                name: name.to_owned(),
                kind: SymbolKind::Function,
                locate: Locate::MatchFunction,
            }));
        }
        if let Some(item) = unit.post.objects.get(name) {
            if item.is_init_or_exit() {
                return Err(format!(
                    "new code references __init/__exit data {name}, which is gone after boot"
                ));
            }
            let pre_name = unit
                .diff
                .pre_names
                .get(name)
                .ok_or_else(|| format!("cannot tell which existing variable {name} is"))?;
            return Ok(Binding::Existing(Existing {
                module,
                unit: local_to(item.local),
                name: pre_name.to_owned(),
                kind: SymbolKind::Object,
                locate: Locate::UnitData,
            }));
        }
        // Undefined here: another file's global. A module's code may have
        // to run before (or without) the module the symbol lives in is
        // loaded, so only vmlinux exports are left to the module loader.
        if let Some(namespace) = self.export_namespace(name) {
            return Ok(Binding::Export {
                namespace: namespace.to_owned(),
            });
        }
        let home = self.home_of(module.as_deref(), name);
        let kind = match &home {
            None => self
                .kind_of(None, name)
                .ok_or_else(|| format!("{name} is neither exported nor in System.map"))?,
            Some(m) => self.kind_of(Some(m), name).ok_or_else(|| {
                format!("{name} is neither exported by vmlinux nor a symbol of module {m}")
            })?,
        };
        Ok(Binding::Existing(Existing {
            module: home,
            unit: None,
            name: name.to_owned(),
            kind,
            locate: Locate::ByName,
        }))
    }

    /// Whether the module loader itself can resolve `existing` for an
    /// entry it consumes at load time (jump labels, ...), before ksplice.ko
    /// could write anything: through a livepatch relocation, which needs
    /// `CONFIG_LIVEPATCH` and a name the kernel has once (livepatch finds a
    /// `static` symbol by name too, and refuses an ambiguous one).
    pub fn loader_can_resolve(&self, existing: &Existing) -> Result<(), String> {
        if let Some(m) = &existing.module {
            return Err(format!(
                "a special section entry references {} of module {m}, which the module \
                 loader cannot resolve for update.ko",
                existing.name
            ));
        }
        if !self.is_unique(None, &existing.name) || !self.livepatch {
            return Err(format!(
                "a special section entry references {}, which is not exported \
                 (load-time resolution needs a name the kernel has once, and CONFIG_LIVEPATCH)",
                existing.name
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use object::{SectionIndex, SymbolIndex};

    use super::super::super::objdiff::{Diff, Item, Object};
    use super::*;

    /// An item of `section` with no bytes or relocations.
    pub fn item(name: &str, section: &str, local: bool) -> Item {
        Item {
            name: name.to_owned(),
            symbol: SymbolIndex(0),
            section: SectionIndex(0),
            section_name: section.to_owned(),
            value: 0,
            size: 8,
            bytes: vec![0; 8],
            relocs: Vec::new(),
            local,
            weak: false,
            nobits: false,
            writable: true,
        }
    }

    /// An in-memory object holding `functions` and `objects`.
    pub fn object(functions: &[Item], objects: &[Item]) -> Object {
        let by_name = |items: &[Item]| -> BTreeMap<String, Item> {
            items.iter().map(|i| (i.name.clone(), i.clone())).collect()
        };
        Object {
            data: Vec::new(),
            functions: by_name(functions),
            objects: by_name(objects),
        }
    }

    pub fn unit(pre: Object, post: Object) -> Unit {
        Unit {
            object: "kernel/exit.o".into(),
            module: None,
            pre,
            pre_path: PathBuf::from("pre/kernel/exit.o"),
            post,
            post_path: PathBuf::from("post/kernel/exit.o"),
            diff: Diff::default(),
        }
    }

    fn kernel(livepatch: bool) -> KernelSymbols {
        let exports = [
            ("printk", ""),
            ("dma_buf_get", "DMA_BUF"),
            ("kvm_get_kvm", "module:kvm"),
        ];
        let system_map = [
            ("printk", "T"),
            ("kvm_get_kvm", "T"),
            ("nr_threads", "D"),
            ("get_avenrun", "T"),
            ("lockdep_init_map", "t"),
            ("__tracepoint_sched_process_wait", "D"),
            ("__already_done", "dbd"),
        ];
        KernelSymbols::new(
            exports
                .iter()
                .map(|(n, ns)| (n.to_string(), ns.to_string()))
                .collect(),
            system_map
                .iter()
                .map(|(n, t)| (n.to_string(), t.chars().collect()))
                .collect(),
            livepatch,
        )
    }

    fn existing(unit: Option<&str>, name: &str, kind: SymbolKind, locate: Locate) -> Binding {
        Binding::Existing(Existing {
            module: None,
            unit: unit.map(str::to_owned),
            name: name.to_owned(),
            kind,
            locate,
        })
    }

    #[test]
    fn exports_are_left_to_the_loader_with_their_namespace() {
        let u = unit(object(&[], &[]), object(&[], &[]));
        let k = kernel(true);
        assert_eq!(
            k.resolve(&u, "printk"),
            Ok(Binding::Export {
                namespace: String::new()
            })
        );
        assert_eq!(
            k.resolve(&u, "dma_buf_get"),
            Ok(Binding::Export {
                namespace: "DMA_BUF".into()
            })
        );
    }

    #[test]
    fn exports_reserved_for_a_named_module_are_treated_as_not_exported() {
        let u = unit(object(&[], &[]), object(&[], &[]));
        assert_eq!(
            kernel(true).resolve(&u, "kvm_get_kvm"),
            Ok(existing(
                None,
                "kvm_get_kvm",
                SymbolKind::Function,
                Locate::ByName
            ))
        );
    }

    #[test]
    fn non_exported_globals_take_their_kind_from_system_map() {
        let u = unit(object(&[], &[]), object(&[], &[]));
        let k = kernel(true);
        assert_eq!(
            k.resolve(&u, "nr_threads"),
            Ok(existing(
                None,
                "nr_threads",
                SymbolKind::Object,
                Locate::ByName
            ))
        );
        assert_eq!(
            k.resolve(&u, "lockdep_init_map"),
            Ok(existing(
                None,
                "lockdep_init_map",
                SymbolKind::Function,
                Locate::ByName
            ))
        );
        assert!(k
            .resolve(&u, "no_such_symbol")
            .unwrap_err()
            .contains("neither exported nor in System.map"));
    }

    #[test]
    fn uncarried_functions_of_the_unit_are_matched_by_run_pre() {
        let helper = item("wait_task_zombie", ".text.wait_task_zombie", true);
        let both = [helper];
        let u = unit(object(&both, &[]), object(&both, &[]));
        assert_eq!(
            kernel(true).resolve(&u, "wait_task_zombie"),
            Ok(existing(
                Some("kernel/exit.o"),
                "wait_task_zombie",
                SymbolKind::Function,
                Locate::MatchFunction
            ))
        );
    }

    #[test]
    fn weak_functions_of_the_unit_are_found_by_name() {
        let weak = Item {
            weak: true,
            ..item("get_avenrun", ".text.get_avenrun", false)
        };
        let both = [weak];
        let u = unit(object(&both, &[]), object(&both, &[]));
        assert_eq!(
            kernel(true).resolve(&u, "get_avenrun"),
            Ok(existing(
                None,
                "get_avenrun",
                SymbolKind::Function,
                Locate::ByName
            ))
        );
    }

    #[test]
    fn init_and_exit_code_and_data_are_refused() {
        let init = item("setup_x", ".init.text", true);
        let data = item("x_table", ".init.data", true);
        let (init, data) = ([init], [data]);
        let u = unit(object(&init, &data), object(&init, &data));
        let k = kernel(true);
        assert!(k.resolve(&u, "setup_x").unwrap_err().contains("__init"));
        assert!(k.resolve(&u, "x_table").unwrap_err().contains("__init"));
    }

    #[test]
    fn existing_unit_data_is_named_as_the_running_kernel_names_it() {
        let pre = object(&[], &[item("count.2", ".bss.count.2", true)]);
        let post = object(&[], &[item("count.3", ".bss.count.3", true)]);
        let mut u = unit(pre, post);
        u.diff.pre_names.insert("count.3".into(), "count.2".into());
        assert_eq!(
            kernel(true).resolve(&u, "count.3"),
            Ok(existing(
                Some("kernel/exit.o"),
                "count.2",
                SymbolKind::Object,
                Locate::UnitData
            ))
        );
    }

    #[test]
    fn the_loader_resolves_only_unique_names_and_only_with_livepatch() {
        let global = Existing {
            module: None,
            unit: None,
            name: "__tracepoint_sched_process_wait".into(),
            kind: SymbolKind::Object,
            locate: Locate::ByName,
        };
        assert_eq!(kernel(true).loader_can_resolve(&global), Ok(()));
        assert!(kernel(false).loader_can_resolve(&global).is_err());
        let ambiguous = Existing {
            name: "__already_done".into(),
            ..global.clone()
        };
        assert!(kernel(true).loader_can_resolve(&ambiguous).is_err());
        // A static the kernel has once (a static key, say) is found by name.
        let local = Existing {
            unit: Some("kernel/exit.o".into()),
            ..global.clone()
        };
        assert_eq!(kernel(true).loader_can_resolve(&local), Ok(()));
        let ambiguous_local = Existing {
            unit: Some("kernel/exit.o".into()),
            ..ambiguous
        };
        assert!(kernel(true).loader_can_resolve(&ambiguous_local).is_err());
    }

    /// The kernel of [`kernel`] with module `ext2` (its `.ko` defines
    /// `ext2_get_block` and two statics `count`) and `mbcache`'s export.
    fn kernel_with_modules() -> KernelSymbols {
        let ext2 = [("ext2_get_block", "T"), ("count", "bb"), ("ext2_sops", "d")];
        let exports = [("mb_cache_entry_get".to_string(), "mbcache".to_string())];
        kernel(true).with_modules(
            exports.into_iter().collect(),
            [
                (
                    "ext2".to_string(),
                    ext2.iter()
                        .map(|(n, t)| (n.to_string(), t.chars().collect()))
                        .collect(),
                ),
                (
                    "mbcache".to_string(),
                    [("mb_cache_entry_get".to_string(), vec!['T'])]
                        .into_iter()
                        .collect(),
                ),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn module_unit() -> Unit {
        Unit {
            object: "fs/ext2/inode.o".into(),
            module: Some("ext2".into()),
            ..unit(object(&[], &[]), object(&[], &[]))
        }
    }

    #[test]
    fn module_code_reaches_vmlinux_only_through_exports_and_the_rest_lives_in_modules() {
        let k = kernel_with_modules();
        let u = module_unit();
        let binding = |name| match k.resolve(&u, name) {
            Ok(Binding::Existing(e)) => Ok((e.module, e.kind)),
            Ok(Binding::Export { .. }) => Err("export".to_string()),
            Err(e) => Err(e),
        };
        assert_eq!(binding("printk"), Err("export".into()));
        // Another file of the same module: looked up in ext2.
        assert_eq!(
            binding("ext2_get_block"),
            Ok((Some("ext2".into()), SymbolKind::Function))
        );
        assert_eq!(
            binding("ext2_sops"),
            Ok((Some("ext2".into()), SymbolKind::Object))
        );
        // Another module's export: in that module, not left to the loader.
        assert_eq!(
            binding("mb_cache_entry_get"),
            Ok((Some("mbcache".into()), SymbolKind::Function))
        );
        // Not exported by vmlinux: module code cannot reach it.
        assert!(binding("nr_threads").unwrap_err().contains("module ext2"));
        assert!(k.is_unique(Some("ext2"), "ext2_get_block"));
        assert!(!k.is_unique(Some("ext2"), "count"));
        assert!(!k.is_unique(None, "ext2_get_block"));
    }

    #[test]
    fn the_loader_never_resolves_a_module_symbol_for_update_ko() {
        let existing = Existing {
            module: Some("ext2".into()),
            unit: None,
            name: "ext2_get_block".into(),
            kind: SymbolKind::Function,
            locate: Locate::ByName,
        };
        let why = kernel_with_modules()
            .loader_can_resolve(&existing)
            .unwrap_err();
        assert!(why.contains("module ext2"), "{why}");
    }
}
