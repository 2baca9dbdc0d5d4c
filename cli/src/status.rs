//! What `ksplice-view` and `ksplice-uname` report: the updates applied to
//! the running kernel, the stored set, the crash-loop guard and the
//! effective kernel release. The JSON form is a stable interface: its
//! schema is documented in README ("ksplice-view --json"), and any
//! incompatible change bumps [`SCHEMA_VERSION`].

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use ksplice_core::uapi::{FunctionState, UpdateEntry, UpdateState};
use serde::Serialize;

use crate::device::Device;
use crate::metadata::{compare_releases, Metadata};
use crate::module::UpdateFile;
use crate::persist::{Guard, KernelId, StateDir, Stored};
use crate::Error;

/// Version of the `ksplice-view --json` schema.
pub const SCHEMA_VERSION: u32 = 1;

/// The keys of the top-level JSON object, of each `updates` entry and of
/// each `persisted` entry (README documents each; a test checks both).
pub const SCHEMA_TOP: [&str; 9] = [
    "schema_version",
    "kernel_release",
    "kernel_build_id",
    "effective_release",
    "core_loaded",
    "abi_version",
    "updates",
    "persisted",
    "auto_apply",
];
pub const SCHEMA_UPDATE: [&str; 15] = [
    "id",
    "state",
    "shadowed",
    "shadowed_functions",
    "functions",
    "objects",
    "pending",
    "reversed_at",
    "applied_at",
    "applied_at_ns",
    "pause_ns",
    "description",
    "cves",
    "effective_release",
    "persisted",
];
pub const SCHEMA_PERSISTED: [&str; 12] = [
    "id",
    "order",
    "kernel_release",
    "kernel_build_id",
    "applicable",
    "applied",
    "file",
    "signed",
    "description",
    "cves",
    "effective_release",
    "error",
];

/// Everything `ksplice-view` shows.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub kernel_release: String,
    /// Hex, empty when the running kernel has no build id note.
    pub kernel_build_id: String,
    /// What `ksplice-uname -r` prints.
    pub effective_release: String,
    /// Whether ksplice.ko is loaded (`/dev/ksplice` exists).
    pub core_loaded: bool,
    /// ksplice.ko's ABI version, when loaded.
    pub abi_version: Option<u32>,
    /// The updates ksplice.ko knows, in the order they were applied.
    pub updates: Vec<UpdateReport>,
    /// The stored set, every kernel's, in the order boot applies them.
    pub persisted: Vec<PersistedReport>,
    /// Whether boot-time re-apply is enabled.
    pub auto_apply: AutoApply,
}

/// One update ksplice.ko knows.
#[derive(Debug, Serialize)]
pub struct UpdateReport {
    pub id: String,
    /// `applied`; other values come from newer modules (`reversed` for an
    /// undone update whose module is still loaded), `unknown` if this
    /// version of the tools does not know the value.
    pub state: &'static str,
    /// Some of its new code does not run: another text user (livepatch, a
    /// direct ftrace trampoline) took one of its functions, or later
    /// updates replace all of them.
    pub shadowed: bool,
    /// Function → what runs for it instead: a later applied update's id, or
    /// the other text user ("livepatch module NAME").
    pub shadowed_functions: BTreeMap<String, String>,
    /// The functions it replaces.
    pub functions: Vec<String>,
    /// Function → the object it lives in (`vmlinux` or a module).
    pub objects: BTreeMap<String, String>,
    /// Functions of modules that are not loaded: patched when they load.
    pub pending: Vec<String>,
    /// RFC 3339, UTC, seconds.
    pub applied_at: String,
    /// When it was undone, if it is reversed.
    pub reversed_at: Option<String>,
    pub applied_at_ns: u64,
    /// The stop_machine pause of the apply.
    pub pause_ns: u64,
    /// From update.ko, as recorded by ksplice-apply (null if not recorded).
    pub description: Option<String>,
    pub cves: Vec<String>,
    pub effective_release: Option<String>,
    /// Whether it is in the running kernel's stored set.
    pub persisted: bool,
}

