//! Where ingested deposits are: a customer renaming an ingested file, or a
//! directory holding some, moves their records with them, so nothing is
//! ingested twice under its new name (the start-up scan skips journaled
//! paths) and every conversation names where its file now is.

use super::conversations::supersede;
use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// Moves the records of `from` to `to`: one file, or with `dir` every path
/// below the directory `from`. A current conversation at the file `to`
/// (replaced by the rename) is superseded. Returns how many conversations
/// moved.
pub(crate) fn move_deposits(
    conn: &Connection,
    account: &str,
    from: &str,
    to: &str,
    dir: bool,
) -> Result<usize> {
    if !dir {
        let replaced: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM conversations WHERE account = ?1 AND path = ?2 AND status != 'superseded'",
            )?
            .query_map(params![account, to], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in replaced {
            supersede(conn, id)?;
        }
        let n = conn
            .prepare_cached(
                "UPDATE conversations SET path = ?3 WHERE account = ?1 AND path = ?2 AND status != 'superseded'",
            )?
            .execute(params![account, from, to])?;
        conn.prepare_cached("UPDATE journal SET path = ?3 WHERE account = ?1 AND path = ?2")?
            .execute(params![account, from, to])?;
        return Ok(n);
    }
    let (from_dir, to_dir) = (
        format!("{}/", from.trim_end_matches('/')),
        format!("{}/", to.trim_end_matches('/')),
    );
    // A prefix compared with substr, not LIKE: names may hold % and _.
    let n = conn
        .prepare_cached(
            "UPDATE conversations SET path = ?3 || substr(path, length(?2) + 1)
             WHERE account = ?1 AND substr(path, 1, length(?2)) = ?2 AND status != 'superseded'",
        )?
        .execute(params![account, from_dir, to_dir])?;
    conn.prepare_cached(
        "UPDATE journal SET path = ?3 || substr(path, length(?2) + 1)
         WHERE account = ?1 AND substr(path, 1, length(?2)) = ?2",
    )?
    .execute(params![account, from_dir, to_dir])?;
    Ok(n)
}

/// A current conversation of `account` with these bytes, wherever its file
/// is now: (id, path). The start-up scan does not ingest such a file again
/// (a rename whose record was not updated, a copy made by hand).
pub(crate) fn ingested_sha(
    conn: &Connection,
    account: &str,
    sha256: &str,
) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, path FROM conversations WHERE account = ?1 AND sha256 = ?2 AND status != 'superseded' LIMIT 1",
        )?
        .query_row(params![account, sha256], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}
