//! The binaries as a user runs them: each parses with the definition in
//! `ksplice::args` (the one the man pages and completions are generated
//! from), and ksplice-uname stands in for uname.

use std::process::Command;

use ksplice::args::Tool;

fn help_of(binary: &str) -> String {
    let out = Command::new(binary).arg("--help").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_binary_prints_the_help_of_its_library_definition() {
    let binaries = [
        (Tool::Create, env!("CARGO_BIN_EXE_ksplice-create")),
        (Tool::Apply, env!("CARGO_BIN_EXE_ksplice-apply")),
        (Tool::Undo, env!("CARGO_BIN_EXE_ksplice-undo")),
        (Tool::View, env!("CARGO_BIN_EXE_ksplice-view")),
        (Tool::Uname, env!("CARGO_BIN_EXE_ksplice-uname")),
    ];
    assert_eq!(binaries.len(), Tool::ALL.len());
    for (tool, binary) in binaries {
        let expected = tool.command().render_long_help().to_string();
        assert_eq!(help_of(binary).trim_end(), expected.trim_end(), "{binary}");
    }
}

/// On this host no update is applied (no /dev/ksplice), so ksplice-uname
/// must print exactly what uname prints.
#[test]
fn without_applied_updates_ksplice_uname_prints_what_uname_prints() {
    if std::path::Path::new("/dev/ksplice").exists() {
        return; // updates may be applied here: nothing to compare with
    }
    for flags in ["-a", "-r", "-s", "-v", "-m", "-n", "-sr"] {
        let ours = Command::new(env!("CARGO_BIN_EXE_ksplice-uname"))
            .arg(flags)
            .output()
            .unwrap();
        let theirs = Command::new("uname").arg(flags).output().unwrap();
        assert!(ours.status.success(), "{flags}");
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "ksplice-uname {flags}"
        );
    }
}