/// One stored update.
#[derive(Debug, Serialize)]
pub struct PersistedReport {
    pub id: String,
    /// Its place in the order of application for its kernel.
    pub order: u32,
    pub kernel_release: String,
    pub kernel_build_id: String,
    /// Built for the running kernel (release and build id).
    pub applicable: bool,
    /// Applied to the running kernel now.
    pub applied: bool,
    pub file: String,
    /// Carries a module signature (whether the kernel trusts the key is
    /// the kernel's decision, at load time).
    pub signed: bool,
    pub description: Option<String>,
    pub cves: Vec<String>,
    pub effective_release: Option<String>,
    /// Set when the file cannot be read as an update.
    pub error: Option<String>,
}

/// The crash-loop guard.
#[derive(Debug, Serialize)]
pub struct AutoApply {
    pub enabled: bool,
    /// Why it is disabled.
    pub reason: Option<String>,
}

/// One update as ksplice.ko lists it, with what else is known about it.
pub struct Listed {
    pub entry: UpdateEntry,
    pub functions: Vec<String>,
    /// Function → object.
    pub objects: BTreeMap<String, String>,
    /// Function → the other text user the kernel says took it.
    pub taken_by: BTreeMap<String, String>,
    /// Functions whose module is not loaded.
    pub pending: Vec<String>,
    /// Recorded by ksplice-apply for exactly this apply, if at all.
    pub metadata: Option<Metadata>,
}

/// What the core module said, if loaded.
pub struct CoreState {
    pub abi_version: u32,
    pub listed: Vec<Listed>,
}

