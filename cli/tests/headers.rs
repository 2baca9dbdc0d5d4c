//! Header changes at the scale of a whole kernel, against Debian's 7.2.9
//! built with `KCONFIG_BASE=defconfig` (about 3,000 objects include
//! `linux/sched.h` or `linux/maple_tree.h` there). Ignored by default, like
//! `real_fixes`: run them with
//! `cargo test --release -p ksplice-cli --test headers -- --ignored`, or through
//! `scripts/bench-headers`, which also times them against a full kernel
//! build. `KSPLICE_DEFCONFIG_KDIR` names an existing build.

mod common;

use common::{create_in, defconfig_kernel_dir, patch};

/// `ksplice-create --json` on `name`: (exit code, report).
fn create_json(name: &str) -> (Option<i32>, serde_json::Value) {
    let out = create_in(
        defconfig_kernel_dir(),
        &["--json", "-o", "/dev/null", patch(name).to_str().unwrap()],
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
