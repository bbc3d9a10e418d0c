//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie,
//! kept in memory (a restart logs everyone out, which is the safe side),
//! each with its own CSRF token and a fixed lifetime from log-in. Only the
//! sha256 of an id is kept, so the table itself holds nothing a client
//! could present. The overview's figures for past days are kept here for
//! a few minutes too (per configured account), so that a busy account's
//! 30-day chart is not counted again on every page view.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie that carries the session id.
pub(crate) const COOKIE: &str = "depot_session";

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    /// A customer: sees its own account only.
    Customer(String),
    /// An operator from `[[http.admins]]`: sees every account.
    Operator(String),
}

impl Who {
    /// The account this viewer is limited to, if any.
    pub(crate) fn account(&self) -> Option<&str> {
        match self {
            Who::Customer(a) => Some(a),
            Who::Operator(_) => None,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Who::Customer(n) | Who::Operator(n) => n,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) who: Who,
    /// Every form posted in this session carries it back.
    pub(crate) csrf: String,
    expires: Instant,
}

pub(crate) struct Sessions {
    timeout: Duration,
    max: usize,
    by_hash: Mutex<HashMap<String, Session>>,
    /// The overview's figures for the days before today, per account
    /// (time zone, first day, when counted, the days).
    past: Mutex<HashMap<String, PastDays>>,
}

/// How long the overview's past days are reused before being counted again.
const PAST_DAYS_FOR: Duration = Duration::from_secs(300);

struct PastDays {
    tz: String,
    first: chrono::NaiveDate,
    at: Instant,
    days: Vec<super::chart::DayFigures>,
}

/// 32 random bytes, hex: ids and CSRF tokens.
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub(crate) fn new(timeout: Duration, max: usize) -> Self {
        Sessions {
            timeout,
            max: max.max(1),
            by_hash: Mutex::new(HashMap::new()),
            past: Mutex::new(HashMap::new()),
        }
    }

    /// The overview's past days of `account` if counted recently for
    /// the same time zone and first day.
    pub(crate) fn past_days(
        &self,
        account: &str,
        tz: &str,
        first: chrono::NaiveDate,
    ) -> Option<Vec<super::chart::DayFigures>> {
        let past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        past.get(account)
            .filter(|p| p.tz == tz && p.first == first && p.at.elapsed() < PAST_DAYS_FOR)
            .map(|p| p.days.clone())
    }

    pub(crate) fn keep_past_days(
        &self,
        account: &str,
        tz: &str,
        first: chrono::NaiveDate,
        days: &[super::chart::DayFigures],
    ) {
        let mut past = self.past.lock().unwrap_or_else(|p| p.into_inner());
        if past
            .get(account)
            .is_some_and(|p| p.first == first && p.tz == tz && p.at.elapsed() < PAST_DAYS_FOR)
        {
            return;
        }
        past.insert(
            account.to_string(),
            PastDays {
                tz: tz.to_string(),
                first,
                at: Instant::now(),
                days: days.to_vec(),
            },
        );
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts a session; returns its id (for the cookie only).
    pub(crate) fn create(&self, who: Who, now: Instant) -> String {
        let id = random_token();
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= self.max {
            // Bounded memory: the session nearest its end makes room.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(
            digest(&id),
            Session {
                who,
                csrf: random_token(),
                expires: now + self.timeout,
            },
        );
        id
    }

    /// The live session of `id`.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let key = digest(id);
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn end(&self, id: &str) {
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&digest(id));
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_end_and_stay_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        let a = s.create(Who::Customer("acme".into()), t0);
        assert_eq!(
            s.get(&a, t0).map(|x| x.who),
            Some(Who::Customer("acme".into()))
        );
        assert!(s.get(&a, t0 + Duration::from_secs(61)).is_none());
        let b = s.create(Who::Operator("ops".into()), t0);
        s.end(&b);
        assert!(s.get(&b, t0).is_none());
        let ids: Vec<String> = (0..5)
            .map(|i| s.create(Who::Customer(format!("c{i}")), t0 + Duration::from_secs(i)))
            .collect();
        assert!(s.get(&ids[4], t0).is_some());
        assert!(s.get(&ids[0], t0).is_none(), "the oldest made room");
        assert!(s.get("not-an-id", t0).is_none());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; depot_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