/// Asks ksplice.ko what it has applied, with the functions of each and
/// the metadata ksplice-apply recorded for exactly that apply.
pub fn core_state(state: &StateDir) -> Result<CoreState, Error> {
    let device = Device::open()?;
    let listed = device
        .list()?
        .into_iter()
        .map(|entry| {
            let id = entry
                .id_str()
                .ok_or(Error::MalformedReply { what: "update id" })?;
            let functions = device.functions(id)?;
            Ok(Listed {
                objects: functions
                    .iter()
                    .map(|f| (f.name.clone(), f.object.clone()))
                    .collect(),
                taken_by: functions
                    .iter()
                    .filter_map(|f| Some((f.name.clone(), f.shadowed_by.clone()?)))
                    .collect(),
                pending: functions
                    .iter()
                    .filter(|f| f.state == Some(FunctionState::Pending))
                    .map(|f| f.name.clone())
                    .collect(),
                functions: functions.into_iter().map(|f| f.name).collect(),
                metadata: state
                    .applied_record(id, entry.applied_at_ns)
                    .map(|r| r.metadata),
                entry,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(CoreState {
        abi_version: device.info().abi_version,
        listed,
    })
}

/// A stored update and the file read back (or why it cannot be).
pub type StoredFile = (Stored, Result<UpdateFile, Error>);

/// Every stored update, each read back.
pub fn stored(state: &StateDir) -> Result<Vec<StoredFile>, Error> {
    Ok(state
        .stored()?
        .into_iter()
        .map(|s| {
            let file = UpdateFile::read(&s.path).and_then(|f| s.check(&f).map(|()| f));
            (s, file)
        })
        .collect())
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// Whether a listed update's code is in effect.
pub fn is_applied(entry: &UpdateEntry) -> bool {
    UpdateState::from_u32(entry.state) == Some(UpdateState::Applied)
}

/// The release the applied updates bring the kernel up to: the highest of
/// the running release and their effective releases.
pub fn effective_release<'a>(
    running: &'a str,
    applied: impl IntoIterator<Item = &'a Metadata>,
) -> &'a str {
    applied
        .into_iter()
        .filter_map(|m| m.effective_release.as_deref())
        .fold(running, |best, r| {
            if compare_releases(r, best).is_gt() {
                r
            } else {
                best
            }
        })
}

impl Report {
    /// Puts the report together from what the kernel, the state directory
    /// and the stored files say.
    pub fn build(
        kernel: &KernelId,
        core: Option<CoreState>,
        stored: Vec<StoredFile>,
        guard: Guard,
    ) -> Self {
        let listed = core.as_ref().map_or(&[][..], |c| &c.listed[..]);
        let applied: Vec<&Listed> = listed.iter().filter(|l| is_applied(&l.entry)).collect();
        // The update whose code runs for each function: the last applied.
        let mut runs: BTreeMap<&str, &str> = BTreeMap::new();
        for l in &applied {
            let id = l.entry.id_str().unwrap_or("?");
            for f in &l.functions {
                runs.insert(f, id);
            }
        }
        let applied_ids: Vec<&str> = applied.iter().filter_map(|l| l.entry.id_str()).collect();
        let effective = effective_release(
            &kernel.release,
            applied.iter().filter_map(|l| l.metadata.as_ref()),
        )
        .to_owned();
        let updates = listed
            .iter()
            .map(|l| {
                let id = l.entry.id_str().unwrap_or("?").to_owned();
                let mut shadowed_functions: BTreeMap<String, String> = if is_applied(&l.entry) {
                    l.functions
                        .iter()
                        .filter_map(|f| {
                            let by = *runs.get(f.as_str())?;
                            (by != id).then(|| (f.clone(), by.to_owned()))
                        })
                        .collect()
                } else {
                    BTreeMap::new()
                };
                let taken = !l.taken_by.is_empty();
                shadowed_functions.extend(l.taken_by.clone());
                let meta = l.metadata.clone().unwrap_or_default();
                UpdateReport {
                    state: UpdateState::from_u32(l.entry.state)
                        .map_or("unknown", UpdateState::as_str),
                    shadowed: taken
                        || (!l.functions.is_empty()
                            && shadowed_functions.len() == l.functions.len()),
                    shadowed_functions,
                    functions: l.functions.clone(),
                    objects: l.objects.clone(),
                    pending: l.pending.clone(),
                    applied_at: rfc3339(l.entry.applied_at_ns),
                    reversed_at: (l.entry.reversed_at_ns != 0)
                        .then(|| rfc3339(l.entry.reversed_at_ns)),
                    applied_at_ns: l.entry.applied_at_ns,
                    pause_ns: l.entry.pause_ns,
                    description: meta.description,
                    cves: meta.cves,
                    effective_release: meta.effective_release,
                    persisted: stored
                        .iter()
                        .any(|(s, _)| s.kernel == *kernel && s.id == id),
                    id,
                }
            })
            .collect();
        let persisted = stored
            .into_iter()
            .map(|(s, file)| {
                let applicable = s.kernel == *kernel;
                let (meta, signed, error) = match file {
                    Ok(f) => (f.metadata, f.signature.is_some(), None),
                    Err(e) => (Metadata::default(), false, Some(e.to_string())),
                };
                PersistedReport {
                    applied: applicable && applied_ids.contains(&s.id.as_str()),
                    applicable,
                    order: s.order,
                    kernel_release: s.kernel.release.clone(),
                    kernel_build_id: s.kernel.build_id_hex(),
                    file: s.path.display().to_string(),
                    signed,
                    description: meta.description,
                    cves: meta.cves,
                    effective_release: meta.effective_release,
                    error,
                    id: s.id,
                }
            })
            .collect();
        let auto_apply = match guard {
            Guard::Enabled => AutoApply {
                enabled: true,
                reason: None,
            },
            Guard::Disabled { reason } => AutoApply {
                enabled: false,
                reason: Some(reason),
            },
        };
        Self {
            schema_version: SCHEMA_VERSION,
            kernel_release: kernel.release.clone(),
            kernel_build_id: kernel.build_id_hex(),
            effective_release: effective,
            core_loaded: core.is_some(),
            abi_version: core.map(|c| c.abi_version),
            updates,
            persisted,
            auto_apply,
        }
    }

    /// Keeps only update `id`; whether the kernel or the stored set knows it.
    pub fn retain_id(&mut self, id: &str) -> bool {
        self.updates.retain(|u| u.id == id);
        self.persisted.retain(|p| p.id == id);
        !self.updates.is_empty() || !self.persisted.is_empty()
    }

    /// The JSON form, pretty-printed.
    pub fn write_json(&self, out: &mut impl Write) -> Result<(), Error> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)
    }

    /// The text form.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        write!(out, "kernel {}", self.kernel_release)?;
        if self.effective_release != self.kernel_release {
            write!(out, ", effective release {}", self.effective_release)?;
        }
        writeln!(out)?;
        if !self.core_loaded {
            writeln!(out, "ksplice.ko is not loaded: no updates applied")?;
        } else if self.updates.is_empty() {
            writeln!(out, "no updates applied (kernel {})", self.kernel_release)?;
        } else {
            writeln!(
                out,
                "{:<32} {:<9} {:>5}  {:<20}  {:>10}",
                "ID", "STATE", "FUNCS", "APPLIED", "PAUSE"
            )?;
            for u in &self.updates {
                writeln!(
                    out,
                    "{:<32} {:<9} {:>5}  {:<20}  {:>7.1} us",
                    u.id,
                    if u.shadowed && u.state == "applied" {
                        "shadowed"
                    } else {
                        u.state
                    },
                    u.functions.len(),
                    u.applied_at,
                    u.pause_ns as f64 / 1000.0
                )?;
                write_metadata(out, &u.description, &u.cves, &u.effective_release)?;
                for f in &u.functions {
                    let object = u.objects.get(f).map_or("vmlinux", String::as_str);
                    match u.shadowed_functions.get(f) {
                        Some(by) => writeln!(out, "    replaces {f} ({object}), shadowed by {by}")?,
                        None if u.pending.contains(f) => writeln!(
                            out,
                            "    replaces {f} ({object}), pending: patched when {object} loads"
                        )?,
                        None => writeln!(out, "    replaces {f} ({object})")?,
                    }
                }
                if let Some(at) = &u.reversed_at {
                    writeln!(out, "    reversed at {at}; update.ko stays loaded")?;
                }
                if u.persisted {
                    writeln!(out, "    persisted: applied again at boot")?;
                }
            }
        }
        if self.persisted.is_empty() {
            writeln!(out, "no stored updates")?;
        } else {
            writeln!(out, "stored updates (applied at boot, in order):")?;
            for p in &self.persisted {
                let status = match (&p.error, p.applicable, p.applied) {
                    (Some(e), _, _) => format!("unreadable: {e}"),
                    (None, false, _) => "not applicable to the running kernel".into(),
                    (None, true, true) => "applied".into(),
                    (None, true, false) => "not applied".into(),
                };
                writeln!(
                    out,
                    "  {:>4} {:<32} {} {}{}: {status}",
                    p.order,
                    p.id,
                    p.kernel_release,
                    p.kernel_build_id.get(..12).unwrap_or(&p.kernel_build_id),
                    if p.signed { ", signed" } else { "" },
                )?;
                write_metadata(out, &p.description, &p.cves, &p.effective_release)?;
            }
        }
        match &self.auto_apply.reason {
            None => writeln!(out, "automatic re-apply at boot: enabled"),
            Some(reason) => writeln!(out, "automatic re-apply at boot: DISABLED: {reason}"),
        }
    }
}

