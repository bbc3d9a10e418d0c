//! The console's first page: one account's last 30 days as a daily chart
//! (an operator chooses the account), what is still pending, and the state
//! of its CRM data.

use super::chart::{self, DayFigures};
use super::frame::{day_start_utc, local, scope, today, tz_of, AccountQuery, Chrome, St};
use super::{page, PageError, Viewer};
use crate::store::{self, snapshots};
use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use chrono::{DateTime, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rusqlite::{Connection, OptionalExtension};

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

pub(crate) async fn overview(
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
