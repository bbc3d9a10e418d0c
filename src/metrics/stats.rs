//! What `depot stats` and `GET /metrics` both report from the database:
//! totals the database holds anyway (completions, conversations, rejections
//! by stage, advisors) counted there, and what only the server process
//! knows (sessions, bytes, auth failures, bans) from the counters it saves
//! every few seconds ([`super::spawn_saver`]). One collection for both, so
//! the CLI and the scrape cannot disagree.

use super::{load, Saved, SAVE_EVERY};
use crate::store;
use rusqlite::Connection;
use serde::Serialize;
use std::collections::BTreeMap;

/// The server's own counters, as last saved.
#[derive(Debug, Serialize)]
pub struct ServerCounters {
    /// Saved recently by a server that has not stopped.
    pub running: bool,
    pub started_at: String,
    pub updated_at: String,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Retrying {
    pub completed_at: String,
    pub last_error: String,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub server: Option<ServerCounters>,
    /// Journal rows by source (sftp, scan, import, reprocess).
    pub completions: BTreeMap<String, u64>,
    pub pending: u64,
    /// Pending rows that failed at least once and are being retried.
    pub retrying: u64,
    /// The oldest of them: when it completed, and why it last failed.
    pub oldest_retrying: Option<Retrying>,
    /// Conversations by status.
    pub conversations: BTreeMap<String, u64>,
    pub picked: u64,
    /// Rejections by stage (all, and still open).
    pub rejections: BTreeMap<String, u64>,
    pub open_rejections: BTreeMap<String, u64>,
    pub advisors: u64,
}

fn grouped(conn: &Connection, sql: &str) -> store::Result<BTreeMap<String, u64>> {
    let mut st = conn.prepare(sql)?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, v.max(0) as u64);
    }
    Ok(out)
}

fn count(conn: &Connection, sql: &str) -> store::Result<u64> {
    Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
}

/// Is a save this recent proof that the server is still up?
fn fresh(updated_at: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(updated_at).is_ok_and(|t| {
        let age = chrono::Utc::now().signed_duration_since(t);
        age.to_std().unwrap_or_default() < SAVE_EVERY * 3
    })
}

pub fn collect(conn: &Connection) -> store::Result<Stats> {
    let server = load(conn)?.map(|s: Saved| ServerCounters {
        running: s.running && fresh(&s.updated_at),
        started_at: s.started_at,
        updated_at: s.updated_at,
        counters: s.counters.into_iter().collect(),
    });
    let (retrying, oldest) = crate::store::journal::retrying(conn)?;
    Ok(Stats {
        server,
        retrying,
        oldest_retrying: oldest.map(|(completed_at, last_error)| Retrying {
            completed_at,
            last_error,
        }),
        completions: grouped(conn, "SELECT source, count(*) FROM journal GROUP BY source")?,
        pending: count(conn, "SELECT count(*) FROM journal WHERE state = 'pending'")?,
        conversations: grouped(
            conn,
            "SELECT status, count(*) FROM conversations GROUP BY status",
        )?,
        picked: count(
            conn,
            "SELECT count(*) FROM conversations WHERE picked AND status = 'ingested'",
        )?,
        rejections: grouped(
            conn,
            "SELECT stage, count(*) FROM rejections GROUP BY stage",
        )?,
        open_rejections: grouped(
            conn,
            "SELECT stage, count(*) FROM rejections WHERE cleared_at IS NULL GROUP BY stage",
        )?,
        advisors: count(conn, "SELECT count(*) FROM advisors")?,
    })
}
