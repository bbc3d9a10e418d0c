//! The JSON API's handlers: each extracts its typed input, reads the store
//! through [`State::read`] and answers with the store's serialisers.

use super::auth::Caller;
use super::schema::*;
use super::{query, ApiError, State};
use crate::store::{api, queries, snapshots};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use utoipa::IntoParams;

#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "alive", body = Health)))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, description = "ready", body = Readiness), (status = 503, description = "not ready", body = Readiness)))]
pub(super) async fn readyz(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
) -> Response {
    let stopping = *state.shutdown.borrow();
    let db = state
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM journal WHERE state = 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await;
    let free = rustix::fs::statvfs(&state.data_dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let disk_ok = free.is_some_and(|f| f >= state.min_free_disk);
    let ready = !stopping && db.is_ok() && disk_ok;
    let body = json!({
        "ready": ready,
        "database": db.is_ok(),
        "accepting": !stopping,
        "pending": db.ok(),
        "disk_free_bytes": free,
        "disk": disk_ok,
    });
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(body)).into_response()
}

/// Largest page a client may ask for.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only this account (an account token: its own).
    account: Option<String>,
    /// `received_at` on or after (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
    /// `received_at` before.
    until: Option<String>,
    picked: Option<bool>,
    /// ingested, awaiting_metadata or superseded.
    status: Option<String>,
    /// An advisor id or e-mail.
    advisor: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/conversations", params(ListQuery), responses((status = 200, description = "a page, newest first", body = ConversationPage), (status = 400, description = "bad filter", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn conversations(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    if let Some(s) = &q.status {
        if !["ingested", "awaiting_metadata", "superseded"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status '{s}' is not one of ingested, awaiting_metadata, superseded"
            )));
        }
    }
    let before_id = match &q.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("cursor is not one this server gave"))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = api::PageFilter {
        account: caller.scope_account(q.account)?,
        since: q.since,
        until: q.until,
        picked: q.picked,
        status: q.status,
        advisor: q.advisor,
        before_id,
        limit,
    };
    let (items, next) = state
        .read(move |c| api::conversation_page(c, &filter))
        .await?;
    Ok(Json(
        json!({"items": items, "next_cursor": next.map(|n| n.to_string())}),
    ))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

#[utoipa::path(get, path = "/v1/conversations/{id}", params(("id" = i64, Path, description = "conversation id")), responses((status = 200, description = "the conversation with its history", body = Conversation), (status = 404, description = "no such conversation (or another account's)", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn conversation(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let found = state
        .read(move |c| {
            let Some(mut conv) = queries::conversation_by_id(c, id)? else {
                return Ok(None);
            };
            let account = conv["account"].as_str().unwrap_or_default().to_string();
            let path = conv["path"].as_str().unwrap_or_default().to_string();
            let history = api::history(c, &account, &path, id)?;
            conv["history"] = Value::Array(history);
            Ok(Some((account, conv)))
        })
        .await?;
    match found {
        Some((account, conv)) if caller.sees(&account) => Ok(Json(conv)),
        _ => Err(ApiError::not_found()),
    }
}

