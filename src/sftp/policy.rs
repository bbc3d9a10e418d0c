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

/// Files operating systems and editors drop next to the customer's own
/// (`Thumbs.db`, `desktop.ini`, `.DS_Store`, AppleDouble `._*`, Office
/// lock files `~$*`): stored, never ingested, never reported.
pub fn is_system_file(name: &str) -> bool {
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
pub fn unwanted_reason(account: &Account, p: &JailPath) -> Option<String> {
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

/// Whether the account refuses unwanted final names at OPEN/RENAME rather
/// than storing and reporting them.
pub fn refuses_unwanted(account: &Account) -> bool {
    account
        .audio
        .as_ref()
        .is_some_and(|a| a.on_unwanted == crate::config::OnUnwanted::Refuse)
}

/// The refusal sent to the client for a final name that can never be
/// ingested at `p`, when the account refuses those (`audio.on_unwanted =
/// "refuse"`); by default they are stored and reported instead, because a
/// refused file stops a batch client's whole upload.
pub fn refuse_final_name(account: &Account, p: &JailPath) -> Option<String> {
    if !refuses_unwanted(account) {
        return None;
    }
    unwanted_reason(account, p).map(|r| format!("file type: {r}"))
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

    fn account(toml: &str) -> Account {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("acme.toml");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdX6T6yYPkDoX0r4IfQzWnLkTmqqA1N0C+J0fv6fpr ops@acme";
        std::fs::write(&file, format!("authorized_keys = [{key:?}]\n{toml}")).unwrap();
        crate::config::load_account(&file, d.path(), false)
            .map(|(a, _)| a)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn p(s: &str) -> JailPath {
        JailPath::parse(s).unwrap()
    }

    #[test]
    fn refusals_follow_extensions_case_and_on_unwanted() {
        let exact = account(
            "[audio]\nextensions = [\"mp3\"]\nextensions_case = \"exact\"\non_unwanted = \"refuse\"\n",
        );
        assert_eq!(refuse_final_name(&exact, &p("/audio/20260211/a.mp3")), None);
        assert_eq!(
            refuse_final_name(&exact, &p("/audio/20260211/a.MP3")).as_deref(),
            Some("file type: '.MP3' is not ingested in /audio; allowed: mp3 (exact case)")
        );
        // System files and temporary names are never refused.
        for name in ["Thumbs.db", "~$a.docx", "a.txt.part"] {
            assert_eq!(
                refuse_final_name(&exact, &p(&format!("/audio/{name}"))),
                None
            );
        }
        // By default the same names are accepted (and reported later).
        let default = account(
            "[audio]\nextensions = [\"mp3\", \"wav\"]\n[crm]\ndir = \"/crm\"\nkey = \"agent_id\"\n",
        );
        assert_eq!(refuse_final_name(&default, &p("/audio/notes.txt")), None);
        assert_eq!(
            unwanted_reason(&default, &p("/audio/notes.txt")).as_deref(),
            Some("'.txt' is not ingested in /audio; allowed: mp3, wav")
        );
        assert_eq!(
            unwanted_reason(&default, &p("/crm/agents.xlsx")).as_deref(),
            Some("'.xlsx' is not ingested in /crm; allowed: csv")
        );
        assert_eq!(
            unwanted_reason(&default, &p("/audio/README")).as_deref(),
            Some(
                "a name without extension ('README') is not ingested in /audio; allowed: mp3, wav"
            )
        );
        assert_eq!(unwanted_reason(&default, &p("/audio/a.MP3")), None);
        assert_eq!(unwanted_reason(&default, &p("/elsewhere/notes.txt")), None);
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
