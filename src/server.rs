//! Starting and stopping the whole service: host keys, accounts (and their
//! hot-reload watcher), database writer, pending journal rows and the
//! start-up scan, pipeline worker, counters saver and SFTP listeners, in that
//! order; shutdown in reverse within `server.shutdown_timeout`: every
//! session closed, completions being journaled finished, the pipeline
//! drained (what is left when time runs out resumes at the next start).
//!
//! One server per data directory: an exclusive `flock` on
//! `data/depot.lock`, held for the server's life, which records the
//! holder's PID for the one refused. The data directory is private to
//! depot's user (0700).

use crate::config::Accounts;
use crate::config::{load_accounts, Settings};
use crate::deposit::Layout;
use crate::metrics::Metrics;
use crate::sftp::{self, Shared};
use crate::store::{self, journal, Writer};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A running depot.
pub struct Running {
    /// The bound listen addresses (port 0 resolved).
    pub(crate) addrs: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
    /// SHA256 fingerprints of the host keys, in configuration order.
    pub fingerprints: Vec<String>,
    /// The HTTP API's bound address, when `[http]` is configured.
    pub http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    /// Deletes events past `events.retention`.
    pruner: JoinHandle<()>,
    /// One delivery task per `[[webhooks]]` endpoint.
    webhooks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    front: JoinHandle<()>,
    /// The account watcher (owns the accounts sender); `None` if the file
    /// system refused to be watched.
    watcher: Option<JoinHandle<()>>,
    pipeline: JoinHandle<()>,
    saver: JoinHandle<()>,
    saver_stop: oneshot::Sender<()>,
    db_thread: std::thread::JoinHandle<()>,
    /// Held (locked) until the server is gone.
    _lock: std::fs::File,
}

pub(crate) fn db_path(settings: &Settings) -> std::path::PathBuf {
    Layout::new(&settings.server.data_dir).database()
}

/// Takes the data directory's lock, or says which process holds it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    use rustix::fs::{flock, FlockOperation};
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = Layout::new(data_dir).lock();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            bail!("cannot lock {}: {e}", path.display());
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "unknown pid".to_string(),
            pid => format!("pid {pid}"),
        };
        bail!(
            "another depot serve ({holder}) is running on the data directory {}; stop it first, or give this one another server.data_dir",
            data_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(file)
}

/// Makes the data directory 0700 if it was wider: recordings and the
/// database are nobody else's business on this machine.
fn make_private(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", data_dir.display()))?;
        tracing::warn!(dir = %data_dir.display(), was = %format!("{mode:o}"), "data directory was open to other users; made it 0700");
    }
    Ok(())
}

