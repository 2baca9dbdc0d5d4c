//! Man pages and shell completions of the `ksplice-*` tools, generated
//! from the clap definitions the binaries parse with
//! ([`ksplice::args::Tool::command`]), plus the sections clap does not
//! know: exit status, files, environment, reboots.

use clap_complete::Shell;
use ksplice::args::Tool;
use roff::{bold, roman, Roff};

/// The man section of every tool: system administration.
pub const MAN_SECTION: &str = "8";

/// The shells completions are generated for, with the file name each
/// expects for command `name`.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

/// The file name `shell` expects a completion for `name` under.
pub fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_owned(),
    }
}

/// The completion script of `tool` for `shell`.
pub fn completion(tool: Tool, shell: Shell) -> Vec<u8> {
    let mut cmd = tool.command();
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// What ksplice.service does, for ksplice-apply(8).
const REBOOTS: &str = "ksplice-apply --persist stores an update after applying it. At boot, \
ksplice.service runs ksplice-apply --boot, which applies the updates stored for the running \
kernel (same release and vmlinux build id) in the order they were stored, before any ordinary \
service starts (the unit is ordered Before=sysinit.target). Updates stored for other kernels are \
kept and applied when that kernel runs again. Before each boot-time apply a marker is written and \
fsynced, and it is removed after; if a boot dies in between, the next boot applies nothing, logs \
why and ksplice-view shows it, until ksplice-apply --boot --after-crash. ksplice-undo --persist \
removes an update from the set.";

/// The man page of `tool`.
pub fn man_page(tool: Tool) -> Result<Vec<u8>, std::io::Error> {
    let cmd = tool.command();
    let name = cmd.get_name().to_owned();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(MAN_SECTION)
        .manual("ksplice");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;

    let mut roff = Roff::new();
    if tool == Tool::Apply {
        roff.control("SH", ["REBOOTS"]).text([roman(REBOOTS)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for code in tool.exit_codes() {
        roff.control("TP", [])
            .text([bold((*code as u8).to_string())])
            .text([roman(code.meaning())]);
    }
    if !tool.files().is_empty() {
        roff.control("SH", ["FILES"]);
        for (path, what) in tool.files() {
            roff.control("TP", [])
                .text([bold(*path)])
                .text([roman(*what)]);
        }
    }
    if cmd.get_arguments().any(|a| a.get_id() == "state_dir") {
        roff.control("SH", ["ENVIRONMENT"])
            .control("TP", [])
            .text([bold("KSPLICE_STATE_DIR")])
            .text([roman(
                "the state directory, as --state-dir (default /var/lib/ksplice)",
            )]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let others: Vec<String> = Tool::ALL
        .iter()
        .map(|t| t.command().get_name().to_owned())
        .filter(|n| *n != name)
        .map(|n| format!("{n}({MAN_SECTION})"))
        .collect();
    roff.text([roman(others.join(", "))]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}
