//! CSV deposits (SPEC §5.4, §5.7): metadata CSV rows stored per audio file
//! name (completing audio that waited for them), and CRM files turned into
//! snapshots — the newest accepted one becomes the account's latest,
//! atomically; a file that fails is rejected whole and the previous
//! snapshot stays.

use super::crm::{self, CrmTable};
use super::csvfile::{self, CsvError, Layout};
use super::worker::{lock, mark, transient, Failure, Pipeline};
use super::Rejection;
use crate::config::Account;
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::store::journal::{self, Entry};
use crate::store::{conversations, snapshots};
use anyhow::anyhow;
use std::io::Read;
use std::sync::Arc;

/// Reads a deposit whole and checks it is the journaled content
/// (`None`: it changed or was deleted since; a newer completion covers it).
async fn read_deposit(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
) -> Result<Option<Vec<u8>>, Failure> {
    let root = p.jail_root(&account.name);
    let (path, sha) = (entry.path.clone(), entry.sha256.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Vec<u8>>> {
        let jail = Jail::open(&root)?;
        let jp = JailPath::parse(&path).map_err(|e| anyhow!("{e}"))?;
        let mut f = match jail.open_file(
            &jp,
            &OpenOptions {
                read: true,
                ..Default::default()
            },
        ) {
            Ok(f) => f,
            Err(crate::jail::JailError::NotFound) => return Ok(None),
            Err(e) => return Err(anyhow!("{e}")),
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        use sha2::Digest;
        let now = hex::encode(sha2::Sha256::digest(&bytes));
        Ok((now == sha).then_some(bytes))
    })
    .await
    .map_err(transient)?
    .map_err(Failure::Transient)
}

pub async fn metadata_csv(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
) -> Result<(), Failure> {
    let Some(settings) = &account.metadata_csv else {
        return Err(transient(anyhow!("account has no [metadata_csv]")));
    };
    let Some(bytes) = read_deposit(p, account, entry).await? else {
        return mark(p, entry.id, "stale: changed after this upload")
            .await
            .map_err(Failure::Transient);
    };
    let layout = Layout {
        skip_rows: settings.skip_rows,
        header: settings.header,
        column_map: settings.column_map.clone(),
        column_list: settings.column_list.clone(),
        filename_column: settings.filename_column.clone(),
    };
    let dialect = settings.dialect.clone();
    let parsed = tokio::task::spawn_blocking(move || csvfile::parse(&bytes, &dialect, &layout))
        .await
        .map_err(transient)?;
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            let (reason, line) = match e {
                CsvError::Decode(r) | CsvError::Header(r) => (r, None),
                CsvError::Syntax { line, reason } => (reason, Some(line)),
            };
            let mut r = Rejection::new("metadata_csv", reason);
            r.line = line;
            return Err(r.into());
        }
    };
    let rows: Vec<(String, std::collections::BTreeMap<String, String>, u64)> = parsed
        .rows
        .into_iter()
        .map(|r| (r.file_name, r.fields, r.line))
        .collect();
    let (acc, src, id, rows2) = (
        account.name.clone(),
        entry.path.clone(),
        entry.id,
        rows.clone(),
    );
    let kept = rows.len();
    let rejections: Vec<Rejection> = parsed
        .errors
        .into_iter()
        .map(|e| Rejection {
            stage: "metadata_csv",
            reason: e.reason,
            line: Some(e.line),
        })
        .collect();
    let refused = rejections.len();
    let (day, rs) = (super::worker::today(account), rejections.clone());
    let day2 = day.clone();
    // Rows, their rejections and the journal state in one transaction; a
    // retry after a later step failed finds the row done and records
    // nothing twice.
    p.writer
        .run(move |c| {
            if journal::get(c, id)?.is_some_and(|e| e.state == "done") {
                return Ok(());
            }
            conversations::clear_rejections(c, &acc, &src)?;
            for (file, fields, line) in &rows2 {
                snapshots::put_metadata_row(c, &acc, file, fields, &src, *line)?;
            }
            for r in &rs {
                conversations::reject(c, &acc, &src, None, r, &day2)?;
            }
            journal::mark_done(
                c,
                id,
                &format!("metadata_csv: {} rows, {} refused", rows2.len(), refused),
            )
        })
        .await
        .map_err(transient)?;
    tracing::info!(account = %account.name, path = %entry.path, rows = kept, refused, "metadata CSV stored");
    for r in &rejections {
        crate::metrics::Metrics::add(&p.metrics.rejections, 1);
        tracing::info!(account = %account.name, path = %entry.path, stage = r.stage, line = r.line, reason = %r.reason, "CSV row rejected");
    }
    if refused > 0 {
        super::worker::refresh_report_logged(p, account, day).await;
    }
    for (file, fields, _) in rows {
        let (acc, f) = (account.name.clone(), file.clone());
        let waiting = p
            .writer
            .run(move |c| snapshots::awaiting_for_file(c, &acc, &f))
            .await
            .map_err(transient)?;
        for conv in waiting {
            super::audio_flow::complete_awaiting(p, account, conv, Some(fields.clone()))
                .await
                .map_err(Failure::Transient)?;
        }
    }
    Ok(())
}