/// Starts depot with `settings`; fails with every configuration problem.
pub async fn start(settings: Settings) -> Result<Running> {
    let data_dir = &settings.server.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(Layout::new(data_dir).homes())
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    make_private(data_dir)?;
    let lock = lock_data_dir(data_dir)?;
    let mut host_keys = Vec::new();
    let mut fingerprints = Vec::new();
    for path in &settings.server.host_keys {
        let (key, fresh) = crate::keys::load_or_generate_host_key(path)?;
        let fp = crate::keys::fingerprint(key.public_key());
        tracing::info!(path = %path.display(), fingerprint = %fp, generated = fresh, "host key");
        fingerprints.push(fp);
        host_keys.push(key);
    }
    let loaded = load_accounts(&settings.server.accounts_dir, true);
    if !loaded.errors.is_empty() {
        let all: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        bail!("invalid account configuration:\n{}", all.join("\n"));
    }
    tracing::info!(accounts = loaded.accounts.len(), "accounts loaded");
    let accounts: Accounts = Arc::new(loaded.accounts);
    let (accounts_tx, accounts_rx) = watch::channel(accounts);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let watcher = match crate::config::watch::spawn(
        settings.server.accounts_dir.clone(),
        accounts_tx,
        shutdown_rx.clone(),
    ) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(error = %e, dir = %settings.server.accounts_dir.display(), "cannot watch the accounts directory; account changes need a restart");
            None
        }
    };

    // Archives of earlier versions were hard links into the jails.
    let archive = Layout::new(&settings.server.data_dir).archives();
    match tokio::task::spawn_blocking(move || crate::archive::separate_legacy_links(&archive))
        .await?
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            objects = n,
            "archived recordings given an inode of their own"
        ),
        Err(e) => {
            bail!("cannot check the archive for shared files ({e}); fix the permissions of data_dir/archive")
        }
    }
    let (writer, db_thread) =
        Writer::start(&db_path(&settings)).context("cannot open the database")?;
    let (completions, inbox) = mpsc::unbounded_channel();
    let pending = {
        let w = writer.clone();
        tokio::task::spawn_blocking(move || -> store::Result<Vec<journal::Entry>> {
            journal::pending(&store::open(w.path())?)
        })
        .await??
    };
    if !pending.is_empty() {
        tracing::info!(count = pending.len(), "resuming deposits not yet ingested");
    }
    for e in pending {
        let _ = completions.send(e);
    }
    // Before the listeners start: no upload is in progress while it looks.
    let found = {
        let (w, data, accounts) = (
            writer.clone(),
            settings.server.data_dir.clone(),
            accounts_rx.borrow().clone(),
        );
        tokio::task::spawn_blocking(move || crate::pipeline::scan::scan(&data, &accounts, &w))
            .await?
    };
    match found {
        Ok(found) => {
            if !found.is_empty() {
                tracing::info!(
                    count = found.len(),
                    "start-up scan found deposits with no journal row"
                );
            }
            for e in found {
                let _ = completions.send(e);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "start-up scan failed; unjournaled files wait for the next start")
        }
    }
    let metrics = Arc::new(Metrics::default());
    let (saver_stop, stop_rx) = oneshot::channel();
    let saver = crate::metrics::spawn_saver(metrics.clone(), writer.clone(), stop_rx);
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let pipeline = crate::pipeline::worker::Pipeline::new(
        accounts_rx.clone(),
        writer.clone(),
        settings.server.data_dir.clone(),
        in_flight.clone(),
        metrics.clone(),
        settings.pipeline,
    );
    let seals = pipeline.seals.clone();
    let pipeline = tokio::spawn(crate::pipeline::worker::run(pipeline, inbox));
    let pruner = crate::store::events::spawn_pruner(
        writer.clone(),
        settings.events.retention,
        shutdown.subscribe(),
    );
    let webhooks = crate::webhooks::spawn(&settings.webhooks, &writer, &shutdown_rx)?;
    let ssh_config = Arc::new(sftp::ssh_config(&settings, host_keys));
    let listeners = sftp::bind(&settings.server.listen).await?;
    let addrs = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect::<Vec<_>>();
    let shared = Shared::new(
        settings,
        accounts_rx,
        writer,
        completions,
        metrics,
        in_flight,
        seals,
    )?;
    let front = tokio::spawn(sftp::run(
        shared.clone(),
        ssh_config,
        listeners,
        shutdown_rx,
    ));
    for a in &addrs {
        tracing::info!(addr = %a, "listening for SFTP");
    }
    let (http_addr, http) = match start_http(&shared, shutdown.subscribe()).await {
        Ok(Some((a, h))) => (Some(a), Some(h)),
        Ok(None) => (None, None),
        Err(e) => {
            let _ = shutdown.send(true);
            let _ = front.await;
            return Err(e);
        }
    };
    Ok(Running {
        addrs,
        shared,
        fingerprints,
        http_addr,
        http,
        pruner,
        webhooks,
        shutdown,
        front,
        watcher,
        pipeline,
        saver,
        saver_stop,
        db_thread,
        _lock: lock,
    })
}

/// Starts the HTTP API when `[http]` is configured.
async fn start_http(
    shared: &Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(cfg) = shared.settings.http.clone() else {
        return Ok(None);
    };
    let parts = crate::http::Parts {
        cfg,
        db_path: db_path(&shared.settings),
        data_dir: shared.settings.server.data_dir.clone(),
        min_free_disk: shared.settings.server.min_free_disk,
        accounts: shared.accounts.clone(),
        bans: shared.bans.clone(),
        metrics: shared.metrics.clone(),
        commits: shared.writer.commits(),
        webhooks: shared
            .settings
            .webhooks
            .iter()
            .map(|w| w.name.clone())
            .collect(),
        passwords: shared.passwords.clone(),
    };
    Ok(Some(crate::http::start(parts, shutdown).await?))
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops accepting, closes every session, drains the pipeline, closes
    /// the database; returns the final counters. Bounded by
    /// `server.shutdown_timeout`: past it, the deposits not yet ingested
    /// stay pending in the journal and resume at the next start.
    pub async fn shutdown(self) -> Result<Vec<(&'static str, u64)>> {
        let limit = self.shared.settings.server.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let _ = self.shutdown.send(true);
        let metrics = self.shared.metrics.clone();
        let lock = self._lock;
        let rest = async move {
            let _ = self.front.await;
            if let Some(h) = self.http {
                let _ = h.await;
            }
            let _ = self.pruner.await;
            for w in self.webhooks {
                let _ = w.await;
            }
            if let Some(w) = self.watcher {
                let _ = w.await;
            }
            // Last reference to Shared: drops its completion sender and writer.
            drop(self.shared);
            let _ = self.pipeline.await;
            let _ = self.saver_stop.send(());
            let _ = self.saver.await;
            let db = self.db_thread;
            tokio::task::spawn_blocking(move || db.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the database writer thread panicked"))?;
            anyhow::Ok(())
        };
        match tokio::time::timeout_at(deadline, rest).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::warn!(
                    timeout = %humantime::format_duration(limit),
                    "server.shutdown_timeout reached before the pipeline drained; deposits not yet ingested resume at the next start"
                );
                // Work abandoned here may still run until the process
                // exits: no other server may take the data directory
                // before then.
                std::mem::forget(lock);
                return Ok(metrics.snapshot());
            }
        }
        drop(lock);
        Ok(metrics.snapshot())
    }
}
