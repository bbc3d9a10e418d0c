//! Code shared by every integration-test binary (sftp, ops, pipeline,
//! hardening, console): each includes it with
//! `#[path = "../common/mod.rs"] mod common;`. The harness starts a real
//! depot (in-process or as a child process), writes its configuration,
//! drives it with real clients and waits on conditions, never on time.

// Each binary uses a subset of these helpers; the rest is not dead, only
// unused by that binary.
#![allow(dead_code)]

pub mod harness;
pub mod russh_client;
pub mod webhook_receiver;
