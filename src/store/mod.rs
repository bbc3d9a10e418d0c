//! The SQLite store: one database file (WAL), schema migrations tracked by
//! `PRAGMA user_version`, and a single writer thread.
//!
//! All writes go through [`Writer`]: one thread owns the write connection and
//! runs jobs in batches — every job in its own savepoint, the batch in one
//! transaction — so concurrent upload completions share one commit (one
//! fsync) instead of queueing for the write lock. A job's caller hears back
//! only after the batch is durably committed. Readers open their own
//! connections with [`open`].

pub mod api;
pub mod conversations;
pub mod events;
pub mod journal;
mod migrations;
pub mod moves;
pub mod queries;
pub mod rejections;
pub mod snapshots;
pub mod states;
pub mod webhooks;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database commit failed: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Opens (creating if needed) the database at `path` with depot's pragmas and
/// brings its schema up to date.
///
/// `temp_store = MEMORY`: each writer job runs in a savepoint, whose undo
/// pages SQLite otherwise keeps in a temporary file it creates and unlinks
/// in the temporary directory for every batch (on a disk, a journaled
/// create and unlink per commit). They are the pages one batch changes.
pub fn open(path: &Path) -> Result<Connection> {
    create_private(path);
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 10000;
         PRAGMA temp_store = MEMORY;",
    )?;
    migrations::migrate(&conn)?;
    make_private(path);
    // The writer cycles through every statement of the journal, the
    // conversation commit and the events outbox; rusqlite's default cache
    // (16) is smaller than that set, and a least-recently-used cache
    // cycled through a larger set misses every time: each statement would
    // be parsed again on every use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements kept per connection: more than the writer uses.
const STATEMENT_CACHE: usize = 128;

/// Creates the database file 0600 before SQLite does, whatever the umask:
/// SQLite gives its WAL and shared-memory files the database's mode.
fn create_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// Takes group and other access away from a database made by an older
/// version (its WAL and shared-memory files too).
fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        names.push(PathBuf::from(p));
    }
    for p in names {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            continue;
        }
        let private = std::fs::Permissions::from_mode(mode & 0o700);
        match std::fs::set_permissions(&p, private) {
            Ok(()) => {
                tracing::info!(file = %p.display(), was = %format!("{mode:o}"), "database file made private")
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "cannot make the database file private; chmod 600 it")
            }
        }
    }
}

type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A job runs with `alone` true when it is its batch's only job: it needs no
/// savepoint then, its failure rolls the whole transaction back. It returns
/// whether it succeeded, and what tells its caller once the batch is done.
type Job = Box<dyn FnOnce(&Connection, bool) -> (bool, Finish) + Send>;

/// Handle to the single writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: std_mpsc::Sender<Job>,
    path: PathBuf,
    /// Bumped after every successful commit (wakes the event feed).
    commits: tokio::sync::watch::Receiver<u64>,
}

/// Most jobs that share one commit.
const MAX_BATCH: usize = 256;

impl Writer {
    /// Opens the database and starts the writer thread. The thread ends when
    /// every `Writer` clone is dropped, after finishing queued jobs.
    pub fn start(path: &Path) -> Result<(Writer, std::thread::JoinHandle<()>)> {
        let conn = open(path)?;
        let (tx, rx) = std_mpsc::channel::<Job>();
        let (committed, commits) = tokio::sync::watch::channel(0u64);
        let handle = std::thread::Builder::new()
            .name("depot-db-writer".into())
            .spawn(move || writer_loop(conn, rx, committed))
            .map_err(|e| StoreError::Commit(format!("cannot start writer thread: {e}")))?;
        Ok((
            Writer {
                jobs: tx,
                path: path.to_path_buf(),
                commits,
            },
            handle,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes after every commit; closed once the writer thread ends.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Runs `f` inside a savepoint of the next batch; resolves once that
    /// batch is committed. An error from `f` rolls back only `f`'s writes.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let rx = self.submit(f)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Writer::run`] for synchronous callers (CLI commands, blocking threads).
    pub(crate) fn run_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let rx = self.submit(f)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn, alone| {
            let outcome = match alone {
                true => f(conn),
                false => in_savepoint(conn, f),
            };
            let ok = outcome.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let r = match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(StoreError::Commit(e)),
                };
                let _ = tx.send(r);
            });
            (ok, finish)
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }
}

/// Runs one of the statements that frame jobs and batches, parsed once.
fn framing(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    framing(conn, "SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            framing(conn, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            framing(conn, "ROLLBACK TO job")?;
            framing(conn, "RELEASE job")?;
            Err(e)
        }
    }
}

