//! The event outbox: every outcome (a conversation created or superseded,
//! a rejection created or closed, a CRM snapshot loaded) writes one row
//! here inside the same transaction as the outcome itself, so the feed can
//! neither miss an outcome nor announce one that was rolled back. `seq`
//! is an AUTOINCREMENT key: it strictly increases and is never reused,
//! even after old events are pruned.

use super::journal::now_rfc3339;
use super::{Result, Writer};
use rand::RngCore;
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::Value as Json;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) const CONVERSATION_CREATED: &str = "conversation.created";
pub(crate) const CONVERSATION_SUPERSEDED: &str = "conversation.superseded";
pub(crate) const REJECTION_CREATED: &str = "rejection.created";
pub(crate) const REJECTION_CLOSED: &str = "rejection.closed";
pub(crate) const CRM_SNAPSHOT_CREATED: &str = "crm.snapshot.created";

/// One event as the feed hands it on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub seq: i64,
    /// Unique and stable (webhook deliveries use it as their id).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    pub account: String,
    pub data: Json,
}

/// Records an event in the caller's transaction; returns its `seq`.
pub fn record(conn: &Connection, kind: &str, account: &str, data: Json) -> Result<i64> {
    let mut raw = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    conn.prepare_cached(
        "INSERT INTO events (id, type, at, account, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        format!("evt_{}", hex::encode(raw)),
        kind,
        now_rfc3339(),
        account,
        data.to_string()
    ])?;
    Ok(conn.last_insert_rowid())
}

/// `conversation.created` for conversation `id`, as now stored.
pub(crate) fn conversation_created(conn: &Connection, id: i64) -> Result<i64> {
    let (account, data): (String, Json) = conn
        .prepare_cached(
            "SELECT account, path, status, sha256, size, received_at, picked FROM conversations WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get(0)?,
                serde_json::json!({
                    "id": id, "path": r.get::<_, String>(1)?, "status": r.get::<_, String>(2)?,
                    "sha256": r.get::<_, String>(3)?, "size": r.get::<_, i64>(4)?,
                    "received_at": r.get::<_, String>(5)?, "picked": r.get::<_, bool>(6)?,
                }),
            ))
        })?;
    record(conn, CONVERSATION_CREATED, &account, data)
}

/// `rejection.created` for rejection `id`.
pub(crate) fn rejection_created(conn: &Connection, id: i64) -> Result<i64> {
    let (account, data): (String, Json) = conn
        .prepare_cached("SELECT account, path, stage, reason, line FROM rejections WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((
                r.get(0)?,
                serde_json::json!({
                    "id": id, "path": r.get::<_, String>(1)?, "stage": r.get::<_, String>(2)?,
                    "reason": r.get::<_, String>(3)?, "line": r.get::<_, Option<i64>>(4)?,
                }),
            ))
        })?;
    record(conn, REJECTION_CREATED, &account, data)
}

/// `rejection.closed` for each of `ids` (a re-upload of `path` succeeded).
pub(crate) fn rejections_closed(
    conn: &Connection,
    account: &str,
    path: &str,
    ids: &[i64],
) -> Result<()> {
    for id in ids {
        record(
            conn,
            REJECTION_CLOSED,
            account,
            serde_json::json!({"id": id, "path": path}),
        )?;
    }
    Ok(())
}

/// Events with `seq > after`, oldest first, at most `limit`.
pub fn after(
    conn: &Connection,
    after: i64,
    account: Option<&str>,
    limit: u32,
) -> Result<Vec<Event>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, id, type, at, account, data FROM events
         WHERE seq > ?1 AND (?2 IS NULL OR account = ?2) ORDER BY seq LIMIT ?3",
    )?;
    let rows = st.query_map(params![after, account, limit], |r| {
        let data: String = r.get(5)?;
        Ok(Event {
            seq: r.get(0)?,
            id: r.get(1)?,
            kind: r.get(2)?,
            at: r.get(3)?,
            account: r.get(4)?,
            data: serde_json::from_str(&data).unwrap_or(Json::Null),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The event `seq`, if still kept.
pub(crate) fn by_seq(conn: &Connection, seq: i64) -> Result<Option<Event>> {
    Ok(after(conn, seq - 1, None, 1)?
        .into_iter()
        .find(|e| e.seq == seq))
}

/// Deletes events recorded before `before` (RFC 3339); returns how many.
pub(crate) fn prune(conn: &Connection, before: &str) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM events WHERE at < ?1")?
        .execute([before])?)
}

/// How often expired events are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes events older than `retention` now and then every hour, until
/// `shutdown` turns true.
pub(crate) fn spawn_pruner(
    writer: Writer,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
            let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            match writer.run(move |c| prune(c, &cutoff)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired events deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete expired events"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_increases_and_is_never_reused_after_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::store::open(&dir.path().join("t.db")).unwrap();
        let a = record(
            &c,
            CONVERSATION_CREATED,
            "acme",
            serde_json::json!({"id": 1}),
        )
        .unwrap();
        let b = record(&c, REJECTION_CREATED, "beta", serde_json::json!({"id": 2})).unwrap();
        assert!(b > a);
        let all = after(&c, 0, None, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_ne!(all[0].id, all[1].id);
        assert_eq!(all[0].data["id"], 1);
        assert_eq!(after(&c, 0, Some("beta"), 10).unwrap()[0].seq, b);
        assert_eq!(after(&c, b, None, 10).unwrap(), vec![]);
        assert_eq!(prune(&c, "9999").unwrap(), 2);
        let d = record(&c, CRM_SNAPSHOT_CREATED, "acme", Json::Null).unwrap();
        assert!(d > b, "a pruned seq is not handed out again");
    }

    #[test]
    fn outcome_and_event_commit_or_roll_back_together() {
        use crate::record::Rejection;
        use crate::store::conversations::clear_rejections;
        use crate::store::rejections::reject;
        let dir = tempfile::tempdir().unwrap();
        let c = crate::store::open(&dir.path().join("t.db")).unwrap();
        let r = Rejection::new("audio", "the file is empty");
        c.execute_batch("BEGIN").unwrap();
        reject(&c, "acme", "/audio/a.mp3", None, &r, "2026-02-11").unwrap();
        c.execute_batch("ROLLBACK").unwrap();
        assert_eq!(after(&c, 0, None, 10).unwrap(), vec![]);
        let id = reject(&c, "acme", "/audio/a.mp3", None, &r, "2026-02-11").unwrap();
        clear_rejections(&c, "acme", "/audio/a.mp3").unwrap();
        clear_rejections(&c, "acme", "/audio/a.mp3").unwrap();
        let all = after(&c, 0, None, 10).unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, [REJECTION_CREATED, REJECTION_CLOSED], "closed once");
        assert_eq!(all[0].data["id"], id);
        assert_eq!(all[0].data["stage"], "audio");
        assert_eq!(all[1].data["id"], id);
    }
}
