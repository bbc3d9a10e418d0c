//! depot: an SFTP server that turns uploaded call recordings into
//! conversation records in SQLite.
//!
//! Layout: `config` (validated settings and accounts) → `sftp` (the front:
//! auth, jail, uploads, completion journal) → `pipeline` (ingestion stages)
//! → `store` (SQLite). `cli` holds the operator commands; `main.rs` only
//! parses the command line.

pub mod archive;
pub mod cli;
pub mod config;
pub mod deposit;
pub mod http;
pub mod jail;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod server;
pub mod sftp;
pub mod store;
pub mod webhooks;
