//! The SQLite store: one database file (WAL), schema migrations tracked by
//! `PRAGMA user_version`, and a single writer thread.
//!
//! All writes go through [`Writer`]: one thread owns the write connection and
//! runs jobs in batches — every job in its own savepoint, the batch in one
//! transaction — so concurrent upload completions share one commit (one
//! fsync) instead of queueing for the write lock. A job's caller hears back
//! only after the batch is durably committed. Readers open their own
//! connections with [`open_read`].

pub mod api;
pub mod conversations;
pub mod events;
pub mod journal;
pub mod moves;
pub mod queries;
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

/// Append-only: a released migration is never edited, only followed.
const MIGRATIONS: &[&str] = &[
    // 1: the upload-complete journal.
    "CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        completed_at TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        outcome TEXT,
        done_at TEXT
    );
    CREATE INDEX journal_pending ON journal(id) WHERE state = 'pending';
    CREATE INDEX journal_path ON journal(account, path);",
    // 2: conversations, advisors, picking counters, rejections.
    "CREATE TABLE advisors (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        email TEXT NOT NULL,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        team TEXT,
        connector TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (account, email)
    );
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        journal_id INTEGER NOT NULL REFERENCES journal(id),
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        received_at TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT,
        deposit_date TEXT,
        window TEXT NOT NULL,
        metadata TEXT NOT NULL,
        additional_metadata TEXT NOT NULL DEFAULT '{}',
        crm TEXT,
        flags TEXT NOT NULL DEFAULT '[]',
        advisor_id INTEGER REFERENCES advisors(id),
        advisor_name TEXT,
        picking_key TEXT,
        picked INTEGER NOT NULL,
        picking_reason TEXT,
        audio TEXT,
        archive_path TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX conversations_account ON conversations(account, id);
    CREATE UNIQUE INDEX conversations_current ON conversations(account, path) WHERE status != 'superseded';
    CREATE TABLE picking_windows (
        account TEXT NOT NULL, window TEXT NOT NULL,
        arrivals INTEGER NOT NULL, picked INTEGER NOT NULL,
        PRIMARY KEY (account, window)
    );
    CREATE TABLE picking_advisors (
        account TEXT NOT NULL, window TEXT NOT NULL, advisor TEXT NOT NULL,
        picked INTEGER NOT NULL,
        PRIMARY KEY (account, window, advisor)
    );
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        stage TEXT NOT NULL,
        reason TEXT NOT NULL,
        line INTEGER,
        at TEXT NOT NULL,
        day TEXT NOT NULL,
        journal_id INTEGER,
        cleared_at TEXT
    );
    CREATE INDEX rejections_account ON rejections(account, id);
    CREATE INDEX rejections_path ON rejections(account, path);",
    // 3: metadata CSV rows, CRM snapshots, the wait for metadata.
    "CREATE TABLE metadata_rows (
        account TEXT NOT NULL,
        file_name TEXT NOT NULL,
        fields TEXT NOT NULL,
        source_path TEXT NOT NULL,
        line INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, file_name)
    );
    CREATE TABLE crm_snapshots (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        path TEXT NOT NULL,
        file TEXT NOT NULL,
        rows INTEGER NOT NULL,
        duplicate_keys INTEGER NOT NULL,
        loaded_at TEXT NOT NULL,
        journal_id INTEGER
    );
    CREATE TABLE crm_latest (account TEXT PRIMARY KEY, snapshot_id INTEGER NOT NULL);
    ALTER TABLE conversations ADD COLUMN wait_until TEXT;
    CREATE INDEX conversations_awaiting ON conversations(status, wait_until) WHERE status = 'awaiting_metadata';",
    // 4: the running server's in-process counters, saved every few seconds
    // so `depot stats` can read them from another process.
    "CREATE TABLE server_counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );",
    // 5: `depot reprocess ID`: the conversation a journal row redoes, and
    // whether its picking decision is taken again.
    "ALTER TABLE journal ADD COLUMN redo_of INTEGER;
    ALTER TABLE journal ADD COLUMN repick INTEGER;",
    // 6: the customer's daily report reads one account's day in order.
    "CREATE INDEX rejections_day ON rejections(account, day, id);",
    // 7: a row failing for a transient reason is retried without end; how
    // often, and why it last failed, is visible to the operator.
    "ALTER TABLE journal ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal ADD COLUMN last_error TEXT;
    CREATE INDEX conversations_sha ON conversations(account, sha256);",
    // 8: the event outbox, written in the same transaction as each outcome.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        account TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_account ON events(account, seq);
    CREATE INDEX events_at ON events(at);",
    // 9: webhook delivery: each endpoint's position in the feed and retry
    // state, and the events it gave up on (dead letters).
    "CREATE TABLE webhook_cursors (
        name TEXT PRIMARY KEY,
        delivered_seq INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        failing_since TEXT,
        next_attempt_at TEXT,
        last_error TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE webhook_parked (
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        parked_at TEXT NOT NULL,
        error TEXT,
        retry INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, seq)
    );",
    // 10: metadata CSV rows that could not be read but name an audio file.
    "CREATE TABLE metadata_row_errors (
        account TEXT NOT NULL,
        file_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, file_name)
    );",
    // 11: the console's and the API's reads by time and by path: a day's
    // counts and a conversation's history no longer read a whole account
    // (measured with a million conversations: overview 488 -> 27 ms, one
    // conversation 444 -> 0.7 ms).
    "CREATE INDEX conversations_received ON conversations(account, received_at);
    CREATE INDEX conversations_path_all ON conversations(account, path);
    CREATE INDEX journal_completed ON journal(account, completed_at);
    CREATE INDEX rejections_at ON rejections(account, at);",
];

/// Opens (creating if needed) the database at `path` with depot's pragmas and
/// brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    create_private(path);
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 10000;",
    )?;
    migrate(&conn)?;
    make_private(path);
    Ok(conn)
}

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

/// A connection for reading (CLI listings, start-up scans).
pub fn open_read(path: &Path) -> Result<Connection> {
    open(path)
}

/// Brings the schema up to date inside one exclusive transaction: the
/// version is read under the lock, so two processes opening a new database
/// at once never both apply a migration.
fn migrate(conn: &Connection) -> Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= MIGRATIONS.len() {
        return Ok(());
    }
    conn.execute_batch("BEGIN EXCLUSIVE")?;
    let applied = (|| -> Result<()> {
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", i + 1)?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

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
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T>
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
        let job: Job = Box::new(move |conn| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit| {
                let r = match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(StoreError::Commit(e)),
                };
                let _ = tx.send(r);
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(
    conn: Connection,
    rx: std_mpsc::Receiver<Job>,
    committed: tokio::sync::watch::Sender<u64>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cannot begin a database transaction");
            for job in batch {
                // The job never ran: report the failure without running it.
                drop(job);
            }
            continue;
        }
        let changes_before = conn.total_changes();
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(&conn)).collect();
        let changed = conn.total_changes() != changes_before;
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
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

    #[tokio::test]
    async fn batched_jobs_commit_and_failures_roll_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let (w, handle) = Writer::start(&db).unwrap();
        w.run(|c| Ok(c.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)")?))
            .await
            .unwrap();
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
        let c = open_read(&db).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 40);
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
