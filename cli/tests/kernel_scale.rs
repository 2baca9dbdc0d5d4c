//! ksplice-create at the scale of a whole kernel, against Debian's 7.2.9
//! built with `KCONFIG_BASE=defconfig` (tests/patches/kernel-scale/): header
//! changes that about 3,000 objects include (`linux/sched.h`,
//! `linux/maple_tree.h`): a comment, a macro, an inline function, a struct
//! member; and code as that kernel's optimisation inlines it.
//! Ignored by default, like `real_fixes`: run them with
//! `cargo test --release -p ksplice-cli --test kernel_scale -- --ignored`
//! (`make eval` does); `scripts/bench-headers` also times the header cases
//! against a full kernel build. `KSPLICE_DEFCONFIG_KDIR` names an existing
//! build.

mod common;

use common::{create_in, defconfig_kernel_dir, patch};

/// `ksplice-create --json` on `name`: (exit code, report).
fn create_json(name: &str) -> (Option<i32>, serde_json::Value) {
    let out = create_in(
        defconfig_kernel_dir(),
        &[
            "--json",
            "-o",
            "/dev/null",
            patch(&format!("kernel-scale/{name}")).to_str().unwrap(),
        ],
    );
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report)
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
#[ignore = "needs the defconfig test kernel (KSPLICE_DEFCONFIG_KDIR)"]
fn a_comment_only_change_to_sched_h_has_nothing_to_apply() {
    let (code, report) = create_json("header-comment-sched.patch");
    assert_eq!(code, Some(7), "{report:#}");
    assert_eq!(report["outcome"], "noop", "{report:#}");
}

#[test]
#[ignore = "needs the defconfig test kernel (KSPLICE_DEFCONFIG_KDIR)"]
fn a_new_maple_tree_macro_compiles_only_the_driver_that_uses_it() {
    let (code, report) = create_json("header-macro-maple-tree.patch");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        strings(&report["objects_compiled"]),
        ["drivers/base/regmap/regcache-maple.o"],
        "{report:#}"
    );
    assert!(report["objects_affected"].as_array().unwrap().len() > 1000);
    let replaced: Vec<(&str, &str)> = report["replaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["object"].as_str().unwrap(),
                f["function"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        replaced,
        [(
            "drivers/base/regmap/regcache-maple.o",
            "regcache_maple_write"
        )],
        "{report:#}"
    );
}

#[test]
#[ignore = "needs the defconfig test kernel (KSPLICE_DEFCONFIG_KDIR)"]
fn a_new_inline_function_in_sched_h_compiles_only_the_file_that_calls_it() {
    let (code, report) = create_json("header-inline-sched.patch");
    assert_eq!(code, Some(0), "{report:#}");
    // Every includer differs (the header gained a function); only
    // kernel/sys.o's code reaches it.
    assert_eq!(
        strings(&report["objects_compiled"]),
        ["kernel/sys.o"],
        "{report:#}"
    );
    assert!(report["objects_affected"].as_array().unwrap().len() > 1000);
    let notes = strings(&report["notes"]).join("\n");
    assert!(
        notes.contains("include changed declarations they never mention (task_real_parent_once)"),
        "{notes}"
    );
    let replaced: Vec<&str> = report["replaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert!(
        replaced.iter().all(|f| f.contains("getppid")),
        "{replaced:?}"
    );
    assert!(!replaced.is_empty());
}

#[test]
#[ignore = "needs the defconfig test kernel (KSPLICE_DEFCONFIG_KDIR)"]
fn a_member_added_to_task_struct_is_refused_naming_the_type_after_a_few_objects() {
    let (code, report) = create_json("header-member-task-struct.patch");
    assert_eq!(code, Some(5), "{report:#}");
    assert_eq!(report["reason_kind"], "layout_change", "{report:#}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("struct task_struct: member ksplice_test_counter added at offset 32"),
        "{reason}"
    );
}

#[test]
#[ignore = "needs the defconfig test kernel (KSPLICE_DEFCONFIG_KDIR)"]
fn a_static_call_in_new_code_names_its_exported_key_for_the_module_loader() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    // trace_kmalloc is inlined into __kmalloc_cache_noprof: the new code
    // makes the tracepoint's static call itself. The module loader refuses
    // a site naming the trampoline unless it was exported with
    // EXPORT_STATIC_CALL_TRAMP; the kmalloc tracepoint exports its key.
    let ko = std::env::temp_dir().join(format!("ksplice-static-call-{}.ko", std::process::id()));
    let out = create_in(
        defconfig_kernel_dir(),
        &[
            "-o",
            ko.to_str().unwrap(),
            patch("kernel-scale/static-call-exported-key.patch")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(out.status.success());
    let data = std::fs::read(&ko).unwrap();
    std::fs::remove_file(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sites = file.section_by_name(".static_call_sites").unwrap();
    let keys: Vec<String> = sites
        .relocations()
        .filter_map(|(_, r)| match r.target() {
            object::RelocationTarget::Symbol(i) => {
                Some(file.symbol_by_index(i).unwrap().name().unwrap().to_owned())
            }
            _ => None,
        })
        .filter(|name| name.contains("tp_func_kmalloc"))
        .collect();
    assert_eq!(keys, ["__SCK__tp_func_kmalloc"]);
}
