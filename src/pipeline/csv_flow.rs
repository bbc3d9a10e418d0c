//! CSV deposits: metadata CSV rows stored per audio file name (completing
//! audio that waited for them), and CRM files turned into snapshots — the
//! newest accepted one becomes the account's latest, atomically; a file
//! that fails is rejected whole and the previous snapshot stays.
//!
//! A CSV is never held in memory whole: it is staged (a copy checked
//! against the journaled sha256, which nothing the customer does can
//! change) and read one bounded record at a time. A metadata CSV is read
//! twice: once to check it as a whole (an encoding error on its last line
//! refuses every row), then to store its rows in transactions of at most
//! `pipeline.csv_rows_per_commit` rows and about 10 ms each, so the single
//! database writer acknowledges other accounts' uploads in between instead
//! of after a million-row transaction. Exactly once across a crash: the rows are
//! upserts (applying them again changes nothing), and the rejections and
//! the journal row marked done are in the last transaction only.

use super::crm::{self, CrmTable};
use super::csvfile::{self, Bounds, CsvError, Item, Layout};
use super::worker::{lock, mark, transient, Failure, Pipeline};
use super::Rejection;
use crate::config::Account;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, DepositRejections, Recorded};
use crate::store::journal::{self, Entry};
use crate::store::{snapshots, Writer};
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A staged copy of a deposit, removed when dropped.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stages the deposit at `dest` (`None`: it changed or was deleted since
/// its completion; a newer completion covers it).
/// Copies the CSV into the archive's staging area and checks it is the
/// acknowledged content; it is parsed from that copy. `None` when a newer
/// completion of the same path covers the row (already marked); bytes
/// changed or gone without one are a rejection that says so.
async fn stage(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    dest: PathBuf,
) -> Result<Option<PathBuf>, Failure> {
    use crate::archive::{Source, Staged};
    let (root, sha) = (p.jail_root(&account.name), entry.sha256.clone());
    let jp = JailPath::parse(&entry.path).map_err(|e| transient(anyhow!("{e}")))?;
    let sealed = p.seals.source(entry.id);
    let t = dest.clone();
    let staged = tokio::task::spawn_blocking(move || {
        let from = match &sealed {
            Some(f) => Source::Descriptor(f),
            None => Source::Jail {
                root: &root,
                path: &jp,
            },
        };
        crate::archive::stage(&from, &t, &sha)
    })
    .await
    .map_err(transient)?
    .map_err(transient)?;
    let found = match staged {
        Staged::Ready(_) => return Ok(Some(dest)),
        Staged::Changed { sha256 } => Some(sha256),
        Staged::Missing => None,
    };
    super::audio_flow::not_as_acknowledged(p, account, entry, found.as_deref()).await?;
    Ok(None)
}

/// Runs a CSV's parsing on a thread of its own at a lower scheduling
/// priority (nice +10): reading a million-row file must not take the CPU
/// from the sessions acknowledging other accounts' uploads. On Linux a
/// priority set with `PRIO_PROCESS` and no pid applies to the calling
/// thread only, so the rest of depot keeps its own.
async fn low_priority<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("depot-csv".into())
        .spawn(move || {
            if let Err(e) = rustix::process::setpriority_process(None, 10) {
                tracing::debug!(error = %e, "cannot lower the CSV thread's priority");
            }
            let _ = tx.send(f());
        })?;
    Ok(rx.await?)
}

fn bounds(p: &Pipeline) -> Bounds {
    Bounds {
        max_columns: p.limits.csv_max_columns,
        max_record_bytes: p.limits.csv_max_record_bytes,
    }
}

/// A whole-file problem as the customer reads it.
fn refused(e: CsvError) -> Failure {
    let (reason, line) = match e {
        CsvError::Decode(r) | CsvError::Header(r) => (r, None),
        CsvError::Syntax { line, reason } => (reason, Some(line)),
        CsvError::Read(e) => return transient(anyhow!("reading a staged CSV: {e}")),
    };
    let mut r = Rejection::new("metadata_csv", reason);
    r.line = line;
    r.into()
}

