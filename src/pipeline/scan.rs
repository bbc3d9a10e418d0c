//! The start-up scan: deposits already in a jail that have no
//! journal row (copied in by hand, or written while depot was not running)
//! are journaled with source `scan` and handed to the pipeline, once.
//!
//! It walks each account's ingestion directories (the whole jail when the
//! account has none) through the [`Jail`], so symlinks are never followed;
//! temporary names and `/rejected` are skipped, like uploads. It runs before
//! the SFTP listeners start, so no upload is in progress while it looks.
//! Blocking code: call it from `spawn_blocking`.

use crate::config::Account;
use crate::config::Accounts;
use crate::deposit::hash::hash_file;
use crate::deposit::names::is_final;
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::store::journal::{self, Entry, NewEntry, Source};
use crate::store::{self, Writer};
use std::path::Path;

/// Rows committed per database job.
const BATCH: usize = 256;

/// The jail paths of every deposit-shaped file in `account`'s jail, sorted.
pub(crate) fn candidates(jail: &Jail, account: &Account) -> Vec<JailPath> {
    let mut roots: Vec<JailPath> = account.ingest_dirs().into_iter().cloned().collect();
    if roots.is_empty() {
        roots.push(JailPath::root());
    }
    roots.sort();
    // /audio covers /audio/csv: walk each subtree once.
    let mut tops: Vec<JailPath> = Vec::new();
    for r in roots {
        if !tops.iter().any(|t| r.starts_with(t)) {
            tops.push(r);
        }
    }
    let mut out = Vec::new();
    for top in tops {
        walk(jail, account, &top, &mut out);
    }
    out.sort();
    out
}

fn walk(jail: &Jail, account: &Account, dir: &JailPath, out: &mut Vec<JailPath>) {
    let entries = match jail.read_dir(dir) {
        Ok(e) => e,
        Err(crate::jail::JailError::NotFound) => return,
        Err(e) => {
            tracing::warn!(account = %account.name, dir = %dir, error = %e, "start-up scan cannot list a directory; skipped");
            return;
        }
    };
    for e in entries {
        let Ok(path) = dir.join(&e.name) else {
            continue;
        };
        let kind = e.metadata.file_type();
        if kind.is_dir() {
            walk(jail, account, &path, out);
        } else if kind.is_file() && is_final(account, &path) {
            out.push(path);
        }
    }
}

/// Journals every unjournaled deposit of every account; returns the new
/// entries, oldest first, for the pipeline.
pub fn scan(data_dir: &Path, accounts: &Accounts, writer: &Writer) -> store::Result<Vec<Entry>> {
    let conn = store::open(writer.path())?;
    let mut out = Vec::new();
    for account in accounts.values() {
        let root = crate::deposit::Layout::new(data_dir).jail(&account.name);
        if !root.is_dir() {
            continue;
        }
        let jail = match Jail::open(&root) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "start-up scan cannot open the jail; skipped");
                continue;
            }
        };
        let mut fresh = Vec::new();
        for path in candidates(&jail, account) {
            if journal::has_path(&conn, &account.name, path.as_str())? {
                continue;
            }
            let read = OpenOptions {
                read: true,
                ..Default::default()
            };
            let file = jail.open_file(&path, &read);
            // An upload cut off by a crash or a dropped connection: not a
            // deposit (the client may resume it). An empty file is treated
            // the same: a crash can fall between an OPEN creating the file
            // and the partial mark being set (ext4 may make that second
            // step wait for a journal commit), and an empty file holds
            // nothing to ingest anyway.
            let empty = file
                .as_ref()
                .is_ok_and(|f| f.metadata().is_ok_and(|m| m.len() == 0));
            if empty || file.as_ref().is_ok_and(crate::deposit::hash::is_partial) {
                tracing::info!(account = %account.name, path = %path, "partial upload left by an interrupted transfer; not ingested");
                continue;
            }
            let digest = file
                .map_err(std::io::Error::other)
                .and_then(|f| hash_file(&f));
            if let Ok((_, sha256)) = &digest {
                if let Some((id, at)) =
                    crate::store::moves::ingested_sha(&conn, &account.name, sha256)?
                {
                    tracing::info!(account = %account.name, path = %path, conversation_id = id, ingested_at = %at, "start-up scan: these bytes are already a conversation; not ingested again");
                    continue;
                }
            }
            match digest {
                Ok((size, sha256)) => fresh.push(NewEntry {
                    account: account.name.clone(),
                    path: path.as_str().to_string(),
                    size,
                    sha256,
                    source: Source::Scan,
                }),
                Err(e) => {
                    tracing::warn!(account = %account.name, path = %path, error = %e, "start-up scan cannot read a file; skipped")
                }
            }
        }
        for chunk in fresh.chunks(BATCH) {
            let rows = chunk.to_vec();
            let entries = writer.run_blocking(move |c| insert_new(c, &rows))?;
            for e in &entries {
                tracing::info!(account = %e.account, path = %e.path, size = e.size, sha256 = %e.sha256, journal_id = e.id, source = "scan", "deposit found by the start-up scan");
            }
            out.extend(entries);
        }
    }
    Ok(out)
}

/// Inserts the rows whose deposit still has no journal row (another
/// process may have journaled one since the scan looked).
pub(crate) fn insert_new(
    conn: &rusqlite::Connection,
    rows: &[NewEntry],
) -> store::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for r in rows {
        if !journal::has_path(conn, &r.account, &r.path)? {
            out.push(journal::insert(conn, r)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_account;
    use std::sync::Arc;

    #[test]
    fn scan_journals_final_names_once_and_never_follows_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let accounts_dir = tmp.path().join("accounts");
        std::fs::create_dir_all(&accounts_dir).unwrap();
        let hash = crate::sftp::auth::hash_password("pw").unwrap();
        std::fs::write(
            accounts_dir.join("acme.toml"),
            format!("password_hash = {hash:?}\n[audio]\ndir = \"/audio\"\n"),
        )
        .unwrap();
        let (acc, _) = load_account(&accounts_dir.join("acme.toml"), &accounts_dir, false).unwrap();
        let accounts: Accounts = Arc::new([("acme".to_string(), Arc::new(acc))].into());
        let data = tmp.path().join("data");
        let day = data.join("home/acme/audio/20260211");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::create_dir_all(data.join("home/acme/rejected")).unwrap();
        std::fs::write(day.join("a.wav"), b"a").unwrap();
        std::fs::write(day.join("b.wav.part"), b"b").unwrap();
        std::fs::write(day.join(".hidden"), b"c").unwrap();
        std::fs::write(data.join("home/acme/outside.wav"), b"d").unwrap();
        std::fs::write(tmp.path().join("secret.wav"), b"e").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.wav"), day.join("link.wav")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), day.join("linkdir")).unwrap();

        let (writer, thread) = Writer::start(&data.join("depot.db")).unwrap();
        let found = scan(&data, &accounts, &writer).unwrap();
        let paths: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["/audio/20260211/a.wav"]);
        assert_eq!(found[0].source, "scan");
        assert!(scan(&data, &accounts, &writer).unwrap().is_empty());
        drop(writer);
        thread.join().unwrap();
    }
}