pub async fn crm_csv(p: &Pipeline, account: &Arc<Account>, entry: &Entry) -> Result<(), Failure> {
    let Some(settings) = &account.crm else {
        return Err(transient(anyhow!("account has no [crm]")));
    };
    let Some(bytes) = read_deposit(p, account, entry).await? else {
        return mark(p, entry.id, "stale: changed after this upload")
            .await
            .map_err(Failure::Transient);
    };
    let (dialect, key) = (settings.dialect.clone(), settings.column.clone());
    let started = std::time::Instant::now();
    let table = tokio::task::spawn_blocking(move || crm::load(&bytes, &dialect, &key))
        .await
        .map_err(transient)?
        .map_err(|reason| {
            Rejection::new(
                "crm",
                format!("CRM file not loaded, the previous snapshot stays: {reason}"),
            )
        })?;
    let archive = p.archive_root(&account.name).join("crm");
    let tmp = archive.join(format!(".j{}.csv", entry.id));
    let (root, jp, t, sha) = (
        p.jail_root(&account.name),
        JailPath::parse(&entry.path).map_err(|e| transient(anyhow!("{e}")))?,
        tmp.clone(),
        entry.sha256.clone(),
    );
    let sealed = p.seals.source(entry.id);
    let staged = tokio::task::spawn_blocking(move || {
        use crate::archive::{stage, Source};
        match &sealed {
            Some(f) => stage(&Source::Descriptor(f), &t, &sha),
            None => stage(
                &Source::Jail {
                    root: &root,
                    path: &jp,
                },
                &t,
                &sha,
            ),
        }
    })
    .await
    .map_err(transient)?
    .map_err(transient)?;
    match staged {
        crate::archive::Staged::Ready(_) => {}
        crate::archive::Staged::Changed { sha256 } => {
            return super::audio_flow::not_as_acknowledged(p, account, entry, Some(&sha256)).await;
        }
        crate::archive::Staged::Missing => {
            return super::audio_flow::not_as_acknowledged(p, account, entry, None).await;
        }
    }
    let (acc, path, jid, rows, dups) = (
        account.name.clone(),
        entry.path.clone(),
        entry.id,
        table.row_count,
        table.duplicate_keys,
    );
    let snapshot = p
        .writer
        .run(move |c| {
            let id = snapshots::add_snapshot(c, &acc, &path, rows, dups, jid)?;
            conversations::clear_rejections(c, &acc, &path)?;
            let dest = archive.join(format!("{id}.csv"));
            crate::archive::put(&tmp, &dest)
                .map_err(|e| crate::store::StoreError::Commit(format!("archive CRM file: {e}")))?;
            snapshots::set_snapshot_file(c, id, &dest.display().to_string())?;
            journal::mark_done(c, jid, &format!("crm_snapshot:{id}"))?;
            Ok(id)
        })
        .await
        .map_err(transient)?;
    tracing::info!(
        account = %account.name,
        path = %entry.path,
        snapshot,
        rows = table.row_count,
        duplicate_keys = table.duplicate_keys,
        load_ms = started.elapsed().as_millis() as u64,
        "CRM snapshot is now the latest"
    );
    lock(&p.crm).insert(account.name.clone(), Some((snapshot, Arc::new(table))));
    Ok(())
}

