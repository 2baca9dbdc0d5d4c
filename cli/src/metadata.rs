//! What an update says about itself: a description, the CVEs it fixes and
//! the kernel release it brings the kernel up to.
//!
//! ksplice-create stores them in update.ko's `.modinfo` (which module
//! signing covers) as `ksplice_description=`, `ksplice_cve=` (one entry per
//! CVE) and `ksplice_effective_release=`; [`Metadata::from_modinfo`] reads
//! them back.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

const DESCRIPTION: &str = "ksplice_description";
const CVE: &str = "ksplice_cve";
const EFFECTIVE_RELEASE: &str = "ksplice_effective_release";

/// Longest `--description`, in bytes.
pub const DESCRIPTION_MAX: usize = 200;
/// Longest `--effective-release`: `__NEW_UTS_LEN`.
pub const RELEASE_MAX: usize = 64;

/// An update's description, CVEs and effective release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// One line saying what the update fixes.
    pub description: Option<String>,
    /// The CVE ids it fixes, in the order given.
    pub cves: Vec<String>,
    /// The release `ksplice-uname -r` reports while it is applied.
    pub effective_release: Option<String>,
}

impl Metadata {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.description.is_none() && self.cves.is_empty() && self.effective_release.is_none()
    }

    /// The `.modinfo` entries (`key=value\0` each) that carry it.
    pub fn to_modinfo(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entry = |key: &str, value: &str| {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        };
        if let Some(d) = &self.description {
            entry(DESCRIPTION, d);
        }
        for cve in &self.cves {
            entry(CVE, cve);
        }
        if let Some(r) = &self.effective_release {
            entry(EFFECTIVE_RELEASE, r);
        }
        out
    }

    /// Reads the entries back from a whole `.modinfo` section. Values that
    /// would not pass the `ksplice-create` checks are dropped, not guessed.
    pub fn from_modinfo(modinfo: &[u8]) -> Self {
        let mut meta = Self::default();
        for entry in modinfo.split(|&b| b == 0) {
            let Ok(entry) = std::str::from_utf8(entry) else {
                continue;
            };
            let Some((key, value)) = entry.split_once('=') else {
                continue;
            };
            match key {
                DESCRIPTION => meta.description = parse_description(value).ok(),
                CVE => meta.cves.extend(parse_cve(value).ok()),
                EFFECTIVE_RELEASE => meta.effective_release = parse_release(value).ok(),
                _ => {}
            }
        }
        meta
    }
}

/// Checks a `--description`: one line of printable text.
pub fn parse_description(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > DESCRIPTION_MAX {
        return Err(format!("use 1 to {DESCRIPTION_MAX} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err("use one line without control characters".into());
    }
    Ok(text.to_owned())
}

/// Checks a `--cve`: `CVE-YYYY-N` with a 4-digit year and at least 4 digits.
pub fn parse_cve(text: &str) -> Result<String, String> {
    let mut parts = text.split('-');
    let ok = parts.next() == Some("CVE")
        && parts
            .next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|n| {
            n.len() >= 4 && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_none();
    if ok {
        Ok(text.to_owned())
    } else {
        Err("expected CVE-YYYY-NNNN (e.g. CVE-2026-12345)".into())
    }
}

/// Checks a release (`--effective-release`): what `uname -r` could print,
/// printable ASCII without spaces or `/`.
pub fn parse_release(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= RELEASE_MAX
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        && text != "."
        && text != "..";
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "use 1 to {RELEASE_MAX} printable characters without spaces or '/'"
        ))
    }
}

/// Compares two releases the way dpkg compares versions: runs of digits
/// numerically, other runs by character with `~` lowest, so that
/// `7.3.4 < 7.3.4-ks1 < 7.3.10`.
pub fn compare_releases(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // The non-digit prefix, character by character.
        loop {
            let (ca, cb) = (a.first().copied(), b.first().copied());
            let digit = |c: Option<u8>| c.is_none_or(|c| c.is_ascii_digit());
            if digit(ca) && digit(cb) {
                break;
            }
            match char_order(ca).cmp(&char_order(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                other => return other,
            }
        }
        if a.is_empty() && b.is_empty() {
            return Ordering::Equal;
        }
        // The digit run, numerically (leading zeros ignored).
        let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (run(a), run(b));
        let trim = |s: &[u8]| {
            let zeros = s.iter().take_while(|&&c| c == b'0').count();
            s[zeros..].to_vec()
        };
        let (da, db) = (trim(&a[..na]), trim(&b[..nb]));
        match da.len().cmp(&db.len()).then_with(|| da.cmp(&db)) {
            Ordering::Equal => {
                a = &a[na..];
                b = &b[nb..];
            }
            other => return other,
        }
    }
}

/// dpkg's order of the characters of a non-digit run: `~` before the end,
/// the end before letters, letters before everything else.
fn char_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_modinfo_among_other_entries() {
        let meta = Metadata {
            description: Some("fix the loadavg leak".into()),
            cves: vec!["CVE-2026-1234".into(), "CVE-2026-56789".into()],
            effective_release: Some("7.3.5".into()),
        };
        let mut modinfo = b"license=GPL\0name=ksplice_x\0".to_vec();
        modinfo.extend(meta.to_modinfo());
        modinfo.extend(b"vermagic=7.3.4 SMP\0");
        assert_eq!(Metadata::from_modinfo(&modinfo), meta);
        assert!(Metadata::from_modinfo(b"license=GPL\0").is_empty());
    }

    #[test]
    fn malformed_stored_values_are_dropped() {
        let meta = Metadata::from_modinfo(
            b"ksplice_cve=CVE-1-2\0ksplice_effective_release=a b\0ksplice_cve=CVE-2026-0001\0",
        );
        assert_eq!(meta.cves, ["CVE-2026-0001"]);
        assert_eq!(meta.effective_release, None);
    }

    #[test]
    fn cve_ids_need_a_four_digit_year_and_at_least_four_digits() {
        assert!(parse_cve("CVE-2026-1234").is_ok());
        assert!(parse_cve("CVE-2014-0160").is_ok());
        assert!(parse_cve("CVE-2026-123").is_err());
        assert!(parse_cve("cve-2026-1234").is_err());
        assert!(parse_cve("CVE-2026-1234-5").is_err());
        assert!(parse_cve("CVE-20x6-1234").is_err());
    }

    #[test]
    fn releases_are_what_uname_could_print() {
        assert!(parse_release("7.3.4+deb13-amd64").is_ok());
        assert!(parse_release("").is_err());
        assert!(parse_release("7.3 4").is_err());
        assert!(parse_release("../x").is_err());
        assert!(parse_release(&"9".repeat(RELEASE_MAX + 1)).is_err());
    }

    #[test]
    fn releases_compare_like_dpkg_versions() {
        use Ordering::*;
        assert_eq!(compare_releases("7.3.4", "7.3.4"), Equal);
        assert_eq!(compare_releases("7.3.4", "7.3.10"), Less);
        assert_eq!(compare_releases("7.3.4", "7.3.4-ks1"), Less);
        assert_eq!(compare_releases("7.3.4-ks2", "7.3.4-ks10"), Less);
        assert_eq!(compare_releases("7.3.4~rc1", "7.3.4"), Less);
        assert_eq!(compare_releases("7.3.04", "7.3.4"), Equal);
        assert_eq!(compare_releases("7.4", "7.3.99"), Greater);
        assert_eq!(compare_releases("7.3.4a", "7.3.4+"), Less);
    }
}
