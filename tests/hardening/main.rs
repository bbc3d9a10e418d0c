//! Hardening tests: depot run as a real child process (killed, restarted,
//! attacked, loaded, starved of disk) to prove the promises of issue 7.

mod brute;
mod crash;
mod disk_full;
mod hostile;
mod jail_escape;
mod load;
mod process;
#[path = "../common/russh_client.rs"]
mod russh_client;
mod webhooks;
