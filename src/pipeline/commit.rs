//! Writing an audio deposit's conversation: the store's rows and counters,
//! with the picking decision taken here, between the store's read of the
//! window's counters and its write of the conversation, all in the one
//! writer transaction the caller runs this in (so a crash or a re-delivered
//! journal row never counts a conversation twice).

use super::picking::{decide, PickingRule};
use crate::record::AdvisorRef;
use crate::store::conversations::{self, Decision, Draft, Kept, Prepared, Stored};
use crate::store::Result;
use rusqlite::Connection;

/// Stores a draft: supersedes its previous version, decides picking (a
/// call awaiting its metadata is not decided yet), writes the conversation.
pub fn store_conversation(conn: &Connection, d: &Draft) -> Result<Stored> {
    let kept = match conversations::prepare(conn, d)? {
        Prepared::Done(stored) => return Ok(stored),
        Prepared::Write { kept } => kept,
    };
    let decision = match d.wait_until.is_some() {
        true => None,
        false => Some(decide_for(conn, d, kept)?),
    };
    conversations::write(conn, d, decision.as_ref())
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
