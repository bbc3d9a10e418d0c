//! Integration tests of operating depot: accounts hot-reloaded
//! while the server runs, `depot import`, `depot reprocess` (`--rejected`
//! and by conversation id), the start-up scan and `depot stats`, each
//! driven through the real server and the real binary.

#[path = "../common/mod.rs"]
mod common;
use common::harness;

mod import;
mod reload;
mod reprocess;
mod scan;
