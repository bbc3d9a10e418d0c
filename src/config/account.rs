//! `accounts/<name>.toml`: one customer account — credentials, jail limits and
//! ingestion settings.
//!
//! Every section but the credentials is optional; a missing section switches
//! its feature off. Each file validates on its own, so one broken account never
//! hides the others (hot reload keeps that account's previous version).

//!
//! Split by what it holds: `schema` (the raw TOML), `model` (the validated
//! [`Account`]), `validate` with `credentials` and `reasons` (raw → model,
//! every error at once, nothing written), and this file, which loads files
//! and — when serving — generates the key pairs validation left pending.

use super::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod credentials;
mod model;
mod reasons;
mod schema;
mod validate;

pub(crate) use credentials::argon2_cost_allowed;
pub use model::*;
#[cfg(test)]
use reasons::parse_reasons;
use schema::parse_account;
use validate::Validator;

/// Is `name` a valid account name (`[a-z0-9][a-z0-9_-]{0,63}`)?
pub(crate) fn valid_account_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// What loading one directory of account files gave.
pub(crate) struct LoadedAccounts {
    pub accounts: BTreeMap<String, Arc<Account>>,
    pub errors: Vec<ConfigError>,
    /// Key files that will be generated on first `serve` (not errors).
    pub pending_keys: Vec<PathBuf>,
}

/// Loads every `*.toml` in `dir`. With `generate_keys`, a missing
/// `authorized_keys_file` named `<account>_ed25519.pub` of a valid account
/// is generated as a new key pair (this is how the shipped demo account gets
/// its client key); without, it is listed in `pending_keys`.
pub(crate) fn load_accounts(dir: &Path, generate_keys: bool) -> LoadedAccounts {
    let mut out = LoadedAccounts {
        accounts: BTreeMap::new(),
        errors: Vec::new(),
        pending_keys: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(ConfigError::new(
                dir,
                "",
                format!("cannot read the accounts directory ({e}); set server.accounts_dir"),
            ));
            return out;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        match load_account(&file, dir, generate_keys) {
            Ok((acc, pending)) => {
                out.pending_keys.extend(pending);
                out.accounts.insert(acc.name.clone(), Arc::new(acc));
            }
            Err(mut errs) => out.errors.append(&mut errs),
        }
    }
    out
}

/// Loads and validates one account file; with `generate_keys`, then
/// generates the key pair it names but lacks (see [`load_accounts`]). The
/// second value is that key file when it is still to generate.
pub(crate) fn load_account(
    file: &Path,
    accounts_dir: &Path,
    generate_keys: bool,
) -> Result<(Account, Option<PathBuf>), Vec<ConfigError>> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !valid_account_name(&name) {
        return Err(vec![ConfigError::new(
            file,
            "",
            format!("'{name}' is not a valid account name: rename the file to [a-z0-9][a-z0-9_-]{{0,63}}.toml"),
        )]);
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![ConfigError::new(file, "", format!("cannot read ({e})"))])?;
    let (raw, unknown) = parse_account(file, &text)?;
    let mut v = Validator {
        file,
        base: accounts_dir,
        errors: unknown,
        referenced: Vec::new(),
    };
    let (mut acc, pending) = v.account(name, raw);
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    acc.referenced_files = v.referenced;
    match pending {
        Some(public) if generate_keys => {
            let key = crate::keys::generate_client_key(&acc.name, &public).map_err(|e| {
                vec![ConfigError::new(
                    file,
                    "authorized_keys_file",
                    format!("cannot generate {}: {e:#}", public.display()),
                )]
            })?;
            acc.authorized_keys.push(key);
            Ok((acc, None))
        }
        pending => Ok((acc, pending)),
    }
}

#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod tests;
