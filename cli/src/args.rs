//! The command lines of every `ksplice-*` tool, defined once: the binaries
//! parse them, and the packaging generates man pages and shell completions
//! from the same definitions ([`tools`]).

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::device::Retry;
use crate::metadata;
use crate::ExitStatus;

/// Where persisted updates live unless `--state-dir` or
/// `KSPLICE_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ksplice";

/// Build a rebootless update (update.ko) from a kernel patch.
///
/// Compiles the objects the patch affects twice, before and after it, with
/// the kernel's own compile commands, compares the object code function by
/// function, and links the changed functions into a module.
#[derive(Parser, Debug)]
#[command(name = "ksplice-create", version, after_long_help = after_help(Tool::Create))]
pub struct CreateArgs {
    /// The configured, built kernel tree the running kernel came from (a
    /// kbuild O= directory with its `source` link, or an in-tree build).
    #[arg(long, value_name = "DIR")]
    pub kernel: PathBuf,
    /// Update id (default: a short hash of the patch).
    #[arg(long)]
    pub id: Option<String>,
    /// Output file (default: ksplice-<id>.ko).
    #[arg(short, long, value_name = "OUT.ko")]
    pub output: Option<PathBuf>,
    /// Print which functions would be replaced and why, then stop.
    #[arg(long)]
    pub explain: bool,
    /// Print the outcome as one JSON object on stdout (created, refused,
    /// noop or failed, with the reason, functions, objects and timings).
    #[arg(long, conflicts_with = "explain")]
    pub json: bool,
    /// Keep the scratch directory here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// A patch an earlier update (still applied) was built from; repeat in
    /// the order they were applied. The new update stacks on top of them.
    #[arg(long, value_name = "PATCH")]
    pub applied: Vec<PathBuf>,
    /// One line saying what the update fixes (shown by ksplice-view).
    #[arg(long, value_name = "TEXT", value_parser = metadata::parse_description)]
    pub description: Option<String>,
    /// A CVE id the update fixes, CVE-YYYY-NNNN; repeat for each.
    #[arg(long = "cve", value_name = "CVE-YYYY-N", value_parser = metadata::parse_cve)]
    pub cves: Vec<String>,
    /// The kernel release the update brings the kernel up to (what
    /// ksplice-uname -r prints while it is applied).
    #[arg(long, value_name = "RELEASE", value_parser = metadata::parse_release)]
    pub effective_release: Option<String>,
    /// Sign update.ko with this private key (PEM), using the kernel tree's
    /// scripts/sign-file and CONFIG_MODULE_SIG_HASH.
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The X.509 certificate of --sign-key (PEM or DER).
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
    /// Compile every object whose preprocessed source the patch changes,
    /// also those where it changes only declarations that none of the
    /// object's emitted code reaches (which are otherwise left out: a
    /// check of that shortcut, at the cost of compiling them).
    #[arg(long)]
    pub compile_every_includer: bool,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The unified diff against the kernel source.
    pub patch: PathBuf,
}

/// Apply a ksplice update to the running kernel, without a reboot.
///
/// Loads ksplice.ko if needed, loads update.ko, and asks ksplice.ko to
/// apply it: run-pre matching, a stack check in stop_machine, trampolines.
/// On any refusal nothing is changed and update.ko is unloaded again.
/// With --persist the update is also stored, and --boot (run by
/// ksplice.service) applies the stored updates again after a reboot.
#[derive(Parser, Debug)]
#[command(name = "ksplice-apply", version, after_long_help = after_help(Tool::Apply))]
pub struct ApplyArgs {
    /// The core module to load if /dev/ksplice does not exist (default: the
    /// first of /lib/modules/$(uname -r)/extra/ksplice.ko and
    /// /lib/ksplice/ksplice.ko).
    #[arg(long, value_name = "PATH")]
    pub core: Option<PathBuf>,
    #[command(flatten)]
    pub retry: Retry,
    /// Once applied, store the update so that --boot applies it again after
    /// a reboot of the same kernel.
    #[arg(long, conflicts_with = "boot")]
    pub persist: bool,
    /// Apply every stored update for the running kernel (release and
    /// vmlinux build id), in the order they were stored; run at boot by
    /// ksplice.service. Skipped if an earlier boot died while applying.
    #[arg(long, alias = "all-persisted")]
    pub boot: bool,
    /// With --boot: apply even though an earlier boot died while applying,
    /// and re-enable automatic re-apply.
    // (`requires = "boot"` would be met by --boot's default value.)
    #[arg(long, conflicts_with = "update")]
    pub after_crash: bool,
    #[command(flatten)]
    pub state: StateDirArg,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The update, as written by ksplice-create.
    #[arg(required_unless_present = "boot", conflicts_with = "boot")]
    pub update: Option<PathBuf>,
}

