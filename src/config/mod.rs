//! Configuration: `depot.toml` (server settings) and `accounts/*.toml` (one
//! file per customer account).
//!
//! Raw TOML is deserialised with unknown keys refused, then validated once into
//! ready-to-use types (`ServerConfig`, `Account`). Validation collects every
//! problem it finds, each naming its file and key, so an operator fixes them
//! all in one pass. Nothing downstream re-validates strings.

mod account;
mod http;
mod server;
pub(crate) mod watch;
mod webhooks;

pub(crate) use account::{argon2_cost_allowed, load_account, load_accounts, valid_account_name};
pub use account::{
    Account, AdvisorSettings, AudioSettings, ContactReasons, CrmSettings, CsvDialect, Encoding,
    ExtensionsCase, FieldRule, MetadataCsvSettings, MetadataUse, Normalize, OnConflict, OnInvalid,
    OnTimeout, OnUnknown, OnUnwanted, PickingSettings,
};
pub use http::{Admin, EventsConfig, HttpConfig};
pub use server::{AuthConfig, LogConfig, LogFormat, PipelineLimits, ServerConfig, Settings};
pub use watch::Accounts;
pub use webhooks::WebhookConfig;

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path (`auth.ban_window`), empty when the whole file is at fault.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.key,
                self.message
            )
        }
    }
}

/// All the problems of one validation pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses a TOML document into `T`, turning the parser's message (which names
/// the key, line and column) into a `ConfigError` for `file`.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1
        });
        let msg = e.message().to_string();
        let msg = match line {
            Some(l) => format!("line {l}: {msg}"),
            None => msg,
        };
        ConfigError::new(file, "", msg)
    })
}

/// Parses a humantime duration ("90s", "10m", "24h") for `key`.
pub(crate) fn parse_duration(
    file: &Path,
    key: &str,
    value: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<std::time::Duration> {
    match humantime::parse_duration(value) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(ConfigError::new(
                file,
                key,
                format!("'{value}' is not a duration ({e}); write e.g. \"90s\", \"10m\", \"24h\""),
            ));
            None
        }
    }
}

/// Resolves `p` against `base` unless it is absolute.
pub(crate) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
