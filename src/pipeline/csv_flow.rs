//! Metadata CSV deposits: rows stored per audio file name, completing the
//! audio that waited for them and re-running audio rejected for want of
//! its row.
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

use super::context::{append_report_logged, mark, reject, today, transient, Failure, Pipeline};
use super::csvfile::{self, Bounds, CsvError, Item, Layout};
use super::staging::{bounds, low_priority, stage};
use super::Rejection;
use crate::config::Account;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, DepositRejections, Recorded};
use crate::store::journal::{self, Entry, Outcome, State};
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
        .run(move |c| Ok(journal::get(c, id)?.is_some_and(|e| e.state == State::Done)))
        .await
        .map_err(transient)?;
    if !done {
        let dest = p
            .archive_root(&account.name)
            .join(".incoming")
            .join(format!("j{id}.csv"));
        let Some(staged) = stage(p, account, entry, dest).await? else {
            return mark(p, entry, Outcome::StaleUpload)
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
            day: today(account),
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
            append_report_logged(p, account, day, rows).await;
        }
    }
    let acc = account.name.clone();
    let waiting = p
        .writer
        .run(move |c| snapshots::awaiting_with_rows(c, &acc))
        .await
        .map_err(transient)?;
    for (conv, fields) in waiting {
        super::awaiting::complete_awaiting(p, account, conv, Some(fields))
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
        super::awaiting::reject_awaiting_id(
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
                reject(p, account, &entry, r)
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
                if journal::get(c, entry.id)?.is_some_and(|e| e.state == State::Done) {
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
                let outcome = Outcome::MetadataCsv {
                    rows,
                    refused,
                    unchanged: match &recorded {
                        Recorded::New(_) => None,
                        Recorded::Unchanged { rejection } => Some(*rejection),
                    },
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
