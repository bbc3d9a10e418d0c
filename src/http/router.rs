//! The one place the HTTP routes are assembled: every handler module's
//! routes, and the layers that bound every request (body size, time to
//! answer, requests at once) around them.

use super::{console, events, metrics, openapi, routes, ApiError, State};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub(super) fn router(state: Arc<State>) -> Router {
    let cfg = state.cfg.clone();
    let api = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/v1/conversations", get(routes::conversations))
        .route("/v1/conversations/{id}", get(routes::conversation))
        .route("/v1/conversations/{id}/audio", get(routes::audio))
        .route("/v1/advisors", get(routes::advisors))
        .route("/v1/rejections", get(routes::rejections))
        .route("/v1/crm/snapshots", get(routes::crm_snapshots))
        .route("/v1/accounts", get(routes::accounts))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .merge(console::router())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource answers GET and HEAD",
            )
        })
        // One semaphore for every route (a plain ConcurrencyLimitLayer
        // would be cloned per route by the router).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            cfg.max_concurrent_requests,
        ));
    // Outside the request limit: a long-poll holds its request for its
    // whole wait, and idle followers must not starve other requests.
    let feed = Router::new()
        .route("/v1/events", get(events::poll))
        .route("/v1/events/stream", get(events::stream));
    feed.merge(api)
        .layer(middleware::from_fn_with_state(cfg, bound))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses bodies past `http.max_body_bytes` and answers within
/// `http.request_timeout` (the head of the response; audio streams on;
/// the event feed is bounded by its own `wait`).
async fn bound(
    axum::extract::State(cfg): axum::extract::State<crate::config::HttpConfig>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {} bytes", cfg.max_body_bytes),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, cfg.max_body_bytes));
    let req = Request::from_parts(parts, body);
    // The event feed waits on purpose (bounded by http.max_wait).
    if req.uri().path().starts_with("/v1/events") {
        return next.run(req).await;
    }
    match tokio::time::timeout(cfg.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the server took too long to answer; try again",
        )
        .into_response(),
    }
}
