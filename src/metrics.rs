//! In-process counters, printed at shutdown, and saved every few seconds
//! into the database so `depot stats` (another process) can read them while
//! the server runs; `GET /metrics` serves them live. [`stats`] is what both
//! report from the database.

pub(crate) mod stats;

use crate::store::{self, Writer};
use rusqlite::{params, Connection};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Default, Debug)]
pub struct Metrics {
    pub sessions: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub completions: AtomicU64,
    pub conversations: AtomicU64,
    pub rejections: AtomicU64,
    pub auth_failures: AtomicU64,
    pub bans: AtomicU64,
    /// Ingestion attempts that failed for a transient reason (retried).
    pub retries: AtomicU64,
    /// System and editor files (`Thumbs.db`, `.DS_Store`...) stored and
    /// not ingested.
    pub system_files_ignored: AtomicU64,
    /// Temporary and partial uploads removed by the sweep.
    pub uploads_swept: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `name value` pairs, in a stable order.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("sessions", g(&self.sessions)),
            ("bytes_in", g(&self.bytes_in)),
            ("bytes_out", g(&self.bytes_out)),
            ("completions", g(&self.completions)),
            ("conversations", g(&self.conversations)),
            ("rejections", g(&self.rejections)),
            ("auth_failures", g(&self.auth_failures)),
            ("bans", g(&self.bans)),
            ("retries", g(&self.retries)),
            ("system_files_ignored", g(&self.system_files_ignored)),
            ("uploads_swept", g(&self.uploads_swept)),
        ]
    }
}

/// How often a running server saves its counters for `depot stats`.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Counters saved by a server, as read back by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    pub started_at: String,
    pub updated_at: String,
    /// False once the server saved its final counters at shutdown.
    pub running: bool,
    pub counters: Vec<(String, u64)>,
}

/// Replaces the saved counters with `counters` (one server at a time owns
/// the table; a new start overwrites the previous run's values).
pub(crate) fn save(
    conn: &Connection,
    started_at: &str,
    running: bool,
    counters: &[(&'static str, u64)],
) -> store::Result<()> {
    let now = crate::store::journal::now_rfc3339();
    conn.execute("DELETE FROM server_counters", [])?;
    let mut st = conn.prepare_cached(
        "INSERT INTO server_counters (name, value, started_at, updated_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    st.execute(params!["running", running as i64, started_at, now])?;
    for (name, value) in counters {
        st.execute(params![name, *value as i64, started_at, now])?;
    }
    Ok(())
}

/// The last saved counters, if a server ever saved any.
pub(crate) fn load(conn: &Connection) -> store::Result<Option<Saved>> {
    let mut st = conn.prepare_cached(
        "SELECT name, value, started_at, updated_at FROM server_counters ORDER BY rowid",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let Some((_, _, started_at, updated_at)) = rows.first().cloned() else {
        return Ok(None);
    };
    let mut saved = Saved {
        started_at,
        updated_at,
        running: false,
        counters: Vec::new(),
    };
    for (name, value, _, _) in rows {
        match name.as_str() {
            "running" => saved.running = value != 0,
            _ => saved.counters.push((name, value.max(0) as u64)),
        }
    }
    Ok(Some(saved))
}

/// Saves `metrics` every [`SAVE_EVERY`] until `stop` fires, then once more
/// as final (the caller stops it after the pipeline has drained).
pub(crate) fn spawn_saver(
    metrics: Arc<Metrics>,
    writer: Writer,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let started_at = crate::store::journal::now_rfc3339();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            let running = tokio::select! {
                _ = &mut stop => false,
                _ = tick.tick() => true,
            };
            let (snap, at) = (metrics.snapshot(), started_at.clone());
            if let Err(e) = writer.run(move |c| save(c, &at, running, &snap)).await {
                tracing::warn!(error = %e, "cannot save counters");
            }
            if !running {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_counters_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        assert_eq!(load(&conn).unwrap(), None);
        let m = Metrics::default();
        Metrics::add(&m.sessions, 3);
        save(&conn, "t0", true, &m.snapshot()).unwrap();
        let s = load(&conn).unwrap().unwrap();
        assert!(s.running);
        assert_eq!(s.started_at, "t0");
        assert!(s.counters.contains(&("sessions".to_string(), 3)));
        save(&conn, "t0", false, &m.snapshot()).unwrap();
        assert!(!load(&conn).unwrap().unwrap().running);
    }
}
