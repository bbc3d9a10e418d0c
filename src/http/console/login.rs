//! Log-in and log-out. A customer logs in with its account name and SFTP
//! password, an operator with a `[[http.admins]]` name (tried first) and
//! password. Both go through the SSH front's password checker (same
//! argon2 bound, one check at a time per address) and every failure counts
//! towards the address's ban exactly as a failed SSH log-in does. An
//! account without a password (keys only) cannot log in: it pays for a
//! decoy check and fails like a wrong password, so the answer says
//! nothing about which accounts exist. The log-in form is protected by a
//! double-submit token (cookie + hidden field); log-out by the session's
//! CSRF token.

use super::session::{self, same_secret, Who};
use super::{no_store, over_tls, PageError, Viewer};
use crate::http::State;
use crate::metrics::Metrics;
use crate::sftp::auth::{ip_allowed, FailureOutcome};
use askama::Template;
use axum::extract::{ConnectInfo, Form};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The log-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "depot_login";

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    name: String,
    message: Option<String>,
}

fn cookie_attrs(headers: &HeaderMap) -> &'static str {
    if over_tls(headers) {
        "; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; HttpOnly; SameSite=Strict"
    }
}

/// The log-in page with a fresh form token.
fn login_page(
    headers: &HeaderMap,
    status: StatusCode,
    name: String,
    message: Option<String>,
) -> Result<Response, PageError> {
    let csrf = session::random_token();
    let body = LoginPage {
        csrf: csrf.clone(),
        name,
        message,
    }
    .render()?;
    let cookie = format!(
        "{LOGIN_COOKIE}={csrf}; Path=/login; Max-Age=3600{}",
        cookie_attrs(headers)
    );
    let mut resp = (status, no_store(), Html(body)).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(crate::http::ApiError::internal)?,
    );
    Ok(resp)
}

pub(crate) async fn form(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if crate::http::auth::session_caller(&state, &headers).is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    login_page(&headers, StatusCode::OK, String::new(), None)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

fn banned() -> PageError {
    PageError::Status(
        StatusCode::FORBIDDEN,
        "Too many failed log-ins from this address. Try again later.".into(),
    )
}

pub(crate) async fn submit(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    let ip = peer.ip();
    if state.bans.is_banned(ip, Instant::now()) {
        return Err(banned());
    }
    let form_ok = session::cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &f.csrf));
    if !form_ok {
        return login_page(
            &headers,
            StatusCode::BAD_REQUEST,
            f.name,
            Some("The log-in form had expired. Please log in again.".into()),
        );
    }
    let name = f.name.trim().to_string();
    let (who, hash) = match state.cfg.admins.iter().find(|a| a.name == name) {
        Some(a) => (Who::Operator(name.clone()), Some(a.password_hash.clone())),
        None => {
            let accounts = state.accounts.borrow().clone();
            let hash = accounts
                .get(&name)
                .filter(|a| ip_allowed(a, ip))
                .and_then(|a| a.password_hash.clone());
            (Who::Customer(name.clone()), hash)
        }
    };
    let bans = state.bans.clone();
    let verdict = state
        .passwords
        .verify(ip, hash.as_deref(), &f.password, || {
            !bans.is_banned(ip, Instant::now())
        })
        .await;
    match verdict {
        None => Err(banned()),
        Some(true) => {
            let id = state.sessions.create(who.clone(), Instant::now());
            tracing::info!(user = %who.name(), operator = matches!(who, Who::Operator(_)), ip = %ip, "console log-in");
            let attrs = cookie_attrs(&headers);
            let max_age = state.sessions.timeout().as_secs();
            let mut resp = Redirect::to("/").into_response();
            for c in [
                format!("{}={id}; Path=/; Max-Age={max_age}{attrs}", session::COOKIE),
                format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0{attrs}"),
            ] {
                resp.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_str(&c).map_err(crate::http::ApiError::internal)?,
                );
            }
            Ok(resp)
        }
        Some(false) => {
            Metrics::add(&state.metrics.auth_failures, 1);
            let outcome = state.bans.record_failure(ip, Instant::now());
            tracing::info!(user = %name, ip = %ip, ?outcome, "console log-in refused");
            if outcome == FailureOutcome::BannedNow {
                Metrics::add(&state.metrics.bans, 1);
                tracing::warn!(ip = %ip, duration = ?state.bans.ban_duration(), "address banned after repeated failures");
                return Err(banned());
            }
            login_page(
                &headers,
                StatusCode::UNAUTHORIZED,
                name,
                Some("Wrong account name or password.".into()),
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    csrf: String,
}

pub(crate) async fn logout(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Result<Response, PageError> {
    if !same_secret(&viewer.session.csrf, &f.csrf) {
        return Err(PageError::Status(
            StatusCode::BAD_REQUEST,
            "This log-out form is not from your session; use the Log out button.".into(),
        ));
    }
    if let Some(id) = session::cookie(&headers, session::COOKIE) {
        state.sessions.end(id);
    }
    tracing::info!(user = %viewer.session.who.name(), "console log-out");
    let c = format!(
        "{}=; Path=/; Max-Age=0{}",
        session::COOKIE,
        cookie_attrs(&headers)
    );
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&c).map_err(crate::http::ApiError::internal)?,
    );
    Ok(resp)
}
