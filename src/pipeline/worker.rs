//! The dispatcher: it receives journal entries (from upload completions,
//! and pending rows re-read at start) and hands each to the flow of its
//! kind (audio, metadata CSV, CRM file), retrying transient failures.
//!
//! Entries for different deposits run concurrently (a few at a time; the
//! store batches their commits); entries for the same deposit run in order.
//! A transient failure (database busy, disk full) is retried without end,
//! with a capped backoff, never turned into a rejection and never dropped:
//! each failed attempt is counted on the journal row (`depot stats`) and in
//! the `retries` counter. At shutdown a row waiting for its next attempt
//! stays pending for the next start.
//! A timer completes audio whose metadata CSV row did not come in time (the
//! deadline is stored, so it holds across restarts).

use super::classify::{classify, Kind};
/// The context [`run`] is started with.
pub(crate) use super::context::Pipeline;
use super::context::{lock, mark, reject, Failure};
use crate::config::Account;
use crate::deposit::Deposit;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::journal::{self, Entry, Outcome};
use anyhow::anyhow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Deposits ingested at the same time: enough for the writer to share one
/// commit among many conversations.
const CONCURRENCY: usize = 16;
/// Longest wait between two attempts of a failing row.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the wait for metadata rows is checked.
const TIMER: Duration = Duration::from_millis(500);

/// Runs until every sender is dropped and the queue is drained.
pub async fn run(p: Arc<Pipeline>, mut inbox: mpsc::UnboundedReceiver<Entry>) {
    let mut tasks: JoinSet<Option<Deposit>> = JoinSet::new();
    let mut waiting: HashMap<Deposit, VecDeque<Entry>> = HashMap::new();
    let mut timer = tokio::time::interval(TIMER);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut open = true;
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = inbox.recv(), if open && tasks.len() < CONCURRENCY => match msg {
                Some(entry) => {
                    let key = Deposit::new(&entry.account, &entry.path);
                    match waiting.get_mut(&key) {
                        Some(queue) => queue.push_back(entry),
                        None => {
                            waiting.insert(key, VecDeque::new());
                            tasks.spawn(process(p.clone(), entry));
                        }
                    }
                }
                None => {
                    open = false;
                    p.stopping.send_replace(true);
                }
            },
            Some(done) = tasks.join_next() => {
                let Ok(Some(key)) = done else { continue };
                match waiting.get_mut(&key).and_then(|q| q.pop_front()) {
                    Some(next) => { tasks.spawn(process(p.clone(), next)); }
                    None => { waiting.remove(&key); }
                }
            }
            _ = timer.tick(), if open => {
                if !p.timer_busy.swap(true, Ordering::SeqCst) {
                    let p = p.clone();
                    tasks.spawn(async move {
                        if let Err(e) = super::awaiting::expire_waits(&p).await {
                            tracing::warn!(error = %format!("{e:#}"), "checking metadata waits failed; will retry");
                        }
                        p.timer_busy.store(false, Ordering::SeqCst);
                        None
                    });
                }
                let now = tokio::time::Instant::now();
                if now >= next_sweep && p.seals.open.is_tracked() && !p.sweep_busy.swap(true, Ordering::SeqCst) {
                    next_sweep = now + sweep_period(&p);
                    let p = p.clone();
                    tasks.spawn(async move {
                        sweep_all(&p).await;
                        p.sweep_busy.store(false, Ordering::SeqCst);
                        None
                    });
                }
            }
            else => break,
        }
        if !open && tasks.is_empty() {
            break;
        }
    }
}

/// The shortest sweep period any account asks for.
fn sweep_period(p: &Pipeline) -> Duration {
    let accounts = p.accounts.borrow();
    let after = accounts
        .values()
        .map(|a| super::sweep::sweep_after(a))
        .min()
        .unwrap_or(super::sweep::DEFAULT_SWEEP_AFTER);
    super::sweep::period(after)
}

