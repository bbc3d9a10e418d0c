//! What every console page shares: the frame (who is logged in, the nav,
//! the log-out form's token), the account a page may show (a customer's
//! own; an operator's choice, or all), and stored UTC times turned into the
//! account's timezone with its offset.

use super::{PageError, Viewer};
use crate::http::State;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) type St = axum::extract::State<Arc<State>>;

/// What every page's frame shows: who is logged in, the nav, the form
/// token of the log-out button, and (operators) the account chosen.
pub(crate) struct Chrome {
    pub(crate) user: String,
    pub(crate) operator: bool,
    pub(crate) csrf: String,
    pub(crate) active: &'static str,
    /// `?account=` to carry in the nav links (operators only).
    pub(crate) account_query: String,
    /// The accounts an operator can choose from.
    pub(crate) accounts: Vec<String>,
    pub(crate) account: Option<String>,
}

impl Chrome {
    pub(super) fn new(
        state: &State,
        v: &Viewer,
        active: &'static str,
        account: Option<&str>,
    ) -> Chrome {
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
pub(super) fn encode(s: &str) -> String {
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
pub(super) fn scope(v: &Viewer, asked: Option<String>) -> Result<Option<String>, PageError> {
    let asked = asked.filter(|a| !a.is_empty());
    match (v.session.who.account(), asked) {
        (Some(own), Some(a)) if a != own => Err(PageError::not_found()),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, a) => Ok(a),
    }
}

pub(super) fn tz_of(state: &State, account: &str) -> Tz {
    state
        .accounts
        .borrow()
        .get(account)
        .map(|a| a.timezone)
        .unwrap_or(chrono_tz::UTC)
}

/// All time zones by account, for pages listing several accounts.
pub(super) fn zones(state: &State) -> BTreeMap<String, Tz> {
    state
        .accounts
        .borrow()
        .iter()
        .map(|(n, a)| (n.clone(), a.timezone))
        .collect()
}

/// A stored time in `tz`, with its offset (the stored text if unreadable).
pub(crate) fn local(ts: &str, tz: Tz) -> String {
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
pub(super) fn day_start_utc(day: NaiveDate, tz: Tz) -> String {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    let t = tz
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight));
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn today(tz: Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive()
}

pub(super) fn s(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
pub(crate) struct AccountQuery {
    pub(super) account: Option<String>,
}

pub(super) fn advisor_name(a: &Json) -> String {
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
