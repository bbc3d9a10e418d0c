//! Writing outcomes' rows: a conversation (its advisor, picking counters,
//! archive copy and journal row) or a rejection — each in one savepoint of
//! the writer's transaction, so a crash or a re-delivered journal row never
//! stores or counts anything twice. The store offers the counters and the
//! writes; the picking decision between them is the caller's.

use super::journal::{now_rfc3339, Outcome, Redo};
/// The rejection rows, named where callers always found them.
pub(crate) use super::rejections::{
    clear_rejections, clear_rejections_up_to, open_rejections, reject_deposit, reject_refused,
    replace_rejections, DepositRejections, Recorded, Rejected, ReportRow,
};
use super::{events, Result, StoreError};
use crate::record::{
    AdvisorRef, AudioInfo, CrmOutcome, NewAdvisor, PickingRule, Rejection, WindowCounts,
};
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything the stages worked out for one audio deposit.
#[derive(Debug, Clone)]
pub struct Draft {
    pub account: String,
    pub path: String,
    pub journal_id: i64,
    pub size: u64,
    pub sha256: String,
    pub received_at: String,
    pub started_at: Option<String>,
    /// The date of its date directory, if any.
    pub deposit_date: Option<NaiveDate>,
    /// The picking window: the call's day in the account's timezone.
    pub window: NaiveDate,
    pub metadata: BTreeMap<String, String>,
    pub flags: Vec<String>,
    pub advisor: AdvisorRef,
    pub audio: Option<AudioInfo>,
    /// `None`: no `[picking]`, everything is picked.
    pub picking: Option<PickingRule>,
    /// Where the archive copy is staged and where it goes.
    pub archive: Option<ArchiveTarget>,
    /// Additional metadata from the CRM and what the join found.
    pub additional_metadata: BTreeMap<String, String>,
    pub crm: Option<CrmOutcome>,
    /// `Some(deadline)`: stored as `awaiting_metadata` until its metadata
    /// CSV row arrives (no advisor, no picking yet).
    pub wait_until: Option<String>,
    /// Completes this awaiting conversation instead of storing a new one.
    pub existing: Option<i64>,
    /// `depot reprocess ID`: supersedes that conversation even when the
    /// content is the same, keeping its picking decision unless `repick`.
    pub redo: Option<Redo>,
}

/// The audio's staged copy and its place in the archive: `dir` and the
/// extension of its final name `<conversation id>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveTarget {
    pub staged: PathBuf,
    pub dir: PathBuf,
    pub ext: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Conversation {
        id: i64,
        picked: bool,
    },
    /// Same path and content as the current conversation: nothing changed.
    Unchanged {
        id: i64,
    },
}

/// The current (not superseded) conversation of a deposit, with its sha256.
pub fn current(conn: &Connection, account: &str, path: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, sha256 FROM conversations WHERE account = ?1 AND path = ?2 AND status != 'superseded'",
        )?
        .query_row([account, path], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// What [`prepare`] found: nothing left to write, or the conversation
/// rows to write (after the caller takes the picking decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Nothing to write; the journal row's outcome, if it gets one here.
    Done(Stored, Option<Outcome>),
    /// Write it; `kept` is a reprocessed conversation's picking decision,
    /// to be counted again as it was.
    Write { kept: Option<Kept> },
}

