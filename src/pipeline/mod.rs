//! The ingestion pipeline: each completed deposit is evaluated from its
//! account's settings, its path and what its bytes and CSV rows say into
//! one outcome, and that outcome is committed in one writer transaction.
//!
//! The stages, in the order a deposit meets them (the declarations below
//! are alphabetical):
//!
//! 1. [`worker`] — hands each journal entry to the flow of its kind.
//! 2. [`classify`] (with [`datedir`]) — audio, metadata CSV, CRM file or ignored.
//! 3. [`audio_flow`] — an audio deposit: gathers the evaluation's inputs.
//! 4. [`evaluate`] — the pure evaluation: [`names`] (with [`template`],
//!    [`fields`]), the CSV row merge, [`reason`], [`identify`] (with
//!    [`advisor`]), [`enrich`]; into a complete call, a wait, or a rejection.
//! 5. [`audio`] — the probe of the staged bytes.
//! 6. [`commit`] — the conversation's rows and the [`picking`] decision, in
//!    one transaction.
//! 7. [`awaiting`] — calls waiting for their CSV row, completed through 4 and 6.
//!
//! CSV deposits: [`staging`] → [`csv_flow`] (with [`csvfile`]) or
//! [`crm_flow`] (with [`crm`]). Around them: [`context`] (what every flow
//! shares), [`call`] (the draft), [`report`], [`scan`], [`sweep`].

/// The advisor's e-mail built from its names.
pub mod advisor;
/// The audio probe of the deposit's bytes.
pub mod audio;
/// An audio deposit: gather the inputs, evaluate, stage and probe, commit.
pub mod audio_flow;
/// Calls awaiting their metadata CSV row: completed, timed out or rejected.
pub mod awaiting;
/// The CRM lookup and the draft around the evaluation.
pub mod call;
/// The kind of a deposit (audio, metadata CSV, CRM file, ignored) and its date directory.
pub mod classify;
/// A conversation's rows written, with the picking decision, in one transaction.
pub mod commit;
/// What every flow shares: the pipeline's handles, failures, journal marks.
pub mod context;
/// A CRM file read into an indexed table.
pub mod crm;
/// CRM files turned into the account's latest snapshot, and its cache.
pub mod crm_flow;
/// Metadata CSV deposits: rows stored, awaiting calls completed.
pub mod csv_flow;
/// Metadata CSV reading, one bounded record at a time.
pub mod csvfile;
/// Date directory names in the account's `audio.date_dirs` formats.
pub mod datedir;
/// Additional metadata joined from the latest CRM snapshot.
pub mod enrich;
/// The one pure evaluation of an audio deposit into its outcome.
pub mod evaluate;
/// Field rules and the Unicode form of metadata values.
pub mod fields;
/// The advisor named by the metadata.
pub mod identify;
/// Metadata from the file name through the account's template.
pub mod names;
/// The picking rule.
pub mod picking;
/// The contact-reason label.
pub mod reason;
/// The customer's rejection report in the jail.
pub mod report;
/// Start-up scan of deposits without a journal row.
pub mod scan;
/// CSV deposits staged against their journaled hash and read at low priority.
pub mod staging;
/// The sweep of stale temporary and partial uploads.
pub mod sweep;
/// The compiled `audio.filename` template.
pub mod template;
/// Hands each journal entry to the flow of its kind; retries transient failures.
pub mod worker;

pub use crate::record::Rejection;
