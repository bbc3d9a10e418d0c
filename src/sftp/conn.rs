//! One TCP connection's life in front of the SSH layer: admission of the
//! unauthenticated, the login grace time, and closing for real.
//!
//! Connections that have not logged in yet are counted apart from sessions,
//! per source address and in all. Past the per-address cap a new connection
//! is dropped at accept. When the total is full, the oldest connection of
//! the address holding the most is dropped to make room, unless the new one
//! comes from such an address itself: a flood of silent or chattering
//! sockets from a few addresses sheds its own connections, never a
//! legitimate login from elsewhere. Whatever an unauthenticated client sends
//! (keep-alives, SSH_MSG_IGNORE), it is cut at the grace time.
//!
//! russh runs each session in a task of its own, so aborting our task or
//! asking the session to disconnect does not guarantee the socket closes (a
//! client that stops reading keeps it open). [`Severable`] shares the socket
//! so its owner can `shutdown(2)` it: the session's reads end, its writes
//! fail, and the session ends whatever the client does.

use super::{ssh, Shared};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

/// How long a closing session may take to say goodbye before its socket is
/// cut, and how long the session then has to notice.
const GOODBYE: Duration = Duration::from_millis(500);
const AFTER_CUT: Duration = Duration::from_secs(2);
/// Refusals are logged at most this often (a flood would fill the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// What ended a connection's unauthenticated phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Authenticated,
    /// Dropped to make room for a newer connection from a lighter address.
    Evicted,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerIp,
    Total,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    per_ip: HashMap<IpAddr, usize>,
    /// By id, so oldest first.
    conns: BTreeMap<u64, (IpAddr, oneshot::Sender<Verdict>)>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

/// The unauthenticated connections, per address and in all.
pub struct Unauthenticated {
    max_per_ip: usize,
    max_total: usize,
    inner: Mutex<Inner>,
}

/// An unauthenticated connection's place; freed on login or when dropped.
pub struct Pending {
    registry: Arc<Unauthenticated>,
    id: u64,
}

impl Pending {
    /// The connection logged in: it no longer counts as unauthenticated.
    pub fn authenticated(self) {
        if let Some(tx) = self.registry.remove(self.id) {
            let _ = tx.send(Verdict::Authenticated);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl Unauthenticated {
    pub fn new(max_per_ip: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Unauthenticated {
            max_per_ip: max_per_ip.max(1),
            max_total: max_total.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a new connection from `ip`, evicting the oldest
    /// connection of the heaviest address when the total is full.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(Pending, oneshot::Receiver<Verdict>), Refused> {
        let mut g = self.lock();
        let here = g.per_ip.get(&ip).copied().unwrap_or(0);
        if here >= self.max_per_ip {
            return Err(self.refused(&mut g, ip, Refused::PerIp));
        }
        if g.conns.len() >= self.max_total {
            let heaviest = g.per_ip.values().copied().max().unwrap_or(0);
            if here >= heaviest {
                return Err(self.refused(&mut g, ip, Refused::Total));
            }
            let victim = g
                .conns
                .iter()
                .find(|(_, (v, _))| g.per_ip.get(v) == Some(&heaviest))
                .map(|(id, _)| *id);
            if let Some(tx) = victim.and_then(|id| Self::remove_locked(&mut g, id)) {
                let _ = tx.send(Verdict::Evicted);
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        let (tx, rx) = oneshot::channel();
        g.conns.insert(id, (ip, tx));
        *g.per_ip.entry(ip).or_insert(0) += 1;
        Ok((
            Pending {
                registry: self.clone(),
                id,
            },
            rx,
        ))
    }

    /// Counts a refusal; logs the count now and then.
    fn refused(&self, g: &mut Inner, ip: IpAddr, why: Refused) -> Refused {
        g.refused_since_log += 1;
        let now = Instant::now();
        if g.last_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                ip = %ip,
                limit = match why {
                    Refused::PerIp => "auth.max_unauthenticated_per_ip",
                    Refused::Total => "auth.max_unauthenticated",
                },
                refused = g.refused_since_log,
                "unauthenticated connections over the limit are dropped at accept"
            );
            g.refused_since_log = 0;
            g.last_log = Some(now);
        }
        tracing::debug!(ip = %ip, ?why, "connection dropped: too many unauthenticated");
        why
    }

    fn remove(&self, id: u64) -> Option<oneshot::Sender<Verdict>> {
        Self::remove_locked(&mut self.lock(), id)
    }

    fn remove_locked(g: &mut Inner, id: u64) -> Option<oneshot::Sender<Verdict>> {
        let (ip, tx) = g.conns.remove(&id)?;
        if let Some(n) = g.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.per_ip.remove(&ip);
            }
        }
        Some(tx)
    }

    /// (from `ip`, in all) unauthenticated connections now.
    #[cfg(test)]
    pub fn counts(&self, ip: IpAddr) -> (usize, usize) {
        let g = self.lock();
        (g.per_ip.get(&ip).copied().unwrap_or(0), g.conns.len())
    }
}

/// The socket as russh reads and writes it, shared with its [`Severer`].
pub struct Severable(Arc<TcpStream>);

/// Cuts a [`Severable`]'s socket from outside the session.
pub struct Severer(Arc<TcpStream>);

pub fn severable(stream: TcpStream) -> (Severable, Severer) {
    let s = Arc::new(stream);
    (Severable(s.clone()), Severer(s))
}

impl Severer {
    /// Shuts the socket down both ways: pending reads see end of file,
    /// writes fail, so the session ends.
    pub fn sever(&self) {
        let _ = rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Both);
    }
}

impl AsyncRead for Severable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(
            rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Write).map_err(io::Error::from),
        )
    }
}