/// The first half of storing a draft: an awaiting conversation that is no
/// longer awaiting, a stale redo or the same content again end here (with
/// the outcome their journal row is to get); a previous version is
/// superseded (its counts come out).
pub fn prepare(conn: &Connection, d: &Draft) -> Result<Prepared> {
    if let Some(id) = d.existing {
        let status: Option<String> = conn
            .prepare_cached("SELECT status FROM conversations WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if status.as_deref() != Some("awaiting_metadata") {
            return Ok(Prepared::Done(Stored::Unchanged { id }, None));
        }
        return Ok(Prepared::Write { kept: None });
    }
    let previous = current(conn, &d.account, &d.path)?;
    let mut kept = None;
    match (d.redo, &previous) {
        (Some(redo), Some((id, _))) if *id == redo.conversation => {
            if !redo.repick {
                kept = decision(conn, *id)?;
            }
            // Its counts come out here; a kept decision is counted back in
            // (in the new window, for the new advisor key), so the counters
            // end as they were when neither changed.
            supersede(conn, *id)?;
        }
        (Some(redo), _) => {
            return Ok(Prepared::Done(
                Stored::Unchanged {
                    id: redo.conversation,
                },
                Some(Outcome::StaleRedo(redo.conversation)),
            ));
        }
        (None, Some((id, sha))) if *sha == d.sha256 => {
            return Ok(Prepared::Done(
                Stored::Unchanged { id: *id },
                Some(Outcome::Unchanged(*id)),
            ));
        }
        (None, Some((id, _))) => supersede(conn, *id)?,
        (None, None) => {}
    }
    Ok(Prepared::Write { kept })
}

/// A conversation's advisor and picking decision, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub advisor_id: Option<i64>,
    /// The key picking caps are counted under.
    pub key: Option<String>,
    pub picked: bool,
    /// Why it was not picked.
    pub reason: Option<String>,
}

/// The second half of storing a draft: the conversation row (new, or the
/// awaiting one completed), its archive copy, its journal row and event.
/// `decision` is `None` for a call stored as awaiting its metadata.
pub fn write(conn: &Connection, d: &Draft, decision: Option<&Decision>) -> Result<Stored> {
    if let Some(id) = d.existing {
        return finish_awaiting(conn, id, d, decision.cloned().unwrap_or_default());
    }
    let awaiting = decision.is_none();
    let none = Decision::default();
    let dec = decision.unwrap_or(&none);
    let now = now_rfc3339();
    let cols = JsonColumns::of(d)?;
    conn.prepare_cached(
        "INSERT INTO conversations (account, path, journal_id, size, sha256, received_at, status,
            started_at, deposit_date, window, metadata, flags, advisor_id, advisor_name, picking_key,
            picked, picking_reason, audio, created_at, additional_metadata, crm, wait_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?19, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?20, ?21, ?22)",
    )?
    .execute(params![
        d.account,
        d.path,
        d.journal_id,
        d.size as i64,
        d.sha256,
        d.received_at,
        d.started_at,
        d.deposit_date.map(|d| d.to_string()),
        d.window.to_string(),
        cols.metadata,
        cols.flags,
        dec.advisor_id,
        d.advisor.name(),
        dec.key,
        dec.picked,
        dec.reason,
        d.audio.as_ref().map(json).transpose()?,
        now,
        if awaiting { "awaiting_metadata" } else { "ingested" },
        cols.additional_metadata,
        cols.crm,
        d.wait_until,
    ])?;
    let id = conn.last_insert_rowid();
    if let Some(a) = &d.archive {
        let dest = a.dir.join(format!("{id}.{}", a.ext));
        crate::archive::put(&a.staged, &dest)
            .map_err(|e| StoreError::Commit(format!("archive {}: {e}", dest.display())))?;
        conn.prepare_cached("UPDATE conversations SET archive_path = ?2 WHERE id = ?1")?
            .execute(params![id, dest.display().to_string()])?;
    }
    clear_rejections(conn, &d.account, &d.path)?;
    if !awaiting {
        events::conversation_created(conn, id)?;
    }
    Ok(Stored::Conversation {
        id,
        picked: dec.picked,
    })
}

/// A picking decision already taken: picked, and why not.
pub(crate) type Kept = (bool, Option<String>);

