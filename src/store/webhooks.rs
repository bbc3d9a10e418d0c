//! Webhook delivery state: per endpoint, the last event delivered (or
//! parked), the retry state of the next one, and the parked events. All
//! written through the writer, so a delivery's progress survives restarts
//! and kill -9: at worst the last event is delivered again (at least once).

use super::journal::now_rfc3339;
use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub name: String,
    pub delivered_seq: i64,
    /// Failed attempts at the next event.
    pub attempts: u32,
    pub failing_since: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub delivered: i64,
    pub failures: i64,
}

pub fn cursor(conn: &Connection, name: &str) -> Result<Cursor> {
    conn.prepare_cached("INSERT OR IGNORE INTO webhook_cursors (name) VALUES (?1)")?
        .execute([name])?;
    Ok(conn
        .prepare_cached(
            "SELECT name, delivered_seq, attempts, failing_since, next_attempt_at, last_error, delivered, failures
             FROM webhook_cursors WHERE name = ?1",
        )?
        .query_row([name], |r| {
            Ok(Cursor {
                name: r.get(0)?,
                delivered_seq: r.get(1)?,
                attempts: r.get(2)?,
                failing_since: r.get(3)?,
                next_attempt_at: r.get(4)?,
                last_error: r.get(5)?,
                delivered: r.get(6)?,
                failures: r.get(7)?,
            })
        })?)
}

/// Every endpoint's cursor, and how many events each has parked.
pub fn all(conn: &Connection) -> Result<Vec<(Cursor, i64)>> {
    let mut st = conn.prepare("SELECT name FROM webhook_cursors ORDER BY name")?;
    let names = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for n in names {
        let parked = conn.query_row(
            "SELECT count(*) FROM webhook_parked WHERE name = ?1",
            [&n],
            |r| r.get(0),
        )?;
        out.push((cursor(conn, &n)?, parked));
    }
    Ok(out)
}

/// `seq` was delivered (or skipped as not wanted): move past it.
pub fn delivered(conn: &Connection, name: &str, seq: i64, counted: bool) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_cursors SET delivered_seq = max(delivered_seq, ?2), attempts = 0,
            failing_since = NULL, next_attempt_at = NULL, delivered = delivered + ?3
         WHERE name = ?1",
    )?
    .execute(params![name, seq, counted as i64])?;
    Ok(())
}

/// An attempt at the next event failed; try again at `next_at`.
pub fn failed(conn: &Connection, name: &str, next_at: &str, error: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_cursors SET attempts = attempts + 1, failures = failures + 1,
            failing_since = coalesce(failing_since, ?4), next_attempt_at = ?2, last_error = ?3
         WHERE name = ?1",
    )?
    .execute(params![name, next_at, error, now_rfc3339()])?;
    Ok(())
}

/// Gives up on `seq` for this endpoint: parked, and delivery goes on.
pub(crate) fn park(conn: &Connection, name: &str, seq: i64, error: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO webhook_parked (name, seq, parked_at, error, retry) VALUES (?1, ?2, ?3, ?4, 0)",
    )?
    .execute(params![name, seq, now_rfc3339(), error])?;
    conn.prepare_cached("UPDATE webhook_cursors SET failures = failures + 1 WHERE name = ?1")?
        .execute([name])?;
    delivered(conn, name, seq, false)
}

/// Marks every parked event of `name` for delivery again; returns how many.
pub(crate) fn retry_parked(conn: &Connection, name: &str) -> Result<usize> {
    Ok(conn
        .prepare_cached("UPDATE webhook_parked SET retry = 1 WHERE name = ?1")?
        .execute([name])?)
}

/// The oldest parked event of `name` marked for retry.
pub(crate) fn next_retry(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(seq) FROM webhook_parked WHERE name = ?1 AND retry = 1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .flatten())
}

/// A retried parked event was delivered (`ok`), or is parked again.
pub fn retried(conn: &Connection, name: &str, seq: i64, ok: bool, error: &str) -> Result<()> {
    match ok {
        true => conn
            .prepare_cached("DELETE FROM webhook_parked WHERE name = ?1 AND seq = ?2")?
            .execute(params![name, seq])?,
        false => conn
            .prepare_cached(
                "UPDATE webhook_parked SET retry = 0, error = ?3, parked_at = ?4 WHERE name = ?1 AND seq = ?2",
            )?
            .execute(params![name, seq, error, now_rfc3339()])?,
    };
    let (d, f) = if ok { (1, 0) } else { (0, 1) };
    conn.prepare_cached(
        "UPDATE webhook_cursors SET delivered = delivered + ?2, failures = failures + ?3 WHERE name = ?1",
    )?
    .execute(params![name, d, f])?;
    Ok(())
}

/// Forgets a parked event that is no longer kept (past `events.retention`).
pub(crate) fn drop_parked(conn: &Connection, name: &str, seq: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM webhook_parked WHERE name = ?1 AND seq = ?2")?
        .execute(params![name, seq])?;
    Ok(())
}