/// The account's latest CRM snapshot, loaded from its archived file the
/// first time it is needed after a start.
pub async fn latest_crm(
    p: &Pipeline,
    account: &Account,
) -> anyhow::Result<Option<(i64, Arc<CrmTable>)>> {
    let cached = |p: &Pipeline| lock(&p.crm).get(&account.name).cloned();
    if let Some(hit) = cached(p) {
        return Ok(hit);
    }
    // One load at a time: after a restart every concurrent ingestion
    // misses the cache at once, and each loading its own copy of a
    // million-row snapshot took gigabytes.
    let _one_load = p.crm_loading.lock().await;
    if let Some(hit) = cached(p) {
        return Ok(hit);
    }
    let acc = account.name.clone();
    let latest = p
        .writer
        .run(move |c| snapshots::latest_snapshot(c, &acc))
        .await?;
    let loaded = match (latest, &account.crm) {
        (Some(s), Some(settings)) => {
            let (dialect, key, file) = (
                settings.dialect.clone(),
                settings.column.clone(),
                s.file.clone(),
            );
            let table = tokio::task::spawn_blocking(move || -> anyhow::Result<CrmTable> {
                #[cfg(test)]
                tests::LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let bytes = std::fs::read(&file)?;
                crm::load(&bytes, &dialect, &key)
                    .map_err(|e| anyhow!("reloading CRM snapshot {file}: {e}"))
            })
            .await??;
            Some((s.id, Arc::new(table)))
        }
        _ => None,
    };
    // A snapshot taken while this one loaded is newer: it stays.
    Ok(lock(&p.crm)
        .entry(account.name.clone())
        .or_insert(loaded)
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// Snapshot files read by [`latest_crm`].
    pub static LOADS: AtomicUsize = AtomicUsize::new(0);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_lookups_share_one_load_of_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let hash = crate::sftp::auth::hash_password("pw").unwrap();
        let file = dir.path().join("acme.toml");
        std::fs::write(
            &file,
            format!("password_hash = {hash:?}\n[crm]\ndir = \"/crm\"\nkey = \"agent_id\"\n"),
        )
        .unwrap();
        let account = Arc::new(
            crate::config::load_account(&file, dir.path(), false)
                .unwrap()
                .0,
        );
        let csv = dir.path().join("snapshot.csv");
        std::fs::write(&csv, "agent_id,team\nalice,emerald\nbob,ruby\n").unwrap();
        let (writer, db_thread) = crate::store::Writer::start(&dir.path().join("d.db")).unwrap();
        let name = csv.display().to_string();
        writer
            .run(move |c| {
                let id = snapshots::add_snapshot(c, "acme", "/crm/a.csv", 2, 0, 1)?;
                snapshots::set_snapshot_file(c, id, &name)
            })
            .await
            .unwrap();
        let mut accounts = std::collections::BTreeMap::new();
        accounts.insert("acme".to_string(), account.clone());
        let (_keep, rx) = tokio::sync::watch::channel(Arc::new(accounts));
        let p = Pipeline::new(
            rx,
            writer.clone(),
            dir.path().to_path_buf(),
            Arc::new(Mutex::new(HashSet::new())),
            Arc::new(Metrics::default()),
        );
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let (p, a) = (p.clone(), account.clone());
                tokio::spawn(async move { latest_crm(&p, &a).await.unwrap().unwrap() })
            })
            .collect();
        let mut tables = Vec::new();
        for l in lookups {
            tables.push(l.await.unwrap());
        }
        assert_eq!(tables[0].1.lookup("bob").unwrap()["team"], "ruby");
        // One load, one table in memory, whoever asked first.
        assert_eq!(LOADS.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(tables.iter().all(|t| Arc::ptr_eq(&t.1, &tables[0].1)));
        drop((p, writer));
        db_thread.join().unwrap();
    }
}
