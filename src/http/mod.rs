//! The HTTP API: JSON over axum, on the same tokio runtime as the SFTP
//! front. Every request is bounded (body size, time to answer, requests at
//! once); every error is `{"error": {"code", "message"}}` with its status.
//! Handlers read SQLite through their own connections (never the writer),
//! so a slow client or a large page never holds up ingestion, and the HTTP
//! server holds nothing that keeps the writer alive at shutdown.

mod auth;
mod console;
mod events;
mod metrics;
mod openapi;
mod router;
mod routes;
mod schema;
pub mod tokens;

use crate::config::{Accounts, HttpConfig};
use crate::metrics::Metrics;
use crate::sftp::auth::{BanList, PasswordChecker};
use crate::store;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An error answered to the client as JSON.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        // The cause goes to the log; the client learns only that it failed.
        tracing::error!(error = %e, "HTTP request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not answer; the operator's log has the cause",
        )
    }
}

/// A query string that does not parse is the client's error (400).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// What every handler shares.
pub(crate) struct State {
    pub cfg: HttpConfig,
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    /// `server.min_free_disk`: `/readyz` fails below it.
    pub min_free_disk: u64,
    pub accounts: watch::Receiver<Accounts>,
    pub bans: Arc<BanList>,
    pub metrics: Arc<Metrics>,
    pub tokens: tokens::TokenStore,
    pub shutdown: watch::Receiver<bool>,
    /// Changes after every database commit (wakes the event feed).
    pub commits: watch::Receiver<u64>,
    /// Names of the configured webhook endpoints (metric labels).
    pub webhooks: Vec<String>,
    /// The SSH front's checker: console log-ins share its argon2 bound.
    pub passwords: Arc<PasswordChecker>,
    /// Web console sessions.
    pub sessions: console::session::Sessions,
    readers: Mutex<Vec<Connection>>,
}

/// Read connections kept for reuse (more are opened under load, then closed).
const KEPT_READERS: usize = 8;

impl State {
    /// Runs `f` on a read connection off the async threads.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> store::Result<T> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = state
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => store::open(&state.db_path)?,
            };
            let out = f(&conn);
            let mut readers = state.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < KEPT_READERS {
                readers.push(conn);
            }
            out
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    }
}

/// Everything the HTTP server needs from the rest of depot.
pub(crate) struct Parts {
    pub cfg: HttpConfig,
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    pub min_free_disk: u64,
    pub accounts: watch::Receiver<Accounts>,
    pub bans: Arc<BanList>,
    pub metrics: Arc<Metrics>,
    pub commits: watch::Receiver<u64>,
    pub webhooks: Vec<String>,
    pub passwords: Arc<PasswordChecker>,
}

/// Binds `[http] listen` and serves until `shutdown` turns true; then
/// stops accepting and lets requests in progress finish.
pub(crate) async fn start(
    parts: Parts,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(parts.cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (http.listen); is another process using it?",
                parts.cfg.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let parts_tls = parts.cfg.tls.is_some();
    let sessions =
        console::session::Sessions::new(parts.cfg.session_timeout, parts.cfg.max_console_sessions);
    let state = Arc::new(State {
        tokens: tokens::TokenStore::new(parts.cfg.tokens_file.clone()),
        cfg: parts.cfg,
        db_path: parts.db_path,
        data_dir: parts.data_dir,
        min_free_disk: parts.min_free_disk,
        accounts: parts.accounts,
        bans: parts.bans,
        metrics: parts.metrics,
        shutdown: shutdown.clone(),
        commits: parts.commits,
        webhooks: parts.webhooks,
        passwords: parts.passwords,
        sessions,
        readers: Mutex::new(Vec::new()),
    });
    let tls = match &state.cfg.tls {
        Some((cert, key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the HTTPS certificate {} and key {} (http.tls_cert, http.tls_key): both PEM",
                        cert.display(),
                        key.display()
                    )
                })?,
        ),
        None => None,
    };
    let mut router = router::router(state);
    if parts_tls {
        // Served over our own TLS: what the console's cookies check, as
        // behind a TLS-terminating proxy (so they are marked Secure).
        router = router.layer(axum::middleware::map_request(mark_https));
    }
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut stop = shutdown;
    let handle = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        }),
        Some(tls) => {
            let server = axum_server::from_tcp_rustls(listener.into_std()?, tls)?;
            let control = axum_server::Handle::new();
            let on_stop = control.clone();
            tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
                // Requests in progress finish; open event streams end
                // themselves on the same signal.
                on_stop.graceful_shutdown(None);
            });
            tokio::spawn(async move {
                if let Err(e) = server.handle(control).serve(app).await {
                    tracing::error!(error = %e, "the HTTPS server stopped");
                }
            })
        }
    };
    tracing::info!(addr = %addr, tls = parts_tls, "listening for HTTP");
    Ok((addr, handle))
}

/// Marks a request as received over HTTPS (see the console's `over_tls`).
async fn mark_https(mut req: axum::extract::Request) -> axum::extract::Request {
    req.headers_mut().insert(
        "x-forwarded-proto",
        axum::http::HeaderValue::from_static("https"),
    );
    req
}
