//! The schema, as the list of migrations that built it, and how a
//! database is brought up to date.

use super::Result;
use rusqlite::Connection;

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

/// Brings the schema up to date inside one exclusive transaction: the
/// version is read under the lock, so two processes opening a new database
/// at once never both apply a migration.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
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