/// Resolves when the server starts closing sessions (or the signal is gone).
async fn closing(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

/// Serves one admitted connection to its end: cut at the grace time if it
/// has not logged in by then, or when evicted; once logged in, until the
/// client leaves or the server closes sessions.
pub async fn serve(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    pending: Pending,
    verdict: oneshot::Receiver<Verdict>,
    mut close: watch::Receiver<bool>,
) {
    let ip = peer.ip();
    let grace = shared.settings.auth.login_grace_time;
    let deadline = tokio::time::Instant::now() + grace;
    let (stream, severer) = severable(stream);
    let handler = ssh::Connection::new(shared, peer, pending);
    let mut rx = verdict;
    let start = russh::server::run_stream(config, stream, handler);
    let session = tokio::select! {
        r = start => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(ip = %ip, error = %e, "ssh handshake failed");
                return;
            }
        },
        _ = tokio::time::sleep_until(deadline) => {
            tracing::info!(ip = %ip, grace = %humantime::format_duration(grace), "login grace time elapsed; connection closed");
            return;
        }
        // Before the handshake the handler is alive: only eviction comes.
        _ = &mut rx => {
            tracing::debug!(ip = %ip, "unauthenticated connection dropped for a newer one");
            return;
        }
        _ = closing(&mut close) => return,
    };
    let handle = session.handle();
    tokio::pin!(session);
    let mut verdict = Some(rx);
    // Until it logs in: the grace time, eviction and shutdown apply.
    while let Some(rx) = verdict.as_mut() {
        let cut = tokio::select! {
            r = &mut session => return ended(ip, r),
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(ip = %ip, grace = %humantime::format_duration(grace), "login grace time elapsed; connection closed");
                true
            }
            v = rx => {
                verdict = None;
                match v {
                    Ok(Verdict::Evicted) => {
                        tracing::debug!(ip = %ip, "unauthenticated connection dropped for a newer one");
                        true
                    }
                    // Logged in, or the handler is gone (the session is ending).
                    _ => false,
                }
            }
            _ = closing(&mut close) => true,
        };
        if cut {
            severer.sever();
            let _ = tokio::time::timeout(AFTER_CUT, &mut session).await;
            return;
        }
    }
    tokio::select! {
        r = &mut session => return ended(ip, r),
        _ = closing(&mut close) => {}
    }
    let goodbye = handle.disconnect(
        russh::Disconnect::ByApplication,
        "server shutting down".into(),
        String::new(),
    );
    let _ = tokio::time::timeout(GOODBYE, goodbye).await;
    if tokio::time::timeout(GOODBYE, &mut session).await.is_err() {
        severer.sever();
        let _ = tokio::time::timeout(AFTER_CUT, &mut session).await;
    }
}

fn ended(ip: IpAddr, r: Result<(), russh::Error>) {
    if let Err(e) = r {
        tracing::debug!(ip = %ip, error = %e, "session ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_cap_refuses_the_newcomer() {
        let r = Unauthenticated::new(2, 10);
        let _a = r.admit(ip(2)).unwrap();
        let _b = r.admit(ip(2)).unwrap();
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::PerIp));
        assert!(r.admit(ip(3)).is_ok());
    }

    #[test]
    fn a_full_server_sheds_the_heaviest_address_oldest_first() {
        let r = Unauthenticated::new(10, 4);
        let (_a1, mut rx1) = r.admit(ip(2)).unwrap();
        let (_a2, mut rx2) = r.admit(ip(2)).unwrap();
        let (_a3, mut rx3) = r.admit(ip(2)).unwrap();
        let (_b, mut rxb) = r.admit(ip(3)).unwrap();
        // The heaviest address cannot push out others' connections...
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::Total));
        // ...but a login from elsewhere pushes out its oldest.
        let (_c, _) = r.admit(ip(4)).unwrap();
        assert_eq!(rx1.try_recv(), Ok(Verdict::Evicted));
        assert!(rx2.try_recv().is_err() && rx3.try_recv().is_err() && rxb.try_recv().is_err());
        assert_eq!(r.counts(ip(2)), (2, 4));
    }

    #[test]
    fn login_and_drop_free_the_place() {
        let r = Unauthenticated::new(1, 1);
        let (p, mut rx) = r.admit(ip(2)).unwrap();
        p.authenticated();
        assert_eq!(rx.try_recv(), Ok(Verdict::Authenticated));
        assert_eq!(r.counts(ip(2)), (0, 0));
        let (p, _) = r.admit(ip(2)).unwrap();
        drop(p);
        assert_eq!(r.counts(ip(2)), (0, 0));
    }
}
