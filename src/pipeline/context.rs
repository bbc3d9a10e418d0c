//! What every stage of the worker shares: the [`Pipeline`] (accounts,
//! database writer, data directory, seals, CRM cache), how a stage fails
//! ([`Failure`]), and the outcome writes common to every kind of deposit
//! (mark a journal row done, reject a whole deposit, append to the
//! customer's report).

use super::commit::{commit, Commit, Committed};
use super::crm::CrmTable;
use super::Rejection;
use crate::config::Accounts;
use crate::config::{Account, PipelineLimits};
use crate::deposit::Seals;
use crate::metrics::Metrics;
use crate::store::conversations::{DepositRejections, Recorded, ReportRow};
use crate::store::journal::{self, Entry, Outcome};
use crate::store::Writer;
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The latest CRM snapshot per account, loaded once, swapped whole.
pub(crate) type CrmCache = Mutex<HashMap<String, Option<(i64, Arc<CrmTable>)>>>;

/// What the worker needs from the rest of depot.
pub struct Pipeline {
    pub accounts: watch::Receiver<Accounts>,
    pub writer: Writer,
    pub data_dir: PathBuf,
    pub in_flight: crate::deposit::Ingesting,
    /// Deposits acknowledged and not yet archived (shared with the SFTP
    /// front, which refuses to change them).
    pub seals: Arc<Seals>,
    pub metrics: Arc<Metrics>,
    pub limits: PipelineLimits,
    pub crm: CrmCache,
    /// Connections the blocking steps read what the store knows through.
    pub(crate) readers: Arc<Readers>,
    /// Held while a CRM snapshot is loaded into [`Pipeline::crm`].
    pub crm_loading: tokio::sync::Mutex<()>,
    pub(super) timer_busy: AtomicBool,
    pub(super) sweep_busy: AtomicBool,
    /// Set when the inbox closes (shutdown): rows waiting to be retried stop
    /// waiting and stay pending for the next start.
    pub(super) stopping: watch::Sender<bool>,
}

impl Pipeline {
    pub fn new(
        accounts: watch::Receiver<Accounts>,
        writer: Writer,
        data_dir: PathBuf,
        in_flight: crate::deposit::Ingesting,
        metrics: Arc<Metrics>,
        limits: PipelineLimits,
    ) -> Arc<Pipeline> {
        let readers = Arc::new(Readers::new(writer.path()));
        Arc::new(Pipeline {
            accounts,
            writer,
            data_dir,
            in_flight,
            seals: Arc::new(Seals::default()),
            metrics,
            limits,
            crm: Mutex::new(HashMap::new()),
            readers,
            crm_loading: tokio::sync::Mutex::new(()),
            timer_busy: AtomicBool::new(false),
            sweep_busy: AtomicBool::new(false),
            stopping: watch::Sender::new(false),
        })
    }

    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.borrow().get(name).cloned()
    }

    pub(crate) fn jail_root(&self, account: &str) -> PathBuf {
        crate::deposit::Layout::new(&self.data_dir).jail(account)
    }

    pub(crate) fn archive_root(&self, account: &str) -> PathBuf {
        crate::deposit::Layout::new(&self.data_dir).archive(account)
    }
}

/// Why a stage stopped: the deposit is refused, or the attempt failed for a
/// reason that may pass (retry).
pub enum Failure {
    Rejected(Rejection),
    Transient(anyhow::Error),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

/// Turns any error into a transient failure: `.map_err(transient)`.
pub(crate) fn transient<E: Into<anyhow::Error>>(e: E) -> Failure {
    Failure::Transient(e.into())
}

/// Read connections of the pipeline's blocking steps: reading what the
/// store knows of a deposit (WAL readers see every committed batch) needs
/// no trip through the writer thread, and runs beside its commits. A
/// connection is opened on first need; at most [`Readers::IDLE`] are kept.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// As many as the pipeline ingests deposits at once.
    const IDLE: usize = 16;

