//! What a deposit's name says about it: temporary and system names that
//! are never ingested, final names under an ingestion directory, names
//! whose type a directory never takes, and the customer's `/rejected` area.
//! The SFTP front refuses by these rules, the pipeline classifies by them,
//! the start-up scan, the sweep and `depot import` select files by them.

use crate::config::Account;
use crate::jail::JailPath;

/// The customer-visible rejection reports live here, read-only.
pub(crate) const REJECTED_DIR: &str = "/rejected";

/// Temporary upload names: never ingested under that name; renaming one to a
/// final name completes the upload. (WinSCP `.filepart`, rclone
/// `.<hex>.partial`, lftp/others `.part`/`.tmp`, dot-files.)
pub(crate) fn is_temp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || [".part", ".filepart", ".partial", ".tmp"]
            .iter()
            .any(|s| lower.ends_with(s))
}

pub(crate) fn is_rejected_area(p: &JailPath) -> bool {
    JailPath::parse(REJECTED_DIR).is_ok_and(|r| p.starts_with(&r))
}

/// A final name is one whose completion goes to the journal: not temporary,
/// and under one of the account's ingestion directories (anywhere in the
/// jail if it has none).
pub(crate) fn is_final(account: &Account, p: &JailPath) -> bool {
    let Some(name) = p.file_name() else {
        return false;
    };
    if is_temp_name(name) || is_rejected_area(p) {
        return false;
    }
    let dirs = account.ingest_dirs();
    dirs.is_empty() || dirs.iter().any(|d| p.starts_with(d))
}

/// Files operating systems and editors drop next to the customer's own
/// (`Thumbs.db`, `desktop.ini`, `.DS_Store`, AppleDouble `._*`, Office
/// lock files `~$*`): stored, never ingested, never reported.
pub(crate) fn is_system_file(name: &str) -> bool {
    ["thumbs.db", "desktop.ini", ".ds_store"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
        || name.starts_with("._")
        || name.starts_with("~$")
}

/// The extension after the last dot, as typed (a leading dot is no
/// extension: `.bashrc`).
fn extension(name: &str) -> Option<&str> {
    match name.rfind('.') {
        Some(i) if i > 0 => Some(&name[i + 1..]),
        _ => None,
    }
}

fn is_csv(name: &str) -> bool {
    extension(name).is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Why a final name at `p` can never be ingested (a type the directory does
/// not take), in words for the customer: "'.txt' is not ingested in
/// /audio; allowed: mp3, wav". `None` for names that are ingested, ignored
/// (temporary, system files) or outside every ingestion directory.
pub(crate) fn unwanted_reason(account: &Account, p: &JailPath) -> Option<String> {
    let name = p.file_name()?;
    if is_temp_name(name) || is_system_file(name) || is_rejected_area(p) {
        return None;
    }
    let under = |d: &JailPath| p.starts_with(d);
    let csv_dir = account.metadata_csv.as_ref().is_some_and(|m| under(&m.dir))
        || account.crm.as_ref().is_some_and(|c| under(&c.dir));
    let what = match extension(name) {
        Some(e) => format!("'.{e}'"),
        None => format!("a name without extension ('{name}')"),
    };
    if let Some(audio) = account.audio.as_ref().filter(|a| under(&a.dir)) {
        if audio.accepts(name) || (csv_dir && is_csv(name)) {
            return None;
        }
        let mut allowed = audio.extensions.clone();
        if csv_dir {
            allowed.push("csv".into());
        }
        let case = match audio.extensions_case {
            crate::config::ExtensionsCase::Sensitive => " (exact case)",
            crate::config::ExtensionsCase::Insensitive => "",
        };
        return Some(format!(
            "{what} is not ingested in {}; allowed: {}{case}",
            audio.dir,
            allowed.join(", ")
        ));
    }
    let dir = account
        .crm
        .as_ref()
        .map(|c| &c.dir)
        .filter(|d| under(d))
        .or_else(|| {
            account
                .metadata_csv
                .as_ref()
                .map(|m| &m.dir)
                .filter(|d| under(d))
        })?;
    (!is_csv(name)).then(|| format!("{what} is not ingested in {dir}; allowed: csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn system_files() {
        for n in [
            "Thumbs.db",
            "THUMBS.DB",
            "desktop.ini",
            ".DS_Store",
            "._a.mp3",
            "~$notes.docx",
        ] {
            assert!(is_system_file(n), "{n}");
        }
        for n in ["a.mp3", "thumbs.mp3", "notes.txt", "_a.mp3"] {
            assert!(!is_system_file(n), "{n}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a.MP3"), Some("MP3"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("noext"), None);
    }
}
