//! Metadata CSV rows (keyed by account and audio file name) and CRM
//! snapshots. A CRM snapshot's rows live in its archived CSV file, loaded
//! into memory once; SQLite keeps which snapshot is the latest, so swapping
//! it is one row update.

use super::journal::now_rfc3339;
use super::Result;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// The form file names are matched in: a Mac sends NFD, a spreadsheet
/// holds NFC, and both name the same file.
pub(crate) fn match_form(name: &str) -> String {
    use unicode_normalization::{is_nfc, UnicodeNormalization};
    match is_nfc(name) {
        true => name.to_owned(),
        false => name.nfc().collect(),
    }
}

/// Upserts a metadata row: a later row for the same file replaces it (and
/// a broken row recorded for that file before).
pub(crate) fn put_metadata_row(
    conn: &Connection,
    account: &str,
    file_name: &str,
    fields: &BTreeMap<String, String>,
    source: &str,
    line: u64,
) -> Result<()> {
    let file_name = match_form(file_name);
    conn.prepare_cached("DELETE FROM metadata_row_errors WHERE account = ?1 AND file_name = ?2")?
        .execute([account, &file_name])?;
    let json =
        serde_json::to_string(fields).map_err(|e| super::StoreError::Commit(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO metadata_rows (account, file_name, fields, source_path, line, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (account, file_name) DO UPDATE SET fields = ?3, source_path = ?4, line = ?5, updated_at = ?6",
    )?
    .execute(params![account, file_name, json, source, line as i64, now_rfc3339()])?;
    Ok(())
}

/// Records that a metadata CSV row naming `file_name` could not be read
/// (`reason` cites the CSV and line), unless a valid row for that file is
/// stored: audio of that name is then rejected with it, at once.
pub(crate) fn put_row_error(
    conn: &Connection,
    account: &str,
    file_name: &str,
    reason: &str,
) -> Result<()> {
    let file_name = match_form(file_name);
    conn.prepare_cached(
        "INSERT INTO metadata_row_errors (account, file_name, reason, updated_at)
         SELECT ?1, ?2, ?3, ?4
         WHERE NOT EXISTS (SELECT 1 FROM metadata_rows WHERE account = ?1 AND file_name = ?2)
         ON CONFLICT (account, file_name) DO UPDATE SET reason = ?3, updated_at = ?4",
    )?
    .execute(params![account, file_name, reason, now_rfc3339()])?;
    Ok(())
}

/// Why the metadata CSV row naming `file_name` could not be read, if one
/// was recorded and no valid row replaced it.
pub(crate) fn row_error(
    conn: &Connection,
    account: &str,
    file_name: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT reason FROM metadata_row_errors WHERE account = ?1 AND file_name IN (?2, ?3)",
        )?
        .query_row(params![account, match_form(file_name), file_name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The metadata row for `file_name`, matched in NFC form (rows stored by
/// older versions under another form are found by their bytes).
pub(crate) fn metadata_row(
    conn: &Connection,
    account: &str,
    file_name: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let json: Option<String> = conn
        .prepare_cached(
            "SELECT fields FROM metadata_rows WHERE account = ?1 AND file_name IN (?2, ?3)
             ORDER BY file_name = ?2 DESC LIMIT 1",
        )?
        .query_row(params![account, match_form(file_name), file_name], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Audio of `account` rejected for a missing or unreadable metadata CSV
/// row (still open) whose row is now stored: (journal id, path, newest
/// such rejection id).
pub(crate) fn rejected_with_rows(
    conn: &Connection,
    account: &str,
) -> Result<Vec<(i64, String, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT r.journal_id, r.path, max(r.id) FROM rejections r
         WHERE r.account = ?1 AND r.stage = 'metadata_csv' AND r.cleared_at IS NULL
           AND r.journal_id IS NOT NULL AND r.line IS NULL
         GROUP BY r.journal_id, r.path ORDER BY r.journal_id",
    )?;
    let candidates = st
        .query_map([account], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (journal_id, path, newest) in candidates {
        let file_name = path.rsplit('/').next().unwrap_or(&path);
        if metadata_row(conn, account, file_name)?.is_some() {
            out.push((journal_id, path, newest));
        }
    }
    Ok(out)
}

/// (id, path) of every conversation of `account` waiting for its
/// metadata row, oldest first.
fn awaiting_paths(conn: &Connection, account: &str) -> Result<Vec<(i64, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT id, path FROM conversations WHERE account = ?1 AND status = 'awaiting_metadata' ORDER BY id",
    )?;
    let waiting = st
        .query_map([account], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(waiting)
}

/// Conversations of `account` waiting for their metadata row whose row
/// could not be read, with the reason.
pub(crate) fn awaiting_with_row_errors(
    conn: &Connection,
    account: &str,
) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for (id, path) in awaiting_paths(conn, account)? {
        let file_name = path.rsplit('/').next().unwrap_or(&path);
        if let Some(reason) = row_error(conn, account, file_name)? {
            out.push((id, reason));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: i64,
    pub account: String,
    pub path: String,
    pub file: String,
    pub rows: i64,
    pub duplicate_keys: i64,
    pub loaded_at: String,
    pub latest: bool,
}

/// Records a new snapshot and makes it the account's latest, atomically.
pub(crate) fn add_snapshot(
    conn: &Connection,
    account: &str,
    path: &str,
    rows: usize,
    duplicate_keys: usize,
    journal_id: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO crm_snapshots (account, path, file, rows, duplicate_keys, loaded_at, journal_id)
         VALUES (?1, ?2, '', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![account, path, rows as i64, duplicate_keys as i64, now_rfc3339(), journal_id])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO crm_latest (account, snapshot_id) VALUES (?1, ?2)
         ON CONFLICT (account) DO UPDATE SET snapshot_id = ?2",
    )?
    .execute(params![account, id])?;
    super::events::record(
        conn,
        super::events::CRM_SNAPSHOT_CREATED,
        account,
        serde_json::json!({"id": id, "path": path, "rows": rows, "duplicate_keys": duplicate_keys}),
    )?;
    Ok(id)
}

pub(crate) fn set_snapshot_file(conn: &Connection, id: i64, file: &str) -> Result<()> {
    conn.prepare_cached("UPDATE crm_snapshots SET file = ?2 WHERE id = ?1")?
        .execute(params![id, file])?;
    Ok(())
}

const SNAPSHOT_SELECT: &str =
    "SELECT s.id, s.account, s.path, s.file, s.rows, s.duplicate_keys, s.loaded_at,
    l.snapshot_id IS NOT NULL FROM crm_snapshots s
    LEFT JOIN crm_latest l ON l.account = s.account AND l.snapshot_id = s.id";

fn snapshot(r: &rusqlite::Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        id: r.get(0)?,
        account: r.get(1)?,
        path: r.get(2)?,
        file: r.get(3)?,
        rows: r.get(4)?,
        duplicate_keys: r.get(5)?,
        loaded_at: r.get(6)?,
        latest: r.get(7)?,
    })
}

pub fn latest_snapshot(conn: &Connection, account: &str) -> Result<Option<Snapshot>> {
    Ok(conn
        .prepare_cached(&format!("{SNAPSHOT_SELECT} WHERE l.account = ?1"))?
        .query_row([account], snapshot)
        .optional()?)
}

pub fn snapshots(conn: &Connection, account: Option<&str>) -> Result<Vec<Snapshot>> {
    let mut st = conn.prepare(&format!(
        "{SNAPSHOT_SELECT} WHERE ?1 IS NULL OR s.account = ?1 ORDER BY s.id"
    ))?;
    let rows = st.query_map([account], snapshot)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Conversations of `account` waiting for their metadata row whose row is
/// now stored, with that row: a metadata CSV just stored completes them.
pub(crate) fn awaiting_with_rows(
    conn: &Connection,
    account: &str,
) -> Result<Vec<(i64, BTreeMap<String, String>)>> {
    let mut out = Vec::new();
    for (id, path) in awaiting_paths(conn, account)? {
        let file_name = path.rsplit('/').next().unwrap_or(&path);
        if let Some(row) = metadata_row(conn, account, file_name)? {
            out.push((id, row));
        }
    }
    Ok(out)
}

/// Awaiting conversations whose wait has run out at `now` (RFC 3339).
pub(crate) fn awaiting_due(conn: &Connection, now: &str) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(
        "SELECT id FROM conversations WHERE status = 'awaiting_metadata' AND wait_until <= ?1 ORDER BY id",
    )?;
    let rows = st.query_map([now], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