/// The picking decision of an ingested conversation (one still awaiting its
/// metadata has none, and was never counted).
fn decision(conn: &Connection, id: i64) -> Result<Option<Kept>> {
    Ok(conn
        .prepare_cached(
            "SELECT picked, picking_reason FROM conversations WHERE id = ?1 AND status = 'ingested'",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// What `depot reprocess ID` needs of a conversation.
#[derive(Debug, Clone)]
pub(crate) struct Redoable {
    pub account: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub status: String,
    /// When the deposit was received: the new conversation keeps it.
    pub received_at: String,
    /// The ingested bytes, for when the customer deleted or replaced the file.
    pub archive_path: Option<String>,
}

pub(crate) fn redoable(conn: &Connection, id: i64) -> Result<Option<Redoable>> {
    Ok(conn
        .prepare_cached(
            "SELECT account, path, size, sha256, status, received_at, archive_path
             FROM conversations WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Redoable {
                account: r.get(0)?,
                path: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                status: r.get(4)?,
                received_at: r.get(5)?,
                archive_path: r.get(6)?,
            })
        })
        .optional()?)
}

/// Completes an `awaiting_metadata` conversation with its full metadata.
fn finish_awaiting(conn: &Connection, id: i64, d: &Draft, dec: Decision) -> Result<Stored> {
    let cols = JsonColumns::of(d)?;
    conn.prepare_cached(
        "UPDATE conversations SET status = 'ingested', started_at = ?2, window = ?3, metadata = ?4,
            flags = ?5, advisor_id = ?6, advisor_name = ?7, picking_key = ?8, picked = ?9,
            picking_reason = ?10, additional_metadata = ?11, crm = ?12, wait_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        d.started_at,
        d.window.to_string(),
        cols.metadata,
        cols.flags,
        dec.advisor_id,
        d.advisor.name(),
        dec.key,
        dec.picked,
        dec.reason,
        cols.additional_metadata,
        cols.crm,
    ])?;
    events::conversation_created(conn, id)?;
    Ok(Stored::Conversation {
        id,
        picked: dec.picked,
    })
}

/// A draft's columns stored as JSON, as both a new conversation and one
/// completed after waiting for its metadata write them.
struct JsonColumns {
    metadata: String,
    flags: String,
    additional_metadata: String,
    crm: Option<String>,
}

impl JsonColumns {
    fn of(d: &Draft) -> Result<JsonColumns> {
        Ok(JsonColumns {
            metadata: json(&d.metadata)?,
            flags: json(&d.flags)?,
            additional_metadata: json(&d.additional_metadata)?,
            crm: d.crm.as_ref().map(json).transpose()?,
        })
    }
}

/// The parts of an awaiting conversation needed to complete it.
#[derive(Debug, Clone)]
pub(crate) struct Awaiting {
    pub id: i64,
    pub account: String,
    pub path: String,
    pub journal_id: i64,
    pub size: u64,
    pub sha256: String,
    pub received_at: String,
    pub deposit_date: Option<String>,
    pub audio: Option<AudioInfo>,
    pub archive_path: Option<String>,
}

pub(crate) fn awaiting(conn: &Connection, id: i64) -> Result<Option<Awaiting>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, account, path, journal_id, size, sha256, received_at, deposit_date, audio, archive_path
             FROM conversations WHERE id = ?1 AND status = 'awaiting_metadata'",
        )?
        .query_row([id], |r| {
            Ok(Awaiting {
                id: r.get(0)?,
                account: r.get(1)?,
                path: r.get(2)?,
                journal_id: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
                sha256: r.get(5)?,
                received_at: r.get(6)?,
                deposit_date: r.get(7)?,
                audio: r.get::<_, Option<String>>(8)?.and_then(|j| serde_json::from_str(&j).ok()),
                archive_path: r.get(9)?,
            })
        })
        .optional()?)
}

/// Turns an awaiting conversation into a rejection (its wait ran out and
/// the account says `on_timeout = "reject"`, or its metadata is unusable).
/// `None` when it is no longer awaiting (its row arrived and completed it
/// meanwhile): nothing is recorded, and its archive copy must stay.
pub(crate) fn reject_awaiting(
    conn: &Connection,
    a: &Awaiting,
    r: &Rejection,
    day: &str,
    cap: usize,
) -> Result<Option<Recorded>> {
    let deleted = conn
        .prepare_cached("DELETE FROM conversations WHERE id = ?1 AND status = 'awaiting_metadata'")?
        .execute([a.id])?;
    if deleted == 0 {
        return Ok(None);
    }
    let recorded = reject_deposit(
        conn,
        &DepositRejections {
            account: &a.account,
            path: &a.path,
            journal_id: a.journal_id,
            sha256: &a.sha256,
            rejections: std::slice::from_ref(r),
            more: 0,
            cap,
            day,
        },
    )?;
    Ok(Some(recorded))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Commit(e.to_string()))
}

