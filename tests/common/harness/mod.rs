//! The one integration-test harness. Its parts:
//! - `server`: a depot started in-process on `127.0.0.1:0` in a temp dir;
//! - `process`: a depot child process (honours `DEPOT_BIN`), killable;
//! - `config`: the `depot.toml` and account files both are given;
//! - `clients`: OpenSSH `sftp -b` runs, the `depot` binary, russh sessions;
//! - `ingest`: customers, uploads, and outcomes read from SQLite and the CLI;
//! - `fixtures`: recordings, fixture files, content, hashes, snapshots;
//! - `wait`: the condition wait with a deadline every test uses.
//!
//! Everything is re-exported here, so a test file needs one
//! `use crate::harness::*;`.

pub mod clients;
pub mod config;
pub mod fixtures;
pub mod ingest;
pub mod process;
pub mod server;
pub mod wait;

// Not every binary uses every part, and a re-export nobody in a binary
// names is reported as unused there.
#[allow(unused_imports)]
pub use {
    super::russh_client::{self, Client},
    clients::*,
    config::*,
    fixtures::*,
    ingest::*,
    process::*,
    server::*,
    wait::*,
};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
