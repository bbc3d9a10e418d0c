//! Hardening tests: depot run as a real child process (killed, restarted,
//! attacked, loaded, starved of disk) to prove its promises hold.

#[path = "../common/mod.rs"]
mod common;
use common::{harness, russh_client, webhook_receiver};

mod brute;
mod crash;
mod disk_full;
mod hostile;
mod jail_escape;
mod limits_conn;
mod limits_csv;
mod limits_fs;
mod load;
mod webhooks;
