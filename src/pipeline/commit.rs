//! The one place a deposit's outcome is written: its rows (a conversation
//! with its advisor and counters, or the deposit's rejection), the events
//! the store records with those rows, and the journal row's typed outcome,
//! all in the one writer transaction the caller runs [`commit`] in — so a
//! crash or a re-delivered journal row never counts a conversation twice
//! and never leaves a row without its outcome. The picking decision is
//! taken here, between the store's read of the window's counters and its
//! write of the conversation.
//!
//! CSV deposits are the exception by design: a metadata CSV is stored in
//! bounded chunks of rows (`pipeline.csv_rows_per_commit`) as it streams,
//! and its journal row is marked with the last chunk.

use super::picking::{decide, PickingRule};
use crate::record::{AdvisorRef, Rejection};
use crate::store::conversations::{
    self, Awaiting, Decision, DepositRejections, Draft, Kept, Prepared, Recorded, Stored,
};
use crate::store::journal::{self, Outcome};
use crate::store::Result;
use rusqlite::Connection;

/// What a deposit ends as, ready to be written.
pub(crate) enum Commit<'a> {
    /// A conversation: complete, or awaiting its metadata CSV row.
    Conversation(&'a Draft),
    /// The whole deposit refused.
    Rejection(DepositRejections<'a>),
    /// A call that awaited its CSV row refused after all.
    AwaitingRejected {
        awaiting: &'a Awaiting,
        rejection: &'a Rejection,
        day: &'a str,
        cap: usize,
    },
    /// No rows: ignored, unchanged, superseded.
    Outcome(Outcome),
}

/// What [`commit`] wrote.
pub enum Committed {
    Conversation(Stored),
    /// `None`: the awaiting call was completed meanwhile, nothing written.
    Rejection(Option<Recorded>),
    Marked,
}

/// Writes `what` for journal row `journal_id`. Run inside one writer
/// transaction.
pub(crate) fn commit(conn: &Connection, journal_id: i64, what: Commit<'_>) -> Result<Committed> {
    let (committed, outcome) = match what {
        Commit::Conversation(d) => {
            let (stored, outcome) = conversation(conn, d)?;
            (Committed::Conversation(stored), outcome)
        }
        Commit::Rejection(r) => {
            let recorded = conversations::reject_deposit(conn, &r)?;
            let outcome = recorded.outcome();
            (Committed::Rejection(Some(recorded)), Some(outcome))
        }
        Commit::AwaitingRejected {
            awaiting,
            rejection,
            day,
            cap,
        } => {
            let recorded = conversations::reject_awaiting(conn, awaiting, rejection, day, cap)?;
            let outcome = recorded.as_ref().map(Recorded::outcome);
            (Committed::Rejection(recorded), outcome)
        }
        Commit::Outcome(o) => (Committed::Marked, Some(o)),
    };
    if let Some(o) = outcome {
        journal::mark_done(conn, journal_id, &o)?;
    }
    Ok(committed)
}

/// Stores a draft and marks its journal row: [`commit`] of a conversation.
pub(crate) fn store_conversation(conn: &Connection, d: &Draft) -> Result<Stored> {
    match commit(conn, d.journal_id, Commit::Conversation(d))? {
        Committed::Conversation(stored) => Ok(stored),
        _ => Err(crate::store::StoreError::Commit(
            "a conversation committed as something else".into(),
        )),
    }
}

/// Supersedes the draft's previous version, decides picking (a call
/// awaiting its metadata is not decided yet), writes the conversation;
/// with the outcome its journal row gets.
fn conversation(conn: &Connection, d: &Draft) -> Result<(Stored, Option<Outcome>)> {
    let kept = match conversations::prepare(conn, d)? {
        Prepared::Done(stored, outcome) => return Ok((stored, outcome)),
        Prepared::Write { kept } => kept,
    };
    let decision = match d.wait_until.is_some() {
        true => None,
        false => Some(decide_for(conn, d, kept)?),
    };
    let stored = conversations::write(conn, d, decision.as_ref())?;
    let outcome = match &stored {
        Stored::Conversation { id, .. } => Some(Outcome::Conversation(*id)),
        Stored::Unchanged { .. } => None,
    };
    Ok((stored, outcome))
}

/// Advisor (found or created) and picking decision for a complete call:
/// `kept` (a reprocessed conversation's) is counted again as it was, else a
/// fresh decision is taken from the window's counters.
fn decide_for(conn: &Connection, d: &Draft, kept: Option<Kept>) -> Result<Decision> {
    let advisor_id = match &d.advisor {
        AdvisorRef::ByEmail(a) => Some(conversations::advisor_id(conn, &d.account, a)?),
        _ => None,
    };
    let key = d.advisor.picking_key();
    let (picked, reason) = match kept {
        Some((picked, reason)) => (picked, reason),
        None => {
            let counts = conversations::window_counts(
                conn,
                &d.account,
                &d.window.to_string(),
                key.as_deref(),
            )?;
            let decision = match &d.picking {
                None => Ok(()),
                Some(rule) => {
                    // Calls without a known advisor are not subject to the cap.
                    let rule = PickingRule {
                        percent: rule.percent,
                        max_per_advisor: key.as_ref().and(rule.max_per_advisor),
                    };
                    decide(&rule, &counts)
                }
            };
            (
                decision.is_ok(),
                decision.err().map(|r| r.as_str().to_string()),
            )
        }
    };
    conversations::count(conn, d, key.as_deref(), picked)?;
    Ok(Decision {
        advisor_id,
        key,
        picked,
        reason,
    })
}

#[cfg(test)]
mod tests;
