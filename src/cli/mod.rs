//! Operator commands. Each command parses its arguments (pure), then applies
//! them (I/O). Exit codes: 0 ok, 1 error, 2 bad usage (clap's own).

pub mod check_config;
pub mod check_name;
pub mod hash_password;
pub mod import;
pub mod listings;
pub mod output;
pub mod reprocess;
pub mod serve;
pub mod stats;
pub mod token;
pub mod webhooks;

use crate::config::{LogFormat, Settings};
use anyhow::Result;
use std::path::Path;

/// Reads `depot.toml`; relative paths in it resolve against the current
/// directory.
pub fn load_settings(path: &Path) -> Result<Settings> {
    let cwd = std::env::current_dir()?;
    Settings::load(path, &cwd).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// Installs the global tracing subscriber (`RUST_LOG` overrides the level).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