/// Marks a conversation superseded and takes it out of its window's counts
/// (only an ingested one was ever counted: a call still waiting for its
/// metadata row had no picking decision yet).
pub(crate) fn supersede(conn: &Connection, id: i64) -> Result<()> {
    let (account, window, picked, key, status): (String, String, bool, Option<String>, String) =
        conn.prepare_cached(
            "SELECT account, window, picked, picking_key, status FROM conversations WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    conn.prepare_cached("UPDATE conversations SET status = 'superseded' WHERE id = ?1")?
        .execute([id])?;
    if status != "ingested" {
        return Ok(());
    }
    events::record(
        conn,
        events::CONVERSATION_SUPERSEDED,
        &account,
        serde_json::json!({"id": id}),
    )?;
    conn.prepare_cached(
        "UPDATE picking_windows SET arrivals = max(arrivals - 1, 0), picked = max(picked - ?3, 0)
         WHERE account = ?1 AND window = ?2",
    )?
    .execute(params![account, window, picked as i64])?;
    if let (true, Some(k)) = (picked, key) {
        conn.prepare_cached(
            "UPDATE picking_advisors SET picked = max(picked - 1, 0) WHERE account = ?1 AND window = ?2 AND advisor = ?3",
        )?
        .execute(params![account, window, k])?;
    }
    Ok(())
}

/// Finds or creates the advisor; the unique (account, email) constraint
/// makes concurrent first sightings converge on one row.
pub fn advisor_id(conn: &Connection, account: &str, a: &NewAdvisor) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO advisors (account, email, first_name, last_name, team, connector, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (account, email) DO NOTHING",
    )?
    .execute(params![
        account,
        a.email,
        a.first_name,
        a.last_name,
        a.team,
        a.connector,
        now_rfc3339()
    ])?;
    Ok(conn
        .prepare_cached("SELECT id FROM advisors WHERE account = ?1 AND email = ?2")?
        .query_row([account, &a.email], |r| r.get(0))?)
}

/// The counters of a window as they stand, for the advisor `key` too.
pub fn window_counts(
    conn: &Connection,
    account: &str,
    window: &str,
    key: Option<&str>,
) -> Result<WindowCounts> {
    let (arrivals, picked): (i64, i64) = conn
        .prepare_cached(
            "SELECT arrivals, picked FROM picking_windows WHERE account = ?1 AND window = ?2",
        )?
        .query_row([account, window], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    let advisor_picked: i64 = match key {
        Some(k) => conn
            .prepare_cached("SELECT picked FROM picking_advisors WHERE account = ?1 AND window = ?2 AND advisor = ?3")?
            .query_row([account, window, k], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
        None => 0,
    };
    Ok(WindowCounts {
        arrivals_before: arrivals as u64,
        picked: picked as u64,
        advisor_picked: advisor_picked as u64,
    })
}

/// Counts one arrival (picked or not) in the draft's window and, when
/// picked, for its advisor.
pub fn count(conn: &Connection, d: &Draft, key: Option<&str>, is_picked: bool) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO picking_windows (account, window, arrivals, picked) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (account, window) DO UPDATE SET arrivals = arrivals + 1, picked = picked + ?3",
    )?
    .execute(params![d.account, d.window.to_string(), is_picked as i64])?;
    if let (true, Some(k)) = (is_picked, key) {
        conn.prepare_cached(
            "INSERT INTO picking_advisors (account, window, advisor, picked) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (account, window, advisor) DO UPDATE SET picked = picked + 1",
        )?
        .execute(params![d.account, d.window.to_string(), k])?;
    }
    Ok(())
}
