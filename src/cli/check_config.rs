//! `depot check-config`: validates depot.toml and every account file,
//! reporting all problems at once; prints host-key fingerprints and one line
//! per account. Exit 1 on any error.

use crate::config::{load_accounts, Account, ConfigError, Settings};
use anyhow::Result;
use serde_json::json;
use std::path::Path;

pub struct Report {
    pub errors: Vec<ConfigError>,
    pub host_keys: Vec<(String, String)>,
    pub accounts: Vec<String>,
    pub notes: Vec<String>,
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
    Report {
        errors,
        host_keys,
        accounts,
        notes,
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
