//! The state directory (`/var/lib/ksplice` by default): updates stored for
//! reboots, the crash-loop guard of boot-time re-apply, and what
//! ksplice-apply recorded about each applied update.
//!
//! ```text
//! kernels/RELEASE/BUILD-ID/NNNN-ID.ko   stored updates, applied in NNNN order
//! boot-in-progress                      written before a boot-time apply, removed after
//! boot-disabled                         a boot died while applying: no automatic re-apply
//! applied/ID.json                       metadata of an applied update (this boot)
//! ```
//!
//! Updates are keyed by the kernel they were built for (release and vmlinux
//! build id, from their payload), so a reboot into another kernel applies
//! none of them, and they stay stored for when that kernel runs again.
//! Every file is written to a temporary name, fsynced and renamed, and the
//! directory fsynced, so a crash leaves either the old or the new state.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use log::{debug, info, warn};
use serde::{Deserialize, Serialize};

use crate::metadata::{self, Metadata};
use crate::module::UpdateFile;
use crate::Error;

/// A kernel build: its release and the GNU build id of its vmlinux.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelId {
    pub release: String,
    pub build_id: Vec<u8>,
}

impl KernelId {
    /// The running kernel: `uname -r` and the build id in
    /// `/sys/kernel/notes`.
    pub fn running() -> Result<Self, Error> {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .map_err(|e| Error::Io {
                path: PathBuf::from("uname"),
                source: e.into(),
            })?;
        let notes_path = Path::new("/sys/kernel/notes");
        let notes = fs::read(notes_path).map_err(|source| Error::Io {
            path: notes_path.to_owned(),
            source,
        })?;
        Ok(Self {
            release,
            build_id: build_id_from_notes(&notes).unwrap_or_default(),
        })
    }

    /// The kernel an update was built for.
    pub fn of_update(update: &UpdateFile) -> Self {
        Self {
            release: update.release.clone(),
            build_id: update.build_id.clone(),
        }
    }

    /// The build id in lower-case hex.
    pub fn build_id_hex(&self) -> String {
        self.build_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (build id {})", self.release, self.build_id_hex())
    }
}

/// The GNU build id (`NT_GNU_BUILD_ID` note of owner "GNU") in an ELF
/// note section such as `/sys/kernel/notes`.
pub fn build_id_from_notes(notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(notes.get(at..at + 4)?.try_into().ok()?))
    };
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = word(at)? as usize;
        let descsz = word(at + 4)? as usize;
        let kind = word(at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let end = desc_at.checked_add(align4(descsz)?)?;
        let name = notes.get(name_at..name_at + namesz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(notes.get(desc_at..desc_at + descsz)?.to_vec());
        }
        at = end;
    }
    None
}

/// An update in the stored set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its place in the order of application for its kernel.
    pub order: u32,
    /// The update id.
    pub id: String,
    /// The kernel it is stored for.
    pub kernel: KernelId,
    /// The stored update.ko.
    pub path: PathBuf,
}

impl Stored {
    /// The stored file must be the update its name and directory say.
    pub fn check(&self, update: &UpdateFile) -> Result<(), Error> {
        let kernel = KernelId::of_update(update);
        if update.id != self.id || kernel != self.kernel {
            return Err(Error::State {
                path: self.path.clone(),
                why: format!(
                    "holds update {} for kernel {kernel}, not {} for {}",
                    update.id, self.id, self.kernel
                ),
            });
        }
        Ok(())
    }
}

/// Whether boot-time re-apply may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// No crash was seen.
    Enabled,
    /// A boot died while applying; automatic re-apply stays off until
    /// `ksplice-apply --boot --after-crash`.
    Disabled { reason: String },
}

/// How one stored update fared at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    Applied,
    AlreadyApplied,
}

/// The outcome of boot-time re-apply.
#[derive(Debug)]
pub struct BootReport {
    /// The updates handled, in order.
    pub done: Vec<(Stored, Replayed)>,
    /// The update that failed, and why; later ones were not tried.
    pub failed: Option<(Stored, Error)>,
    /// Stored updates after the failed one, not tried.
    pub not_tried: Vec<Stored>,
}

/// What ksplice-apply recorded about an applied update, matched with the
/// kernel's list by id and time of apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub id: String,
    /// The `applied_at_ns` the kernel reported right after the apply.
    pub applied_at_ns: u64,
    pub metadata: Metadata,
    /// The file it was applied from.
    pub source: PathBuf,
}

