//! The ingestion pipeline: each completed deposit goes through pure stages
//! (classify → date directory → file-name metadata → contact reason →
//! advisor → picking) and is stored as one conversation or one rejection.

pub mod advisor;
pub mod datedir;
pub mod picking;
pub mod template;
pub mod worker;