pub async fn metadata_csv(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
) -> Result<(), Failure> {
    let Some(settings) = &account.metadata_csv else {
        return Err(transient(anyhow!("account has no [metadata_csv]")));
    };
    let id = entry.id;
    // A retry after a later step failed: the rows are stored already.
    let done = p
        .writer
        .run(move |c| Ok(journal::get(c, id)?.is_some_and(|e| e.state == "done")))
        .await
        .map_err(transient)?;
    if !done {
        let dest = p
            .archive_root(&account.name)
            .join(".incoming")
            .join(format!("j{id}.csv"));
        let Some(staged) = stage(p, account, entry, dest).await? else {
            return mark(p, entry.id, "stale: changed after this upload")
                .await
                .map_err(Failure::Transient);
        };
        let staged = Staged(staged);
        let layout = Layout {
            skip_rows: settings.skip_rows,
            header: settings.header,
            column_map: settings.column_map.clone(),
            column_list: settings.column_list.clone(),
            filename_column: settings.filename_column.clone(),
        };
        let job = StoreCsv {
            writer: p.writer.clone(),
            account: account.name.clone(),
            entry: entry.clone(),
            day: super::worker::today(account),
            dialect: settings.dialect.clone(),
            layout,
            bounds: bounds(p),
            rows_per_commit: p.limits.csv_rows_per_commit,
            cap: p.limits.max_rejections_per_deposit,
        };
        let day = job.day.clone();
        let stored = low_priority(move || job.run(&staged.0))
            .await
            .map_err(transient)??;
        log_stored(p, account, entry, &stored);
        if let Recorded::New(rows) = stored.recorded {
            super::worker::append_report_logged(p, account, day, rows).await;
        }
    }
    let acc = account.name.clone();
    let waiting = p
        .writer
        .run(move |c| snapshots::awaiting_with_rows(c, &acc))
        .await
        .map_err(transient)?;
    for (conv, fields) in waiting {
        super::audio_flow::complete_awaiting(p, account, conv, Some(fields))
            .await
            .map_err(Failure::Transient)?;
    }
    let acc = account.name.clone();
    let broken = p
        .writer
        .run(move |c| snapshots::awaiting_with_row_errors(c, &acc))
        .await
        .map_err(transient)?;
    for (conv, reason) in broken {
        super::audio_flow::reject_awaiting_id(
            p,
            account,
            conv,
            Rejection::new("metadata_csv", reason),
        )
        .await
        .map_err(Failure::Transient)?;
    }
    release_rejected(p, account).await
}

/// Audio rejected because its metadata CSV row was missing or could not be
/// read, whose valid row has now arrived (the customer fixed the CSV), is
/// ingested again from its original deposit: nobody else has to act.
async fn release_rejected(p: &Pipeline, account: &Arc<Account>) -> Result<(), Failure> {
    let acc = account.name.clone();
    let released = p
        .writer
        .run(move |c| {
            let mut out = Vec::new();
            for (jid, path, newest) in snapshots::rejected_with_rows(c, &acc)? {
                if let Some(e) = journal::get(c, jid)? {
                    out.push((e, path, newest));
                }
            }
            Ok(out)
        })
        .await
        .map_err(transient)?;
    for (entry, path, newest) in released {
        let Ok(jp) = JailPath::parse(&path) else {
            continue;
        };
        let Ok(super::classify::Kind::Audio { deposit_date }) =
            super::classify::classify(account, &jp)
        else {
            continue;
        };
        tracing::info!(account = %account.name, path = %path, journal_id = entry.id, "its metadata CSV row arrived; ingesting the audio rejected without it");
        match super::audio_flow::audio(p, account, &entry, &jp, deposit_date).await {
            Ok(()) => {}
            Err(Failure::Rejected(r)) => {
                super::worker::reject(p, account, &entry, r)
                    .await
                    .map_err(Failure::Transient)?;
            }
            // Left open: the next attempt of this CSV finds it again.
            Err(e) => return Err(e),
        }
        // It has a new outcome: the rejection that held it back is closed
        // (a newer one, if it was rejected again, stays open).
        let (acc, path2) = (account.name.clone(), path.clone());
        p.writer
            .run(move |c| conversations::clear_rejections_up_to(c, &acc, &path2, newest))
            .await
            .map_err(transient)?;
    }
    Ok(())
}

fn log_stored(p: &Pipeline, account: &Account, entry: &Entry, stored: &Stored) {
    match &stored.recorded {
        Recorded::Unchanged { rejection } => {
            tracing::info!(account = %account.name, path = %entry.path, rows = stored.rows, rejection, "metadata CSV stored; its rejected rows are those of the same content, still open");
        }
        Recorded::New(rejected) => {
            Metrics::add(&p.metrics.rejections, rejected.len() as u64);
            tracing::info!(account = %account.name, path = %entry.path, rows = stored.rows, refused = stored.refused, "metadata CSV stored");
            for r in rejected {
                tracing::info!(account = %account.name, path = %entry.path, stage = %r.stage, line = r.line, reason = %r.reason, "CSV row rejected");
            }
        }
    }
}

/// What storing a metadata CSV did.
struct Stored {
    rows: usize,
    refused: usize,
    recorded: Recorded,
}

/// Everything a metadata CSV's two passes need, on a blocking thread.
struct StoreCsv {
    writer: Writer,
    account: String,
    entry: Entry,
    day: String,
    dialect: csvfile::CsvDialect,
    layout: Layout,
    bounds: Bounds,
    rows_per_commit: usize,
    cap: usize,
}

type MetadataRow = (String, BTreeMap<String, String>, u64);

/// The longest a transaction of metadata rows holds the database writer:
/// an upload's CLOSE waiting behind it stays well under 50 ms.
const WRITER_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

