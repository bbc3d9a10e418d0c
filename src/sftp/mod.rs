//! The SFTP front: accept loop, SSH sessions, authentication, and the SFTP
//! file-system handler that works inside each account's jail.
//!
//! Data flow: TCP accept (ban check, [`admission`] of the unauthenticated) →
//! one of the connection [`threads`] → [`conn::serve`] (login grace time) → [`ssh::Connection`] (auth, session
//! limits) → `sftp` subsystem → [`channel`] pump → [`fs::SftpSession`], whose
//! CLOSE/RENAME produce upload completions: fsync, a journal row committed,
//! then OK to the client and the entry handed to the pipeline.

mod admission;
pub mod auth;
mod budget;
mod channel;
mod conn;
mod fs;
mod policy;
mod quota;
mod ssh;
mod threads;
mod upload;

use crate::config::{Account, Settings};
use crate::metrics::Metrics;
use crate::store::journal::Entry;
use crate::store::Writer;
use anyhow::{Context, Result};
use auth::{BanList, PasswordChecker};
use russh::keys::PrivateKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Accounts;

/// Where completed uploads go next (the pipeline's inbox).
pub(crate) type CompletionSender = mpsc::UnboundedSender<Entry>;

/// State shared by every session.
pub struct Shared {
    pub(crate) settings: Settings,
    pub(crate) accounts: watch::Receiver<Accounts>,
    pub(crate) writer: Writer,
    pub(crate) completions: CompletionSender,
    pub(crate) bans: Arc<BanList>,
    pub(crate) passwords: Arc<PasswordChecker>,
    pub metrics: Arc<Metrics>,
    /// Deposits the pipeline is working on: not to be modified meanwhile.
    pub in_flight: crate::deposit::Ingesting,
    /// Acknowledged deposits not yet archived: no handle may change them.
    pub(crate) seals: Arc<crate::deposit::Seals>,
    /// Logged-in sessions (unauthenticated connections are counted apart).
    sessions_total: AtomicUsize,
    unauthenticated: Arc<admission::Unauthenticated>,
    sessions_per_account: Mutex<HashMap<String, usize>>,
    /// Open write handles across all sessions.
    pub open_uploads: AtomicUsize,
    /// File and directory handles: per session, per account, per server.
    handles: Arc<budget::Budget>,
    quota: Arc<Mutex<HashMap<String, Arc<quota::Usage>>>>,
    /// Set at shutdown: hashing from disk stops (a CLOSE hashing a huge
    /// file then fails, and the client uploads again after the restart).
    stop_hashing: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    pub(crate) fn new(
        settings: Settings,
        accounts: watch::Receiver<Accounts>,
        writer: Writer,
        completions: CompletionSender,
        metrics: Arc<Metrics>,
        in_flight: crate::deposit::Ingesting,
        seals: Arc<crate::deposit::Seals>,
    ) -> Result<Arc<Shared>> {
        let handles = Arc::new(budget::Budget::new(&settings.server));
        // This front registers every handle it opens: the pipeline's sweep
        // of stale uploads may now run, knowing which files are open.
        seals.open.set_tracked();
        let quota: Arc<Mutex<HashMap<String, Arc<quota::Usage>>>> = Arc::default();
        let counts = quota.clone();
        seals.open.set_on_removed(Box::new(move |account, bytes| {
            let map = counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(usage) = map.get(account) {
                let _ = usage.change(|_| Ok::<_, std::convert::Infallible>(((), -(bytes as i64))));
            }
        }));
        Ok(Arc::new(Shared {
            bans: BanList::new(settings.auth.clone()),
            unauthenticated: admission::Unauthenticated::new(
                settings.auth.max_unauthenticated_per_ip,
                settings.auth.max_unauthenticated,
            ),
            passwords: Arc::new(PasswordChecker::new(
                settings.auth.max_concurrent_password_checks,
            )?),
            settings,
            accounts,
            writer,
            completions,
            metrics,
            in_flight,
            seals,
            sessions_total: AtomicUsize::new(0),
            sessions_per_account: Mutex::new(HashMap::new()),
            open_uploads: AtomicUsize::new(0),
            handles,
            stop_hashing: Arc::default(),
            quota,
        }))
    }

    /// Shutdown has begun: every hashing from disk stops at its next read.
    pub(crate) fn stop_hashing(&self) {
        self.stop_hashing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.borrow().get(name).cloned()
    }

    /// Takes a session slot of the server and of the account; the error
    /// names the limit that refused it.
    fn acquire_account_slot(self: &Arc<Self>, account: &str) -> Result<AccountSlot, &'static str> {
        let mut map = self
            .sessions_per_account
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = map.entry(account.to_string()).or_insert(0);
        if *n >= self.settings.server.max_sessions_per_account {
            return Err("server.max_sessions_per_account");
        }
        let total = self
            .sessions_total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < self.settings.server.max_sessions).then_some(t + 1)
            });
        if total.is_err() {
            return Err("server.max_sessions");
        }
        *n += 1;
        Ok(AccountSlot {
            shared: self.clone(),
            account: account.to_string(),
        })
    }

    /// The account's running total of bytes stored in its jail.
    fn quota_usage(&self, account: &str, root: &std::path::Path) -> Arc<quota::Usage> {
        let mut map = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account.to_string())
            .or_insert_with(|| Arc::new(quota::Usage::new(quota::dir_size(root))))
            .clone()
    }
}

