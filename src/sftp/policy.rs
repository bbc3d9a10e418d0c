//! What an account may upload where: temporary names, final names, the
//! refusals made at OPEN (or RENAME) for files that could never be ingested,
//! and the permissions a customer may give its files.

use crate::config::Account;
use crate::jail::JailPath;

/// The customer-visible rejection reports live here, read-only.
pub const REJECTED_DIR: &str = "/rejected";

/// Temporary upload names: never ingested under that name; renaming one to a
/// final name completes the upload. (WinSCP `.filepart`, rclone
/// `.<hex>.partial`, lftp/others `.part`/`.tmp`, dot-files.)
pub fn is_temp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || [".part", ".filepart", ".partial", ".tmp"]
            .iter()
            .any(|s| lower.ends_with(s))
}

pub fn is_rejected_area(p: &JailPath) -> bool {
    JailPath::parse(REJECTED_DIR).is_ok_and(|r| p.starts_with(&r))
}

/// A final name is one whose completion goes to the journal: not temporary,
/// and under one of the account's ingestion directories (anywhere in the
/// jail if it has none).
pub fn is_final(account: &Account, p: &JailPath) -> bool {
    let Some(name) = p.file_name() else {
        return false;
    };
    if is_temp_name(name) || is_rejected_area(p) {
        return false;
    }
    let dirs = account.ingest_dirs();
    dirs.is_empty() || dirs.iter().any(|d| p.starts_with(d))
}

fn extension(name: &str) -> Option<String> {
    match name.rfind('.') {
        Some(i) if i > 0 => Some(name[i + 1..].to_ascii_lowercase()),
        _ => None,
    }
}

/// Why a final name can never be ingested at `p`, if so. The message is
/// shown to the customer's client.
pub fn refuse_final_name(account: &Account, p: &JailPath) -> Option<String> {
    let name = p.file_name()?;
    if is_temp_name(name) {
        return None;
    }
    let ext = extension(name);
    let is_csv = ext.as_deref() == Some("csv");
    let csv_dir = |d: &JailPath| p.starts_with(d);
    let csv_allowed = account
        .metadata_csv
        .as_ref()
        .is_some_and(|m| csv_dir(&m.dir))
        || account.crm.as_ref().is_some_and(|c| csv_dir(&c.dir));
    if let Some(audio) = &account.audio {
        if p.starts_with(&audio.dir) {
            let ok = ext.as_ref().is_some_and(|e| audio.extensions.contains(e))
                || (is_csv && csv_allowed);
            if !ok {
                return Some(format!(
                    "'{name}' is not accepted in {}: allowed extensions are {}{}",
                    audio.dir,
                    audio.extensions.join(", "),
                    if csv_allowed { ", csv" } else { "" }
                ));
            }
            return None;
        }
    }
    if let Some(crm) = &account.crm {
        if p.starts_with(&crm.dir) && !is_csv {
            return Some(format!(
                "'{name}' is not accepted in {}: only .csv files are",
                crm.dir
            ));
        }
    }
    None
}

/// The permission bits a customer's OPEN, MKDIR or SETSTAT really sets:
/// never group/other write, setuid, setgid or sticky (another local user
/// could then plant or change files the start-up scan ingests), and the
/// owner — depot itself — keeps read and write (and search, on a
/// directory), so a `chmod 000` cannot stop it hashing or ingesting.
pub fn customer_mode(requested: u32, is_dir: bool) -> u32 {
    match is_dir {
        true => (requested & 0o755) | 0o700,
        false => (requested & 0o644) | 0o600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_modes_are_masked() {
        assert_eq!(customer_mode(0o777, false), 0o644);
        assert_eq!(customer_mode(0o4777, false), 0o644);
        assert_eq!(customer_mode(0o000, false), 0o600);
        assert_eq!(customer_mode(0o640, false), 0o640);
        assert_eq!(customer_mode(0o1777, true), 0o755);
        assert_eq!(customer_mode(0o2750, true), 0o750);
        assert_eq!(customer_mode(0o000, true), 0o700);
    }

    #[test]
    fn temp_names() {
        for t in [
            ".hidden",
            "a.mp3.part",
            "a.mp3.filepart",
            "a.mp3.1f2e3d.partial",
            "a.TMP",
            "x.Part",
        ] {
            assert!(is_temp_name(t), "{t}");
        }
        for f in ["a.mp3", "partial.mp3", "a.parts", "tmp"] {
            assert!(!is_temp_name(f), "{f}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a.MP3").as_deref(), Some("mp3"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("noext"), None);
    }
}