/// The jobs of one batch: `first` and whatever is queued behind it.
fn gather(rx: &std_mpsc::Receiver<Job>, first: Job) -> Vec<Job> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    batch
}

fn writer_loop(
    conn: Connection,
    rx: std_mpsc::Receiver<Job>,
    committed: tokio::sync::watch::Sender<u64>,
) {
    while let Ok(first) = rx.recv() {
        let batch = gather(&rx, first);
        if let Err(e) = framing(&conn, "BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cannot begin a database transaction");
            for job in batch {
                // The job never ran: report the failure without running it.
                drop(job);
            }
            continue;
        }
        let changes_before = conn.total_changes();
        let alone = batch.len() == 1;
        let (oks, finishers): (Vec<bool>, Vec<Finish>) =
            batch.into_iter().map(|job| job(&conn, alone)).unzip();
        if alone && !oks[0] {
            // The only job failed without a savepoint: undo what it did.
            // Its caller hears its own error.
            if let Err(e) = framing(&conn, "ROLLBACK") {
                tracing::error!(error = %e, "cannot roll back a failed database job");
            }
            for finish in finishers {
                finish(Ok(()));
            }
            continue;
        }
        let changed = conn.total_changes() != changes_before;
        let commit = framing(&conn, "COMMIT").map_err(|e| {
            let _ = framing(&conn, "ROLLBACK");
            tracing::error!(error = %e, "database commit failed; the batch was rolled back");
            e.to_string()
        });
        // Only a commit that wrote wakes the feed's followers: their own
        // reads through the writer must not wake them again.
        if commit.is_ok() && changed {
            committed.send_modify(|n| *n = n.wrapping_add(1));
        }
        for finish in finishers {
            finish(commit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a new database holding `t(x INTEGER UNIQUE)`.
    async fn with_table(dir: &tempfile::TempDir) -> (PathBuf, Writer, std::thread::JoinHandle<()>) {
        let db = dir.path().join("t.db");
        let (w, handle) = Writer::start(&db).unwrap();
        w.run(|c| Ok(c.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)")?))
            .await
            .unwrap();
        (db, w, handle)
    }

    #[tokio::test]
    async fn batched_jobs_commit_and_failures_roll_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (db, w, handle) = with_table(&dir).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.run(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [i % 40])?))
                    .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 40);
        drop(w);
        handle.join().unwrap();
        let c = open(&db).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 40);
    }

    #[tokio::test]
    async fn a_failing_job_alone_in_its_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, w, handle) = with_table(&dir).await;
        let failed = w
            .run(|c| {
                c.execute("INSERT INTO t VALUES (1)", [])?;
                c.execute("INSERT INTO t VALUES (1)", [])?;
                Ok(())
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Sqlite(_))), "{failed:?}");
        w.run(|c| Ok(c.execute("INSERT INTO t VALUES (2)", [])?))
            .await
            .unwrap();
        drop(w);
        handle.join().unwrap();
        let c = open(&db).unwrap();
        let xs: Vec<i64> = c
            .prepare("SELECT x FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(xs, vec![2]);
    }

    /// A batch takes every job already queued, and waits for no more.
    #[test]
    fn a_batch_takes_what_is_queued() {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let job = || -> Job { Box::new(|_, _| (true, Box::new(|_| ()))) };
        for _ in 0..3 {
            tx.send(job()).unwrap();
        }
        let first = rx.recv().unwrap();
        assert_eq!(gather(&rx, first).len(), 3);
        tx.send(job()).unwrap();
        let first = rx.recv().unwrap();
        assert_eq!(gather(&rx, first).len(), 1);
    }

    #[tokio::test]
    async fn only_commits_that_write_signal() {
        let dir = tempfile::tempdir().unwrap();
        let (w, handle) = Writer::start(&dir.path().join("t.db")).unwrap();
        let mut commits = w.commits();
        commits.borrow_and_update();
        w.run(|c| Ok(c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert!(!commits.has_changed().unwrap(), "a read-only batch");
        w.run(|c| {
            events::record(
                c,
                events::CONVERSATION_CREATED,
                "acme",
                serde_json::json!({}),
            )
        })
        .await
        .unwrap();
        assert!(commits.has_changed().unwrap(), "a batch that wrote");
        commits.borrow_and_update();
        drop(w);
        handle.join().unwrap();
        assert!(commits.changed().await.is_err(), "closed with the writer");
    }
}
