//! Rejections: a deposit's (bounded, never twice for the same content
//! while open), an upload refused before it became a deposit, their
//! closing when a newer version is accepted, and the customer's report
//! rows — each written with its event in the caller's transaction.

use super::journal::{self, now_rfc3339, Outcome};
use super::{events, Result};
use crate::record::Rejection;
use rusqlite::{params, Connection, OptionalExtension};

/// Records a rejection and closes its journal row. `day` is the rejection's
/// date in the account's timezone (it names the customer's report file).
pub fn reject(
    conn: &Connection,
    account: &str,
    path: &str,
    journal_id: Option<i64>,
    r: &Rejection,
    day: &str,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO rejections (account, path, stage, reason, line, at, day, journal_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        account,
        path,
        r.stage,
        r.reason,
        r.line.map(|l| l as i64),
        now_rfc3339(),
        day,
        journal_id
    ])?;
    let id = conn.last_insert_rowid();
    if let Some(j) = journal_id {
        journal::mark_done(conn, j, &Outcome::RejectedAs(id))?;
    }
    events::rejection_created(conn, id)?;
    Ok(id)
}

/// Records an upload refused at OPEN or RENAME (no deposit, no journal
/// row). A client retrying the same refused name every night adds nothing
/// while the same refusal of that path is open: `None` then.
pub(crate) fn reject_refused(
    conn: &Connection,
    account: &str,
    path: &str,
    r: &Rejection,
    day: &str,
) -> Result<Option<ReportRow>> {
    let open: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM rejections WHERE account = ?1 AND path = ?2 AND stage = ?3
               AND reason = ?4 AND journal_id IS NULL AND cleared_at IS NULL LIMIT 1",
        )?
        .query_row(params![account, path, r.stage, r.reason], |r| r.get(0))
        .optional()?;
    if open.is_some() {
        return Ok(None);
    }
    let id = reject(conn, account, path, None, r, day)?;
    let at: String = conn
        .prepare_cached("SELECT at FROM rejections WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    Ok(Some(ReportRow {
        path: path.to_owned(),
        stage: r.stage.to_owned(),
        reason: r.reason.clone(),
        line: None,
        at,
    }))
}

/// What recording one deposit's rejections did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// These rows were stored: the lines to add to the customer's report.
    New(Vec<ReportRow>),
    /// The same bytes at the same path are already rejected and that
    /// rejection is still open: nothing was stored, nothing is reported
    /// again. `rejection` is the open one.
    Unchanged { rejection: i64 },
}

/// The rejections of one deposit, bounded: at most `cap` are stored, and
/// the ones beyond (`rs` past `cap`, plus `more` that the caller already
/// counted without keeping) become one summary row. A CSV of a million
/// bad rows then costs a thousand rows, not a million.
#[derive(Debug, Clone)]
pub(crate) struct DepositRejections<'a> {
    pub account: &'a str,
    pub path: &'a str,
    pub journal_id: i64,
    pub sha256: &'a str,
    pub rejections: &'a [Rejection],
    pub more: usize,
    pub cap: usize,
    /// The rejection's date in the account's timezone (names the report).
    pub day: &'a str,
}

/// Records a deposit's rejections (see [`DepositRejections`]); the caller
/// marks the journal row done in the same transaction. Completing the same
/// path again with the same content while its rejection is open changes
/// nothing ([`Recorded::Unchanged`]): a batch client retrying the same
/// files every night must not grow the list.
pub(crate) fn reject_deposit(conn: &Connection, d: &DepositRejections<'_>) -> Result<Recorded> {
    if let Some(rejection) = open_rejection_of_content(conn, d)? {
        return Ok(Recorded::Unchanged { rejection });
    }
    insert_rejections(conn, d)
}

/// [`reject_deposit`] for a deposit accepted with some rejections (a
/// metadata CSV with bad rows): the path's earlier open rejections are
/// closed first, this version's recorded — unless they are this same
/// content's, which stay as they are.
pub(crate) fn replace_rejections(conn: &Connection, d: &DepositRejections<'_>) -> Result<Recorded> {
    if let Some(rejection) = open_rejection_of_content(conn, d)? {
        return Ok(Recorded::Unchanged { rejection });
    }
    clear_rejections(conn, d.account, d.path)?;
    insert_rejections(conn, d)
}

