//! The one place the pipeline does I/O: it receives journal entries (from
//! upload completions, and pending rows re-read at start), runs the stages
//! in order and stores the outcome.
//!
//! Entries for different deposits run concurrently (a few at a time; the
//! store batches their commits); entries for the same deposit run in order.
//! A transient failure (database busy, disk error) is retried, never turned
//! into a rejection; a row still failing stays pending for the next start.

use super::classify::{classify, Kind};
use super::{audio, identify, names, reason, Rejection};
use crate::config::Account;
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::metrics::Metrics;
use crate::sftp::Accounts;
use crate::store::conversations::{self, Draft, Stored};
use crate::store::journal::{self, Entry};
use crate::store::Writer;
use anyhow::{anyhow, Context};
use chrono::{NaiveDate, Utc};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Deposits ingested at the same time.
const CONCURRENCY: usize = 4;
const RETRIES: u32 = 5;

/// What the worker needs from the rest of depot.
pub struct Pipeline {
    pub accounts: watch::Receiver<Accounts>,
    pub writer: Writer,
    pub data_dir: PathBuf,
    pub in_flight: Arc<Mutex<HashSet<(String, String)>>>,
    pub metrics: Arc<Metrics>,
}

enum Failure {
    Rejected(Rejection),
    Transient(anyhow::Error),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

impl<E: Into<anyhow::Error>> From<E> for TransientError {
    fn from(e: E) -> Self {
        TransientError(e.into())
    }
}

struct TransientError(anyhow::Error);

impl From<TransientError> for Failure {
    fn from(e: TransientError) -> Self {
        Failure::Transient(e.0)
    }
}

type Key = (String, String);

/// Runs until every sender is dropped and the queue is drained.
pub async fn run(p: Arc<Pipeline>, mut inbox: mpsc::UnboundedReceiver<Entry>) {
    let mut tasks: JoinSet<Key> = JoinSet::new();
    let mut waiting: HashMap<Key, VecDeque<Entry>> = HashMap::new();
    loop {
        tokio::select! {
            Some(entry) = inbox.recv(), if tasks.len() < CONCURRENCY => {
                let key = (entry.account.clone(), entry.path.clone());
                match waiting.get_mut(&key) {
                    Some(queue) => queue.push_back(entry),
                    None => {
                        waiting.insert(key, VecDeque::new());
                        tasks.spawn(process(p.clone(), entry));
                    }
                }
            }
            Some(done) = tasks.join_next() => {
                let Ok(key) = done else { continue };
                match waiting.get_mut(&key).and_then(|q| q.pop_front()) {
                    Some(next) => { tasks.spawn(process(p.clone(), next)); }
                    None => { waiting.remove(&key); }
                }
            }
            else => break,
        }
    }
}

/// Keeps a deposit marked as being ingested (SFTP refuses to modify it).
struct InFlight<'a>(&'a Mutex<HashSet<Key>>, Key);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

