//! Helpers the host tests share: the cached test kernel and running
//! `ksplice-create` against it. Each test crate uses some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The test kernel's build directory (built first if needed).
pub fn kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| test_kernel(&[]))
}

/// What `scripts/test-kernel --print-dir` prints with `env`.
fn test_kernel(env: &[(&str, &str)]) -> PathBuf {
    let out = Command::new(repo().join("scripts/test-kernel"))
        .arg("--print-dir")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/test-kernel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn patch(name: &str) -> PathBuf {
    repo().join("tests/patches").join(name)
}

/// Runs `ksplice-create --kernel KERNEL -q ARGS...`, echoing its output.
pub fn create_in(kernel: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ksplice-create"))
        .arg("--kernel")
        .arg(kernel)
        .arg("-q")
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ksplice-create` against the test kernel.
pub fn create(args: &[&str]) -> Output {
    create_in(kernel_dir(), args)
}

/// The build directory of another test kernel (`KERNEL`, `KCONFIG_BASE`),
/// built first if needed: that takes half an hour for a defconfig.
pub fn other_kernel_dir(version: &str, base: &str) -> PathBuf {
    test_kernel(&[("KERNEL", version), ("KCONFIG_BASE", base)])
}

/// The defconfig build of Debian's 7.2.9 the kernel-scale tests use:
/// `KSPLICE_DEFCONFIG_KDIR` if set (an existing build, of an earlier config
/// fragment, say), else `KERNEL=7.2.9 KCONFIG_BASE=defconfig
/// scripts/test-kernel` (built first if needed).
pub fn defconfig_kernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("KSPLICE_DEFCONFIG_KDIR") {
        Some(dir) => PathBuf::from(dir),
        None => other_kernel_dir("7.2.9", "defconfig"),
    })
}
