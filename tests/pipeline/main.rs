//! Integration tests of the ingestion pipeline: a real depot in a temp dir,
//! uploads through OpenSSH `sftp -b`, and the outcome checked where an
//! operator or a customer would see it — rows in SQLite, the `depot` CLI's
//! JSON, the archive on disk, `/rejected/` in the jail.

#[path = "../common/mod.rs"]
mod common;
use common::{harness, webhook_receiver};

mod audio;
mod crm;
mod http;
mod limits;
mod metadata;
mod picking;
mod stages;
