//! `depot.toml`: listen addresses, host keys, data and accounts directories,
//! session limits, authentication defences and logging.
//!
//! Relative paths resolve against the directory depot was started in, so
//! `cargo run --release -- serve` from the repository root finds `keys/`,
//! `data/` and `config/accounts/`.
//!
//! `schema` holds the raw sections and their defaults; this file the
//! validated settings and the validation.

use super::{parse_duration, parse_toml, resolve, ConfigError, ConfigErrors};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod schema;

use schema::*;

/// What one deposit may cost the pipeline: a CSV is read one bounded
/// record at a time and stored in bounded transactions, and a deposit
/// records a bounded number of rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineLimits {
    /// Columns a metadata or CRM CSV may have.
    pub csv_max_columns: usize,
    /// Bytes one CSV record (one row, quoted newlines included) may take.
    pub csv_max_record_bytes: usize,
    /// Metadata CSV rows stored per transaction, so the single database
    /// writer is free for other accounts' uploads in between.
    pub csv_rows_per_commit: usize,
    /// Rejections stored (and reported) per deposit; the rest are counted
    /// in one summary row.
    pub max_rejections_per_deposit: usize,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        PipelineLimits {
            csv_max_columns: 1000,
            csv_max_record_bytes: 1 << 20,
            csv_rows_per_commit: 2000,
            max_rejections_per_deposit: 1000,
        }
    }
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub host_keys: Vec<PathBuf>,
    pub data_dir: PathBuf,
    pub accounts_dir: PathBuf,
    pub max_sessions: usize,
    pub max_sessions_per_account: usize,
    pub idle_timeout: Duration,
    pub fsync: bool,
    /// File and directory handles one SSH connection may hold (all its
    /// SFTP channels together).
    pub max_handles_per_session: usize,
    /// File and directory handles all sessions of one account may hold.
    pub max_handles_per_account: usize,
    /// Largest unwritten part (holes) a file may have; a WRITE or SETSTAT
    /// size making a larger one is refused, so hashing costs the bytes
    /// written. Clients writing out of order stay within a few MiB.
    pub max_hole: u64,
    /// `/readyz` fails when the data directory's file system has less
    /// free space than this (uploads would soon fail).
    pub min_free_disk: u64,
    /// SIGTERM: the longest wait, from the signal to exit, for sessions to
    /// close and the pipeline to drain (what is left resumes at next start).
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub max_attempts_per_connection: u32,
    pub ban_after_failures: u32,
    pub ban_window: Duration,
    pub ban_duration: Duration,
    pub max_concurrent_password_checks: usize,
    /// An unauthenticated connection is closed this long after it opened.
    pub login_grace_time: Duration,
    /// Unauthenticated connections at once from one address, and in all;
    /// counted apart from sessions.
    pub max_unauthenticated_per_ip: usize,
    pub max_unauthenticated: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Everything `depot.toml` says, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file these settings came from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub pipeline: PipelineLimits,
    /// `None`: no `[http]` section, no HTTP server.
    pub http: Option<super::http::HttpConfig>,
    pub events: super::http::EventsConfig,
    pub webhooks: Vec<super::webhooks::WebhookConfig>,
}

impl Settings {
    /// Reads and validates `path`; relative paths inside resolve against `cwd`.
    pub fn load(path: &Path, cwd: &Path) -> Result<Settings, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                path,
                "",
                format!("cannot read ({e}); pass --config PATH to name the settings file"),
            )])
        })?;
        let raw: RawFile = parse_toml(path, &text).map_err(|e| ConfigErrors(vec![e]))?;
        validate(path, cwd, raw)
    }
}

