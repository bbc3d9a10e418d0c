//! The in-process pipeline run `import` and `reprocess` share: it feeds
//! journaled entries to the worker, shows progress (a bar on a terminal,
//! one line per deposit otherwise) and tallies the journal outcomes.

use crate::config::{load_accounts, Accounts, Settings};
use crate::metrics::Metrics;
use crate::pipeline::worker::{self, Pipeline};
use crate::store::journal::{self, Entry, Outcome, State};
use crate::store::{self, Writer};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the feeding side reports to [`run_local`].
pub enum Event {
    /// Journaled: the pipeline takes it from here. `label` names it in output.
    Queued(Entry),
    /// Nothing to do for this deposit.
    Skipped { label: String, why: String },
    /// Could not be prepared (copy or read error).
    Failed { label: String, error: String },
}

/// The outcome counts of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub conversations: u64,
    pub rejections: u64,
    pub skipped: u64,
    pub unchanged: u64,
    pub ignored: u64,
    pub failed: u64,
    /// Stored, but waiting for their metadata CSV row: not conversations yet.
    pub waiting: u64,
}

impl Tally {
    /// The one-line summary printed at the end.
    pub fn line(&self, total: usize) -> String {
        let mut s = format!(
            "{total} file(s): {} conversation(s), {} rejection(s), {} skipped",
            self.conversations, self.rejections, self.skipped
        );
        for (n, what) in [
            (self.waiting, "waiting for their metadata CSV row"),
            (self.unchanged, "unchanged"),
            (self.ignored, "ignored"),
            (self.failed, "failed"),
        ] {
            if n > 0 {
                s.push_str(&format!(", {n} {what}"));
            }
        }
        s
    }
}

/// Everything a local pipeline run needs.
pub(crate) struct Local {
    pub settings: Settings,
    pub accounts: Accounts,
}

impl Local {
    /// Settings and every valid account (a broken account file elsewhere
    /// does not stop an import into this one).
    pub fn load(config: &Path, account: Option<&str>) -> Result<Local> {
        let settings = crate::cli::load_settings(config)?;
        let loaded = load_accounts(&settings.server.accounts_dir, false);
        if let Some(name) = account {
            if !loaded.accounts.contains_key(name) {
                let why: Vec<String> = loaded
                    .errors
                    .iter()
                    .filter(|e| e.file.file_stem().is_some_and(|s| s == name))
                    .map(|e| e.to_string())
                    .collect();
                match why.is_empty() {
                    true => bail!(
                        "no account '{name}' in {}",
                        settings.server.accounts_dir.display()
                    ),
                    false => bail!("account '{name}' is invalid:\n{}", why.join("\n")),
                }
            }
        }
        Ok(Local {
            settings,
            accounts: Arc::new(loaded.accounts),
        })
    }

    pub(crate) fn jail_root(&self, account: &str) -> PathBuf {
        crate::deposit::Layout::new(&self.settings.server.data_dir).jail(account)
    }
}

