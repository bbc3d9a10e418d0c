//! `depot check-config`: validates depot.toml and every account file,
//! reporting all problems at once; prints host-key fingerprints and one line
//! per account. Exit 1 on any error. Settings that are valid but rarely
//! what an admin meant are warned about (they do not fail the check).

use crate::config::{load_accounts, Account, ConfigError, MetadataUse, OnTimeout, Settings};
use anyhow::Result;
use serde_json::json;
use std::path::Path;

pub struct Report {
    pub errors: Vec<ConfigError>,
    pub host_keys: Vec<(String, String)>,
    pub accounts: Vec<String>,
    pub notes: Vec<String>,
    /// `account: key: what to check`.
    pub warnings: Vec<String>,
}

/// Metadata CSV waits longer than this are probably a typo ("240h").
const LONG_WAIT: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

/// Valid settings that are traps for a new admin.
pub(crate) fn traps(a: &Account) -> Vec<String> {
    let mut out = Vec::new();
    let mut warn = |key: &str, msg: String| out.push(format!("account {}: {key}: {msg}", a.name));
    if let Some(m) = &a.metadata_csv {
        if m.header && m.skip_rows > 1 {
            warn(
                "metadata_csv.skip_rows",
                format!(
                    "{} counts the header row: {} row(s) above the header are skipped and row {} is read as the header",
                    m.skip_rows,
                    m.skip_rows - 1,
                    m.skip_rows
                ),
            );
        }
        if !m.header && m.skip_rows > 0 {
            warn(
                "metadata_csv.skip_rows",
                format!(
                    "with header = false, the first {} row(s) are skipped and never read as data; set skip_rows = 0 if the data starts on the first row",
                    m.skip_rows
                ),
            );
        }
        if m.use_ == MetadataUse::Only && m.on_timeout == OnTimeout::FilenameOnly {
            warn(
                "metadata_csv.on_timeout",
                "with use = \"only\", \"filename_only\" ingests audio whose CSV row never came with empty metadata; set on_timeout = \"reject\" to be told instead".to_string(),
            );
        }
        if m.wait > LONG_WAIT {
            warn(
                "metadata_csv.wait",
                format!(
                    "{} is over 48 h: audio without its row waits that long before on_timeout applies",
                    humantime::format_duration(m.wait)
                ),
            );
        }
    }
    out
}

/// Validates everything without changing anything on disk.
pub fn check(settings: &Settings) -> Report {
    let mut host_keys = Vec::new();
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for p in &settings.server.host_keys {
        if !p.exists() {
            host_keys.push((p.display().to_string(), "(generated at first start)".into()));
            continue;
        }
        match russh::keys::load_secret_key(p, None) {
            Ok(k) => host_keys.push((
                p.display().to_string(),
                crate::keys::fingerprint(k.public_key()),
            )),
            Err(e) => errors.push(ConfigError::new(
                p,
                "server.host_keys",
                format!("cannot load ({e})"),
            )),
        }
    }
    let loaded = load_accounts(&settings.server.accounts_dir, false);
    errors.extend(loaded.errors);
    for p in loaded.pending_keys {
        notes.push(format!("{} will be generated at first start", p.display()));
    }
    let accounts = loaded.accounts.values().map(|a| summary(a)).collect();
    let warnings = loaded.accounts.values().flat_map(|a| traps(a)).collect();
    Report {
        errors,
        host_keys,
        accounts,
        notes,
        warnings,
    }
}

fn summary(a: &Account) -> String {
    let mut auth = Vec::new();
    if a.password_hash.is_some() {
        auth.push("password".to_string());
    }
    if !a.authorized_keys.is_empty() {
        auth.push(format!("{} key(s)", a.authorized_keys.len()));
    }
    let mut features = Vec::new();
    if let Some(au) = &a.audio {
        features.push(format!("audio {} [{}]", au.dir, au.extensions.join(",")));
    }
    for (on, name) in [
        (a.metadata_csv.is_some(), "metadata_csv"),
        (a.contact_reasons.is_some(), "contact_reasons"),
        (a.advisors.is_some(), "advisors"),
        (a.picking.is_some(), "picking"),
        (a.crm.is_some(), "crm"),
    ] {
        if on {
            features.push(name.to_string());
        }
    }
    format!(
        "{}: {}; tz {}; {}",
        a.name,
        auth.join(" + "),
        a.timezone,
        features.join(", ")
    )
}

pub fn run(config: &Path, json_out: bool) -> Result<bool> {
    let settings = match super::load_settings(config) {
        Ok(s) => s,
        Err(e) => {
            if json_out {
                println!("{}", json!({"ok": false, "errors": [e.to_string()]}));
            } else {
                eprintln!("{e}");
            }
            return Ok(false);
        }
    };
    let r = check(&settings);
    if json_out {
        let doc = json!({
            "ok": r.errors.is_empty(),
            "errors": r.errors.iter().map(|e| json!({"file": e.file.display().to_string(), "key": e.key, "message": e.message})).collect::<Vec<_>>(),
            "host_keys": r.host_keys.iter().map(|(p, f)| json!({"path": p, "fingerprint": f})).collect::<Vec<_>>(),
            "accounts": r.accounts,
            "notes": r.notes,
            "warnings": r.warnings,
        });
        println!("{doc}");
    } else {
        for (p, f) in &r.host_keys {
            println!("host key {p}: {f}");
        }
        for a in &r.accounts {
            println!("account {a}");
        }
        for n in &r.notes {
            println!("note: {n}");
        }
        for w in &r.warnings {
            println!("warning: {w}");
        }
        for e in &r.errors {
            println!("error: {e}");
        }
        println!(
            "{}",
            if r.errors.is_empty() {
                "configuration OK".to_string()
            } else {
                format!("{} error(s)", r.errors.len())
            }
        );
    }
    Ok(r.errors.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(toml: &str) -> Account {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("acme.toml");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdX6T6yYPkDoX0r4IfQzWnLkTmqqA1N0C+J0fv6fpr ops@acme";
        std::fs::write(&file, format!("authorized_keys = [{key:?}]\n{toml}")).unwrap();
        crate::config::load_account(&file, d.path(), false)
            .map(|(a, _)| a)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn defaults_are_no_trap() {
        assert!(traps(&account("[metadata_csv]\n")).is_empty());
        assert!(traps(&account("")).is_empty());
    }

    #[test]
    fn traps_are_warned_about() {
        let cases = [
            ("skip_rows = 2\n", "metadata_csv.skip_rows: 2 counts the header row: 1 row(s) above the header are skipped"),
            ("header = false\ncolumns = [\"filename\"]\n", "metadata_csv.skip_rows: with header = false, the first 1 row(s) are skipped"),
            ("use = \"only\"\n", "metadata_csv.on_timeout: with use = \"only\", \"filename_only\" ingests audio whose CSV row never came with empty metadata"),
            ("wait = \"72h\"\n", "metadata_csv.wait: 3days is over 48 h"),
        ];
        for (keys, want) in cases {
            let w = traps(&account(&format!("[metadata_csv]\n{keys}")));
            assert_eq!(w.len(), 1, "{keys:?}: {w:?}");
            assert!(
                w[0].starts_with(&format!("account acme: {want}")),
                "{keys:?}: {w:?}"
            );
        }
        let fine = "use = \"only\"\non_timeout = \"reject\"\nheader = false\nskip_rows = 0\ncolumns = [\"filename\"]\n";
        assert!(traps(&account(&format!("[metadata_csv]\n{fine}"))).is_empty());
    }
}
