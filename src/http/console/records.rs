//! The reference pages: advisors, CRM snapshots, and (operators only)
//! every account's health.

use super::frame::{local, s, scope, zones, AccountQuery, Chrome, St};
use super::{page, PageError, Viewer};
use crate::store::{queries, snapshots};
use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use chrono::{Duration as Days, Utc};
use chrono_tz::Tz;
use rusqlite::OptionalExtension;

pub(crate) struct AdvisorRow {
    pub(crate) id: i64,
    pub(crate) account: String,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) team: String,
    pub(crate) connector: String,
    pub(crate) created: String,
}

#[derive(Template)]
#[template(path = "console/advisors.html")]
struct AdvisorsPage {
    chrome: Chrome,
    rows: Vec<AdvisorRow>,
}

pub(crate) async fn advisors(
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

pub(crate) struct SnapshotRow {
    pub(crate) id: i64,
    pub(crate) account: String,
    pub(crate) path: String,
    pub(crate) rows: i64,
    pub(crate) duplicate_keys: i64,
    pub(crate) loaded: String,
    pub(crate) latest: bool,
}

#[derive(Template)]
#[template(path = "console/crm.html")]
struct CrmPage {
    chrome: Chrome,
    rows: Vec<SnapshotRow>,
}

pub(crate) async fn crm(
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

pub(crate) struct AccountRow {
    pub(crate) name: String,
    pub(crate) timezone: String,
    pub(crate) conversations: i64,
    pub(crate) last_upload: String,
    pub(crate) pending: i64,
    pub(crate) deposits_7d: i64,
    pub(crate) rejected_7d: i64,
    pub(crate) error_rate: String,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    rows: Vec<AccountRow>,
}

/// Operators only: every account's health. Customers get a 404.
pub(crate) async fn accounts(
    axum::extract::State(state): St,
    v: Viewer,
) -> Result<Response, PageError> {
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