fn write_metadata(
    out: &mut impl Write,
    description: &Option<String>,
    cves: &[String],
    effective: &Option<String>,
) -> std::io::Result<()> {
    if let Some(d) = description {
        writeln!(out, "    {d}")?;
    }
    if !cves.is_empty() {
        writeln!(out, "    fixes {}", cves.join(", "))?;
    }
    if let Some(r) = effective {
        writeln!(out, "    effective release {r}")?;
    }
    Ok(())
}

/// The fields `uname` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uts {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

impl Uts {
    /// The running system's.
    pub fn running() -> Self {
        match nix::sys::utsname::uname() {
            Ok(u) => {
                let s = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
                Self {
                    sysname: s(u.sysname()),
                    nodename: s(u.nodename()),
                    release: s(u.release()),
                    version: s(u.version()),
                    machine: s(u.machine()),
                }
            }
            Err(_) => Self::default(),
        }
    }
}

/// Which fields to print, in uname's order: -s -n -r -v -m -o.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnameFields {
    pub sysname: bool,
    pub nodename: bool,
    pub release: bool,
    pub version: bool,
    pub machine: bool,
    pub os: bool,
}

/// What `ksplice-uname` prints: uname's line with the effective release.
pub fn uname_line(uts: &Uts, effective_release: &str, fields: UnameFields) -> String {
    let mut fields = fields;
    let any = fields.sysname
        || fields.nodename
        || fields.release
        || fields.version
        || fields.machine
        || fields.os;
    if !any {
        fields.sysname = true;
    }
    let parts = [
        (fields.sysname, uts.sysname.as_str()),
        (fields.nodename, uts.nodename.as_str()),
        (fields.release, effective_release),
        (fields.version, uts.version.as_str()),
        (fields.machine, uts.machine.as_str()),
        (fields.os, "GNU/Linux"),
    ];
    parts
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, v)| *v)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::fixture;
    use crate::persist::StateDir;

    const BUILD: [u8; 2] = [0x12, 0xab];

    fn running() -> KernelId {
        KernelId {
            release: "7.3.4".into(),
            build_id: BUILD.to_vec(),
        }
    }

    fn listed(id: &str, functions: &[&str], effective: Option<&str>) -> Listed {
        let mut entry = UpdateEntry::zeroed();
        entry.id[..id.len()].copy_from_slice(id.as_bytes());
        entry.state = UpdateState::Applied as u32;
        entry.functions = functions.len() as u32;
        entry.applied_at_ns = 1_780_000_000_000_000_000;
        entry.pause_ns = 12_345;
        Listed {
            entry,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            objects: BTreeMap::new(),
            taken_by: BTreeMap::new(),
            pending: Vec::new(),
            metadata: effective.map(|r| Metadata {
                effective_release: Some(r.into()),
                cves: vec!["CVE-2026-1111".into()],
                description: Some(format!("fix {id}")),
            }),
        }
    }

    fn core(listed: Vec<Listed>) -> Option<CoreState> {
        Some(CoreState {
            abi_version: ksplice_core::uapi::ABI_VERSION,
            listed,
        })
    }

    #[test]
    fn the_effective_release_is_the_highest_applied_one_never_below_the_running() {
        let meta = |r: &str| Metadata {
            effective_release: Some(r.into()),
            ..Metadata::default()
        };
        assert_eq!(effective_release("7.3.4", &[]), "7.3.4");
        assert_eq!(
            effective_release(
                "7.3.4",
                &[meta("7.3.6"), meta("7.3.5"), Metadata::default()]
            ),
            "7.3.6"
        );
        assert_eq!(effective_release("7.3.4", &[meta("7.3.3")]), "7.3.4");
        assert_eq!(
            effective_release("7.3.4", &[meta("7.3.10"), meta("7.3.9")]),
            "7.3.10"
        );
    }

    #[test]
    fn unknown_and_not_applied_states_do_not_raise_the_release() {
        let mut other = listed("b", &["g"], Some("7.3.9"));
        other.entry.state = 77;
        let report = Report::build(
            &running(),
            core(vec![listed("a", &["f"], Some("7.3.5")), other]),
            Vec::new(),
            Guard::Enabled,
        );
        assert_eq!(report.effective_release, "7.3.5");
        assert_eq!(report.updates[1].state, "unknown");
        assert!(!report.updates[1].shadowed);
    }

    #[test]
    fn an_update_whose_functions_a_later_one_replaces_is_shadowed() {
        let report = Report::build(
            &running(),
            core(vec![
                listed("d", &["loadavg_proc_show"], None),
                listed("x", &["f", "g"], None),
                listed("h", &["loadavg_proc_show", "f"], None),
            ]),
            Vec::new(),
            Guard::Enabled,
        );
        let by_id = |id: &str| report.updates.iter().find(|u| u.id == id).unwrap();
        assert!(by_id("d").shadowed);
        assert_eq!(by_id("d").shadowed_functions["loadavg_proc_show"], "h");
        assert!(!by_id("x").shadowed, "g still runs x's code");
        assert_eq!(by_id("x").shadowed_functions.len(), 1);
        assert!(!by_id("h").shadowed);
    }

    #[test]
    fn functions_of_modules_that_are_not_loaded_are_shown_pending() {
        let mut l = listed("m", &["ksplice_target_answer", "loadavg_proc_show"], None);
        l.objects
            .insert("ksplice_target_answer".into(), "ksplice_target".into());
        l.objects
            .insert("loadavg_proc_show".into(), "vmlinux".into());
        l.pending.push("ksplice_target_answer".into());
        let report = Report::build(&running(), core(vec![l]), Vec::new(), Guard::Enabled);
        assert_eq!(report.updates[0].pending, ["ksplice_target_answer"]);
        assert!(!report.updates[0].shadowed, "pending is not shadowed");
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "replaces ksplice_target_answer (ksplice_target), pending: patched when ksplice_target loads"
            ),
            "{text}"
        );
        assert!(
            text.contains("replaces loadavg_proc_show (vmlinux)\n"),
            "{text}"
        );
        let mut json = Vec::new();
        report.write_json(&mut json).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["updates"][0]["pending"][0], "ksplice_target_answer");
    }

    #[test]
    fn the_stored_set_says_which_updates_apply_to_this_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(&tmp.path().join("state"));
        let add = |id: &str, release: &str, build: &[u8]| {
            let p = fixture::update(tmp.path(), id, release, build, &Metadata::default());
            state.store(&UpdateFile::read(&p).unwrap()).unwrap();
        };
        add("a", "7.3.4", &BUILD);
        add("b", "7.3.4", &BUILD);
        add("old", "7.2.12", &[1, 2]);
        let report = Report::build(
            &running(),
            core(vec![listed("a", &["f"], None)]),
            stored(&state).unwrap(),
            state.guard().unwrap(),
        );
        let p = |id: &str| report.persisted.iter().find(|p| p.id == id).unwrap();
        assert!(p("a").applicable && p("a").applied);
        assert!(p("b").applicable && !p("b").applied);
        assert!(!p("old").applicable && !p("old").applied);
        assert!(report.updates[0].persisted);
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("not applicable to the running kernel"),
            "{text}"
        );
        assert!(
            text.contains("automatic re-apply at boot: enabled"),
            "{text}"
        );
    }

    #[test]
    fn a_stored_file_that_is_not_what_its_place_says_is_reported_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(&tmp.path().join("state"));
        let a = fixture::update(tmp.path(), "a", "7.3.4", &BUILD, &Metadata::default());
        let stored = state.store(&UpdateFile::read(&a).unwrap()).unwrap();
        let b = fixture::update(tmp.path(), "b", "7.3.4", &[7, 7], &Metadata::default());
        std::fs::copy(b, &stored.path).unwrap();
        let report = Report::build(&running(), None, stored_files(&state), Guard::Enabled);
        let error = report.persisted[0].error.as_deref().unwrap();
        assert!(error.contains("holds update b"), "{error}");
    }

    fn stored_files(state: &StateDir) -> Vec<StoredFile> {
        stored(state).unwrap()
    }

    /// The schema README documents: every key, at every level.
    #[test]
    fn json_has_the_documented_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let p = fixture::update(tmp.path(), "a", "7.3.4", &BUILD, &Metadata::default());
        state.store(&UpdateFile::read(&p).unwrap()).unwrap();
        let report = Report::build(
            &running(),
            core(vec![listed("a", &["f"], Some("7.3.5"))]),
            stored(&state).unwrap(),
            Guard::Disabled {
                reason: "crashed".into(),
            },
        );
        let mut out = Vec::new();
        report.write_json(&mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |k: &[&str]| {
            let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(keys(&json), sorted(&SCHEMA_TOP));
        assert_eq!(keys(&json["updates"][0]), sorted(&SCHEMA_UPDATE));
        assert_eq!(keys(&json["persisted"][0]), sorted(&SCHEMA_PERSISTED));
        assert_eq!(keys(&json["auto_apply"]), sorted(&["enabled", "reason"]));
        assert_eq!(json["effective_release"], "7.3.5");
        assert_eq!(json["updates"][0]["state"], "applied");
        assert_eq!(json["updates"][0]["cves"][0], "CVE-2026-1111");
        assert_eq!(json["updates"][0]["applied_at"], "2026-05-28T20:26:40Z");
        assert_eq!(json["persisted"][0]["kernel_build_id"], "12ab");
        assert_eq!(json["auto_apply"]["enabled"], false);
    }

    #[test]
    fn uname_prints_the_requested_fields_with_the_effective_release() {
        let uts = Uts {
            sysname: "Linux".into(),
            nodename: "db1".into(),
            release: "7.3.4".into(),
            version: "#1 SMP".into(),
            machine: "x86_64".into(),
        };
        let f = UnameFields::default();
        assert_eq!(uname_line(&uts, "7.3.5", f), "Linux");
        let r = UnameFields { release: true, ..f };
        assert_eq!(uname_line(&uts, "7.3.5", r), "7.3.5");
        let all = UnameFields {
            sysname: true,
            nodename: true,
            release: true,
            version: true,
            machine: true,
            os: true,
        };
        assert_eq!(
            uname_line(&uts, "7.3.5", all),
            "Linux db1 7.3.5 #1 SMP x86_64 GNU/Linux"
        );
    }
}