const MARKER: &str = "boot-in-progress";
const DISABLED: &str = "boot-disabled";
const KERNELS: &str = "kernels";
const APPLIED: &str = "applied";
/// The name stored updates of a kernel without a build id go under.
const NO_BUILD_ID: &str = "no-build-id";

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kernel_dir(&self, kernel: &KernelId) -> Result<PathBuf, Error> {
        let release = metadata::parse_release(&kernel.release).map_err(|why| Error::State {
            path: self.root.clone(),
            why: format!(
                "cannot store updates for kernel release {:?}: {why}",
                kernel.release
            ),
        })?;
        let build = if kernel.build_id.is_empty() {
            NO_BUILD_ID.to_owned()
        } else {
            kernel.build_id_hex()
        };
        Ok(self.root.join(KERNELS).join(release).join(build))
    }

    /// Adds `update` to the stored set of the kernel it was built for, after
    /// every update stored there; an older copy of the same id is replaced.
    pub fn store(&self, update: &UpdateFile) -> Result<Stored, Error> {
        let kernel = KernelId::of_update(update);
        if kernel.build_id.is_empty() {
            return Err(Error::State {
                path: update.path.clone(),
                why: "the update names no vmlinux build id, so a reboot into another build of the same release could not be told apart; rebuild it against the kernel tree with its vmlinux".into(),
            });
        }
        let dir = self.kernel_dir(&kernel)?;
        create_dir(&dir)?;
        let existing = self.stored_in(&dir, &kernel)?;
        let order = existing.iter().map(|s| s.order).max().unwrap_or(0) + 1;
        let path = dir.join(format!("{order:04}-{}.ko", update.id));
        let data = fs::read(&update.path).map_err(|source| Error::Io {
            path: update.path.clone(),
            source,
        })?;
        write_durably(&path, &data)?;
        for old in existing.iter().filter(|s| s.id == update.id) {
            remove_durably(&old.path)?;
        }
        info!("stored {} as {}", update.id, path.display());
        Ok(Stored {
            order,
            id: update.id.clone(),
            kernel,
            path,
        })
    }

    /// Removes update `id` from `kernel`'s stored set; whether it was there.
    pub fn remove(&self, kernel: &KernelId, id: &str) -> Result<bool, Error> {
        let dir = self.kernel_dir(kernel)?;
        let mut found = false;
        for stored in self.stored_in(&dir, kernel)? {
            if stored.id == id {
                remove_durably(&stored.path)?;
                found = true;
            }
        }
        Ok(found)
    }

    /// `kernel`'s stored updates, in the order to apply them.
    pub fn stored_for(&self, kernel: &KernelId) -> Result<Vec<Stored>, Error> {
        self.stored_in(&self.kernel_dir(kernel)?, kernel)
    }

    /// Every stored update, for every kernel, grouped by kernel and in
    /// order within each.
    pub fn stored(&self) -> Result<Vec<Stored>, Error> {
        let mut all = Vec::new();
        for release_dir in read_dir_sorted(&self.root.join(KERNELS))? {
            let Some(release) = file_name(&release_dir) else {
                continue;
            };
            for build_dir in read_dir_sorted(&release_dir)? {
                let Some(build) = file_name(&build_dir) else {
                    continue;
                };
                let build_id = if build == NO_BUILD_ID {
                    Vec::new()
                } else {
                    match parse_hex(&build) {
                        Some(id) => id,
                        None => continue,
                    }
                };
                let kernel = KernelId {
                    release: release.clone(),
                    build_id,
                };
                all.extend(self.stored_in(&build_dir, &kernel)?);
            }
        }
        Ok(all)
    }

    fn stored_in(&self, dir: &Path, kernel: &KernelId) -> Result<Vec<Stored>, Error> {
        let mut stored: Vec<Stored> = read_dir_sorted(dir)?
            .into_iter()
            .filter_map(|path| {
                let name = file_name(&path)?;
                let (order, id) = name.strip_suffix(".ko")?.split_once('-')?;
                let order = order.parse().ok()?;
                ksplice_core::uapi::is_valid_id(id).then(|| Stored {
                    order,
                    id: id.to_owned(),
                    kernel: kernel.clone(),
                    path: path.clone(),
                })
            })
            .collect();
        stored.sort_by_key(|s| s.order);
        Ok(stored)
    }

    /// Whether boot-time re-apply may run.
    pub fn guard(&self) -> Result<Guard, Error> {
        for name in [DISABLED, MARKER] {
            let path = self.root.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => {
                    return Ok(Guard::Disabled {
                        reason: crash_reason(&text),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        Ok(Guard::Enabled)
    }

    /// Applies `kernel`'s stored updates in order with `apply`, under the
    /// crash-loop guard: each apply is bracketed by a durable marker, and a
    /// marker left by an earlier boot disables automatic re-apply until
    /// `after_crash` (`--after-crash`). Stops at the first failure, since
    /// later updates may be stacked on the failed one.
    pub fn replay(
        &self,
        kernel: &KernelId,
        after_crash: bool,
        mut apply: impl FnMut(&UpdateFile) -> Result<Replayed, Error>,
    ) -> Result<BootReport, Error> {
        let marker = self.root.join(MARKER);
        let disabled = self.root.join(DISABLED);
        if after_crash {
            remove_if_present(&marker)?;
            remove_if_present(&disabled)?;
        } else {
            if marker.exists() {
                // The previous boot died between marker and clear.
                fs::rename(&marker, &disabled).map_err(|source| Error::Io {
                    path: marker.clone(),
                    source,
                })?;
                sync_dir(&self.root)?;
            }
            if let Guard::Disabled { reason } = self.guard()? {
                return Err(Error::AutoApplyDisabled { reason });
            }
        }
        let stored = self.stored_for(kernel)?;
        let mut report = BootReport {
            done: Vec::new(),
            failed: None,
            not_tried: Vec::new(),
        };
        let mut pending = stored.into_iter();
        for entry in pending.by_ref() {
            let outcome = UpdateFile::read(&entry.path)
                .and_then(|update| entry.check(&update).map(|()| update))
                .and_then(|update| {
                    write_durably(&marker, marker_text(kernel, &entry).as_bytes())?;
                    let outcome = apply(&update);
                    // Still alive: whatever the outcome, this apply did not crash.
                    remove_durably(&marker)?;
                    outcome
                });
            match outcome {
                Ok(how) => report.done.push((entry, how)),
                Err(error) => {
                    report.failed = Some((entry, error));
                    break;
                }
            }
        }
        report.not_tried = pending.collect();
        Ok(report)
    }

    /// Records that `update` was applied at `applied_at_ns` (kernel time).
    pub fn record_applied(&self, update: &UpdateFile, applied_at_ns: u64) -> Result<(), Error> {
        let dir = self.root.join(APPLIED);
        create_dir(&dir)?;
        let record = AppliedRecord {
            id: update.id.clone(),
            applied_at_ns,
            metadata: update.metadata.clone(),
            source: update.path.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::State {
            path: dir.clone(),
            why: e.to_string(),
        })?;
        write_durably(&dir.join(format!("{}.json", update.id)), &json)
    }

    /// Drops the record of update `id` (it was undone).
    pub fn forget_applied(&self, id: &str) -> Result<(), Error> {
        remove_if_present(&self.root.join(APPLIED).join(format!("{id}.json")))
    }

    /// The record of update `id` if it is the one applied at
    /// `applied_at_ns`; a record from an earlier apply or boot is ignored.
    pub fn applied_record(&self, id: &str, applied_at_ns: u64) -> Option<AppliedRecord> {
        let path = self.root.join(APPLIED).join(format!("{id}.json"));
        let text = fs::read(&path).ok()?;
        let record: AppliedRecord = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => {
                warn!("{}: ignored: {e}", path.display());
                return None;
            }
        };
        (record.id == id && record.applied_at_ns == applied_at_ns).then_some(record)
    }
}

fn marker_text(kernel: &KernelId, entry: &Stored) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "update={}\nrelease={}\nbuild_id={}\nfile={}\nstarted={now}\n",
        entry.id,
        kernel.release,
        kernel.build_id_hex(),
        entry.path.display()
    )
}

