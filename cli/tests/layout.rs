//! ksplice-create refuses patches that change the layout of a type live
//! kernel data may hold, naming the type (tests/patches/[l-r]-layout-*),
//! against the cached test kernel; and, on a tiny fake kernel tree, that
//! type information comes from an analysis compile with -g when kbuild's
//! command has none.

mod common;

use std::path::Path;

use common::{create, create_in, patch};

/// `--explain` on a patch: (exit code, stdout, stderr).
fn explain(name: &str) -> (Option<i32>, String, String) {
    let out = create(&["--explain", patch(name).to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a refusal (exit 5) whose message holds every one of `parts`.
fn assert_refused(name: &str, parts: &[&str]) {
    let (code, stdout, stderr) = explain(name);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains("the patch changes the layout of data the running kernel holds"),
        "{stderr}"
    );
    for part in parts {
        assert!(stderr.contains(part), "no '{part}' in:\n{stderr}");
        // --explain lists the changes too.
        assert!(stdout.contains(part), "no '{part}' in --explain:\n{stdout}");
    }
    assert!(stderr.contains("hint: ") && stderr.contains("shadow data"));
}

#[test]
fn a_member_added_at_the_end_of_a_struct_is_refused() {
    // The kfree_rcu() fix pattern: the freeing function is replaced, and
    // objects allocated before the update have no room for the rcu_head.
    assert_refused(
        "l-layout-member-at-end.patch",
        &[
            "struct kthread: member rcu added at offset 256, size 256 -> 272",
            "kernel/kthread.o: used by free_kthread_struct",
        ],
    );
}

#[test]
fn a_member_added_in_the_middle_of_a_per_cpu_struct_is_refused() {
    assert_refused(
        "m-layout-member-in-middle.patch",
        &[
            "struct cpu_stopper: member nr_queued added at offset 96",
            "member stop_work moved from offset 96 to offset 104",
            "size 160 -> 168",
        ],
    );
}

#[test]
fn bitfields_turned_into_bools_are_refused() {
    assert_refused(
        "n-layout-bitfields-to-bools.patch",
        &[
            "struct wb_writeback_work: member tagged_writepages type unsigned int:1 -> bool",
            "member for_kupdate moved from offset 20 bit 1 (1 bit) to offset 21",
        ],
    );
}

#[test]
fn changed_enumerator_values_are_refused() {
    assert_refused(
        "o-layout-enum-values.patch",
        &[
            "enum rwsem_waiter_type: enumerator RWSEM_WAITING_FOR_READ value 1 -> 0, \
           enumerator RWSEM_WAITING_FOR_WRITE value 0 -> 1",
        ],
    );
}

#[test]
fn a_widened_global_variable_is_refused_by_its_type_not_as_a_changed_initial_value() {
    assert_refused(
        "p-layout-global-widened.patch",
        &["variable oops_limit: type unsigned int -> long unsigned int (kernel/exit.o)"],
    );
}

#[test]
fn a_member_renamed_in_place_is_accepted_and_explained() {
    let (code, stdout, stderr) = explain("q-layout-member-renamed.patch");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "layout accepted: kernel/kthread.o: struct kthread: member full_name renamed to \
             comm_full (offset 216, char *)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("replace get_kthread_comm"), "{stdout}");
    // And the update is built.
    let dir = tempfile::tempdir().unwrap();
    let ko = dir.path().join("q.ko");
    let out = create(&[
        "-o",
        ko.to_str().unwrap(),
        patch("q-layout-member-renamed.patch").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(ko.is_file());
}

#[test]
fn a_header_change_adding_only_a_macro_and_a_declaration_is_accepted() {
    let (code, stdout, stderr) = explain("r-layout-header-macro-only.patch");
    assert_eq!(code, Some(0), "{stderr}");
    // fs/proc/base.o includes fd.h but never mentions the new declaration.
    assert!(
        stderr
            .contains("1 objects include changed declarations they never mention (proc_fd_count)"),
        "{stderr}"
    );
    assert!(!stdout.contains("rebuilt fs/proc/base.o"), "{stdout}");
    assert!(stdout.contains("replace seq_show"), "{stdout}");
    assert!(!stdout.contains("layout changed"), "{stdout}");
}

/// A fake built kernel tree: `drv/foo.c` includes `drv/bar.h`, which
/// defines `struct foo`; kbuild's saved command for it is the host C
/// compiler with `flags`. `fix.patch` adds a member to the struct and
/// reads it in `foo_get`.
fn fake_tree(flags: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(".config", "CONFIG_FAKE=y\n");
    write("vmlinux", "");
    // A thin archive naming the one object (in the long-name table, as
    // kbuild's paths are): drv/foo.o is linked into vmlinux.
    let names = "drv/foo.o/\n"; // odd length: padded by a newline
    let header = |name: &str, size: usize| {
        format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 644)
    };
    write(
        "vmlinux.a",
        &format!(
            "!<thin>\n{}{names}\n{}",
            header("//", names.len()),
            header("/0", 0)
        ),
    );
    write("include/config/kernel.release", "0.0.0-fake\n");
    write("drv/bar.h", "struct foo {\n\tlong a;\n\tlong b;\n};\n");
    write(
        "drv/foo.c",
        "#include \"bar.h\"\n\nlong foo_get(struct foo *p)\n{\n\treturn p->a;\n}\n",
    );
    write(
        "drv/.foo.o.cmd",
        &format!(
            "savedcmd_drv/foo.o := cc -O2 {flags} -c -o drv/foo.o {root}/drv/foo.c\n\n\
             deps_drv/foo.o := \\\n  {root}/drv/bar.h \\\n\n",
            root = root.display()
        ),
    );
    // What kbuild built: the object, in the thin archive vmlinux links.
    for cmd in [
        "cc -O2 -c -o drv/foo.o drv/foo.c",
        "ar rcT vmlinux.a drv/foo.o",
    ] {
        let words: Vec<&str> = cmd.split(' ').collect();
        let status = std::process::Command::new(words[0])
            .args(&words[1..])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success(), "{cmd}");
    }
    write(
        "fix.patch",
        "--- a/drv/bar.h\n+++ b/drv/bar.h\n@@ -1,4 +1,5 @@\n struct foo {\n \tlong a;\n \tlong b;\n\
         +\tlong bar;\n };\n--- a/drv/foo.c\n+++ b/drv/foo.c\n@@ -2,5 +2,5 @@\n \n \
         long foo_get(struct foo *p)\n {\n-\treturn p->a;\n+\treturn p->a + p->bar;\n }\n",
    );
    dir
}

/// Runs `--explain` on the fake tree's fix: (stderr, whether the
/// analysis compile ran).
fn refused_on_fake_tree(flags: &str) -> (String, bool) {
    let tree = fake_tree(flags);
    let work = tree.path().join("work");
    let out = create_in(
        tree.path(),
        &[
            "--explain",
            "--work-dir",
            work.to_str().unwrap(),
            tree.path().join("fix.patch").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysis_compiled = Path::new(&work).join("pre-debug/drv/foo.o").is_file()
        && Path::new(&work).join("post-debug/drv/foo.o").is_file();
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        analysis_compiled,
    )
}

const FOO_CHANGE: &str = "struct foo: member bar added at offset 16, size 16 -> 24";

#[test]
fn without_g_in_the_kbuild_command_types_come_from_an_analysis_compile() {
    let (stderr, analysis_compiled) = refused_on_fake_tree("");
    assert!(stderr.contains(FOO_CHANGE), "{stderr}");
    assert!(analysis_compiled);
}

#[test]
fn with_g_in_the_kbuild_command_the_objects_own_dwarf_is_read() {
    let (stderr, analysis_compiled) = refused_on_fake_tree("-g");
    assert!(stderr.contains(FOO_CHANGE), "{stderr}");
    assert!(!analysis_compiled);
}

#[test]
fn reduced_debug_info_holding_only_declarations_is_not_trusted() {
    // CONFIG_DEBUG_INFO_REDUCED: struct foo, defined in bar.h, would be a
    // declaration in foo.o's own DWARF.
    let (stderr, analysis_compiled) =
        refused_on_fake_tree("-g -fno-var-tracking -femit-struct-debug-baseonly");
    assert!(stderr.contains(FOO_CHANGE), "{stderr}");
    assert!(analysis_compiled);
}
