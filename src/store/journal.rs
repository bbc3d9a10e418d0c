//! The upload-complete journal: one row per completed deposit, committed
//! before the client hears OK. A row is `pending` until the pipeline has
//! turned it into a conversation or a rejection (or decided to ignore it);
//! pending rows are handed to the pipeline again after a restart.

pub(crate) use super::states::{Outcome, State};
use super::Result;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// How a deposit reached the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Sftp,
    Scan,
    Import,
    /// `depot reprocess`: the same deposit run through the pipeline again.
    Reprocess,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sftp => "sftp",
            Source::Scan => "scan",
            Source::Import => "import",
            Source::Reprocess => "reprocess",
        }
    }
}

/// A completed deposit as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub account: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub completed_at: String,
    pub source: String,
    pub state: State,
    /// The outcome as stored (see [`Entry::done`] for its value).
    pub outcome: Option<String>,
    /// `depot reprocess ID`: this row runs that conversation again.
    pub redo: Option<Redo>,
}

/// A journal row that re-runs an ingested conversation: the pipeline
/// bypasses the "same content, unchanged" check, and the new conversation
/// keeps the old one's picking decision unless `repick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redo {
    pub conversation: i64,
    pub repick: bool,
}

/// What a new row says.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub account: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub source: Source,
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn insert(conn: &Connection, e: &NewEntry) -> Result<Entry> {
    insert_redo(conn, e, None)
}

/// [`insert`], for a row that may redo a conversation.
pub(crate) fn insert_redo(conn: &Connection, e: &NewEntry, redo: Option<Redo>) -> Result<Entry> {
    let completed_at = now_rfc3339();
    conn.prepare_cached(
        "INSERT INTO journal (account, path, size, sha256, completed_at, source, redo_of, repick)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.account,
        e.path,
        e.size as i64,
        e.sha256,
        completed_at,
        e.source.as_str(),
        redo.map(|r| r.conversation),
        redo.map(|r| r.repick),
    ])?;
    Ok(Entry {
        id: conn.last_insert_rowid(),
        account: e.account.clone(),
        path: e.path.clone(),
        size: e.size,
        sha256: e.sha256.clone(),
        completed_at,
        source: e.source.as_str().to_string(),
        state: State::Pending,
        outcome: None,
        redo,
    })
}

impl Entry {
    /// The outcome of a row that is done.
    pub fn done(&self) -> Option<Outcome> {
        match self.state {
            State::Done => self.outcome.as_deref().map(Outcome::parse),
            State::Pending => None,
        }
    }
}

/// Marks a row done with its outcome. Idempotent.
pub(crate) fn mark_done(conn: &Connection, id: i64, outcome: &Outcome) -> Result<()> {
    conn.prepare_cached(
        "UPDATE journal SET state = 'done', outcome = ?2, done_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, outcome, now_rfc3339()])?;
    Ok(())
}

/// Counts a failed attempt of a row that stays pending, with its cause.
pub(crate) fn record_failure(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE journal SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, error])?;
    Ok(())
}

/// Pending rows that already failed at least once: (count, oldest id's
/// completion time, its last error).
pub fn retrying(conn: &Connection) -> Result<(u64, Option<(String, String)>)> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM journal WHERE state = 'pending' AND attempts > 0",
        [],
        |r| r.get(0),
    )?;
    let oldest = conn
        .query_row(
            "SELECT completed_at, coalesce(last_error, '') FROM journal
             WHERE state = 'pending' AND attempts > 0 ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok((n.max(0) as u64, oldest))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        account: r.get(1)?,
        path: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        completed_at: r.get(5)?,
        source: r.get(6)?,
        state: r.get(7)?,
        outcome: r.get(8)?,
        redo: match r.get::<_, Option<i64>>(9)? {
            Some(conversation) => Some(Redo {
                conversation,
                repick: r.get::<_, Option<bool>>(10)?.unwrap_or(false),
            }),
            None => None,
        },
    })
}

const COLUMNS: &str =
    "id, account, path, size, sha256, completed_at, source, state, outcome, redo_of, repick";

/// Is a journal row of this deposit still waiting for the pipeline?
pub(crate) fn is_pending(conn: &Connection, account: &str, path: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM journal WHERE account = ?1 AND path = ?2 AND state = 'pending' LIMIT 1",
        )?
        .query_row([account, path], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn pending(conn: &Connection) -> Result<Vec<Entry>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM journal WHERE state = 'pending' ORDER BY id"
    ))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Entry>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM journal WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// Every row of one account, oldest first.
pub fn for_account(conn: &Connection, account: &str) -> Result<Vec<Entry>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM journal WHERE account = ?1 ORDER BY id"
    ))?;
    let rows = st.query_map([account], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Is there any journal row for this deposit? (start-up scan)
pub(crate) fn has_path(conn: &Connection, account: &str, path: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM journal WHERE account = ?1 AND path = ?2 LIMIT 1")?
        .query_row([account, path], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Has the deposit a completion journaled after row `id`?
pub(crate) fn newer_exists(conn: &Connection, account: &str, path: &str, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM journal WHERE account = ?1 AND path = ?2 AND id > ?3 LIMIT 1",
        )?
        .query_row(params![account, path, id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The newest row of one deposit, if any (import's idempotence check).
pub(crate) fn latest_for_path(
    conn: &Connection,
    account: &str,
    path: &str,
) -> Result<Option<Entry>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM journal WHERE account = ?1 AND path = ?2 ORDER BY id DESC LIMIT 1"
        ))?
        .query_row([account, path], from_row)
        .optional()?)
}

/// State and outcome of the rows with ids in `[from, to]` (progress of a
/// batch the caller journaled).
pub(crate) fn states_between(
    conn: &Connection,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, State, Option<Outcome>)>> {
    let mut st =
        conn.prepare_cached("SELECT id, state, outcome FROM journal WHERE id BETWEEN ?1 AND ?2")?;
    let rows = st.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
