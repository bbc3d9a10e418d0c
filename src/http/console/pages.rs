//! The console's pages. Each reads through the HTTP server's read
//! connections, limits every query to the viewer's account (a customer's
//! own; an operator's choice, or all), and turns stored UTC times into the
//! account's timezone with its offset.

use super::chart::{self, DayFigures};
use super::{page, PageError, Viewer};
use crate::http::State;
use crate::store::{self, api, queries, snapshots};
use askama::Template;
use axum::extract::{Path, Query};
use axum::response::Response;
use chrono::{DateTime, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rusqlite::{types::Value, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;

type St = axum::extract::State<Arc<State>>;

/// What every page's frame shows: who is logged in, the nav, the form
/// token of the log-out button, and (operators) the account chosen.
pub struct Chrome {
    pub user: String,
    pub operator: bool,
    pub csrf: String,
    pub active: &'static str,
    /// `?account=` to carry in the nav links (operators only).
    pub account_query: String,
    /// The accounts an operator can choose from.
    pub accounts: Vec<String>,
    pub account: Option<String>,
}

impl Chrome {
    fn new(state: &State, v: &Viewer, active: &'static str, account: Option<&str>) -> Chrome {
        let operator = v.is_operator();
        let accounts = match operator {
            true => state.accounts.borrow().keys().cloned().collect(),
            false => Vec::new(),
        };
        Chrome {
            user: v.session.who.name().to_string(),
            operator,
            csrf: v.session.csrf.clone(),
            active,
            account_query: match (operator, account) {
                (true, Some(a)) => format!("?account={}", encode(a)),
                _ => String::new(),
            },
            accounts,
            account: account.map(str::to_string),
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The account a page shows: a customer's own (asking for another is a
/// 404), an operator's choice (`None`: all accounts).
fn scope(v: &Viewer, asked: Option<String>) -> Result<Option<String>, PageError> {
    let asked = asked.filter(|a| !a.is_empty());
    match (v.session.who.account(), asked) {
        (Some(own), Some(a)) if a != own => Err(PageError::not_found()),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, a) => Ok(a),
    }
}

fn tz_of(state: &State, account: &str) -> Tz {
    state
        .accounts
        .borrow()
        .get(account)
        .map(|a| a.timezone)
        .unwrap_or(chrono_tz::UTC)
}

/// All time zones by account, for pages listing several accounts.
fn zones(state: &State) -> BTreeMap<String, Tz> {
    state
        .accounts
        .borrow()
        .iter()
        .map(|(n, a)| (n.clone(), a.timezone))
        .collect()
}

/// A stored time in `tz`, with its offset (the stored text if unreadable).
pub fn local(ts: &str, tz: Tz) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => ts.to_string(),
    }
}

/// The UTC instant of local midnight starting `day`, as stored times are
/// written (so string comparison orders them).
fn day_start_utc(day: NaiveDate, tz: Tz) -> String {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    let t = tz
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight));
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn today(tz: Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive()
}

fn s(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- overview

#[derive(Deserialize)]
pub struct AccountQuery {
    account: Option<String>,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    account: String,
    timezone: String,
    today: DayFigures,
    week: DayFigures,
    chart_svg: String,
    days: Vec<DayFigures>,
    pending: i64,
    latency: String,
    crm_age: String,
}

/// Counts per local day for the `n` days from `first`.
fn daily(
    c: &Connection,
    account: &str,
    tz: Tz,
    first: NaiveDate,
    n: i64,
) -> store::Result<Vec<DayFigures>> {
    let since = day_start_utc(first, tz);
    let until = day_start_utc(first + Days::days(n), tz);
    let mut days: Vec<DayFigures> = (0..n)
        .map(|i| DayFigures::new(first + Days::days(i)))
        .collect();
    // SQLite counts per UTC minute (few rows to hand over, and every
    // offset in use is whole minutes); each minute then lands in its local day.
    let mut bump = |minute: &str, f: &mut dyn FnMut(&mut DayFigures)| {
        let Ok(t) = chrono::NaiveDateTime::parse_from_str(minute, "%Y-%m-%dT%H:%M") else {
            return;
        };
        let d = Utc.from_utc_datetime(&t).with_timezone(&tz).date_naive();
        let i = (d - first).num_days();
        if (0..n).contains(&i) {
            f(&mut days[i as usize]);
        }
    };
    let mut st = c.prepare_cached(
        "SELECT strftime('%Y-%m-%dT%H:%M', completed_at), count(*) FROM journal
         WHERE account = ?1 AND completed_at >= ?2 AND completed_at < ?3 GROUP BY 1",
    )?;
    let mut rows = st.query(rusqlite::params![account, since, until])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(1)?;
        bump(&r.get::<_, String>(0)?, &mut |d| d.deposits += n);
    }
    let mut st = c.prepare_cached(
        "SELECT strftime('%Y-%m-%dT%H:%M', received_at), count(*), sum(picked) FROM conversations
         WHERE account = ?1 AND received_at >= ?2 AND received_at < ?3 AND status != 'superseded' GROUP BY 1",
    )?;
    let mut rows = st.query(rusqlite::params![account, since, until])?;
    while let Some(r) = rows.next()? {
        let (n, picked): (i64, i64) = (r.get(1)?, r.get(2)?);
        bump(&r.get::<_, String>(0)?, &mut |d| {
            d.conversations += n;
            d.picked += picked;
        });
    }
    // One rejected deposit may have many reasons: count deposits.
    let mut st = c.prepare_cached(
        "SELECT strftime('%Y-%m-%dT%H:%M', first), count(*) FROM
         (SELECT min(at) AS first FROM rejections WHERE account = ?1 AND at >= ?2 AND at < ?3 GROUP BY path, journal_id)
         GROUP BY 1",
    )?;
    let mut rows = st.query(rusqlite::params![account, since, until])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(1)?;
        bump(&r.get::<_, String>(0)?, &mut |d| d.rejections += n);
    }
    Ok(days)
}

