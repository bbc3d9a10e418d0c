//! The rejections, grouped by day and stage, newest first and bounded.

use super::frame::{local, scope, zones, AccountQuery, Chrome, St};
use super::{page, PageError, Viewer};
use askama::Template;
use axum::extract::Query;
use axum::response::Response;

/// Rejections shown at most (the newest).
const MAX_REJECTIONS: i64 = 2000;

pub(crate) struct RejectionRow {
    pub(crate) account: String,
    pub(crate) path: String,
    pub(crate) reason: String,
    pub(crate) line: String,
    pub(crate) at: String,
}

pub(crate) struct StageGroup {
    pub(crate) stage: String,
    pub(crate) rows: Vec<RejectionRow>,
}

pub(crate) struct DayGroup {
    pub(crate) day: String,
    pub(crate) count: usize,
    pub(crate) stages: Vec<StageGroup>,
}

#[derive(Template)]
#[template(path = "console/rejections.html")]
struct RejectionsPage {
    chrome: Chrome,
    days: Vec<DayGroup>,
    truncated: bool,
}

pub(crate) async fn rejections(
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
