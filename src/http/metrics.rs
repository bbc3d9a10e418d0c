//! `GET /metrics`: the Prometheus exposition (OpenMetrics text) of the same
//! numbers `depot stats` prints: the process's in-memory counters
//! ([`crate::metrics::Metrics`], which `depot stats` reads as saved) and the
//! totals the database holds ([`crate::metrics::stats::collect`]), plus queue
//! and CRM gauges. Built fresh on each scrape from those sources, so no
//! second set of counters can drift from the first. Labels are only
//! statuses, stages and configured account names (all bounded).

use super::auth::authenticate;
use super::{ApiError, State};
use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use rusqlite::Connection;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// What the database says, read in one go off the async threads.
struct DbFigures {
    stats: crate::metrics::stats::Stats,
    oldest_pending_age: f64,
    /// (account, rows, age in seconds) of each account's latest snapshot.
    crm: Vec<(String, i64, f64)>,
    last_event_seq: i64,
    /// Each endpoint's delivery state and parked count.
    webhooks: Vec<(crate::store::webhooks::Cursor, i64)>,
}

fn age_seconds(at: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| {
            (chrono::Utc::now()
                .signed_duration_since(t)
                .num_milliseconds() as f64
                / 1000.0)
                .max(0.0)
        })
        .unwrap_or(0.0)
}

fn db_figures(c: &Connection) -> crate::store::Result<DbFigures> {
    let stats = crate::metrics::stats::collect(c)?;
    let oldest: Option<String> = c.query_row(
        "SELECT min(completed_at) FROM journal WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    let mut st = c.prepare(
        "SELECT s.account, s.rows, s.loaded_at FROM crm_latest l JOIN crm_snapshots s ON s.id = l.snapshot_id",
    )?;
    let crm = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(a, rows, at)| (a, rows, age_seconds(&at)))
        .collect();
    let last_event_seq =
        c.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
    let webhooks = crate::store::webhooks::all(c)?;
    Ok(DbFigures {
        webhooks,
        stats,
        oldest_pending_age: oldest.as_deref().map_or(0.0, age_seconds),
        crm,
        last_event_seq,
    })
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn gauge_f(value: f64) -> Gauge<f64, AtomicU64> {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    g
}

fn by(label: &str, map: &std::collections::BTreeMap<String, u64>) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    for (k, v) in map {
        f.get_or_create(&vec![(label.to_string(), k.clone())])
            .set(*v as i64);
    }
    f
}