/// Undo an applied ksplice update, restoring the original code.
///
/// The update's module (update.ko) stays loaded after the undo: an open
/// file, a timer, a work item or an RCU callback may still point into its
/// code, and nothing can prove that none does. `--unload` also unloads it,
/// after the kernel has waited for pending RCU callbacks.
#[derive(Parser, Debug)]
#[command(name = "ksplice-undo", version, after_long_help = after_help(Tool::Undo))]
pub struct UndoArgs {
    #[command(flatten)]
    pub retry: Retry,
    /// Also unload update.ko (for an update already reversed, only that).
    #[arg(long)]
    pub unload: bool,
    /// Also remove the update from the running kernel's stored set, so it is
    /// not applied again at boot (updates stored for other kernels stay).
    #[arg(long)]
    pub persist: bool,
    #[command(flatten)]
    pub state: StateDirArg,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The update id (see ksplice-view).
    pub id: String,
}

/// Show the ksplice updates of the running kernel and the stored set.
///
/// For each update: its state, the functions it replaces, when it was
/// applied and its stop_machine pause, what it fixes; then the updates
/// stored for reboots, for this kernel and others, and whether automatic
/// re-apply at boot is enabled.
#[derive(Parser, Debug)]
#[command(name = "ksplice-view", version, after_long_help = after_help(Tool::View))]
pub struct ViewArgs {
    /// Show only this update.
    pub id: Option<String>,
    /// Print JSON (schema in README, "schema_version") instead of text.
    #[arg(long)]
    pub json: bool,
    /// Re-check the live kernel against every applied update (or ID)
    /// without changing anything: each trampoline still holds its jmp, the
    /// new code is what was applied, and no other text user took a
    /// function since. Exits 5 naming what changed.
    #[arg(long, conflicts_with = "json")]
    pub verify: bool,
    #[command(flatten)]
    pub state: StateDirArg,
    /// More log output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Print system information, with the release applied updates bring.
///
/// Like uname(1), except that -r (and -a) print the effective kernel
/// release: the highest --effective-release among the applied updates, or
/// the running release when none carries one.
#[derive(Parser, Debug)]
#[command(name = "ksplice-uname", version, after_long_help = after_help(Tool::Uname))]
pub struct UnameArgs {
    /// Everything, in the order -s -n -r -v -m -o.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// The kernel name.
    #[arg(short = 's', long)]
    pub kernel_name: bool,
    /// The network node host name.
    #[arg(short = 'n', long)]
    pub nodename: bool,
    /// The effective kernel release.
    #[arg(short = 'r', long)]
    pub kernel_release: bool,
    /// The kernel version.
    #[arg(short = 'v', long)]
    pub kernel_version: bool,
    /// The machine hardware name.
    #[arg(short = 'm', long)]
    pub machine: bool,
    /// The operating system.
    #[arg(short = 'o', long)]
    pub operating_system: bool,
    #[command(flatten)]
    pub state: StateDirArg,
}

/// `--state-dir`, shared by the tools that read or write stored updates.
#[derive(Clone, Debug, clap::Args)]
pub struct StateDirArg {
    /// Where updates are stored for reboots.
    #[arg(long, value_name = "DIR", env = "KSPLICE_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// The tools, for documentation generators and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Create,
    Apply,
    Undo,
    View,
    Uname,
}

impl Tool {
    /// Every tool, in the order the README lists them.
    pub const ALL: [Tool; 5] = [
        Tool::Create,
        Tool::Apply,
        Tool::Undo,
        Tool::View,
        Tool::Uname,
    ];