/// Why automatic re-apply is off, from a marker's text.
fn crash_reason(marker: &str) -> String {
    let field = |key: &str| {
        marker
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "a boot-time apply of stored update {} to kernel {} did not finish (started {}; the machine crashed or the command was killed); automatic re-apply is off until `ksplice-apply --boot --after-crash`",
        field("update"),
        field("release"),
        field("started")
    )
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `path` so that after a crash it holds either its old content or
/// all of `data`.
fn write_durably(path: &Path, data: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(data).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(dir)
}

fn remove_durably(path: &Path) -> Result<(), Error> {
    fs::remove_file(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The entries of `dir` sorted by name; none if it does not exist.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
    paths.sort();
    debug!("{}: {} entries", dir.display(), paths.len());
    Ok(paths)
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::fixture;

    const BUILD: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    fn kernel(release: &str, build_id: &[u8]) -> KernelId {
        KernelId {
            release: release.into(),
            build_id: build_id.to_vec(),
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        files: PathBuf,
        state: StateDir,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let files = tmp.path().join("files");
        fs::create_dir(&files).unwrap();
        let state = StateDir::new(&tmp.path().join("state"));
        Setup {
            _tmp: tmp,
            files,
            state,
        }
    }

    impl Setup {
        fn store(&self, id: &str, release: &str, build_id: &[u8]) -> Stored {
            let path = fixture::update(&self.files, id, release, build_id, &Metadata::default());
            self.state.store(&UpdateFile::read(&path).unwrap()).unwrap()
        }

        fn ids(&self, k: &KernelId) -> Vec<String> {
            self.state
                .stored_for(k)
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect()
        }
    }

    #[test]
    fn the_build_id_is_read_from_the_gnu_note_among_others() {
        let mut notes = Vec::new();
        let mut note = |name: &[u8], kind: u32, desc: &[u8]| {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
            notes.extend(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        };
        note(b"Xen\0", 3, &[1, 2, 3]);
        note(b"Linux\0", 6, b"7.3.4\0");
        note(b"GNU\0", 3, &BUILD);
        assert_eq!(build_id_from_notes(&notes), Some(BUILD.to_vec()));
        assert_eq!(build_id_from_notes(&notes[..notes.len() - 2]), None);
        assert_eq!(build_id_from_notes(&[]), None);
    }

    #[test]
    fn stored_updates_keep_their_order_and_a_re_store_moves_to_the_end() {
        let s = setup();
        let k = kernel("7.3.4", &BUILD);
        s.store("a", "7.3.4", &BUILD);
        s.store("b", "7.3.4", &BUILD);
        let c = s.store("c", "7.3.4", &BUILD);
        assert_eq!(c.order, 3);
        assert!(
            c.path.ends_with("kernels/7.3.4/deadbeef/0003-c.ko"),
            "{:?}",
            c.path
        );
        assert_eq!(s.ids(&k), ["a", "b", "c"]);
        // Applied again later (after an undo): it now comes last.
        s.store("a", "7.3.4", &BUILD);
        assert_eq!(s.ids(&k), ["b", "c", "a"]);
        // Ordering is numeric, not by name, past 9999.
        let dir = s.state.kernel_dir(&k).unwrap();
        fs::rename(dir.join("0004-a.ko"), dir.join("10000-a.ko")).unwrap();
        fs::rename(dir.join("0002-b.ko"), dir.join("9999-b.ko")).unwrap();
        assert_eq!(s.ids(&k), ["c", "b", "a"]);
    }

    #[test]
    fn each_kernel_build_has_its_own_set_and_removal_touches_only_it() {
        let s = setup();
        let running = kernel("7.3.4", &BUILD);
        s.store("a", "7.3.4", &BUILD);
        s.store("a", "7.3.4", &[1, 2, 3, 4]);
        s.store("b", "7.2.12", &BUILD);
        assert_eq!(s.ids(&running), ["a"]);
        assert_eq!(s.state.stored().unwrap().len(), 3);
        assert!(s.state.remove(&running, "a").unwrap());
        assert!(!s.state.remove(&running, "a").unwrap());
        assert!(s.ids(&running).is_empty());
        let left: Vec<(String, String)> = s
            .state
            .stored()
            .unwrap()
            .into_iter()
            .map(|st| (st.kernel.release, st.id))
            .collect();
        assert_eq!(
            left,
            [("7.2.12".into(), "b".into()), ("7.3.4".into(), "a".into())]
        );
    }

    #[test]
    fn an_update_without_a_build_id_is_not_stored() {
        let s = setup();
        let path = fixture::update(&s.files, "a", "7.3.4", &[], &Metadata::default());
        let err = s
            .state
            .store(&UpdateFile::read(&path).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("no vmlinux build id"), "{err}");
    }

    #[test]
    fn boot_applies_only_the_running_kernels_updates_in_order_under_a_marker() {
        let s = setup();
        s.store("a", "7.3.4", &BUILD);
        s.store("other-build", "7.3.4", &[9, 9]);
        s.store("b", "7.3.4", &BUILD);
        s.store("other-release", "7.3.5", &BUILD);
        let marker = s.state.root().join(MARKER);
        let mut seen = Vec::new();
        let report = s
            .state
            .replay(&kernel("7.3.4", &BUILD), false, |u| {
                let text = fs::read_to_string(&marker).expect("marker written before apply");
                assert!(text.contains(&format!("update={}\n", u.id)), "{text}");
                seen.push(u.id.clone());
                Ok(if u.id == "a" {
                    Replayed::AlreadyApplied
                } else {
                    Replayed::Applied
                })
            })
            .unwrap();
        assert_eq!(seen, ["a", "b"]);
        assert!(report.failed.is_none());
        let done: Vec<_> = report
            .done
            .iter()
            .map(|(s, h)| (s.id.as_str(), *h))
            .collect();
        assert_eq!(
            done,
            [("a", Replayed::AlreadyApplied), ("b", Replayed::Applied)]
        );
        assert!(!marker.exists(), "marker cleared after apply");
        assert_eq!(s.state.guard().unwrap(), Guard::Enabled);
    }

    #[test]
    fn boot_stops_at_the_first_refusal_and_clears_the_marker() {
        let s = setup();
        for id in ["a", "b", "c"] {
            s.store(id, "7.3.4", &BUILD);
        }
        let report = s
            .state
            .replay(&kernel("7.3.4", &BUILD), false, |u| {
                if u.id == "b" {
                    Err(Error::State {
                        path: u.path.clone(),
                        why: "refused".into(),
                    })
                } else {
                    Ok(Replayed::Applied)
                }
            })
            .unwrap();
        assert_eq!(report.done.len(), 1);
        assert_eq!(
            report.failed.as_ref().map(|(s, _)| s.id.as_str()),
            Some("b")
        );
        assert_eq!(
            report.not_tried.iter().map(|s| &s.id).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(!s.state.root().join(MARKER).exists());
        assert_eq!(s.state.guard().unwrap(), Guard::Enabled);
    }

    #[test]
    fn a_marker_left_by_a_dead_boot_disables_re_apply_until_after_crash() {
        let s = setup();
        s.store("a", "7.3.4", &BUILD);
        let k = kernel("7.3.4", &BUILD);
        // A boot that dies inside the apply: the marker stays behind.
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.state.replay(&k, false, |_| panic!("power cut"))
        }));
        assert!(crashed.is_err());
        assert!(matches!(s.state.guard().unwrap(), Guard::Disabled { .. }));
        // The next boot applies nothing and says why.
        let mut applied = 0;
        let err = s
            .state
            .replay(&k, false, |_| {
                applied += 1;
                Ok(Replayed::Applied)
            })
            .unwrap_err();
        assert_eq!(applied, 0);
        let text = err.to_string();
        assert!(text.contains("stored update a to kernel 7.3.4"), "{text}");
        assert!(text.contains("--after-crash"), "{text}");
        // And so does every boot after it, until the admin says otherwise.
        assert!(s
            .state
            .replay(&k, false, |_| Ok(Replayed::Applied))
            .is_err());
        let Guard::Disabled { reason } = s.state.guard().unwrap() else {
            panic!("guard re-enabled by itself");
        };
        assert!(reason.contains("did not finish"), "{reason}");
        let report = s.state.replay(&k, true, |_| Ok(Replayed::Applied)).unwrap();
        assert_eq!(report.done.len(), 1);
        assert_eq!(s.state.guard().unwrap(), Guard::Enabled);
    }

    #[test]
    fn a_stored_file_that_is_not_what_its_name_says_is_refused() {
        let s = setup();
        let k = kernel("7.3.4", &BUILD);
        let stored = s.store("a", "7.3.4", &BUILD);
        let other = fixture::update(&s.files, "b", "7.3.4", &BUILD, &Metadata::default());
        fs::copy(other, &stored.path).unwrap();
        let report = s
            .state
            .replay(&k, false, |_| Ok(Replayed::Applied))
            .unwrap();
        let (_, err) = report.failed.unwrap();
        assert!(err.to_string().contains("holds update b"), "{err}");
    }

    #[test]
    fn records_match_only_the_apply_they_were_written_for() {
        let s = setup();
        let meta = Metadata {
            effective_release: Some("7.3.5".into()),
            ..Metadata::default()
        };
        let path = fixture::update(&s.files, "a", "7.3.4", &BUILD, &meta);
        let update = UpdateFile::read(&path).unwrap();
        s.state.record_applied(&update, 1234).unwrap();
        let record = s.state.applied_record("a", 1234).unwrap();
        assert_eq!(record.metadata, meta);
        assert_eq!(s.state.applied_record("a", 999), None, "another apply of a");
        assert_eq!(s.state.applied_record("b", 1234), None);
        s.state.forget_applied("a").unwrap();
        assert_eq!(s.state.applied_record("a", 1234), None);
        s.state.forget_applied("a").unwrap();
    }
}