/// Runs the pipeline in this process over what `feed` journals (`feed`
/// runs on a blocking thread and reports through the sender), shows
/// progress for `total` deposits, and returns the tally once every
/// journaled entry has been ingested.
pub(crate) async fn run_local<F>(local: &Local, total: usize, feed: F) -> Result<Tally>
where
    F: FnOnce(Writer, mpsc::UnboundedSender<Event>) -> Result<()> + Send + 'static,
{
    let db = crate::server::db_path(&local.settings);
    std::fs::create_dir_all(&local.settings.server.data_dir)?;
    let (writer, db_thread) = Writer::start(&db).context("cannot open the database")?;
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let (_keep, accounts) = watch::channel(local.accounts.clone());
    let pipeline = Pipeline::new(
        accounts,
        writer.clone(),
        local.settings.server.data_dir.clone(),
        Arc::new(Mutex::new(HashSet::new())),
        Arc::new(Metrics::default()),
        local.settings.pipeline,
    );
    let mut pipeline = tokio::spawn(worker::run(pipeline, inbox));
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let w = writer.clone();
    let mut feeder = tokio::task::spawn_blocking(move || feed(w, ev_tx));
    drop(writer);
    let reader = store::open(&db)?;
    let mut progress = Progress::new(total);
    let mut waiting: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let (mut feeding, mut fed, mut ingesting) = (true, None, true);
    let mut inbox_tx = Some(inbox_tx);
    while feeding || ingesting || fed.is_none() {
        tokio::select! {
            ev = events.recv(), if feeding => match ev {
                Some(Event::Queued(e)) => {
                    waiting.insert(e.id, (e.account.clone(), e.path.clone()));
                    if let Some(tx) = &inbox_tx {
                        let _ = tx.send(e);
                    }
                }
                Some(Event::Skipped { label, why }) => {
                    tally.skipped += 1;
                    progress.done(&format!("skipped ({why})"), &label);
                }
                Some(Event::Failed { label, error }) => {
                    tally.failed += 1;
                    progress.done(&format!("failed ({error})"), &label);
                }
                None => {
                    feeding = false;
                    // Every entry is queued: the pipeline ends once drained.
                    inbox_tx = None;
                }
            },
            r = &mut feeder, if fed.is_none() => fed = Some(r),
            _ = &mut pipeline, if ingesting && !feeding => ingesting = false,
            _ = tick.tick() => poll(&reader, &mut waiting, &mut tally, &mut progress)?,
        }
    }
    poll(&reader, &mut waiting, &mut tally, &mut progress)?;
    for (_, (_, path)) in std::mem::take(&mut waiting) {
        tally.failed += 1;
        progress.done(
            "failed (still pending; retried at the next server start)",
            &path,
        );
    }
    progress.finish();
    drop(reader);
    tokio::task::spawn_blocking(move || db_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the database writer thread panicked"))?;
    match fed {
        Some(Ok(Ok(()))) | None => Ok(tally),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
    }
}

/// Reads the outcome of every journaled entry that finished.
fn poll(
    reader: &rusqlite::Connection,
    waiting: &mut BTreeMap<i64, (String, String)>,
    tally: &mut Tally,
    progress: &mut Progress,
) -> Result<()> {
    let (Some((&from, _)), Some((&to, _))) = (waiting.first_key_value(), waiting.last_key_value())
    else {
        return Ok(());
    };
    for (id, state, outcome) in journal::states_between(reader, from, to)? {
        if state != State::Done {
            continue;
        }
        let Some((account, path)) = waiting.remove(&id) else {
            continue;
        };
        let shown = match outcome {
            Some(Outcome::Conversation(id)) if awaiting(reader, id)? => {
                tally.waiting += 1;
                format!("waiting for its metadata CSV row (conversation {id})")
            }
            Some(Outcome::Conversation(id)) => {
                tally.conversations += 1;
                format!("conversation {id}")
            }
            Some(Outcome::Unchanged(id)) => {
                tally.unchanged += 1;
                format!("unchanged (conversation {id})")
            }
            // Counted with the unchanged, as the text's first word says.
            Some(Outcome::SameRejection(id)) => {
                tally.unchanged += 1;
                format!("unchanged (conversation  rejected:{id})")
            }
            Some(Outcome::Rejected | Outcome::RejectedAs(_)) => {
                tally.rejections += 1;
                match latest_rejection(reader, &account, &path)? {
                    Some((stage, reason)) => format!("rejected ({stage}: {reason})"),
                    None => "rejected".to_string(),
                }
            }
            other => {
                tally.ignored += 1;
                other.map(|o| o.to_string()).unwrap_or_default()
            }
        };
        progress.done(&shown, &path);
    }
    Ok(())
}

/// Whether conversation `id` (as the journal names it) still waits for
/// its metadata CSV row.
fn awaiting(reader: &rusqlite::Connection, id: i64) -> Result<bool> {
    use rusqlite::OptionalExtension;
    let status: Option<String> = reader
        .prepare_cached("SELECT status FROM conversations WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(status.as_deref() == Some("awaiting_metadata"))
}

/// The stage and reason of a deposit's newest rejection.
fn latest_rejection(
    reader: &rusqlite::Connection,
    account: &str,
    path: &str,
) -> Result<Option<(String, String)>> {
    use rusqlite::OptionalExtension;
    Ok(reader
        .prepare_cached(
            "SELECT stage, reason FROM rejections WHERE account = ?1 AND path = ?2 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([account, path], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// A progress bar on a terminal; one line per finished deposit otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {wide_msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    fn done(&mut self, outcome: &str, path: &str) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(path.to_string());
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{outcome}\t{path}");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
