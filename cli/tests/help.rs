//! Each binary parses with the definition in `ksplice::args` (the one the
//! man pages and completions are generated from): its `--help` is that
//! definition's help, byte for byte.

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
