//! API tokens: the tokens file (`http.tokens_file`) holds only the sha256
//! of each token, with its name, scope and optional account. The file is
//! re-read whenever it changes on disk (checked on each request: one
//! `stat`), so adding or revoking a token needs no restart; a file that no
//! longer parses leaves the previous tokens in force and is logged.

use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read conversations, rejections, events (of its account, if it has one).
    Read,
    /// Everything, every account, and `/metrics`.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// One entry of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Token {
    pub name: String,
    /// Lower-case hex sha256 of the token.
    pub sha256: String,
    pub scope: Scope,
    /// Set: the token sees this account only.
    #[serde(default)]
    pub account: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<Token>,
}

/// Parses a tokens file's text; `path` names it in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Token>, String> {
    let file: TokensFile = crate::config::parse_toml(path, text).map_err(|e| e.to_string())?;
    for t in &file.token {
        let valid_hash = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_hash {
            return Err(format!(
                "{}: token '{}': sha256 must be 64 hex digits (as printed by `depot token new`)",
                path.display(),
                t.name
            ));
        }
        if t.scope == Scope::Admin && t.account.is_some() {
            return Err(format!(
                "{}: token '{}': an admin token sees every account; remove `account` or use scope = \"read\"",
                path.display(),
                t.name
            ));
        }
    }
    Ok(file.token)
}

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (256 bits) and the tokens-file entry that admits it.
pub fn generate(name: &str, scope: Scope, account: Option<&str>) -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("depot_{}", hex::encode(bytes));
    let mut toml = format!(
        "[[token]]\nname = {}\nsha256 = \"{}\"\nscope = \"{}\"\n",
        toml_string(name),
        hash(&token),
        scope.as_str()
    );
    if let Some(a) = account {
        toml += &format!("account = {}\n", toml_string(a));
    }
    (token, toml)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Identity of the file's version on disk.
type Stamp = (SystemTime, u64);

/// The tokens in force, re-read when the file changes.
pub(crate) struct TokenStore {
    path: PathBuf,
    state: Mutex<(Option<Stamp>, Arc<Vec<Token>>)>,
}

impl TokenStore {
    pub fn new(path: PathBuf) -> TokenStore {
        let store = TokenStore {
            path,
            state: Mutex::new((None, Arc::new(Vec::new()))),
        };
        let n = store.current().len();
        tracing::info!(path = %store.path.display(), tokens = n, "API tokens loaded");
        store
    }

    /// The tokens now in force (re-reading the file if it changed).
    pub fn current(&self) -> Arc<Vec<Token>> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if stamp == state.0 {
            return state.1.clone();
        }
        state.0 = stamp;
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match parse(&self.path, &text) {
                Ok(tokens) => {
                    tracing::info!(path = %self.path.display(), tokens = tokens.len(), "API tokens (re)loaded");
                    state.1 = Arc::new(tokens);
                }
                Err(e) => {
                    tracing::error!(error = %e, "tokens file invalid; the previous tokens stay in force")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.path.display(), "no tokens file: every API request is refused; create it with `depot token new`");
                state.1 = Arc::new(Vec::new());
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot read the tokens file; the previous tokens stay in force")
            }
        }
        state.1.clone()
    }

    /// The entry admitting `presented`, if any.
    pub fn find(&self, presented: &str) -> Option<Token> {
        let h = hash(presented);
        self.current()
            .iter()
            .find(|t| t.sha256.eq_ignore_ascii_case(&h))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_entry_admits_its_token_and_reload_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let (token, entry) = generate("it \"team\"", Scope::Read, Some("acme"));
        assert!(token.starts_with("depot_") && token.len() == 6 + 64);
        assert!(!entry.contains(&token), "the file never holds the token");
        std::fs::write(&path, &entry).unwrap();
        let store = TokenStore::new(path.clone());
        let t = store.find(&token).unwrap();
        assert_eq!(t.name, "it \"team\"");
        assert_eq!(t.account.as_deref(), Some("acme"));
        assert_eq!(t.scope, Scope::Read);
        assert!(store.find("depot_wrong").is_none());
        // Revoked: the file no longer lists it (different length → new stamp).
        std::fs::write(&path, "# none\n").unwrap();
        assert!(store.find(&token).is_none());
        // A broken file keeps what was in force.
        std::fs::write(&path, &entry).unwrap();
        assert!(store.find(&token).is_some());
        std::fs::write(&path, "[[token]]\nname = 3\n").unwrap();
        assert!(store.find(&token).is_some());
    }

    #[test]
    fn admin_token_with_account_is_refused() {
        let (_, entry) = generate("x", Scope::Admin, Some("acme"));
        let e = parse(Path::new("t.toml"), &entry).unwrap_err();
        assert!(e.contains("admin"), "{e}");
    }
}
