//! The event feed over HTTP: a long-poll (`GET /v1/events`) that answers
//! at once when events exist after `after`, else as soon as the writer
//! commits the next one (the writer's commit signal wakes it; no polling),
//! else after `wait`; and the same as Server-Sent Events
//! (`GET /v1/events/stream`, `id:` = seq, resumed from `Last-Event-ID`).
//! Both end when the server shuts down.

use super::auth::Caller;
use super::{ApiError, State};
use crate::store::events::{self, Event};
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderMap};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    /// Events with a greater seq (default 0: from the oldest kept).
    after: Option<i64>,
    /// 1 to 1000 (default 100).
    limit: Option<u32>,
    /// `30s`, `2m` or plain seconds.
    wait: Option<String>,
    /// Only this account (an account token: its own).
    account: Option<String>,
}

fn parse_wait(s: &str) -> Result<Duration, ApiError> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(s))
        .map_err(|_| ApiError::bad_request(format!("wait '{s}' is not a duration such as 30s")))
}

/// Events after `after` for `account`, waiting for a commit until
/// `deadline` when there are none yet.
async fn next_events(
    state: &Arc<State>,
    after: i64,
    account: Option<String>,
    limit: u32,
    deadline: Instant,
) -> Result<Vec<Event>, ApiError> {
    let mut commits = state.commits.clone();
    let mut shutdown = state.shutdown.clone();
    loop {
        // Marked seen before reading: a commit after this wakes us below.
        commits.borrow_and_update();
        let acc = account.clone();
        let found = state
            .read(move |c| events::after(c, after, acc.as_deref(), limit))
            .await?;
        if !found.is_empty() || Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(found);
        }
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    // The writer has stopped: nothing more will come.
                    return Ok(Vec::new());
                }
            }
            _ = shutdown.wait_for(|s| *s) => return Ok(Vec::new()),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[utoipa::path(get, path = "/v1/events", params(FeedQuery), responses((status = 200, description = "events after `after`, at once or on the next commit or after `wait`", body = super::schema::EventPage), (status = 400, description = "bad parameter", body = super::schema::ErrorBody), (status = 401, description = "no valid token", body = super::schema::ErrorBody), (status = 403, description = "token may not see this, or address banned", body = super::schema::ErrorBody)))]
pub(super) async fn poll(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = super::query(q)?;
    let account = caller.scope_account(q.account)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let wait = match &q.wait {
        Some(w) => parse_wait(w)?,
        None => Duration::ZERO,
    };
    if wait > state.cfg.max_wait {
        return Err(ApiError::bad_request(format!(
            "wait may be at most {} (http.max_wait)",
            humantime::format_duration(state.cfg.max_wait)
        )));
    }
    let after = q.after.unwrap_or(0);
    let found = next_events(&state, after, account, limit, Instant::now() + wait).await?;
    let next_after = found.last().map_or(after, |e| e.seq);
    Ok(Json(json!({"items": found, "next_after": next_after})))
}

/// Where an SSE client resumes: `Last-Event-ID` (a reconnect) wins over
/// `after` (the first connection).
fn resume_point(headers: &HeaderMap, after: Option<i64>) -> Result<i64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID is not an event seq")),
        None => Ok(after.unwrap_or(0)),
    }
}

/// How long an SSE stream waits before checking again without a commit
/// (a keep-alive comment is sent meanwhile).
const STREAM_WAIT: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/v1/events/stream", params(FeedQuery, ("Last-Event-ID" = Option<i64>, Header, description = "resume after this seq (wins over `after`)")), responses((status = 200, description = "Server-Sent Events: `id:` seq, `event:` type, `data:` the event as in /v1/events", content_type = "text/event-stream"), (status = 401, description = "no valid token", body = super::schema::ErrorBody), (status = 403, description = "token may not see this, or address banned", body = super::schema::ErrorBody)))]
pub(super) async fn stream(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<
    (
        [(header::HeaderName, &'static str); 1],
        Sse<impl Stream<Item = Result<sse::Event, Infallible>>>,
    ),
    ApiError,
> {
    let q = super::query(q)?;
    let account = caller.scope_account(q.account)?;
    let after = resume_point(&headers, q.after)?;
    struct Feed {
        state: Arc<State>,
        account: Option<String>,
        after: i64,
        queued: VecDeque<Event>,
        greeted: bool,
    }
    let feed = Feed {
        state,
        account,
        after,
        queued: VecDeque::new(),
        greeted: false,
    };
    let events = stream::unfold(feed, |mut f| async move {
        if !f.greeted {
            // Sent at once so the client has the response head (and
            // knows the stream is live) before the first event exists.
            f.greeted = true;
            let hello = sse::Event::default()
                .retry(Duration::from_secs(3))
                .comment("depot event stream");
            return Some((Ok(hello), f));
        }
        loop {
            if let Some(e) = f.queued.pop_front() {
                let data = serde_json::to_string(&e).unwrap_or_default();
                let ev = sse::Event::default()
                    .id(e.seq.to_string())
                    .event(e.kind.clone())
                    .data(data);
                return Some((Ok(ev), f));
            }
            if *f.state.shutdown.borrow() {
                return None;
            }
            let found = next_events(
                &f.state,
                f.after,
                f.account.clone(),
                DEFAULT_LIMIT,
                Instant::now() + STREAM_WAIT,
            )
            .await;
            match found {
                Ok(found) => {
                    if let Some(last) = found.last() {
                        f.after = last.seq;
                    }
                    f.queued.extend(found);
                }
                // The cause is logged; the client reconnects with its Last-Event-ID.
                Err(_) => return None,
            }
        }
    });
    Ok((
        [(header::CACHE_CONTROL, "no-cache")],
        Sse::new(events).keep_alive(KeepAlive::default()),
    ))
}