/// Removes every account's stale temporary and partial uploads (only in
/// the process serving SFTP, which knows the open handles).
async fn sweep_all(p: &Arc<Pipeline>) {
    let accounts: Vec<Arc<Account>> = p.accounts.borrow().values().cloned().collect();
    let (data_dir, seals) = (p.data_dir.clone(), p.seals.clone());
    let swept = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        let now = std::time::SystemTime::now();
        for account in accounts {
            let root = crate::deposit::Layout::new(&data_dir).jail(&account.name);
            if !root.is_dir() {
                continue;
            }
            match crate::jail::Jail::open(&root) {
                Ok(jail) => n += super::sweep::sweep(&jail, &account, &seals, now).len(),
                Err(e) => {
                    tracing::warn!(account = %account.name, error = %e, "sweep cannot open the jail; skipped")
                }
            }
        }
        n
    })
    .await;
    match swept {
        Ok(n) => Metrics::add(&p.metrics.uploads_swept, n as u64),
        Err(e) => {
            tracing::warn!(error = %e, "the sweep of stale uploads stopped; it runs again later")
        }
    }
}

/// Keeps a deposit marked as being ingested (SFTP refuses to modify it).
struct InFlight<'a>(&'a Mutex<HashSet<Deposit>>, Deposit);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

async fn process(p: Arc<Pipeline>, entry: Entry) -> Option<Deposit> {
    let key = Deposit::new(&entry.account, &entry.path);
    lock(&p.in_flight).insert(key.clone());
    let _guard = InFlight(&p.in_flight, key.clone());
    let mut attempt: u32 = 0;
    loop {
        match ingest(&p, &entry).await {
            Ok(()) => break,
            Err(e) => {
                let error = format!("{e:#}");
                Metrics::add(&p.metrics.retries, 1);
                let wait = backoff(attempt);
                tracing::warn!(journal_id = entry.id, path = %entry.path, attempt, retry_in = ?wait, error = %error, "ingestion failed; retrying (the deposit stays pending until it succeeds)");
                let id = entry.id;
                if let Err(e) = p
                    .writer
                    .run(move |c| journal::record_failure(c, id, &error))
                    .await
                {
                    tracing::warn!(journal_id = id, error = %e, "cannot record the failed attempt");
                }
                attempt = attempt.saturating_add(1);
                let mut stopping = p.stopping.subscribe();
                if *stopping.borrow() {
                    tracing::info!(
                        journal_id = entry.id,
                        "shutting down: the deposit stays pending and is resumed at the next start"
                    );
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.changed() => {
                        tracing::info!(journal_id = entry.id, "shutting down: the deposit stays pending and is resumed at the next start");
                        break;
                    }
                }
            }
        }
    }
    // Done, or left pending for the next start (which reads it by path).
    p.seals.release(entry.id);
    Some(key)
}

/// The wait before retry `attempt` (0-based): 1 s, doubling, at most 5 min,
/// with up to a quarter more at random so failing rows do not retry in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(9)).min(MAX_BACKOFF);
    let jitter = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 + jitter).min(MAX_BACKOFF)
}

/// Ingests one entry; `Err` only for transient failures.
async fn ingest(p: &Pipeline, entry: &Entry) -> anyhow::Result<()> {
    let Some(account) = p.account(&entry.account) else {
        return mark(
            p,
            entry,
            Outcome::Ignored("account no longer configured".into()),
        )
        .await;
    };
    let path = JailPath::parse(&entry.path).map_err(|e| anyhow!("journal path: {e}"))?;
    let outcome = match classify(&account, &path) {
        Err(r) => Err(Failure::Rejected(r)),
        Ok(Kind::Ignored(why)) => {
            if why == super::classify::SYSTEM_FILE {
                Metrics::add(&p.metrics.system_files_ignored, 1);
                tracing::debug!(account = %account.name, path = %entry.path, "system file stored, not ingested");
            }
            return mark(p, entry, Outcome::Ignored(why.to_string())).await;
        }
        Ok(Kind::MetadataCsv) => super::csv_flow::metadata_csv(p, &account, entry).await,
        Ok(Kind::CrmCsv) => super::crm_flow::crm_csv(p, &account, entry).await,
        Ok(Kind::Audio { deposit_date }) => {
            super::audio_flow::audio(p, &account, entry, &path, deposit_date).await
        }
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(Failure::Rejected(r)) => reject(p, &account, entry, r).await,
        Err(Failure::Transient(e)) => Err(e),
    }
}