    pub(crate) fn new(path: &std::path::Path) -> Readers {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` in one read transaction (one consistent snapshot). Blocks:
    /// call it off the async threads.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> crate::store::Result<T>,
    ) -> crate::store::Result<T> {
        let taken = lock(&self.idle).pop();
        let conn = match taken {
            Some(c) => c,
            None => crate::store::open(&self.path)?,
        };
        let out = {
            let tx = conn.unchecked_transaction()?;
            let out = f(&tx);
            // Read only: ending it either way releases the snapshot.
            drop(tx);
            out
        };
        let mut idle = lock(&self.idle);
        if idle.len() < Self::IDLE {
            idle.push(conn);
        }
        out
    }
}

/// A set behind a mutex; a panic elsewhere cannot poison these sets.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commits an outcome that writes no rows (ignored, unchanged, superseded).
pub(crate) async fn mark(p: &Pipeline, entry: &Entry, outcome: Outcome) -> anyhow::Result<()> {
    let id = entry.id;
    p.writer
        .run(move |c| commit(c, id, Commit::Outcome(outcome)))
        .await?;
    Ok(())
}

/// Today in the account's timezone (names the rejection report file).
pub fn today(account: &Account) -> String {
    today_date(account).to_string()
}

/// Today in the account's timezone.
pub(crate) fn today_date(account: &Account) -> chrono::NaiveDate {
    Utc::now().with_timezone(&account.timezone).date_naive()
}

/// Records the rejection of a whole deposit and appends it to the
/// customer's report for today. The same content at the same path as an
/// open rejection changes nothing: no new row, no new report line.
pub async fn reject(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    r: Rejection,
) -> anyhow::Result<()> {
    let day = today(account);
    let (acc, path, id, sha, day2, cap) = (
        account.name.clone(),
        entry.path.clone(),
        entry.id,
        entry.sha256.clone(),
        day.clone(),
        p.limits.max_rejections_per_deposit,
    );
    let r2 = r.clone();
    let recorded = p
        .writer
        .run(move |c| {
            let what = Commit::Rejection(DepositRejections {
                account: &acc,
                path: &path,
                journal_id: id,
                sha256: &sha,
                rejections: std::slice::from_ref(&r2),
                more: 0,
                cap,
                day: &day2,
            });
            commit(c, id, what)
        })
        .await?;
    let Committed::Rejection(Some(recorded)) = recorded else {
        return Ok(());
    };
    match recorded {
        Recorded::Unchanged { rejection } => {
            tracing::info!(account = %account.name, path = %entry.path, rejection, "same content as an open rejection of this path; nothing changes");
        }
        Recorded::New(rows) => {
            Metrics::add(&p.metrics.rejections, rows.len() as u64);
            tracing::info!(account = %account.name, path = %entry.path, stage = r.stage, line = r.line, reason = %r.reason, "deposit rejected");
            append_report_logged(p, account, day, rows).await;
        }
    }
    Ok(())
}

/// Appends rejections already committed to the customer's report. A
/// failure here is logged, never retried as the deposit's failure: the
/// rejections are recorded (`depot rejections` lists them).
pub(crate) async fn append_report_logged(
    p: &Pipeline,
    account: &Account,
    day: String,
    rows: Vec<ReportRow>,
) {
    if let Err(e) = append_report(p, account, day, rows).await {
        tracing::warn!(account = %account.name, error = %format!("{e:#}"), "cannot append to the customer's rejection report; the rejections are recorded, the report misses them");
    }
}

/// Appends `rows` to the customer's report for `day`, on a blocking thread
/// (never the database writer's).
pub(crate) async fn append_report(
    p: &Pipeline,
    account: &Account,
    day: String,
    rows: Vec<ReportRow>,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let root = p.jail_root(&account.name);
    let style = super::report::Style::of(account);
    tokio::task::spawn_blocking(move || super::report::append(&root, &day, &rows, style)).await??;
    Ok(())
}

/// The deposit's bytes are not the ones its journal row acknowledged (only
/// possible when the row is resumed after a restart: while this process
/// runs, the deposit is sealed). A newer completion of the same path covers
/// it; without one, the customer is told, so that the row still ends in an
/// outcome.
pub(crate) async fn not_as_acknowledged(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    found_sha256: Option<&str>,
) -> Result<(), Failure> {
    let (acc, path, id) = (account.name.clone(), entry.path.clone(), entry.id);
    let newer = p
        .writer
        .run(move |c| journal::newer_exists(c, &acc, &path, id))
        .await
        .map_err(transient)?;
    if newer {
        return mark(p, entry, Outcome::Superseded)
            .await
            .map_err(Failure::Transient);
    }
    tracing::warn!(account = %account.name, path = %entry.path, journal_id = entry.id, expected = %entry.sha256, found = ?found_sha256, "deposit changed or vanished after its upload was acknowledged");
    let reason = match found_sha256 {
        Some(_) => "the file changed after its upload was acknowledged and no new upload replaced it; upload it again",
        None => "the file was removed or renamed before it could be ingested; upload it again",
    };
    Err(Failure::Rejected(Rejection::new("deposit", reason)))
}