fn ago(ts: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return ts.to_string();
    };
    let secs = (Utc::now() - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub async fn overview(
    axum::extract::State(state): St,
    v: Viewer,
    Query(q): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let account = match scope(&v, q.account)? {
        Some(a) => a,
        // An operator sees one account at a time here: the first unless chosen.
        None => match state.accounts.borrow().keys().next() {
            Some(a) => a.clone(),
            None => {
                return Err(PageError::Status(
                    axum::http::StatusCode::NOT_FOUND,
                    "No account is configured yet.".into(),
                ))
            }
        },
    };
    if !state.accounts.borrow().contains_key(&account) {
        return Err(PageError::not_found());
    }
    let tz = tz_of(&state, &account);
    let last = today(tz);
    let first = last - Days::days(29);
    let acc = account.clone();
    let cached = state.sessions.past_days(&account, tz.name(), first);
    let (days, pending, latency, crm) = state
        .read(move |c| {
            // Past days change seldom (a late rejection, a reprocessed
            // call): they are kept a few minutes; today is always counted.
            let mut days = match cached {
                Some(d) => d,
                None => daily(c, &acc, tz, first, 29)?,
            };
            days.extend(daily(c, &acc, tz, last, 1)?);
            let pending: i64 = c.query_row(
                // `+account`: the small index of pending rows, not the account's rows.
                "SELECT count(*) FROM journal WHERE +account = ?1 AND state = 'pending'",
                [&acc],
                |r| r.get(0),
            )?;
            let latency: Option<f64> = c
                .query_row(
                    "SELECT avg((julianday(c.created_at) - julianday(j.completed_at)) * 86400.0)
                     FROM (SELECT journal_id, created_at FROM conversations
                           WHERE account = ?1 ORDER BY id DESC LIMIT 1000) c
                     JOIN journal j ON j.id = c.journal_id",
                    [&acc],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let crm = snapshots::latest_snapshot(c, &acc)?.map(|s| s.loaded_at);
            Ok((days, pending, latency, crm))
        })
        .await?;
    state
        .sessions
        .keep_past_days(&account, tz.name(), first, &days[..29]);
    let mut week = DayFigures::new(last);
    for d in &days[days.len() - 7..] {
        week.add(d);
    }
    let page_data = OverviewPage {
        chrome: Chrome::new(&state, &v, "overview", Some(&account)),
        timezone: tz.name().to_string(),
        account,
        today: days[days.len() - 1].clone(),
        week,
        chart_svg: chart::svg(&days),
        days,
        pending,
        latency: match latency {
            Some(s) => format!("{s:.1} s on average over the last 1,000 conversations"),
            None => "no conversation yet".into(),
        },
        crm_age: match crm {
            Some(t) => format!("{} ago ({})", ago(&t), local(&t, tz)),
            None => "no CRM file received yet".into(),
        },
    };
    page(&page_data)
}

// ---------------------------------------------------------- conversations

/// Rows per page of the conversations list.
const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    account: Option<String>,
    day: Option<String>,
    advisor: Option<String>,
    reason: Option<String>,
    channel: Option<String>,
    picked: Option<String>,
    before: Option<String>,
}

pub struct Row {
    pub id: i64,
    pub account: String,
    pub received: String,
    pub started: String,
    pub advisor: String,
    pub channel: String,
    pub reason: String,
    pub picked: bool,
    pub status: String,
    pub flags: usize,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
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

fn advisor_name(a: &Json) -> String {
    if a.is_null() {
        return String::new();
    }
    if let Some(n) = a["name"].as_str() {
        return n.to_string();
    }
    format!("{} {}", s(&a["first_name"]), s(&a["last_name"]))
        .trim()
        .to_string()
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

pub async fn conversations(
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

// ------------------------------------------------------------ conversation

pub struct Pair {
    pub key: String,
    pub value: String,
}

pub struct HistoryRow {
    pub id: i64,
    pub received: String,
    pub status: String,
    pub sha256: String,
}

#[derive(Template)]
#[template(path = "console/conversation.html")]
struct ConversationPage {
    chrome: Chrome,
    id: i64,
    account: String,
    timezone: String,
    path: String,
    received: String,
    started: String,
    status: String,
    size: i64,
    sha256: String,
    audio: String,
    has_audio: bool,
    metadata: Vec<Pair>,
    additional: Vec<Pair>,
    crm_status: String,
    crm_snapshot: String,
    advisor: Vec<Pair>,
    picked: bool,
    picking_reason: String,
    flags: Vec<String>,
    history: Vec<HistoryRow>,
}

fn pairs(m: &Json) -> Vec<Pair> {
    m.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| Pair {
                    key: k.clone(),
                    value: s(v),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn conversation(
    axum::extract::State(state): St,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id.parse().map_err(|_| PageError::not_found())?;
    let found = state
        .read(move |c| {
            let Some(conv) = queries::conversation_by_id(c, id)? else {
                return Ok(None);
            };
            let account = s(&conv["account"]);
            let path = s(&conv["path"]);
            let history = api::history(c, &account, &path, id)?;
            let snap = match conv["crm"]["snapshot"].as_i64() {
                Some(sid) => c
                    .query_row(
                        "SELECT path, loaded_at FROM crm_snapshots WHERE id = ?1 AND account = ?2",
                        rusqlite::params![sid, account],
                        |r| Ok((sid, r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                    .optional()?,
                None => None,
            };
            Ok(Some((conv, history, snap)))
        })
        .await?;
    let Some((c, history, snap)) = found else {
        return Err(PageError::not_found());
    };
    let account = s(&c["account"]);
    if !v.sees(&account) {
        return Err(PageError::not_found());
    }
    let tz = tz_of(&state, &account);
    let a = &c["advisor"];
    let mut advisor = Vec::new();
    if !a.is_null() {
        advisor.push(Pair {
            key: "name".into(),
            value: advisor_name(a),
        });
        for k in ["email", "team", "connector"] {
            if !a[k].is_null() {
                advisor.push(Pair {
                    key: k.into(),
                    value: s(&a[k]),
                });
            }
        }
    }
    let au = &c["audio"];
    let audio = if au.is_null() {
        "not probed".to_string()
    } else {
        format!(
            "{}, {:.1} s, {} Hz, {} channel(s)",
            s(&au["format"]),
            au["duration_seconds"].as_f64().unwrap_or(0.0),
            s(&au["sample_rate"]),
            s(&au["channels"])
        )
    };
    let crm_snapshot = match snap {
        Some((sid, path, at)) => format!("snapshot {sid}: {path}, received {}", local(&at, tz)),
        None => match c["crm"]["snapshot"].as_i64() {
            Some(sid) => format!("snapshot {sid}"),
            None => "none".into(),
        },
    };
    page(&ConversationPage {
        chrome: Chrome::new(&state, &v, "conversations", Some(&account)),
        id,
        timezone: tz.name().to_string(),
        path: s(&c["path"]),
        received: local(&s(&c["received_at"]), tz),
        started: c["started_at"]
            .as_str()
            .map(|t| local(t, tz))
            .unwrap_or_default(),
        status: s(&c["status"]).replace('_', " "),
        size: c["size"].as_i64().unwrap_or_default(),
        sha256: s(&c["sha256"]),
        audio,
        has_audio: !c["archive_path"].is_null(),
        metadata: pairs(&c["metadata"]),
        additional: pairs(&c["additional_metadata"]),
        crm_status: match &c["crm"] {
            Json::Null => "no CRM join".into(),
            crm => s(&crm["status"]).replace('_', " "),
        },
        crm_snapshot,
        advisor,
        picked: c["picked"].as_bool().unwrap_or(false),
        picking_reason: s(&c["picking_reason"]),
        flags: c["flags"]
            .as_array()
            .map(|f| f.iter().map(s).collect())
            .unwrap_or_default(),
        history: history
            .iter()
            .map(|h| HistoryRow {
                id: h["id"].as_i64().unwrap_or_default(),
                received: local(&s(&h["received_at"]), tz),
                status: s(&h["status"]).replace('_', " "),
                sha256: s(&h["sha256"]),
            })
            .collect(),
        account,
    })
}

// -------------------------------------------------------------- rejections

/// Rejections shown at most (the newest).
const MAX_REJECTIONS: i64 = 2000;

pub struct RejectionRow {
    pub account: String,
    pub path: String,
    pub reason: String,
    pub line: String,
    pub at: String,
}

pub struct StageGroup {
    pub stage: String,
    pub rows: Vec<RejectionRow>,
}

pub struct DayGroup {
    pub day: String,
    pub count: usize,
    pub stages: Vec<StageGroup>,
}

#[derive(Template)]
#[template(path = "console/rejections.html")]
struct RejectionsPage {
    chrome: Chrome,
    days: Vec<DayGroup>,
    truncated: bool,
}

pub async fn rejections(
    axum::extract::State(state): St,
    v: Viewer,
    Query(q): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let account = scope(&v, q.account)?;
    let acc = account.clone();
    let rows = state
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT day, stage, account, path, reason, line, at FROM rejections
                 WHERE cleared_at IS NULL AND (?1 IS NULL OR account = ?1)
                 ORDER BY day DESC, stage, id LIMIT ?2",
            )?;
            let rows = st
                .query_map(rusqlite::params![acc, MAX_REJECTIONS + 1], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await?;
    let truncated = rows.len() as i64 > MAX_REJECTIONS;
    let zones = zones(&state);
    let mut days: Vec<DayGroup> = Vec::new();
    for (day, stage, account, path, reason, line, at) in
        rows.into_iter().take(MAX_REJECTIONS as usize)
    {
        let tz = zones.get(&account).copied().unwrap_or(chrono_tz::UTC);
        if days.last().is_none_or(|d| d.day != day) {
            days.push(DayGroup {
                day: day.clone(),
                count: 0,
                stages: Vec::new(),
            });
        }
        let Some(d) = days.last_mut() else { continue };
        d.count += 1;
        if d.stages
            .last()
            .is_none_or(|s| s.stage != stage.replace('_', " "))
        {
            d.stages.push(StageGroup {
                stage: stage.replace('_', " "),
                rows: Vec::new(),
            });
        }
        if let Some(sg) = d.stages.last_mut() {
            sg.rows.push(RejectionRow {
                account,
                path,
                reason,
                line: line.map(|l| l.to_string()).unwrap_or_default(),
                at: local(&at, tz),
            });
        }
    }
    page(&RejectionsPage {
        chrome: Chrome::new(&state, &v, "rejections", account.as_deref()),
        days,
        truncated,
    })
}

// ---------------------------------------------------------------- advisors

pub struct AdvisorRow {
    pub id: i64,
    pub account: String,
    pub name: String,
    pub email: String,
    pub team: String,
    pub connector: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/advisors.html")]
struct AdvisorsPage {
    chrome: Chrome,
    rows: Vec<AdvisorRow>,
}

pub async fn advisors(
    axum::extract::State(state): St,
    v: Viewer,
    Query(q): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let account = scope(&v, q.account)?;
    let acc = account.clone();
    let list = state
        .read(move |c| queries::advisors(c, acc.as_deref()))
        .await?;
    let zones = zones(&state);
    let rows = list
        .iter()
        .map(|a| {
            let account = s(&a["account"]);
            let tz = zones.get(&account).copied().unwrap_or(chrono_tz::UTC);
            AdvisorRow {
                id: a["id"].as_i64().unwrap_or_default(),
                name: format!("{} {}", s(&a["first_name"]), s(&a["last_name"])),
                email: s(&a["email"]),
                team: s(&a["team"]),
                connector: s(&a["connector"]),
                created: local(&s(&a["created_at"]), tz),
                account,
            }
        })
        .collect();
    page(&AdvisorsPage {
        chrome: Chrome::new(&state, &v, "advisors", account.as_deref()),
        rows,
    })
}

// ------------------------------------------------------------ CRM snapshots

pub struct SnapshotRow {
    pub id: i64,
    pub account: String,
    pub path: String,
    pub rows: i64,
    pub duplicate_keys: i64,
    pub loaded: String,
    pub latest: bool,
}

#[derive(Template)]
#[template(path = "console/crm.html")]
struct CrmPage {
    chrome: Chrome,
    rows: Vec<SnapshotRow>,
}

pub async fn crm(
    axum::extract::State(state): St,
    v: Viewer,
    Query(q): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let account = scope(&v, q.account)?;
    let acc = account.clone();
    let list = state
        .read(move |c| snapshots::snapshots(c, acc.as_deref()))
        .await?;
    let zones = zones(&state);
    let rows = list
        .into_iter()
        .rev()
        .map(|sn| {
            let tz = zones.get(&sn.account).copied().unwrap_or(chrono_tz::UTC);
            SnapshotRow {
                id: sn.id,
                loaded: local(&sn.loaded_at, tz),
                account: sn.account,
                path: sn.path,
                rows: sn.rows,
                duplicate_keys: sn.duplicate_keys,
                latest: sn.latest,
            }
        })
        .collect();
    page(&CrmPage {
        chrome: Chrome::new(&state, &v, "crm", account.as_deref()),
        rows,
    })
}

// ---------------------------------------------------------------- accounts

pub struct AccountRow {
    pub name: String,
    pub timezone: String,
    pub conversations: i64,
    pub last_upload: String,
    pub pending: i64,
    pub deposits_7d: i64,
    pub rejected_7d: i64,
    pub error_rate: String,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    rows: Vec<AccountRow>,
}

/// Operators only: every account's health. Customers get a 404.
pub async fn accounts(axum::extract::State(state): St, v: Viewer) -> Result<Response, PageError> {
    if !v.is_operator() {
        return Err(PageError::not_found());
    }
    let zones = zones(&state);
    let since = (Utc::now() - Days::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let names: Vec<(String, Tz)> = zones.into_iter().collect();
    let rows = state
        .read(move |c| {
            let mut out = Vec::new();
            for (name, tz) in names {
                let (conversations,): (i64,) = c.query_row(
                    "SELECT count(*) FROM conversations WHERE account = ?1 AND status != 'superseded'",
                    [&name],
                    |r| Ok((r.get(0)?,)),
                )?;
                // The newest row is the last upload (ids grow with arrivals).
                let last: Option<String> = c
                    .query_row(
                        "SELECT completed_at FROM journal WHERE +account = ?1 ORDER BY id DESC LIMIT 1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()?;
                let pending: i64 = c.query_row(
                    "SELECT count(*) FROM journal WHERE +account = ?1 AND state = 'pending'",
                    [&name],
                    |r| r.get(0),
                )?;
                let deposits: i64 = c.query_row(
                    "SELECT count(*) FROM journal WHERE account = ?1 AND completed_at >= ?2",
                    rusqlite::params![name, since],
                    |r| r.get(0),
                )?;
                let rejected: i64 = c.query_row(
                    "SELECT count(DISTINCT journal_id) FROM rejections WHERE account = ?1 AND at >= ?2",
                    rusqlite::params![name, since],
                    |r| r.get(0),
                )?;
                out.push(AccountRow {
                    timezone: tz.name().to_string(),
                    conversations,
                    last_upload: last.map(|t| local(&t, tz)).unwrap_or_else(|| "never".into()),
                    pending,
                    deposits_7d: deposits,
                    rejected_7d: rejected,
                    error_rate: match deposits {
                        0 => "–".into(),
                        d => format!("{:.1} %", 100.0 * rejected as f64 / d as f64),
                    },
                    name,
                });
            }
            Ok(out)
        })
        .await?;
    page(&AccountsPage {
        chrome: Chrome::new(&state, &v, "accounts", None),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_the_account_zone_with_offset() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            local("2026-02-11T14:20:33.000Z", paris),
            "2026-02-11 15:20:33 +01:00"
        );
        assert_eq!(
            local("2026-07-11T14:20:33.000Z", paris),
            "2026-07-11 16:20:33 +02:00"
        );
        assert_eq!(local("not a time", paris), "not a time");
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(day_start_utc(d, paris), "2026-06-30T22:00:00.000Z");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("Hélène & co"), "H%C3%A9l%C3%A8ne%20%26%20co");
        assert_eq!(encode("acme-1_x.y~"), "acme-1_x.y~");
    }
}
