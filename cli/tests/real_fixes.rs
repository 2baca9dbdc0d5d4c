//! Real Debian stable fixes that change data layouts (tests/patches/real-*)
//! are refused, naming the type, against Debian's linux-source-7.2 7.2.9
//! built with `KCONFIG_BASE=defconfig`. Ignored by default: that kernel
//! takes half an hour to build on 2 cores, and some fixes rebuild dozens
//! of objects. Run them with
//! `cargo test -p ksplice-cli --test real_fixes -- --ignored`
//! (the first run builds the kernel; wrap it in
//! `flock ~/.cache/ksplice/heavy.lock` on a shared machine).

mod common;

use std::path::Path;

use common::{create_in, defconfig_kernel_dir, patch};

fn kernel_7_2_9() -> &'static Path {
    defconfig_kernel_dir()
}

/// `--explain` on a real fix: (exit code, stderr).
fn explain(name: &str) -> (Option<i32>, String) {
    let out = create_in(
        kernel_7_2_9(),
        &["--explain", patch(name).to_str().unwrap()],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(name: &str, parts: &[&str]) {
    let (code, stderr) = explain(name);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains("the patch changes the layout of data the running kernel holds"),
        "{stderr}"
    );
    for part in parts {
        assert!(stderr.contains(part), "no '{part}' in:\n{stderr}");
    }
}

#[test]
#[ignore = "needs KERNEL=7.2.9 KCONFIG_BASE=defconfig scripts/test-kernel"]
fn the_per_cpu_mount_counters_split_in_7_2_11_is_refused() {
    assert_refused(
        "real-7.2.11-mnt-pcp.patch",
        &[
            "struct mnt_pcp: member mnt_gets added at offset 0, member mnt_count removed from \
           offset 0, member mnt_puts added at offset 4, member mnt_writers moved from offset 4 \
           to offset 8, size 8 -> 12 (fs/namespace.o: used by __legitimize_mnt)",
        ],
    );
}

#[test]
#[ignore = "needs KERNEL=7.2.9 KCONFIG_BASE=defconfig scripts/test-kernel"]
fn the_wait_queue_inserted_into_tty_struct_in_7_2_11_is_refused() {
    assert_refused(
        "real-7.2.11-tty-break-wait.patch",
        &[
            "struct tty_struct: member break_wait added at offset 1408, member hangup_work \
             moved from offset 1408 to offset 1488",
            "size 1664 -> 1744",
        ],
    );
}
