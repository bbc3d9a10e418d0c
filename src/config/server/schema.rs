//! `depot.toml` as written: the raw TOML sections with unknown keys
//! refused, and the defaults of each key left out.

use super::PipelineLimits;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) pipeline: RawPipeline,
    pub(super) http: Option<super::super::http::RawHttp>,
    #[serde(default)]
    pub(super) events: super::super::http::RawEvents,
    #[serde(default)]
    pub(super) webhooks: Vec<super::super::webhooks::RawWebhook>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: OneOrMany,
    pub(super) host_keys: Vec<PathBuf>,
    pub(super) data_dir: PathBuf,
    pub(super) accounts_dir: PathBuf,
    pub(super) max_sessions: usize,
    pub(super) max_sessions_per_account: usize,
    pub(super) idle_timeout: String,
    pub(super) fsync: bool,
    pub(super) shutdown_timeout: String,
    pub(super) max_handles_per_session: usize,
    pub(super) max_handles_per_account: usize,
    pub(super) max_hole: ByteSize,
    pub(super) min_free_disk: ByteSize,
}

/// A size in bytes: an integer, or a string such as "64MiB".
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: OneOrMany::One("127.0.0.1:2222".into()),
            host_keys: vec![PathBuf::from("keys/ssh_host_ed25519_key")],
            data_dir: PathBuf::from("data"),
            accounts_dir: PathBuf::from("config/accounts"),
            max_sessions: 512,
            max_sessions_per_account: 32,
            idle_timeout: "10m".into(),
            fsync: true,
            max_handles_per_session: 256,
            max_handles_per_account: 1024,
            max_hole: ByteSize::Text("64MiB".into()),
            min_free_disk: ByteSize::Text("1GiB".into()),
            shutdown_timeout: "15s".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAuth {
    pub(super) max_attempts_per_connection: u32,
    pub(super) ban_after_failures: u32,
    pub(super) ban_window: String,
    pub(super) ban_duration: String,
    pub(super) max_concurrent_password_checks: usize,
    pub(super) login_grace_time: String,
    pub(super) max_unauthenticated_per_ip: usize,
    pub(super) max_unauthenticated: usize,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            max_attempts_per_connection: 6,
            ban_after_failures: 10,
            ban_window: "5m".into(),
            ban_duration: "15m".into(),
            max_concurrent_password_checks: 4,
            login_grace_time: "30s".into(),
            max_unauthenticated_per_ip: 10,
            max_unauthenticated: 64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) format: String,
    pub(super) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPipeline {
    pub(super) csv_max_columns: usize,
    pub(super) csv_max_record_bytes: usize,
    pub(super) csv_rows_per_commit: usize,
    pub(super) max_rejections_per_deposit: usize,
}

impl Default for RawPipeline {
    fn default() -> Self {
        let d = PipelineLimits::default();
        RawPipeline {
            csv_max_columns: d.csv_max_columns,
            csv_max_record_bytes: d.csv_max_record_bytes,
            csv_rows_per_commit: d.csv_rows_per_commit,
            max_rejections_per_deposit: d.max_rejections_per_deposit,
        }
    }
}
