//! `[[webhooks]]` in `depot.toml`: where events are POSTed (Standard
//! Webhooks), which of them, with which secret, and how retries back off.

use super::{parse_duration, ConfigError};
use base64::Engine;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    name: String,
    url: String,
    secret: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_backoff")]
    backoff: Vec<String>,
    #[serde(default = "default_give_up")]
    give_up_after: String,
}

fn default_timeout() -> String {
    "10s".into()
}

fn default_backoff() -> Vec<String> {
    ["5s", "30s", "2m", "10m", "30m", "1h"]
        .map(String::from)
        .to_vec()
}

fn default_give_up() -> String {
    "24h".into()
}

/// One validated webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// The decoded key of `whsec_<base64>`.
    pub secret: Vec<u8>,
    /// Event types delivered; empty: all.
    pub events: Vec<String>,
    /// Accounts whose events are delivered; empty: all.
    pub accounts: Vec<String>,
    pub timeout: Duration,
    /// Waits after the 1st, 2nd, … failure; the last repeats.
    pub backoff: Vec<Duration>,
    /// A failing event is parked (dead letter) this long after its first failure.
    pub give_up_after: Duration,
}

impl WebhookConfig {
    /// Is an event of `kind` for `account` for this endpoint?
    pub fn wants(&self, kind: &str, account: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == kind))
            && (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account))
    }
}

const KNOWN_EVENTS: &[&str] = &[
    "conversation.created",
    "conversation.superseded",
    "rejection.created",
    "rejection.closed",
    "crm.snapshot.created",
];

pub(super) fn validate(
    path: &Path,
    raw: Vec<RawWebhook>,
    errors: &mut Vec<ConfigError>,
) -> Vec<WebhookConfig> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("webhooks[{i}].{k}");
        let start = errors.len();
        if !super::valid_account_name(&w.name) {
            errors.push(ConfigError::new(
                path,
                key("name"),
                format!("'{}' is not a name (letters, digits, - and _)", w.name),
            ));
        }
        if out.iter().any(|o| o.name == w.name) {
            errors.push(ConfigError::new(
                path,
                key("name"),
                format!("'{}' is used by another webhook", w.name),
            ));
        }
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            errors.push(ConfigError::new(
                path,
                key("url"),
                format!("'{}' is not an http:// or https:// URL", w.url),
            ));
        }
        let secret = w
            .secret
            .strip_prefix("whsec_")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|k| !k.is_empty());
        if secret.is_none() {
            errors.push(ConfigError::new(
                path,
                key("secret"),
                "must be whsec_ followed by base64 (a Standard Webhooks secret)",
            ));
        }
        for e in &w.events {
            if !KNOWN_EVENTS.contains(&e.as_str()) {
                errors.push(ConfigError::new(
                    path,
                    key("events"),
                    format!("'{e}' is not one of {}", KNOWN_EVENTS.join(", ")),
                ));
            }
        }
        let timeout = parse_duration(path, &key("timeout"), &w.timeout, errors);
        let give_up = parse_duration(path, &key("give_up_after"), &w.give_up_after, errors);
        let backoff: Vec<Duration> = w
            .backoff
            .iter()
            .filter_map(|b| parse_duration(path, &key("backoff"), b, errors))
            .collect();
        if w.backoff.is_empty() {
            errors.push(ConfigError::new(
                path,
                key("backoff"),
                "needs at least one wait",
            ));
        }
        if errors.len() > start {
            continue;
        }
        if let (Some(secret), Some(timeout), Some(give_up_after)) = (secret, timeout, give_up) {
            out.push(WebhookConfig {
                name: w.name,
                url: w.url,
                secret,
                events: w.events,
                accounts: w.accounts,
                timeout,
                backoff,
                give_up_after,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::server::load_text as load;

    #[test]
    fn defaults_filters_and_errors() {
        let s = load(
            "[[webhooks]]\nname = \"analysis\"\nurl = \"https://a.example/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\naccounts = [\"acme\"]\n",
        )
        .unwrap();
        let w = &s.webhooks[0];
        assert_eq!(w.timeout, Duration::from_secs(10));
        assert_eq!(w.backoff.len(), 6);
        assert_eq!(w.give_up_after, Duration::from_secs(86400));
        assert!(w.wants("rejection.closed", "acme"));
        assert!(!w.wants("rejection.closed", "beta"));
        let e = load(
            "[[webhooks]]\nname = \"a\"\nurl = \"ftp://x\"\nsecret = \"plain\"\nevents = [\"nope\"]\n",
        )
        .unwrap_err();
        for key in [
            "webhooks[0].url",
            "webhooks[0].secret",
            "webhooks[0].events",
        ] {
            assert!(e.0.iter().any(|e| e.key == key), "{key}: {e}");
        }
    }
}
