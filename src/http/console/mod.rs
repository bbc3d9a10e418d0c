//! The web console: server-rendered HTML pages over the same data as the
//! JSON API, for customers (their own account, logged in with the account
//! name and SFTP password) and operators (`[[http.admins]]`, every
//! account). Pages are compiled askama templates with one stylesheet and
//! no script; the only state-changing forms (log-in, log-out) carry a CSRF
//! token, filter forms are plain GETs. Another account's record answers
//! 404, exactly as a missing one does.

mod chart;
mod conversation;
mod conversations;
mod frame;
mod login;
mod overview;
mod records;
mod rejections;
pub(crate) mod session;

use super::{ApiError, State};
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use session::{Session, Who};
use std::sync::Arc;
use std::time::Instant;

const STYLESHEET: &str = include_str!("console.css");

pub(crate) fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", axum::routing::post(login::logout))
        .route("/conversations", get(conversations::conversations))
        .route("/conversations/{id}", get(conversation::conversation))
        .route("/rejections", get(rejections::rejections))
        .route("/advisors", get(records::advisors))
        .route("/crm", get(records::crm))
        .route("/accounts", get(records::accounts))
        .route("/console.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A logged-in viewer of a console page.
pub(crate) struct Viewer {
    pub(crate) session: Session,
}

impl Viewer {
    /// May this viewer see a record of `account`?
    pub(crate) fn sees(&self, account: &str) -> bool {
        self.session.who.account().is_none_or(|a| a == account)
    }

    pub(crate) fn is_operator(&self) -> bool {
        matches!(self.session.who, Who::Operator(_))
    }
}

/// What a page answers when it cannot show itself.
pub(crate) enum PageError {
    /// Not logged in (or the session ended): to the log-in page.
    Login,
    Status(StatusCode, String),
}

impl PageError {
    pub(crate) fn not_found() -> Self {
        PageError::Status(
            StatusCode::NOT_FOUND,
            "There is nothing here, or it belongs to another account.".into(),
        )
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Status(e.status, e.message)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        ApiError::internal(e).into()
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login => Redirect::to("/login").into_response(),
            PageError::Status(status, message) => {
                let page = ErrorPage {
                    status: status.as_u16(),
                    message,
                };
                match page.render() {
                    Ok(body) => (status, no_store(), Html(body)).into_response(),
                    Err(_) => (status, "error").into_response(),
                }
            }
        }
    }
}

/// Pages show one viewer's data: never kept by a shared cache, never
/// framed, and (having no script) allowed to load only their stylesheet
/// and recordings from this server.
fn no_store() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; media-src 'self'; img-src 'self'; connect-src 'self'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
    ]
}

/// A rendered page.
pub(crate) fn page(t: &impl Template) -> Result<Response, PageError> {
    Ok((no_store(), Html(t.render()?)).into_response())
}

impl FromRequestParts<Arc<State>> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        super::auth::check_ban(state, parts).map_err(PageError::from)?;
        let id = session::cookie(&parts.headers, session::COOKIE).ok_or(PageError::Login)?;
        let session = state
            .sessions
            .get(id, Instant::now())
            .ok_or(PageError::Login)?;
        Ok(Viewer { session })
    }
}

/// Is the request from behind a TLS-terminating proxy? Then cookies are
/// marked Secure. (Only ever makes a cookie stricter, so the header needs
/// no trust.)
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}
