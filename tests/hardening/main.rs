//! Hardening tests: depot run as a real child process (killed, restarted,
//! attacked, loaded, starved of disk) to prove the promises of issue 7.

mod brute;
mod crash;
mod disk_full;
mod hostile;
mod jail_escape;
mod limits_conn;
mod limits_csv;
mod limits_fs;
mod load;
mod process;
#[path = "../common/russh_client.rs"]
mod russh_client;
mod webhooks;
