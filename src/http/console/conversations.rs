//! The conversations list: filters as plain GET parameters, one page of
//! rows at a time, newest first.

use super::frame::{
    advisor_name, day_start_utc, encode, local, s, scope, tz_of, zones, Chrome, St,
};
use super::{page, PageError, Viewer};
use crate::store::queries;
use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use chrono::{Duration as Days, NaiveDate};
use chrono_tz::Tz;
use rusqlite::types::Value;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Rows per page of the conversations list.
const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    account: Option<String>,
    day: Option<String>,
    advisor: Option<String>,
    reason: Option<String>,
    channel: Option<String>,
    picked: Option<String>,
    before: Option<String>,
}

pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) account: String,
    pub(crate) received: String,
    pub(crate) started: String,
    pub(crate) advisor: String,
    pub(crate) channel: String,
    pub(crate) reason: String,
    pub(crate) picked: bool,
    pub(crate) status: String,
    pub(crate) flags: usize,
}

pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) selected: bool,
}

#[derive(Template)]
#[template(path = "console/conversations.html")]
struct ConversationsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    day: String,
    reason: String,
    channel: String,
    picked: String,
    advisors: Vec<Choice>,
    next: Option<String>,
    first: Option<String>,
    error: Option<String>,
}

fn to_row(c: &Json, zones: &BTreeMap<String, Tz>) -> Row {
    let account = s(&c["account"]);
    let tz = zones.get(&account).copied().unwrap_or(chrono_tz::UTC);
    let m = &c["metadata"];
    let reason = match m["contact_reason_label"].as_str() {
        Some(l) => l.to_string(),
        None => s(&m["contact_reason"]),
    };
    Row {
        id: c["id"].as_i64().unwrap_or_default(),
        received: local(&s(&c["received_at"]), tz),
        started: c["started_at"]
            .as_str()
            .map(|t| local(t, tz))
            .unwrap_or_default(),
        advisor: advisor_name(&c["advisor"]),
        channel: s(&m["channel"]),
        reason,
        picked: c["picked"].as_bool().unwrap_or(false),
        status: s(&c["status"]).replace('_', " "),
        flags: c["flags"].as_array().map_or(0, Vec::len),
        account,
    }
}

pub(crate) async fn conversations(
    axum::extract::State(state): St,
    v: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let account = scope(&v, q.account.clone())?;
    let tz = account
        .as_deref()
        .map(|a| tz_of(&state, a))
        .unwrap_or(chrono_tz::UTC);
    let nonempty = |o: &Option<String>| o.clone().filter(|x| !x.trim().is_empty());
    let mut error = None;
    let mut sql = format!(
        "{} WHERE c.status != 'superseded'",
        queries::CONVERSATION_SELECT
    );
    let mut args: Vec<Value> = Vec::new();
    let mut add = |cond: &str, v: Value, sql: &mut String| {
        args.push(v);
        *sql += &cond.replace('?', &format!("?{}", args.len()));
    };
    if let Some(a) = &account {
        add(" AND c.account = ?", a.clone().into(), &mut sql);
    }
    let day = nonempty(&q.day);
    if let Some(d) = &day {
        match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => {
                add(
                    " AND c.received_at >= ?",
                    day_start_utc(d, tz).into(),
                    &mut sql,
                );
                add(
                    " AND c.received_at < ?",
                    day_start_utc(d + Days::days(1), tz).into(),
                    &mut sql,
                );
            }
            Err(_) => {
                error = Some(format!(
                    "'{d}' is not a day like 2026-02-11; showing all days."
                ))
            }
        }
    }
    let advisor = nonempty(&q.advisor).and_then(|a| a.parse::<i64>().ok());
    if let Some(a) = advisor {
        add(" AND c.advisor_id = ?", a.into(), &mut sql);
    }
    let reason = nonempty(&q.reason);
    if let Some(r) = &reason {
        add(
            " AND (json_extract(c.metadata, '$.contact_reason') = ? OR json_extract(c.metadata, '$.contact_reason_label') = ?)",
            r.clone().into(),
            &mut sql,
        );
    }
    let channel = nonempty(&q.channel);
    if let Some(ch) = &channel {
        add(
            " AND json_extract(c.metadata, '$.channel') = ?",
            ch.clone().into(),
            &mut sql,
        );
    }
    let picked = nonempty(&q.picked);
    match picked.as_deref() {
        Some("yes") => add(" AND c.picked = ?", 1i64.into(), &mut sql),
        Some("no") => add(" AND c.picked = ?", 0i64.into(), &mut sql),
        _ => {}
    }
    if let Some(b) = nonempty(&q.before).and_then(|b| b.parse::<i64>().ok()) {
        add(" AND c.id < ?", b.into(), &mut sql);
    }
    sql += &format!(" ORDER BY c.id DESC LIMIT {}", PAGE + 1);
    let acc = account.clone();
    let (items, advisors) = state
        .read(move |c| {
            let mut st = c.prepare(&sql)?;
            let items = st
                .query_map(rusqlite::params_from_iter(args), queries::conversation)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let advisors = match &acc {
                Some(a) => queries::advisors(c, Some(a))?,
                None => Vec::new(),
            };
            Ok((items, advisors))
        })
        .await?;
    let zones = zones(&state);
    let mut rows: Vec<Row> = items.iter().map(|c| to_row(c, &zones)).collect();
    let next = if rows.len() > PAGE {
        rows.truncate(PAGE);
        rows.last().map(|r| {
            let mut link = format!("?before={}", r.id);
            for (k, val) in [
                ("account", &q.account),
                ("day", &day),
                ("advisor", &q.advisor),
                ("reason", &reason),
                ("channel", &channel),
                ("picked", &picked),
            ] {
                if let Some(val) = val.as_ref().filter(|x| !x.is_empty()) {
                    link += &format!("&{k}={}", encode(val));
                }
            }
            link
        })
    } else {
        None
    };
    let first = q.before.as_ref().map(|_| {
        let mut link = String::from("?");
        if let Some(a) = &q.account {
            link += &format!("account={}", encode(a));
        }
        link
    });
    let advisors = advisors
        .iter()
        .map(|a| {
            let id = a["id"].as_i64().unwrap_or_default();
            Choice {
                value: id.to_string(),
                label: format!(
                    "{} {} ({})",
                    s(&a["first_name"]),
                    s(&a["last_name"]),
                    s(&a["email"])
                ),
                selected: advisor == Some(id),
            }
        })
        .collect();
    page(&ConversationsPage {
        chrome: Chrome::new(&state, &v, "conversations", account.as_deref()),
        rows,
        day: day.unwrap_or_default(),
        reason: reason.unwrap_or_default(),
        channel: channel.unwrap_or_default(),
        picked: picked.unwrap_or_default(),
        advisors,
        next,
        first,
        error,
    })
}