    /// The clap definition the binary parses with.
    pub fn command(self) -> clap::Command {
        match self {
            Tool::Create => CreateArgs::command(),
            Tool::Apply => ApplyArgs::command(),
            Tool::Undo => UndoArgs::command(),
            Tool::View => ViewArgs::command(),
            Tool::Uname => UnameArgs::command(),
        }
    }

    /// The exit codes the tool can end with.
    pub fn exit_codes(self) -> &'static [ExitStatus] {
        use ExitStatus::*;
        match self {
            Tool::Create => &[Success, Failure, Usage, Refused, BuildFailed],
            Tool::Apply | Tool::Undo => &[
                Success,
                Failure,
                Usage,
                NotLoaded,
                PermissionDenied,
                Refused,
            ],
            Tool::View => &[Success, Failure, Usage, NotLoaded, PermissionDenied],
            Tool::Uname => &[Success, Failure, Usage, PermissionDenied],
        }
    }

    /// Files the tool reads or writes, as (path, what).
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        const CORE: (&str, &str) = (
            "/lib/modules/RELEASE/extra/ksplice.ko, /lib/ksplice/ksplice.ko",
            "the core module ksplice-apply loads when /dev/ksplice is missing",
        );
        const STORED: (&str, &str) = (
            "/var/lib/ksplice/kernels/RELEASE/BUILD-ID/NNNN-ID.ko",
            "updates stored by ksplice-apply --persist, applied in NNNN order at boot",
        );
        const GUARD: (&str, &str) = (
            "/var/lib/ksplice/boot-in-progress, /var/lib/ksplice/boot-disabled",
            "the crash-loop guard: written before a boot-time apply and removed after; \
             left over, it disables automatic re-apply until ksplice-apply --boot --after-crash",
        );
        const APPLIED: (&str, &str) = (
            "/var/lib/ksplice/applied/ID.json",
            "what ksplice-apply recorded about an applied update (description, CVEs, effective release)",
        );
        match self {
            Tool::Create => &[],
            Tool::Apply => &[CORE, STORED, GUARD, APPLIED],
            Tool::Undo => &[STORED, APPLIED],
            Tool::View => &[STORED, GUARD, APPLIED],
            Tool::Uname => &[APPLIED],
        }
    }
}

