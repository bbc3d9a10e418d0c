//! One TCP connection's life in front of the SSH layer, once admitted
//! ([`super::admission`]): the login grace time, eviction, and closing for
//! real. Whatever an unauthenticated client sends (keep-alives,
//! SSH_MSG_IGNORE), it is cut at the grace time.
//!
//! russh runs each session in a task of its own, so aborting our task or
//! asking the session to disconnect does not guarantee the socket closes (a
//! client that stops reading keeps it open). [`Severable`] shares the socket
//! so its owner can `shutdown(2)` it: the session's reads end, its writes
//! fail, and the session ends whatever the client does.

use super::admission::{Pending, Verdict};
use super::{ssh, Shared};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

/// How long a closing session may take to say goodbye before its socket is
/// cut, and how long the session then has to notice.
const GOODBYE: Duration = Duration::from_millis(500);
const AFTER_CUT: Duration = Duration::from_secs(2);

/// The socket as russh reads and writes it, shared with its [`Severer`].
pub(crate) struct Severable(Arc<TcpStream>);

/// Cuts a [`Severable`]'s socket from outside the session.
pub(crate) struct Severer(Arc<TcpStream>);

pub(crate) fn severable(stream: TcpStream) -> (Severable, Severer) {
    let s = Arc::new(stream);
    (Severable(s.clone()), Severer(s))
}

impl Severer {
    /// Shuts the socket down both ways: pending reads see end of file,
    /// writes fail, so the session ends.
    pub(crate) fn sever(&self) {
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
pub(crate) async fn serve(
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