/// The whole exposition for one scrape.
fn render(state: &State, db: DbFigures) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("depot");
    reg.register(
        "build",
        "depot's version",
        Info::new(vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]),
    );
    let help = |name: &str| match name {
        "sessions" => "SFTP sessions opened",
        "bytes_in" => "bytes received over SFTP",
        "bytes_out" => "bytes sent over SFTP",
        "completions" => "uploads completed (journaled)",
        "conversations" => "conversations stored by this process",
        "rejections" => "deposits rejected by this process",
        "auth_failures" => "failed logins (SSH) and refused tokens (HTTP)",
        "bans" => "source addresses banned",
        _ => "counter",
    };
    for (name, value) in state.metrics.snapshot() {
        let (metric, unit) = match name {
            "bytes_in" => ("received", Some(Unit::Bytes)),
            "bytes_out" => ("sent", Some(Unit::Bytes)),
            "sessions" => ("sessions", None),
            "conversations" => ("conversations_stored", None),
            "rejections" => ("rejections_stored", None),
            other => (other, None),
        };
        match unit {
            Some(u) => reg.register_with_unit(metric, help(name), u, counter(value)),
            None => reg.register(metric, help(name), counter(value)),
        }
    }
    let s = &db.stats;
    reg.register(
        "conversations",
        "conversations in the database, by status",
        by("status", &s.conversations),
    );
    reg.register(
        "rejections",
        "rejections in the database, by stage",
        by("stage", &s.rejections),
    );
    reg.register(
        "open_rejections",
        "rejections not yet cleared by a successful re-upload, by stage",
        by("stage", &s.open_rejections),
    );
    reg.register(
        "deposits",
        "journaled deposits in the database, by source",
        by("source", &s.completions),
    );
    reg.register(
        "pending_deposits",
        "journal rows the pipeline has not finished",
        gauge(s.pending as i64),
    );
    reg.register_with_unit(
        "oldest_pending_age",
        "age of the oldest journal row not yet finished",
        Unit::Seconds,
        gauge_f(db.oldest_pending_age),
    );
    reg.register("advisors", "advisors known", gauge(s.advisors as i64));
    reg.register(
        "picked_conversations",
        "ingested conversations picked for analysis",
        gauge(s.picked as i64),
    );
    let accounts = state.accounts.borrow().clone();
    let rows = Family::<Labels, Gauge>::default();
    let age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (account, n, secs) in db.crm.iter().filter(|(a, _, _)| accounts.contains_key(a)) {
        let l = vec![("account".to_string(), account.clone())];
        rows.get_or_create(&l).set(*n);
        age.get_or_create(&l).set(*secs);
    }
    reg.register(
        "crm_snapshot_rows",
        "rows of each account's latest CRM snapshot",
        rows,
    );
    reg.register_with_unit(
        "crm_snapshot_age",
        "age of each account's latest CRM snapshot",
        Unit::Seconds,
        age,
    );
    reg.register(
        "accounts",
        "accounts in force",
        gauge(accounts.len() as i64),
    );
    reg.register(
        "events_last_seq",
        "seq of the newest event in the feed",
        gauge(db.last_event_seq),
    );
    let delivered = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    let lag = Family::<Labels, Gauge>::default();
    let parked = Family::<Labels, Gauge>::default();
    for name in &state.webhooks {
        let l = vec![("endpoint".to_string(), name.clone())];
        let (cur, n_parked) = db
            .webhooks
            .iter()
            .find(|(c, _)| &c.name == name)
            .cloned()
            .unwrap_or_default();
        delivered
            .get_or_create(&l)
            .inc_by(cur.delivered.max(0) as u64);
        failures
            .get_or_create(&l)
            .inc_by(cur.failures.max(0) as u64);
        lag.get_or_create(&l)
            .set((db.last_event_seq - cur.delivered_seq).max(0));
        parked.get_or_create(&l).set(n_parked);
    }
    reg.register(
        "webhook_deliveries",
        "events delivered to each webhook endpoint",
        delivered,
    );
    reg.register(
        "webhook_failures",
        "failed delivery attempts per webhook endpoint",
        failures,
    );
    reg.register(
        "webhook_lag_events",
        "events in the feed after each endpoint's last delivered one",
        lag,
    );
    reg.register("webhook_parked", "events each endpoint gave up on", parked);
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics document,
/// for scrapers and tools that do not ask for OpenMetrics: no `# UNIT` or
/// `# EOF`, counter families named with their `_total` suffix, info
/// metrics as gauges.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out += &format!("# HELP {name} {text}\n");
            }
            out += &format!("# TYPE {name} {kind}\n");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out += line;
        out.push('\n');
    }
    out
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format, or OpenMetrics when asked for", content_type = "text/plain"), (status = 401, description = "no valid token", body = super::schema::ErrorBody), (status = 403, description = "token may not see this, or address banned", body = super::schema::ErrorBody)))]
pub(super) async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    if state.cfg.metrics_public {
        super::auth::check_ban(&state, &parts)?;
    } else {
        authenticate(&state, &parts)?.require_admin()?;
    }
    let db = state.read(db_figures).await?;
    let body = render(&state, db).map_err(ApiError::internal)?;
    let wants_open_metrics = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    Ok(match wants_open_metrics {
        true => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        false => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            to_prometheus_text(&body),
        )
            .into_response(),
    })
}