fn content_type(format: Option<&str>) -> &'static str {
    match format {
        Some("mp3") => "audio/mpeg",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// Does an `If-None-Match` header name `etag` (or `*`)?
fn matches_etag(header: &HeaderValue, etag: &str) -> bool {
    header.to_str().is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

/// The archived bytes, streamed from disk (Range and HEAD by tower-http's
/// `ServeFile`), tagged with the recording's sha256.
#[utoipa::path(get, path = "/v1/conversations/{id}/audio", params(("id" = i64, Path, description = "conversation id")), responses((status = 200, description = "the archived recording (audio/mpeg, audio/wav or application/octet-stream by probed format); ETag is its sha256", content_type = "audio/mpeg"), (status = 206, description = "the requested range"), (status = 304, description = "If-None-Match matched"), (status = 404, description = "no such conversation, or not archived", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn audio(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let found = state.read(move |c| api::audio(c, id)).await?;
    let Some(a) = found.filter(|a| caller.sees(&a.account)) else {
        return Err(ApiError::not_found());
    };
    let Some(file) = a.archive_path else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_archived",
            "this conversation has no archived audio yet",
        ));
    };
    let etag = format!("\"{}\"", a.sha256);
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::internal)?;
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|h| matches_etag(h, &etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    // A Range with If-Range naming another version gets the whole file.
    let (mut parts, body) = req.into_parts();
    if parts
        .headers
        .get(header::IF_RANGE)
        .is_some_and(|v| v.as_bytes() != etag.as_bytes() && v.as_bytes().starts_with(b"\""))
    {
        parts.headers.remove(header::RANGE);
    }
    parts.headers.remove(header::IF_RANGE);
    parts.method = match parts.method {
        Method::HEAD => Method::HEAD,
        _ => Method::GET,
    };
    let served = tower_http::services::ServeFile::new(&file)
        .oneshot(Request::from_parts(parts, body))
        .await
        .map_err(ApiError::internal)?;
    if served.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::internal(format!(
            "archived audio of conversation {id} is missing at {file}"
        )));
    }
    let mut resp = served.map(Body::new);
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag_value);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(a.format.as_deref())),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(resp)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountQuery {
    /// Only this account (an account token: its own).
    account: Option<String>,
    /// On or after (rejections).
    since: Option<String>,
}

#[utoipa::path(get, path = "/v1/advisors", params(AccountQuery), responses((status = 200, description = "advisors", body = Vec<Advisor>), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn advisors(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    q: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.scope_account(query(q)?.account)?;
    let rows = state
        .read(move |c| queries::advisors(c, account.as_deref()))
        .await?;
    Ok(Json(Value::Array(rows)))
}

#[utoipa::path(get, path = "/v1/rejections", params(AccountQuery), responses((status = 200, description = "open rejections", body = Vec<Rejection>), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn rejections(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    q: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let account = caller.scope_account(q.account)?;
    let since = q.since;
    let rows = state
        .read(move |c| queries::rejections(c, account.as_deref(), since.as_deref()))
        .await?;
    Ok(Json(Value::Array(rows)))
}

#[utoipa::path(get, path = "/v1/crm/snapshots", params(AccountQuery), responses((status = 200, description = "CRM snapshots", body = Vec<CrmSnapshot>), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn crm_snapshots(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
    q: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let account = caller.scope_account(query(q)?.account)?;
    let rows = state
        .read(move |c| snapshots::snapshots(c, account.as_deref()))
        .await?;
    let rows = rows
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "account": s.account, "path": s.path, "file": s.file, "rows": s.rows,
                "duplicate_keys": s.duplicate_keys, "loaded_at": s.loaded_at, "latest": s.latest,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// Each account in force with its health: conversations, open rejections,
/// deposits waiting for the pipeline, the last arrival.
#[utoipa::path(get, path = "/v1/accounts", responses((status = 200, description = "accounts in force with their health", body = Vec<AccountSummary>), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "token may not see this, or address banned", body = ErrorBody)))]
pub(super) async fn accounts(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let names: Vec<String> = state
        .accounts
        .borrow()
        .keys()
        .filter(|n| caller.sees(n))
        .cloned()
        .collect();
    let rows = state
        .read(move |c| {
            let mut out = Vec::new();
            for name in names {
                let (conversations, last): (i64, Option<String>) = c.query_row(
                    "SELECT count(*), max(received_at) FROM conversations WHERE account = ?1 AND status != 'superseded'",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let open: i64 = c.query_row(
                    "SELECT count(*) FROM rejections WHERE account = ?1 AND cleared_at IS NULL",
                    [&name],
                    |r| r.get(0),
                )?;
                let pending: i64 = c.query_row(
                    "SELECT count(*) FROM journal WHERE account = ?1 AND state = 'pending'",
                    [&name],
                    |r| r.get(0),
                )?;
                out.push(json!({
                    "name": name, "conversations": conversations, "open_rejections": open,
                    "pending": pending, "last_received_at": last,
                }));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(rows)))
}
