//! Hardening tests: depot run as a real child process (killed, restarted,
//! attacked, loaded, starved of disk) to prove its promises hold.

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
#[path = "../common/webhook_receiver.rs"]
mod webhook_receiver;
mod webhooks;