/// The text after the options in `--help`: exit codes and files.
fn after_help(tool: Tool) -> String {
    let mut text = String::from("Exit status:\n");
    for code in tool.exit_codes() {
        text += &format!("  {}  {}\n", *code as u8, code.meaning());
    }
    if !tool.files().is_empty() {
        text += "\nFiles:\n";
        for (path, what) in tool.files() {
            text += &format!("  {path}\n      {what}\n");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_is_consistent() {
        for tool in Tool::ALL {
            tool.command().debug_assert();
        }
    }

    #[test]
    fn create_takes_metadata_and_signing_options() {
        let args = CreateArgs::try_parse_from([
            "ksplice-create",
            "--kernel",
            "/k",
            "--description",
            "fix the loadavg leak",
            "--cve",
            "CVE-2026-1234",
            "--cve",
            "CVE-2025-99999",
            "--effective-release",
            "7.3.5",
            "--sign-key",
            "k.pem",
            "--sign-cert",
            "k.x509",
            "fix.patch",
        ])
        .unwrap();
        assert_eq!(args.cves, ["CVE-2026-1234", "CVE-2025-99999"]);
        assert_eq!(args.effective_release.as_deref(), Some("7.3.5"));
        assert_eq!(args.description.as_deref(), Some("fix the loadavg leak"));
        assert_eq!(args.sign_key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn create_refuses_malformed_metadata_and_a_key_without_its_certificate() {
        let base = ["ksplice-create", "--kernel", "/k", "p.patch"];
        let with = |extra: &[&str]| {
            let mut argv: Vec<&str> = base.to_vec();
            argv.extend_from_slice(extra);
            CreateArgs::try_parse_from(argv)
        };
        assert!(with(&["--cve", "CVE-26-1"]).is_err());
        assert!(with(&["--cve", "2026-1234"]).is_err());
        assert!(with(&["--effective-release", "7.3.5 extra"]).is_err());
        assert!(with(&["--description", "two\nlines"]).is_err());
        assert!(with(&["--sign-key", "k.pem"]).is_err());
        assert!(with(&["--sign-cert", "k.x509"]).is_err());
    }

    #[test]
    fn apply_needs_an_update_unless_booting_and_persist_is_not_for_boot() {
        let args = ApplyArgs::try_parse_from(["ksplice-apply", "--persist", "u.ko"]).unwrap();
        assert!(args.persist && !args.boot);
        assert_eq!(args.update, Some(PathBuf::from("u.ko")));
        let args = ApplyArgs::try_parse_from(["ksplice-apply", "--all-persisted"]).unwrap();
        assert!(args.boot && args.update.is_none());
        assert!(ApplyArgs::try_parse_from(["ksplice-apply"]).is_err());
        assert!(ApplyArgs::try_parse_from(["ksplice-apply", "--boot", "u.ko"]).is_err());
        assert!(ApplyArgs::try_parse_from(["ksplice-apply", "--boot", "--persist"]).is_err());
        assert!(ApplyArgs::try_parse_from(["ksplice-apply", "--after-crash", "u.ko"]).is_err());
        assert!(ApplyArgs::try_parse_from(["ksplice-apply", "--after-crash"]).is_err());
        let args = ApplyArgs::try_parse_from(["ksplice-apply", "--boot", "--after-crash"]).unwrap();
        assert!(args.after_crash);
    }

    #[test]
    fn the_state_directory_has_a_default_and_an_option() {
        let args = UndoArgs::try_parse_from(["ksplice-undo", "--persist", "x"]).unwrap();
        assert!(args.persist);
        // KSPLICE_STATE_DIR may be set in the test environment.
        if std::env::var_os("KSPLICE_STATE_DIR").is_none() {
            assert_eq!(args.state.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        }
        let args =
            ViewArgs::try_parse_from(["ksplice-view", "--state-dir", "/tmp/s", "--json"]).unwrap();
        assert_eq!(args.state.state_dir, PathBuf::from("/tmp/s"));
        assert!(args.json);
    }

    #[test]
    fn view_takes_an_id_and_refuses_unknown_flags() {
        let args = ViewArgs::try_parse_from(["ksplice-view", "abc", "--json"]).unwrap();
        assert_eq!(args.id.as_deref(), Some("abc"));
        assert!(ViewArgs::try_parse_from(["ksplice-view", "--bogus"]).is_err());
    }

    #[test]
    fn uname_takes_the_short_flags_of_uname() {
        let args = UnameArgs::try_parse_from(["ksplice-uname", "-rv"]).unwrap();
        assert!(args.kernel_release && args.kernel_version && !args.all);
        let args = UnameArgs::try_parse_from(["ksplice-uname", "-a"]).unwrap();
        assert!(args.all);
        assert!(UnameArgs::try_parse_from(["ksplice-uname", "-x"]).is_err());
    }

    #[test]
    fn help_lists_each_tools_exit_codes() {
        let help = Tool::View.command().render_long_help().to_string();
        assert!(help.contains("  3  ksplice.ko is not loaded"), "{help}");
        assert!(!help.contains("  6  "), "{help}");
    }
}
