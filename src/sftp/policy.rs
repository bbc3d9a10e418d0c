//! What an account may upload where: temporary names, final names, the
//! refusals made at OPEN (or RENAME) for files that could never be ingested,
//! and the permissions a customer may give its files.

use crate::config::Account;
use crate::deposit::names::unwanted_reason;
use crate::jail::JailPath;

/// Whether the account refuses unwanted final names at OPEN/RENAME rather
/// than storing and reporting them.
pub(crate) fn refuses_unwanted(account: &Account) -> bool {
    account
        .audio
        .as_ref()
        .is_some_and(|a| a.on_unwanted == crate::config::OnUnwanted::Refuse)
}

/// The refusal sent to the client for a final name that can never be
/// ingested at `p`, when the account refuses those (`audio.on_unwanted =
/// "refuse"`); by default they are stored and reported instead, because a
/// refused file stops a batch client's whole upload.
pub(crate) fn refuse_final_name(account: &Account, p: &JailPath) -> Option<String> {
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
pub(crate) fn customer_mode(requested: u32, is_dir: bool) -> u32 {
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
}