fn insert_rejections(conn: &Connection, d: &DepositRejections<'_>) -> Result<Recorded> {
    let kept = d.rejections.len().min(d.cap);
    let dropped = d.rejections.len() - kept + d.more;
    let summary = (dropped > 0).then(|| Rejection {
        stage: d.rejections.first().map_or("metadata_csv", |r| r.stage),
        reason: format!("… and {dropped} more rows rejected"),
        line: None,
    });
    let at = now_rfc3339();
    let mut rows = Vec::with_capacity(kept + 1);
    let mut insert = conn.prepare_cached(
        "INSERT INTO rejections (account, path, stage, reason, line, at, day, journal_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in d.rejections[..kept].iter().chain(summary.as_ref()) {
        let line = r.line.map(|l| l as i64);
        insert.execute(params![
            d.account,
            d.path,
            r.stage,
            r.reason,
            line,
            at,
            d.day,
            d.journal_id
        ])?;
        events::rejection_created(conn, conn.last_insert_rowid())?;
        rows.push(ReportRow {
            path: d.path.to_owned(),
            stage: r.stage.to_owned(),
            reason: r.reason.clone(),
            line,
            at: at.clone(),
        });
    }
    Ok(Recorded::New(rows))
}

/// An open rejection of this path recorded for another completion with the
/// same sha256.
fn open_rejection_of_content(conn: &Connection, d: &DepositRejections<'_>) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.id FROM rejections r JOIN journal j ON j.id = r.journal_id
             WHERE r.account = ?1 AND r.path = ?2 AND r.cleared_at IS NULL
               AND j.sha256 = ?3 AND j.id != ?4
             ORDER BY r.id LIMIT 1",
        )?
        .query_row(params![d.account, d.path, d.sha256, d.journal_id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Closes the open rejections of a deposit: it was re-uploaded and this
/// version was accepted. The day's report keeps them.
pub(crate) fn clear_rejections(conn: &Connection, account: &str, path: &str) -> Result<()> {
    let closed = conn
        .prepare_cached(
            "UPDATE rejections SET cleared_at = ?3 WHERE account = ?1 AND path = ?2 AND cleared_at IS NULL
             RETURNING id",
        )?
        .query_map(params![account, path, now_rfc3339()], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    events::rejections_closed(conn, account, path, &closed)?;
    Ok(())
}

/// Closes the open rejections of `path` up to rejection `up_to`: that
/// deposit was run again and has a new outcome (which may be a newer
/// rejection, left open).
pub(crate) fn clear_rejections_up_to(
    conn: &Connection,
    account: &str,
    path: &str,
    up_to: i64,
) -> Result<()> {
    let closed = conn
        .prepare_cached(
            "UPDATE rejections SET cleared_at = ?3
             WHERE account = ?1 AND path = ?2 AND cleared_at IS NULL AND id <= ?4
             RETURNING id",
        )?
        .query_map(params![account, path, now_rfc3339(), up_to], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    events::rejections_closed(conn, account, path, &closed)?;
    Ok(())
}

/// A deposit with an open rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub account: String,
    pub path: String,
}

/// Deposits whose latest rejection is open, oldest rejection first.
pub fn open_rejections(conn: &Connection, account: Option<&str>) -> Result<Vec<Rejected>> {
    let mut st = conn.prepare_cached(
        "SELECT account, path FROM rejections
         WHERE cleared_at IS NULL AND (?1 IS NULL OR account = ?1)
         GROUP BY account, path ORDER BY min(id)",
    )?;
    let rows = st.query_map([account], |r| {
        Ok(Rejected {
            account: r.get(0)?,
            path: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// One row of a customer's rejection report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub path: String,
    pub stage: String,
    pub reason: String,
    pub line: Option<i64>,
    pub at: String,
}

/// The rejections of one account on one (local) day, oldest first.
pub fn report(conn: &Connection, account: &str, day: &str) -> Result<Vec<ReportRow>> {
    let mut st = conn.prepare_cached(
        "SELECT path, stage, reason, line, at FROM rejections WHERE account = ?1 AND day = ?2 ORDER BY id",
    )?;
    let rows = st.query_map([account, day], |r| {
        Ok(ReportRow {
            path: r.get(0)?,
            stage: r.get(1)?,
            reason: r.get(2)?,
            line: r.get(3)?,
            at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl Recorded {
    /// The journal outcome of a deposit rejected whole.
    pub fn outcome(&self) -> Outcome {
        match self {
            Recorded::New(_) => Outcome::Rejected,
            Recorded::Unchanged { rejection } => Outcome::SameRejection(*rejection),
        }
    }

    /// The report lines to append.
    pub(crate) fn new_rows(self) -> Vec<ReportRow> {
        match self {
            Recorded::New(rows) => rows,
            Recorded::Unchanged { .. } => Vec::new(),
        }
    }
}