fn validate(path: &Path, cwd: &Path, raw: RawFile) -> Result<Settings, ConfigErrors> {
    let mut errors = Vec::new();
    let http = raw
        .http
        .map(|h| super::http::validate_http(path, cwd, h, &mut errors));
    let events = super::http::validate_events(path, raw.events, &mut errors);
    let webhooks = super::webhooks::validate(path, raw.webhooks, &mut errors);
    let listen_raw = match raw.server.listen {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    let mut listen = Vec::new();
    for s in &listen_raw {
        match s.parse::<SocketAddr>() {
            Ok(a) => listen.push(a),
            Err(_) => errors.push(ConfigError::new(
                path,
                "server.listen",
                format!(
                    "'{s}' is not an address:port such as \"127.0.0.1:2222\" or \"[::1]:2222\""
                ),
            )),
        }
    }
    if listen_raw.is_empty() {
        errors.push(ConfigError::new(
            path,
            "server.listen",
            "needs at least one address",
        ));
    }
    if raw.server.host_keys.is_empty() {
        errors.push(ConfigError::new(
            path,
            "server.host_keys",
            "needs at least one key path",
        ));
    }
    for (key, v) in [
        ("server.max_sessions", raw.server.max_sessions),
        (
            "server.max_sessions_per_account",
            raw.server.max_sessions_per_account,
        ),
        (
            "auth.max_concurrent_password_checks",
            raw.auth.max_concurrent_password_checks,
        ),
        (
            "server.max_handles_per_session",
            raw.server.max_handles_per_session,
        ),
        (
            "server.max_handles_per_account",
            raw.server.max_handles_per_account,
        ),
        (
            "auth.max_unauthenticated_per_ip",
            raw.auth.max_unauthenticated_per_ip,
        ),
        ("auth.max_unauthenticated", raw.auth.max_unauthenticated),
    ] {
        if v == 0 {
            errors.push(ConfigError::new(path, key, "must be at least 1"));
        }
    }
    for (key, v) in [
        ("pipeline.csv_max_columns", raw.pipeline.csv_max_columns),
        (
            "pipeline.csv_max_record_bytes",
            raw.pipeline.csv_max_record_bytes,
        ),
        (
            "pipeline.csv_rows_per_commit",
            raw.pipeline.csv_rows_per_commit,
        ),
        (
            "pipeline.max_rejections_per_deposit",
            raw.pipeline.max_rejections_per_deposit,
        ),
    ] {
        if v == 0 {
            errors.push(ConfigError::new(path, key, "must be at least 1"));
        }
    }
    if raw.auth.max_attempts_per_connection == 0 {
        errors.push(ConfigError::new(
            path,
            "auth.max_attempts_per_connection",
            "must be at least 1",
        ));
    }
    let idle = parse_duration(
        path,
        "server.idle_timeout",
        &raw.server.idle_timeout,
        &mut errors,
    );
    let max_hole = parse_size(path, "server.max_hole", &raw.server.max_hole, &mut errors);
    let min_free_disk = parse_size(
        path,
        "server.min_free_disk",
        &raw.server.min_free_disk,
        &mut errors,
    );
    let window = parse_duration(path, "auth.ban_window", &raw.auth.ban_window, &mut errors);
    let ban = parse_duration(
        path,
        "auth.ban_duration",
        &raw.auth.ban_duration,
        &mut errors,
    );
    let shutdown = parse_duration(
        path,
        "server.shutdown_timeout",
        &raw.server.shutdown_timeout,
        &mut errors,
    );
    let grace = parse_duration(
        path,
        "auth.login_grace_time",
        &raw.auth.login_grace_time,
        &mut errors,
    );
    if grace.is_some_and(|g| g.is_zero()) {
        errors.push(ConfigError::new(
            path,
            "auth.login_grace_time",
            "must be longer than 0s (a login needs a moment)",
        ));
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            errors.push(ConfigError::new(
                path,
                "log.format",
                format!("'{other}' is not one of \"text\", \"json\""),
            ));
            LogFormat::Text
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        errors.push(ConfigError::new(
            path,
            "log.level",
            format!(
                "'{}' is not a level (error, warn, info, debug, trace)",
                raw.log.level
            ),
        ));
    }
    match (idle, window, ban, shutdown, grace) {
        (
            Some(idle_timeout),
            Some(ban_window),
            Some(ban_duration),
            Some(shutdown_timeout),
            Some(login_grace_time),
        ) if errors.is_empty() => Ok(Settings {
            path: path.to_path_buf(),
            server: ServerConfig {
                listen,
                host_keys: raw
                    .server
                    .host_keys
                    .iter()
                    .map(|p| resolve(cwd, p))
                    .collect(),
                data_dir: resolve(cwd, &raw.server.data_dir),
                accounts_dir: resolve(cwd, &raw.server.accounts_dir),
                max_sessions: raw.server.max_sessions,
                max_sessions_per_account: raw.server.max_sessions_per_account,
                idle_timeout,
                fsync: raw.server.fsync,
                shutdown_timeout,
                max_handles_per_session: raw.server.max_handles_per_session,
                max_handles_per_account: raw.server.max_handles_per_account,
                max_hole: max_hole.unwrap_or(0),
                min_free_disk: min_free_disk.unwrap_or(0),
            },
            auth: AuthConfig {
                max_attempts_per_connection: raw.auth.max_attempts_per_connection,
                ban_after_failures: raw.auth.ban_after_failures,
                ban_window,
                ban_duration,
                max_concurrent_password_checks: raw.auth.max_concurrent_password_checks,
                login_grace_time,
                max_unauthenticated_per_ip: raw.auth.max_unauthenticated_per_ip,
                max_unauthenticated: raw.auth.max_unauthenticated,
            },
            log: LogConfig {
                format,
                level: raw.log.level,
            },
            pipeline: PipelineLimits {
                csv_max_columns: raw.pipeline.csv_max_columns,
                csv_max_record_bytes: raw.pipeline.csv_max_record_bytes,
                csv_rows_per_commit: raw.pipeline.csv_rows_per_commit,
                max_rejections_per_deposit: raw.pipeline.max_rejections_per_deposit,
            },
            http: http.flatten(),
            events,
            webhooks,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Reads a size: bytes as an integer, or a number with a unit (B, KiB,
/// MiB, GiB, TiB; KB, MB, GB, TB in powers of ten).
fn parse_size(
    path: &Path,
    key: &str,
    raw: &ByteSize,
    errors: &mut Vec<ConfigError>,
) -> Option<u64> {
    let text = match raw {
        ByteSize::Bytes(n) => return Some(*n),
        ByteSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: Option<u64> = match unit.trim() {
        "" | "B" => Some(1),
        "KiB" => Some(1 << 10),
        "MiB" => Some(1 << 20),
        "GiB" => Some(1 << 30),
        "TiB" => Some(1 << 40),
        "KB" => Some(1_000),
        "MB" => Some(1_000_000),
        "GB" => Some(1_000_000_000),
        "TB" => Some(1_000_000_000_000),
        _ => None,
    };
    let value = number
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .zip(factor)
        .and_then(|(n, f)| n.checked_mul(f));
    if value.is_none() {
        errors.push(ConfigError::new(
            path,
            key,
            format!("'{text}' is not a size such as \"64MiB\", \"1GiB\" or 1048576"),
        ));
    }
    value
}

/// Settings from `text` as if read from `/srv/depot/depot.toml` (tests of
/// every `depot.toml` section).
#[cfg(test)]
pub(crate) fn load_text(text: &str) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("depot.toml");
    std::fs::write(&p, text).unwrap();
    Settings::load(&p, Path::new("/srv/depot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::load_text as load;

    #[test]
    fn defaults_and_relative_paths() {
        let s = load("").unwrap();
        assert_eq!(s.server.listen, vec!["127.0.0.1:2222".parse().unwrap()]);
        assert_eq!(s.server.data_dir, PathBuf::from("/srv/depot/data"));
        assert_eq!(s.server.idle_timeout, Duration::from_secs(600));
        assert!(s.server.fsync);
        assert_eq!(s.server.max_handles_per_session, 256);
        assert_eq!(s.server.max_handles_per_account, 1024);
        assert_eq!(s.server.max_hole, 64 << 20);
        assert_eq!(s.server.min_free_disk, 1 << 30);
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(15));
        assert_eq!(s.auth.login_grace_time, Duration::from_secs(30));
        assert_eq!(s.auth.max_unauthenticated_per_ip, 10);
        assert_eq!(s.auth.max_unauthenticated, 64);
    }

    #[test]
    fn sizes_with_and_without_units() {
        let s = load("[server]\nmax_hole = \"1GiB\"\n").unwrap();
        assert_eq!(s.server.max_hole, 1 << 30);
        let s = load("[server]\nmax_hole = 4_096\n").unwrap();
        assert_eq!(s.server.max_hole, 4096);
        let e = load("[server]\nmax_hole = \"lots\"\nmax_handles_per_session = 0\n").unwrap_err();
        assert!(e.0.iter().any(|e| e.key == "server.max_hole"), "{e}");
        assert!(
            e.0.iter()
                .any(|e| e.key == "server.max_handles_per_session"),
            "{e}"
        );
    }

    #[test]
    fn list_of_listen_addresses() {
        let s = load("[server]\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n").unwrap();
        assert_eq!(s.server.listen.len(), 2);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = load("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("listen_typo"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn every_error_is_reported() {
        let e = load("[server]\nidle_timeout = \"soon\"\n[auth]\nban_window = \"x\"\n[log]\nformat = \"xml\"\n")
            .unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
        assert!(e.0.iter().any(|e| e.key == "server.idle_timeout"));
        assert!(e.0.iter().any(|e| e.key == "auth.ban_window"));
        assert!(e.0.iter().any(|e| e.key == "log.format"));
    }
}
