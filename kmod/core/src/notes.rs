//! ELF notes: the GNU build id that identifies one build of a kernel.
//!
//! The kernel keeps vmlinux's notes in memory (`__start_notes` ..
//! `__stop_notes`, also `/sys/kernel/notes`); the payload records the build
//! id of the kernel an update was made for, and `ksplice.ko` refuses an
//! update for any other build.
#![forbid(unsafe_code)]

/// `NT_GNU_BUILD_ID`, from the ELF gABI.
const NT_GNU_BUILD_ID: u32 = 3;

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// The descriptor of the first `GNU` build-id note in a notes section, if
/// the section is well formed up to it.
pub fn gnu_build_id(notes: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    while at < notes.len() {
        let namesz = usize::try_from(word(notes, at)?).ok()?;
        let descsz = usize::try_from(word(notes, at + 4)?).ok()?;
        let kind = word(notes, at + 8)?;
        let name_at = at.checked_add(12)?;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let end = desc_at.checked_add(align4(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend_from_slice(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    #[test]
    fn the_build_id_is_found_after_other_notes() {
        let id: Vec<u8> = (1..=20).collect();
        let mut notes = note(b"Xen\0", 6, b"abc");
        notes.extend(note(b"GNU\0", 1, b"\x01\x02\x03\x04"));
        notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &id));
        assert_eq!(gnu_build_id(&notes), Some(&id[..]));
    }

    #[test]
    fn truncated_or_missing_notes_give_none() {
        let notes = note(b"GNU\0", NT_GNU_BUILD_ID, &[7; 20]);
        for cut in 0..notes.len() {
            assert_eq!(gnu_build_id(&notes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(gnu_build_id(&note(b"GNU\0", 1, &[7; 20])), None);
        let mut huge = notes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gnu_build_id(&huge), None);
    }
}
