//! Integration tests of operating depot: accounts hot-reloaded
//! while the server runs, `depot import`, `depot reprocess` (`--rejected`
//! and by conversation id), the start-up scan and `depot stats`, each
//! driven through the real server and the real binary.

mod harness;
mod import;
mod reload;
mod reprocess;
#[path = "../common/russh_client.rs"]
mod russh_client;
mod scan;
