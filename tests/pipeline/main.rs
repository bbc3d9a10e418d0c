//! Integration tests of the ingestion pipeline: a real depot in a temp dir,
//! uploads through OpenSSH `sftp -b`, and the outcome checked where an
//! operator or a customer would see it — rows in SQLite, the `depot` CLI's
//! JSON, the archive on disk, `/rejected/` in the jail.

#[path = "../sftp/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../common/russh_client.rs"]
mod russh_client;
#[allow(dead_code)]
mod support;
#[path = "../common/webhook_receiver.rs"]
mod webhook_receiver;

mod audio;
mod crm;
mod http;
mod limits;
mod metadata;
mod picking;
mod stages;
