//! CRM files turned into snapshots: the newest accepted one becomes the
//! account's latest, atomically; a file that fails is rejected whole and
//! the previous snapshot stays. The latest table per account is kept in
//! memory, loaded from its archived file the first time it is needed.

use super::context::{append_report_logged, lock, today, transient, Failure, Pipeline};
use super::crm::{self, CrmTable};
use super::csvfile::{self, Bounds};
use super::staging::{bounds, low_priority, stage};
use super::Rejection;
use crate::config::Account;
use crate::store::conversations;
use crate::store::journal::{self, Entry, Outcome};
use crate::store::snapshots;
use anyhow::anyhow;
use std::path::Path;
use std::sync::Arc;

pub(crate) async fn crm_csv(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
) -> Result<(), Failure> {
    let Some(settings) = &account.crm else {
        return Err(transient(anyhow!("account has no [crm]")));
    };
    let archive = p.archive_root(&account.name).join("crm");
    let tmp = archive.join(format!(".j{}.csv", entry.id));
    let Some(staged) = stage(p, account, entry, tmp.clone()).await? else {
        return Ok(());
    };
    let (dialect, key, limits) = (settings.dialect.clone(), settings.column.clone(), bounds(p));
    let started = std::time::Instant::now();
    let loaded = low_priority(move || load_file(&staged, &dialect, &key, limits))
        .await
        .map_err(transient)?
        .map_err(Failure::Transient)?;
    let table = match loaded {
        Ok(table) => table,
        Err(reason) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Rejection::new(
                "crm",
                format!("CRM file not loaded, the previous snapshot stays: {reason}"),
            )
            .into());
        }
    };
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
            journal::mark_done(c, jid, &Outcome::CrmSnapshot(id))?;
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
    if table.duplicate_keys > 0 {
        // Loaded, yet the customer should know some rows were overridden:
        // a line in the report, not a rejection (nothing to re-upload).
        let row = crate::store::conversations::ReportRow {
            path: entry.path.clone(),
            stage: "crm".into(),
            reason: format!(
                "{} rows repeat a value of column '{}' already seen: the last row of each wins",
                table.duplicate_keys, settings.column
            ),
            line: None,
            at: crate::store::journal::now_rfc3339(),
        };
        append_report_logged(p, account, today(account), vec![row]).await;
    }
    lock(&p.crm).insert(account.name.clone(), Some((snapshot, Arc::new(table))));
    Ok(())
}

/// Loads a CRM file from disk, one record at a time; the outer error is
/// I/O, the inner one the reason the customer reads.
fn load_file(
    file: &Path,
    dialect: &csvfile::CsvDialect,
    key: &str,
    bounds: Bounds,
) -> anyhow::Result<Result<CrmTable, String>> {
    let f = std::fs::File::open(file)?;
    let size = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    Ok(crm::load_from(
        std::io::BufReader::new(f),
        size,
        dialect,
        key,
        bounds,
    ))
}

/// Reads a CRM file: the outer error is I/O, the inner one the reason the
/// customer reads.
type LoadFile =
    fn(&Path, &csvfile::CsvDialect, &str, Bounds) -> anyhow::Result<Result<CrmTable, String>>;

/// The account's latest CRM snapshot, loaded from its archived file the
/// first time it is needed after a start.
pub(crate) async fn latest_crm(
    p: &Pipeline,
    account: &Account,
) -> anyhow::Result<Option<(i64, Arc<CrmTable>)>> {
    latest_crm_from(p, account, load_file).await
}

/// [`latest_crm`], reading snapshot files with `load`.
async fn latest_crm_from(
    p: &Pipeline,
    account: &Account,
    load: LoadFile,
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
                load(Path::new(&file), &dialect, &key, Bounds::ACCEPTED)?
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

    /// Snapshot files read by [`counted_load`].
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    fn counted_load(
        file: &Path,
        dialect: &csvfile::CsvDialect,
        key: &str,
        bounds: Bounds,
    ) -> anyhow::Result<Result<CrmTable, String>> {
        LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        load_file(file, dialect, key, bounds)
    }

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
            Default::default(),
        );
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let (p, a) = (p.clone(), account.clone());
                tokio::spawn(async move {
                    latest_crm_from(&p, &a, counted_load)
                        .await
                        .unwrap()
                        .unwrap()
                })
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
