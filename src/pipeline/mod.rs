//! The ingestion pipeline: each completed deposit goes through pure stages
//! — classify (and date directory) → file-name metadata → contact reason →
//! advisor — plus an audio probe, then the store decides picking and saves
//! one conversation (or one rejection) in a single transaction.
//!
//! Stages are plain functions of (account settings, input) → output or a
//! [`Rejection`]; the only I/O is in [`worker`].

pub mod advisor;
pub mod audio;
pub mod audio_flow;
pub mod awaiting;
pub mod call;
pub mod classify;
pub mod commit;
pub mod context;
pub mod crm;
pub mod crm_flow;
pub mod csv_flow;
pub mod csvfile;
pub mod datedir;
pub mod enrich;
pub mod evaluate;
pub mod fields;
pub mod identify;
pub mod names;
pub mod picking;
pub mod reason;
pub mod report;
pub mod scan;
pub mod staging;
pub mod sweep;
pub mod template;
pub mod worker;

pub use crate::record::Rejection;
