//! depot: an SFTP server that turns uploaded call recordings into
//! conversation records in SQLite.
//!
//! A deposit's way through the crate, top to bottom:
//! - `sftp` — the protocol front: SSH auth, sessions, one adapter from SFTP
//!   requests to the jail and the deposit rules; a completed upload becomes
//!   a journal row, and only then does the client hear OK.
//! - `jail` — every path a customer sends, resolved beneath the account's
//!   directory.
//! - `deposit` — what a deposit is, whichever front it came through (SFTP,
//!   `depot import`, the start-up scan): temporary, system and final
//!   names, hashing, the partial-upload mark, seals, the data-dir layout.
//! - `pipeline` — the stages, in order: classify, gather what the store
//!   knows, evaluate (pure), stage the archive copy and probe it, commit
//!   the outcome in one transaction.
//! - `archive` — immutable copies of ingested files.
//! - `record` — the record types the pipeline produces and the store keeps.
//! - `store` — SQLite: rows, the journal's typed states, the events outbox;
//!   it never imports the pipeline.
//!
//! Around them: `config` (validated settings and accounts, hot reload),
//! `http` (API, event feed, console), `webhooks`, `metrics`, `keys`,
//! `server` (starts and stops everything) and `cli` (the operator
//! commands); `main.rs` only parses the command line.

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