/// A session's claim on its account's session budget, released on drop.
pub(crate) struct AccountSlot {
    shared: Arc<Shared>,
    account: String,
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .sessions_per_account
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.account) {
            *n = n.saturating_sub(1);
        }
        self.shared.sessions_total.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The russh server configuration depot runs with.
pub fn ssh_config(settings: &Settings, host_keys: Vec<PrivateKey>) -> russh::server::Config {
    use russh::{cipher, MethodKind, MethodSet};
    // aes128-gcm is what many clients ask for first; russh leaves it out by default.
    let cipher = std::borrow::Cow::Owned(vec![
        cipher::AES_128_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_GCM,
        cipher::AES_256_CTR,
        cipher::AES_192_CTR,
        cipher::AES_128_CTR,
    ]);
    let preferred = russh::Preferred {
        cipher,
        ..Default::default()
    };
    russh::server::Config {
        server_id: russh::SshId::Standard(std::borrow::Cow::Borrowed(concat!(
            "SSH-2.0-depot_",
            env!("CARGO_PKG_VERSION")
        ))),
        methods: MethodSet::from(
            &[
                MethodKind::PublicKey,
                MethodKind::Password,
                MethodKind::KeyboardInteractive,
            ][..],
        ),
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: host_keys,
        max_auth_attempts: settings.auth.max_attempts_per_connection as usize,
        inactivity_timeout: Some(settings.server.idle_timeout),
        keepalive_interval: None,
        // Nagle delays every small SFTP status reply: off.
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65536,
        preferred,
        ..Default::default()
    }
}

/// Binds every configured listen address.
pub(crate) async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("cannot listen on {a} (in use? change server.listen)"))?;
        out.push(l);
    }
    Ok(out)
}

/// Accepts connections until `shutdown` turns true, then closes every
/// session (within `server.shutdown_timeout`). A request already being
/// answered, such as a completion being journaled, finishes on its own.
pub(crate) async fn run(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    listeners: Vec<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (conn_tx, mut conn_rx) = mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(64);
    let mut acceptors = JoinSet::new();
    for l in listeners {
        let tx = conn_tx.clone();
        acceptors.spawn(async move {
            loop {
                match l.accept().await {
                    Ok(c) => {
                        if tx.send(c).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(conn_tx);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads::Threads::start(cores)
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot start the connection threads; connections share the main runtime")
        })
        .ok();
    let (close_tx, close_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some((stream, peer)) = conn_rx.recv() => {
                if let Some(task) = admit(&shared, &config, stream, peer, &close_rx) {
                    match threads.as_ref().and_then(|t| t.pick()) {
                        Some((thread, served)) => {
                            sessions.spawn_on(async move {
                                let _served = served;
                                task.await
                            }, &thread);
                        }
                        None => { sessions.spawn(task); }
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    shared.stop_hashing();
    acceptors.shutdown().await;
    drop(conn_rx);
    drain_sessions(&shared, close_tx, sessions).await;
    if let Some(t) = threads {
        t.stop().await;
    }
}

/// Tells every connection to close, then waits for them (each cuts its
/// socket if the client does not leave when asked).
async fn drain_sessions(shared: &Shared, close: watch::Sender<bool>, mut sessions: JoinSet<()>) {
    let open = sessions.len();
    if open > 0 {
        tracing::info!(connections = open, "closing every connection");
    }
    let _ = close.send(true);
    let limit = shared.settings.server.shutdown_timeout;
    let all_done = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, all_done).await.is_err() {
        tracing::warn!(
            connections = sessions.len(),
            "connections still open at server.shutdown_timeout; abandoning them"
        );
        sessions.shutdown().await;
    }
}

/// Decides whether to serve a new connection; returns its task.
fn admit(
    shared: &Arc<Shared>,
    config: &Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    close: &watch::Receiver<bool>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    if shared.bans.is_banned(peer.ip(), Instant::now()) {
        tracing::debug!(ip = %peer.ip(), "refused connection from banned address");
        return None;
    }
    let (pending, verdict) = shared.unauthenticated.admit(peer.ip()).ok()?;
    let _ = stream.set_nodelay(true);
    // The socket is registered again with the reactor of the thread the
    // task runs on: its readiness then wakes that thread, not this one.
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(ip = %peer.ip(), error = %e, "cannot hand the connection over; closed");
            return None;
        }
    };
    let (shared, config, close) = (shared.clone(), config.clone(), close.clone());
    Some(async move {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(ip = %peer.ip(), error = %e, "cannot serve the connection; closed");
                return;
            }
        };
        conn::serve(shared, config, stream, peer, pending, verdict, close).await
    })
}