impl StoreCsv {
    fn run(self, file: &Path) -> Result<Stored, Failure> {
        // First pass: refuse the file as a whole before storing any row.
        let checked = csvfile::stream(
            open(file)?,
            &self.dialect,
            &self.layout,
            self.bounds,
            &mut |_| Ok(()),
        )
        .map_err(Failure::Transient)?;
        checked.map_err(refused)?;

        let mut chunk: Vec<MetadataRow> = Vec::new();
        let (mut rows, mut rejections, mut more) = (0, Vec::new(), 0);
        // Broken rows that still name an audio file (bounded like the
        // rejections): that audio is rejected at once, citing the line.
        let mut named: Vec<(String, String)> = Vec::new();
        let read = csvfile::stream(
            open(file)?,
            &self.dialect,
            &self.layout,
            self.bounds,
            &mut |item| {
                match item {
                    Item::Row(r) => {
                        rows += 1;
                        chunk.push((r.file_name, r.fields, r.line));
                        if chunk.len() >= self.rows_per_commit {
                            self.put_rows(std::mem::take(&mut chunk))?;
                        }
                    }
                    Item::Error(e) if rejections.len() < self.cap => {
                        if let Some(name) = e.file_name {
                            let why = format!(
                                "metadata CSV {} line {}: {}",
                                self.entry.path, e.line, e.reason
                            );
                            named.push((name, why));
                        }
                        rejections.push(Rejection {
                            stage: "metadata_csv",
                            reason: e.reason,
                            line: Some(e.line),
                        })
                    }
                    Item::Error(_) => more += 1,
                }
                Ok(())
            },
        )
        .map_err(Failure::Transient)?;
        // The staged copy passed the first pass; failing now is I/O.
        read.map_err(|e| transient(anyhow!("second read of a checked CSV: {e}")))?;
        self.put_rows(chunk).map_err(Failure::Transient)?;
        let refused = rejections.len() + more;
        let recorded = self.finish(rows, rejections, more, named)?;
        Ok(Stored {
            rows,
            refused,
            recorded,
        })
    }

    /// Stores rows in as many transactions as it takes for none to hold
    /// the writer longer than [`WRITER_SLICE`].
    fn put_rows(&self, mut rows: Vec<MetadataRow>) -> anyhow::Result<()> {
        while !rows.is_empty() {
            let (acc, src) = (self.account.clone(), self.entry.path.clone());
            rows = self.writer.run_blocking(move |c| {
                let started = std::time::Instant::now();
                let mut rest = rows.into_iter();
                for (file, fields, line) in rest.by_ref() {
                    snapshots::put_metadata_row(c, &acc, file.as_str(), &fields, &src, line)?;
                    if started.elapsed() >= WRITER_SLICE {
                        break;
                    }
                }
                Ok(rest.collect())
            })?;
        }
        Ok(())
    }

    /// The rejections and the journal row, in one transaction after every
    /// row is stored (a crash before it leaves the journal row pending: the
    /// file is stored again on retry, the same rows over the same rows).
    fn finish(
        &self,
        rows: usize,
        rejections: Vec<Rejection>,
        more: usize,
        named: Vec<(String, String)>,
    ) -> Result<Recorded, Failure> {
        let (acc, entry, day, cap) = (
            self.account.clone(),
            self.entry.clone(),
            self.day.clone(),
            self.cap,
        );
        self.writer
            .run_blocking(move |c| {
                if journal::get(c, entry.id)?.is_some_and(|e| e.state == "done") {
                    return Ok(Recorded::New(Vec::new()));
                }
                for (file, why) in &named {
                    snapshots::put_row_error(c, &acc, file, why)?;
                }
                let refused = rejections.len() + more;
                let recorded = conversations::replace_rejections(
                    c,
                    &DepositRejections {
                        account: &acc,
                        path: &entry.path,
                        journal_id: entry.id,
                        sha256: &entry.sha256,
                        rejections: &rejections,
                        more,
                        cap,
                        day: &day,
                    },
                )?;
                let outcome = match &recorded {
                    Recorded::New(_) => format!("metadata_csv: {rows} rows, {refused} refused"),
                    Recorded::Unchanged { rejection } => format!(
                        "metadata_csv: {rows} rows, {refused} refused (unchanged: rejected:{rejection})"
                    ),
                };
                journal::mark_done(c, entry.id, &outcome)?;
                Ok(recorded)
            })
            .map_err(transient)
    }
}

fn open(file: &Path) -> Result<std::io::BufReader<std::fs::File>, Failure> {
    Ok(std::io::BufReader::new(
        std::fs::File::open(file).map_err(transient)?,
    ))
}

pub async fn crm_csv(p: &Pipeline, account: &Arc<Account>, entry: &Entry) -> Result<(), Failure> {
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
        super::worker::append_report_logged(p, account, super::worker::today(account), vec![row])
            .await;
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
                load_file(Path::new(&file), &dialect, &key, Bounds::ACCEPTED)?
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
            Default::default(),
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
