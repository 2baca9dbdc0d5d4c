//! ksplice-create against the cached test kernel and unmodified kernel
//! sources, with the patches in tests/patches/. Needs the test kernel
//! (`make kernel`; `make test` builds it first).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{create, kernel_dir, patch};
use ksplice_core::payload::Payload;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// `--explain` output as (action, function) pairs, e.g. ("replace", "f").
fn explain(name: &str) -> BTreeSet<(String, String)> {
    let out = create(&["--explain", patch(name).to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let action = words.next()?;
            let function = words.next()?.trim_end_matches(':');
            matches!(action, "replace" | "add" | "copy")
                .then(|| (action.to_owned(), function.to_owned()))
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, f)| (a.to_string(), f.to_string()))
        .collect()
}

/// Builds the update and returns the payload embedded in it.
fn build(name: &str, id: &str) -> (PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let ko = dir.join(format!("{id}.ko"));
    let out = create(&[
        "--id",
        id,
        "-o",
        ko.to_str().unwrap(),
        patch(name).to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let data = std::fs::read(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok("__ksplice_payload"))
        .expect("update.ko has __ksplice_payload");
    let section = file.section_by_index(sym.section_index().unwrap()).unwrap();
    let bytes = section.data().unwrap();
    let payload = bytes[sym.address() as usize..(sym.address() + sym.size()) as usize].to_vec();
    // No kernel symbol may be left for the module loader to resolve
    // except exported ones; none of these is exported.
    for s in file
        .symbols()
        .filter(|s| s.is_undefined() && !s.name().unwrap_or("").is_empty())
    {
        let name = s.name().unwrap();
        assert!(
            ![
                "get_avenrun",
                "nr_running",
                "nr_threads",
                "task_tgid_vnr_internal"
            ]
            .contains(&name),
            "{name} left unresolved"
        );
    }
    (ko, payload)
}

fn replaced_names(payload: &[u8]) -> BTreeSet<String> {
    let p = Payload::parse(payload).unwrap();
    p.replacements
        .iter()
        .map(|r| {
            p.symbol_name(p.functions.get(r.function).unwrap().symbol)
                .to_owned()
        })
        .collect()
}

#[test]
fn a_one_line_fix_in_a_global_function_replaces_just_that_syscall() {
    // __x64_sys_getppid is an alias of __do_sys_getppid: one function.
    assert_eq!(
        explain("a-global-function.patch"),
        set(&[("replace", "__do_sys_getppid")])
    );
    let (_, payload) = build("a-global-function.patch", "test-a");
    let p = Payload::parse(&payload).unwrap();
    assert_eq!(p.id(), "test-a");
    assert_eq!(
        p.release(),
        std::fs::read_to_string(kernel_dir().join("include/config/kernel.release"))
            .unwrap()
            .trim()
    );
    assert_eq!(p.build_id().len(), 20, "the vmlinux build id is recorded");
    assert_eq!(
        replaced_names(&payload),
        ["__do_sys_getppid".to_owned()].into()
    );
}

#[test]
fn b_a_change_in_an_inlined_static_function_replaces_its_caller() {
    let out = create(&[
        "--explain",
        patch("b-inlined-static.patch").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("replace proc_pid_status") && text.contains("changed inlined callee"),
        "{text}"
    );
    assert_eq!(
        explain("b-inlined-static.patch"),
        set(&[("replace", "proc_pid_status")])
    );
    let (_, payload) = build("b-inlined-static.patch", "test-b");
    assert_eq!(
        replaced_names(&payload),
        ["proc_pid_status".to_owned()].into()
    );
}

#[test]
fn c_a_new_helper_is_added_and_its_caller_replaced() {
    assert_eq!(
        explain("c-new-helper.patch"),
        set(&[
            ("replace", "loadavg_proc_show"),
            ("add", "ksplice_test_threads")
        ])
    );
    let (_, payload) = build("c-new-helper.patch", "test-c");
    let p = Payload::parse(&payload).unwrap();
    let places: BTreeSet<&str> = (0..p.places.len()).map(|i| p.place_name(i)).collect();
    assert!(
        places.contains("ksplice_test_threads") && places.contains("loadavg_proc_show"),
        "{places:?}"
    );
    // get_avenrun, nr_running and nr_threads are not exported: the core
    // writes them after run-pre matching.
    let post: BTreeSet<&str> = p
        .post_relocs
        .iter()
        .map(|r| p.symbol_name(r.symbol))
        .collect();
    for name in ["get_avenrun", "nr_running", "nr_threads"] {
        assert!(
            post.contains(name),
            "{name} is not a post relocation: {post:?}"
        );
    }
}

#[test]
fn d_a_changed_string_literal_changes_only_its_user() {
    let out = create(&[
        "--explain",
        patch("d-string-literal.patch").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("replace loadavg_proc_show: changed relocations"));
    assert_eq!(
        explain("d-string-literal.patch"),
        set(&[("replace", "loadavg_proc_show")])
    );
    let (ko, _) = build("d-string-literal.patch", "test-d");
    let data = std::fs::read(ko).unwrap();
    assert!(
        data.windows(8).any(|w| w == b" ksplice"),
        "the new string is in update.ko"
    );
}

#[test]
fn e_shifted_line_numbers_do_not_mark_functions_with_warn_on_as_changed() {
    assert_eq!(
        explain("e-line-shift.patch"),
        set(&[("replace", "__x64_sys_set_tid_address")])
    );
    // The #line directives keep every bug table entry (which holds __LINE__)
    // of the unchanged functions identical.
    let work = tempfile::tempdir().unwrap();
    let out = create(&[
        "--explain",
        "--work-dir",
        work.path().to_str().unwrap(),
        patch("e-line-shift.patch").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let bug_table = |variant: &str| {
        let data = std::fs::read(work.path().join(variant).join("kernel/fork.o")).unwrap();
        let file = object::File::parse(&*data).unwrap();
        file.section_by_name("__bug_table")
            .unwrap()
            .data()
            .unwrap()
            .to_vec()
    };
    let (pre, post) = (bug_table("pre"), bug_table("post"));
    assert!(!pre.is_empty());
    assert_eq!(
        pre, post,
        "bug table entries differ: __LINE__ was not neutralised"
    );
}

#[test]
fn t_a_header_change_that_reaches_assembly_is_refused_naming_the_object() {
    // arch/x86/entry/calling.h is included only by the entry code's .S
    // files: no C object changes, and assembly cannot be replaced.
    let out = create(&[patch("t-assembly-header.patch").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("arch/x86/entry/entry")
            && err.contains("the patch changes its preprocessed source, and it is assembly"),
        "{err}"
    );
}

#[test]
fn u_code_that_uses_a_runtime_constant_is_refused_naming_it() {
    // filldir64 checks user addresses against USER_PTR_MAX, which the
    // kernel writes into its own code at boot (runtime_const_ptr): the
    // object has a placeholder there, update.ko's copy would keep it.
    let out = create(&[
        "-o",
        "/dev/null",
        patch("u-runtime-constant.patch").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fs/readdir.o: filldir64 uses the runtime constant USER_PTR_MAX"),
        "{err}"
    );
}

#[test]
fn f_a_changed_data_initializer_is_refused_with_the_reason() {
    let out = create(&[
        "--explain",
        patch("f-data-initializer.patch").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("overflowuid") && err.contains("data changes need a hook"),
        "{err}"
    );
}

/// `--explain` of a patch: the objects rebuilt, and the lines naming
/// functions and what is done to them.
fn explain_rebuilt(args: &[&str]) -> (BTreeSet<String>, Vec<String>) {
    let out = create(&[&["--explain"], args].concat());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rebuilt = stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("rebuilt ")?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .collect();
    let functions = stdout
        .lines()
        .filter(|l| l.starts_with("  ") || l.ends_with(".o:"))
        .map(str::to_owned)
        .collect();
    (rebuilt, functions)
}

#[test]
fn g_a_header_change_compiles_the_includers_whose_code_reaches_it_and_loses_nothing() {
    let g = patch("g-header.patch");
    let (rebuilt, functions) = explain_rebuilt(&[g.to_str().unwrap()]);
    let (every, every_functions) =
        explain_rebuilt(&["--compile-every-includer", g.to_str().unwrap()]);
    // With the shortcut off: every object that includes the header.
    assert_eq!(every, includers("fs/proc/internal.h"));
    assert!(every.len() > 10, "{every:?}");
    // With it: fewer (proc_pid's change reaches only the code of some),
    // and the update is the same.
    assert!(rebuilt.is_subset(&every), "{rebuilt:?}");
    assert!(rebuilt.len() < every.len(), "{rebuilt:?}");
    assert_eq!(functions, every_functions);
    assert!(!functions.is_empty());
}

#[test]
fn refuses_assembly_and_build_changes_and_patches_that_do_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.patch");
    std::fs::write(
        &bad,
        "--- a/arch/x86/entry/entry_64.S\n+++ b/arch/x86/entry/entry_64.S\n@@ -1 +1 @@\n-x\n+y\n",
    )
    .unwrap();
    let out = create(&["--explain", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    std::fs::write(&bad, "--- a/fs/proc/loadavg.c\n+++ b/fs/proc/loadavg.c\n@@ -1,1 +1,1 @@\n-not the first line\n+x\n").unwrap();
    let out = create(&["--explain", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not apply"));
}

#[test]
fn the_users_kernel_tree_is_not_modified() {
    let source = kernel_dir().join("source/fs/proc/loadavg.c");
    let before = std::fs::read(&source).unwrap();
    let object = kernel_dir().join("fs/proc/loadavg.o");
    let object_before = std::fs::read(&object).unwrap();
    build("c-new-helper.patch", "test-untouched");
    assert_eq!(std::fs::read(&source).unwrap(), before);
    assert_eq!(std::fs::read(&object).unwrap(), object_before);
}

#[test]
fn h_a_static_local_is_shared_with_the_running_kernel_not_copied() {
    // warn_legacy_capability_use (pr_info_once) is inlined into its caller.
    assert_eq!(
        explain("j-static-local.patch"),
        set(&[("replace", "cap_validate_magic")])
    );
    let (_, payload) = build("j-static-local.patch", "test-j");
    let p = Payload::parse(&payload).unwrap();
    // pr_warn_once's `__already_done` flag is existing state: the new code
    // must reference the live one (a post relocation), never a new copy.
    let post: Vec<&str> = p
        .post_relocs
        .iter()
        .map(|r| p.symbol_name(r.symbol))
        .collect();
    assert!(
        post.iter().any(|n| n.starts_with("__already_done")),
        "{post:?}"
    );
    let places: Vec<&str> = (0..p.places.len()).map(|i| p.place_name(i)).collect();
    assert!(
        !places.iter().any(|n| n.starts_with("__already_done")),
        "{places:?}"
    );
}

/// Runs ksplice-create with `--json` and returns its exit code and report.
fn create_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = create(&all);
    let report = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    (out.status.code(), report)
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Every object under the build whose recorded dependencies name `header`.
fn includers(header: &str) -> BTreeSet<String> {
    let header = kernel_dir()
        .join("source")
        .join(header)
        .canonicalize()
        .unwrap();
    let vmlinux: BTreeSet<String> = Command::new("ar")
        .arg("t")
        .arg(kernel_dir().join("vmlinux.a"))
        .output()
        .map(|o| String::from_utf8(o.stdout).unwrap())
        .unwrap()
        .lines()
        .map(|l| {
            Path::new(l)
                .strip_prefix(kernel_dir())
                .unwrap_or(Path::new(l))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut found = BTreeSet::new();
    let mut stack = vec![kernel_dir().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                if name != "source" {
                    stack.push(entry.path());
                }
            } else if name.starts_with('.')
                && name.ends_with(".o.cmd")
                && std::fs::read_to_string(entry.path())
                    .unwrap()
                    .contains(header.to_str().unwrap())
            {
                let rel = dir.strip_prefix(kernel_dir()).unwrap();
                let obj = rel.join(&name[1..name.len() - 4]);
                found.insert(obj.to_string_lossy().into_owned());
            }
        }
    }
    found.retain(|o| vmlinux.contains(o));
    found
}

#[test]
fn l_a_header_change_that_only_adds_macros_compiles_nothing_and_has_nothing_to_apply() {
    // The hunk ends inside a comment, where no #line may go.
    let (code, report) = create_json(&[patch("l-header-macros.patch").to_str().unwrap()]);
    assert_eq!(code, Some(7), "{report}");
    assert_eq!(report["outcome"], "noop");
    let affected = strings(&report["objects_affected"]);
    assert_eq!(affected, includers("fs/proc/internal.h"));
    assert!(affected.len() > 10, "{affected:?}");
    assert_eq!(strings(&report["objects_compiled"]), BTreeSet::new());
    assert!(report["seconds"]["preprocess"].as_f64().unwrap() > 0.0);
}

#[test]
fn m_a_changed_macro_compiles_only_the_objects_that_use_it() {
    let (code, report) = create_json(&[
        "-o",
        "/dev/null",
        patch("m-header-macro-value.patch").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{report}");
    // Independently: the includers whose own source uses PROC_NUMBUF.
    let users: BTreeSet<String> = includers("fs/proc/internal.h")
        .into_iter()
        .filter(|o| {
            let c = kernel_dir().join("source").join(o).with_extension("c");
            std::fs::read_to_string(c).is_ok_and(|t| t.contains("PROC_NUMBUF"))
        })
        .collect();
    assert!(!users.is_empty());
    assert_eq!(strings(&report["objects_compiled"]), users);
    assert!(strings(&report["objects_affected"]).len() > users.len());
}

#[test]
fn n_a_fix_that_compiles_to_identical_code_has_nothing_to_apply() {
    // The change is under CONFIG_PROC_CHILDREN, which the test kernel lacks.
    let (code, report) = create_json(&[patch("n-disabled-config.patch").to_str().unwrap()]);
    assert_eq!(code, Some(7), "{report}");
    assert_eq!(report["outcome"], "noop");
    assert_eq!(report["reason_kind"], "no_changes");
    assert!(report["reason"]
        .as_str()
        .unwrap()
        .contains("the running kernel's code is already equivalent"));
    assert_eq!(
        strings(&report["objects_compiled"]),
        ["fs/proc/array.o".to_owned()].into()
    );
    assert_eq!(report["replaced"], serde_json::json!([]));
}

#[test]
fn o_a_change_next_to_a_tracepoint_links_its_key_and_struct_without_exports() {
    let (ko, payload) = build("o-tracepoint-caller.patch", "test-o");
    assert_eq!(replaced_names(&payload), ["do_wait".to_owned()].into());
    let data = std::fs::read(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let tracepoint = "__tracepoint_sched_process_wait";
    // The jump label entry the loader consumes: a livepatch relocation.
    assert!(file
        .symbols()
        .any(|s| s.name() == Ok(&format!(".klp.sym.vmlinux.{tracepoint},0"))));
    assert!(file
        .sections()
        .any(|s| s.name() == Ok(".klp.rela.vmlinux.__jump_table")));
    assert!(
        !file
            .symbols()
            .any(|s| s.is_undefined() && s.name() == Ok(tracepoint)),
        "{tracepoint} is not exported: the loader cannot resolve it"
    );
    // The code's own reference to the struct: a post relocation.
    let p = Payload::parse(&payload).unwrap();
    assert!(p
        .post_relocs
        .iter()
        .any(|r| p.symbol_name(r.symbol) == tracepoint));
}

#[test]
fn p_a_new_lockdep_key_is_carried_and_the_existing_keys_are_shared() {
    let (_, payload) = build("p-new-lockdep-key.patch", "test-p");
    assert_eq!(replaced_names(&payload), ["alloc_pid".to_owned()].into());
    let p = Payload::parse(&payload).unwrap();
    let places: Vec<&str> = (0..p.places.len()).map(|i| p.place_name(i)).collect();
    let new_keys: Vec<&&str> = places.iter().filter(|n| n.starts_with("__key.")).collect();
    assert_eq!(new_keys.len(), 1, "one new key, carried: {places:?}");
    // alloc_pid's spin_lock_init and init_waitqueue_head keys exist in the
    // running kernel: post relocations, local to kernel/pid.o.
    let shared: BTreeSet<&str> = p
        .post_relocs
        .iter()
        .map(|r| p.symbol_name(r.symbol))
        .filter(|n| n.starts_with("__key."))
        .collect();
    assert_eq!(shared.len(), 2, "{shared:?}");
    // Lockdep tells classes apart by the address of their name: the names
    // the old code used are the running kernel's strings, not copies.
    let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    let strings: BTreeSet<&str> = p
        .post_relocs
        .iter()
        .map(|r| p.symbol_name(r.symbol))
        .filter(|n| n.starts_with("str:"))
        .collect();
    for name in ["&pid->lock", "&pid->wait_pidfd"] {
        assert!(
            strings.contains(format!("str:{}", hex(name)).as_str()),
            "{name} is copied: {strings:?}"
        );
    }
}

#[test]
fn drm_style_missing_include_dirs_warnings_are_not_set_off_by_the_overlay() {
    use ksplice::create::compile::{self, Job, Step};
    use ksplice::create::kbuild::KernelTree;
    let tree = KernelTree::open(kernel_dir()).unwrap();
    let mut command = tree.compile_command("fs/proc/loadavg.o").unwrap().unwrap();
    // drivers/gpu/drm's Makefile adds -Wmissing-include-dirs; the kernel
    // turns warnings into errors.
    let at = command.argv.len() - 4;
    command
        .argv
        .insert(at, "-Werror=missing-include-dirs".to_owned());
    let work = tempfile::tempdir().unwrap();
    let overlay = work.path().join("overlay");
    let source = std::fs::read_to_string(tree.srctree.join("fs/proc/loadavg.c")).unwrap();
    let patched = source.replacen("%lu.%02lu", "%lu.%02lu ", 1);
    compile::make_overlay(
        &overlay,
        &tree.srctree,
        &[("fs/proc/loadavg.c", &patched)],
        &[Path::new("fs/proc/loadavg.c")],
    )
    .unwrap();
    let job = Job {
        command: &command,
        variant: "post",
        overlay: Some(&overlay),
        step: Step::Compile,
    };
    compile::run(&tree.objtree, &tree.srctree, work.path(), &job).unwrap();
    let object = compile::output_path(work.path(), &job);
    let data = std::fs::read(object).unwrap();
    assert!(
        data.windows(10).any(|w| w == b"%lu.%02lu "),
        "the patched source was compiled"
    );
}

#[test]
fn module_code_is_matched_in_its_module_and_its_statics_are_resolved_there() {
    let (ko, payload) = build("mod-target.patch", "test-mod");
    assert_eq!(
        replaced_names(&payload),
        [
            "ksplice_target_answer".to_owned(),
            "ksplice_target_hold".to_owned()
        ]
        .into()
    );
    let p = Payload::parse(&payload).unwrap();
    assert_eq!(p.objects.len(), 1);
    assert_eq!(p.object_name(1), Some("ksplice_target"));
    for r in p.replacements.iter() {
        assert_eq!(
            p.function_object(r.function),
            1,
            "pre code lives in the module"
        );
        assert_eq!(p.places.get(r.place).unwrap().object, 1);
    }
    // The module's static data the new code uses (its wait queue, the
    // counter) is the module's, resolved by ksplice.ko once the module is
    // there; exports of vmlinux stay with the loader.
    let module_symbols: BTreeSet<&str> = p
        .post_relocs
        .iter()
        .filter(|r| p.symbol_object(r.symbol) == 1)
        .map(|r| p.symbol_name(r.symbol))
        .collect();
    assert!(module_symbols.contains("holding"), "{module_symbols:?}");
    assert!(module_symbols.contains("hold_wait"), "{module_symbols:?}");
    let data = std::fs::read(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let undefined: BTreeSet<&str> = file
        .symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok())
        .collect();
    assert!(
        !undefined.contains("holding") && !undefined.contains("hold_wait"),
        "module symbols must not be left to the loader: {undefined:?}"
    );
}

#[test]
fn o_a_warn_in_new_code_finds_its_own_bug_table_entry_in_the_update() {
    // A WARN passes its __bug_table entry to the trap: the reference must
    // land on the entry update.ko keeps for the new code (do_wait's), and
    // update.ko keeps only the entries of the code it carries (all of
    // kernel/exit.o's would name functions that are not there).
    let (ko, _) = build("o-tracepoint-caller.patch", "test-o-bug");
    let data = std::fs::read(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let table = file.section_by_name("__bug_table").expect("a bug table");
    let targets: Vec<String> = table
        .relocations()
        .filter_map(|(_, r)| match r.target() {
            object::RelocationTarget::Symbol(s) => file.symbol_by_index(s).ok(),
            _ => None,
        })
        .map(|s| s.name().unwrap_or("").to_owned())
        .collect();
    assert!(!targets.is_empty());
    assert!(
        !targets
            .iter()
            .any(|t| t.starts_with("__ksplice_unresolved")),
        "bug table entries of code the update does not carry: {targets:?}"
    );
    let code_refs: Vec<i64> = file
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .flat_map(|s| s.relocations().collect::<Vec<_>>())
        .filter(|(_, r)| match r.target() {
            object::RelocationTarget::Symbol(s) => file
                .symbol_by_index(s)
                .is_ok_and(|s| s.section_index() == Some(table.index())),
            _ => false,
        })
        .map(|(_, r)| r.addend())
        .collect();
    assert!(!code_refs.is_empty(), "the new code passes its bug entry");
    for addend in code_refs {
        assert!(
            addend + 4 >= 0 && ((addend + 4) as u64) < table.size(),
            "a reference to {addend:#x} lies outside update.ko's bug table"
        );
    }
}

#[test]
fn q_changed_constant_data_replaces_the_functions_that_use_it() {
    // Only the table changes; its user must move to the new copy, or the
    // fix would be dropped with "nothing to apply".
    assert_eq!(
        explain("q-const-table.patch"),
        set(&[("replace", "get_task_state"), ("copy", "task_state_array")])
    );
    let (_, payload) = build("q-const-table.patch", "test-q");
    let p = Payload::parse(&payload).unwrap();
    let places: BTreeSet<&str> = (0..p.places.len()).map(|i| p.place_name(i)).collect();
    assert!(places.contains("task_state_array"), "{places:?}");
    assert_eq!(
        replaced_names(&payload),
        ["get_task_state".to_owned()].into()
    );
}