async fn process(p: Arc<Pipeline>, entry: Entry) -> Key {
    let key = (entry.account.clone(), entry.path.clone());
    p.in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone());
    let _guard = InFlight(&p.in_flight, key.clone());
    for attempt in 0..RETRIES {
        match ingest(&p, &entry).await {
            Ok(()) => return key,
            Err(e) => {
                tracing::warn!(journal_id = entry.id, path = %entry.path, attempt, error = %format!("{e:#}"), "ingestion failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    tracing::error!(journal_id = entry.id, path = %entry.path, "ingestion keeps failing; the deposit stays pending and is retried at the next start");
    key
}

/// Ingests one entry; `Err` only for transient failures.
async fn ingest(p: &Pipeline, entry: &Entry) -> anyhow::Result<()> {
    let account = p.accounts.borrow().get(&entry.account).cloned();
    let Some(account) = account else {
        return mark(p, entry.id, "ignored: account no longer configured").await;
    };
    let path = JailPath::parse(&entry.path).map_err(|e| anyhow!("journal path: {e}"))?;
    let kind = match classify(&account, &path) {
        Ok(k) => k,
        Err(r) => return reject(p, &account, entry, r).await,
    };
    match kind {
        Kind::Ignored(why) => mark(p, entry.id, &format!("ignored: {why}")).await,
        Kind::MetadataCsv | Kind::CrmCsv => mark(p, entry.id, "received: csv").await,
        Kind::Audio { deposit_date } => {
            match ingest_audio(p, &account, entry, &path, deposit_date).await {
                Ok(()) => Ok(()),
                Err(Failure::Rejected(r)) => reject(p, &account, entry, r).await,
                Err(Failure::Transient(e)) => Err(e),
            }
        }
    }
}

async fn mark(p: &Pipeline, id: i64, outcome: &str) -> anyhow::Result<()> {
    let outcome = outcome.to_string();
    p.writer
        .run(move |c| journal::mark_done(c, id, &outcome))
        .await?;
    Ok(())
}

async fn ingest_audio(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
    path: &JailPath,
    deposit_date: Option<NaiveDate>,
) -> Result<(), Failure> {
    let (acc, e) = (account.name.clone(), entry.path.clone());
    let current = p
        .writer
        .run(move |c| conversations::current(c, &acc, &e))
        .await
        .map_err(TransientError::from)?;
    if let Some((id, sha)) = current {
        if sha == entry.sha256 {
            mark(p, entry.id, &format!("unchanged:{id}"))
                .await
                .map_err(TransientError)?;
            return Ok(());
        }
    }
    let file_name = path.file_name().unwrap_or_default().to_string();
    let mut call = names::from_file_name(account, &file_name, deposit_date)?;
    reason::label(
        account.contact_reasons.as_ref(),
        &mut call.metadata,
        &mut call.flags,
    )?;
    let advisor = identify::identify(account.advisors.as_ref(), &call.metadata)?;
    let tz = account.timezone;
    let window = call
        .started_at
        .map(|d| d.with_timezone(&tz).date_naive())
        .or(deposit_date)
        .unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
    let ext = file_name
        .rsplit('.')
        .next()
        .unwrap_or("bin")
        .to_ascii_lowercase();
    let staged = stage_archive(p, account, entry, path, &ext, window).await?;
    let audio_info = {
        let (tmp, ext) = (staged.tmp.clone(), ext.clone());
        tokio::task::spawn_blocking(move || -> Result<audio::AudioInfo, Failure> {
            let f = std::fs::File::open(&tmp).map_err(TransientError::from)?;
            Ok(audio::probe(f, &ext)?)
        })
        .await
        .map_err(TransientError::from)?
    };
    let audio_info = match audio_info {
        Ok(a) => a,
        Err(f) => {
            let _ = std::fs::remove_file(&staged.tmp);
            return Err(f);
        }
    };
    let draft = Draft {
        account: account.name.clone(),
        path: entry.path.clone(),
        journal_id: entry.id,
        size: entry.size,
        sha256: entry.sha256.clone(),
        received_at: entry.completed_at.clone(),
        started_at: call.started_at.map(|d| d.to_rfc3339()),
        deposit_date: deposit_date.map(|d| d.to_string()),
        window: window.to_string(),
        metadata: call.metadata,
        flags: call.flags,
        advisor,
        audio: Some(audio_info),
        picking: account
            .picking
            .as_ref()
            .map(|s| super::picking::PickingRule {
                percent: s.percent,
                max_per_advisor: s.max_per_advisor,
            }),
        archive: Some((staged.tmp.clone(), staged.dir, ext)),
    };
    let stored = p.writer.run(move |c| conversations::store(c, &draft)).await;
    match stored {
        Ok(Stored::Conversation { id, picked }) => {
            Metrics::add(&p.metrics.conversations, 1);
            tracing::info!(account = %account.name, conversation_id = id, path = %entry.path, picked, "conversation stored");
            Ok(())
        }
        Ok(Stored::Unchanged { .. }) => {
            let _ = std::fs::remove_file(&staged.tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged.tmp);
            Err(TransientError::from(e).into())
        }
    }
}

struct Staged {
    tmp: PathBuf,
    dir: PathBuf,
}

/// Hard-links (or copies) the deposit into the archive under a temporary
/// name and checks it holds exactly the journaled bytes. The store renames
/// it to `<conversation id>.<ext>` in the same transaction that stores the
/// conversation.
async fn stage_archive(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    path: &JailPath,
    ext: &str,
    window: NaiveDate,
) -> Result<Staged, Failure> {
    let archive = p.data_dir.join("archive").join(&account.name);
    let dir = archive.join(window.format("%Y/%m/%d").to_string());
    let tmp = archive
        .join(".incoming")
        .join(format!("j{}.{ext}", entry.id));
    let jail_root = p.data_dir.join("home").join(&account.name);
    let (path, sha, tmp2, dir2) = (path.clone(), entry.sha256.clone(), tmp.clone(), dir.clone());
    tokio::task::spawn_blocking(move || -> Result<(), Failure> {
        std::fs::create_dir_all(&dir2).map_err(TransientError::from)?;
        link_or_copy(&jail_root, &path, &tmp2).map_err(TransientError)?;
        let f = std::fs::File::open(&tmp2).map_err(TransientError::from)?;
        let (_, now) = crate::sftp::hash_file(&f).map_err(TransientError::from)?;
        if now != sha {
            let _ = std::fs::remove_file(&tmp2);
            return Err(Failure::Rejected(Rejection::new(
                "receive",
                "the file changed after its upload completed; the newer upload is ingested instead",
            )));
        }
        Ok(())
    })
    .await
    .map_err(TransientError::from)??;
    Ok(Staged { tmp, dir })
}

fn link_or_copy(jail_root: &Path, path: &JailPath, dest: &Path) -> anyhow::Result<()> {
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(dest);
    let jail = Jail::open(jail_root).context("open jail")?;
    let mut src = jail
        .open_file(
            path,
            &OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow!("open deposit: {e}"))?;
    // Link through the opened descriptor, so no path (and no symlink swapped
    // in since) is followed.
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&src));
    let linked = rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        dest,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    );
    if linked.is_err() {
        let mut out = std::fs::File::create(dest)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
    }
    Ok(())
}

async fn reject(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    r: Rejection,
) -> anyhow::Result<()> {
    let day = Utc::now()
        .with_timezone(&account.timezone)
        .date_naive()
        .to_string();
    let (acc, path, id, day2, r2) = (
        account.name.clone(),
        entry.path.clone(),
        entry.id,
        day.clone(),
        r.clone(),
    );
    let rows = p
        .writer
        .run(move |c| {
            conversations::reject(c, &acc, &path, Some(id), &r2, &day2)?;
            conversations::report(c, &acc, &day2)
        })
        .await?;
    Metrics::add(&p.metrics.rejections, 1);
    tracing::info!(account = %account.name, path = %entry.path, stage = r.stage, reason = %r.reason, "deposit rejected");
    let root = p.data_dir.join("home").join(&account.name);
    tokio::task::spawn_blocking(move || super::report::write(&root, &day, &rows)).await??;
    Ok(())
}
