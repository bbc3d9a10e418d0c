//! Who is calling: the bearer token, checked against the tokens file.
//! A missing or unknown token is a 401 that says nothing more, and counts
//! as a failure of the source address in the same ban list as SSH logins,
//! so guessing tokens costs an attacker the same as guessing passwords.

use super::console::session;
use super::tokens::Scope;
use super::{ApiError, State};
use crate::metrics::Metrics;
use crate::sftp::auth::FailureOutcome;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) scope: Scope,
    /// Set: this caller sees only this account.
    pub(crate) account: Option<String>,
}

impl Caller {
    /// The account a listing is limited to: the caller's own (asking for
    /// another is refused), else what the request asked for.
    pub(crate) fn scope_account(&self, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.account, asked) {
            (Some(own), Some(asked)) if *own != asked => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token reads its own account only",
            )),
            (Some(own), _) => Ok(Some(own.clone())),
            (None, asked) => Ok(asked),
        }
    }

    /// May this caller see a record of `account`? (Callers that may not
    /// get a 404, as if it did not exist.)
    pub(crate) fn sees(&self, account: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
    }

    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::Read => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an admin token",
            )),
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required",
    )
}

fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Refuses a banned source address before anything else.
pub(crate) fn check_ban(state: &State, parts: &Parts) -> Result<(), ApiError> {
    match peer(parts) {
        Some(p) if state.bans.is_banned(p.ip(), Instant::now()) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "banned",
            "too many failed attempts from this address; try again later",
        )),
        _ => Ok(()),
    }
}

/// The caller of `parts`, if its token is valid.
pub(crate) fn authenticate(state: &State, parts: &Parts) -> Result<Caller, ApiError> {
    check_ban(state, parts)?;
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // A console session may read too (the audio player sends its cookie,
    // never a token); it sees what its viewer sees in the console.
    if presented.is_none() {
        if let Some(c) = session_caller(state, &parts.headers) {
            return Ok(c);
        }
    }
    if let Some(t) = presented.and_then(|p| state.tokens.find(p)) {
        return Ok(Caller {
            scope: t.scope,
            account: t.account,
        });
    }
    if let Some(p) = peer(parts) {
        Metrics::add(&state.metrics.auth_failures, 1);
        let outcome = state.bans.record_failure(p.ip(), Instant::now());
        tracing::info!(ip = %p.ip(), token_given = presented.is_some(), ?outcome, "HTTP request refused: no valid token");
        if outcome == FailureOutcome::BannedNow {
            Metrics::add(&state.metrics.bans, 1);
            tracing::warn!(ip = %p.ip(), duration = ?state.bans.ban_duration(), "address banned after repeated failures");
        }
    }
    Err(unauthorized())
}

/// The API caller a console session stands for (read scope; a customer's
/// limited to its account).
pub(crate) fn session_caller(state: &State, headers: &HeaderMap) -> Option<Caller> {
    let id = session::cookie(headers, session::COOKIE)?;
    let s = state.sessions.get(id, Instant::now())?;
    Some(Caller {
        scope: Scope::Read,
        account: s.who.account().map(str::to_string),
    })
}

impl FromRequestParts<Arc<State>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, parts)
    }
}
