//! Integration tests of depot's SFTP server: a real server on a temp dir,
//! real clients (OpenSSH `sftp`, russh + russh-sftp), outcomes checked on
//! disk and in SQLite. One binary, so the server library and OpenSSH's
//! start-up are paid for once per test, not once per file.

#[path = "../common/mod.rs"]
mod common;
use common::{harness, russh_client};

mod archive;
mod auth;
mod batch;
mod cli;
mod completion;
mod download;
mod jail;
mod limits;
mod refusals;
mod restart;
mod sweep;
mod upload;
mod wait;
