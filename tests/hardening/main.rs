//! Hardening tests: depot run as a real child process, killed and
//! restarted, to prove the promises that only a crash can test.

mod crash;
mod process;
