//! The `[http]` and `[events]` sections of `depot.toml`: where the HTTP API
//! listens, how its requests are bounded, where its tokens are, and how long
//! events are kept. No `[http]` section means no HTTP server at all.

use super::{parse_duration, resolve, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    listen: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_public: bool,
    tokens_file: PathBuf,
    max_body_bytes: usize,
    request_timeout: String,
    max_wait: String,
    max_concurrent_requests: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            metrics_public: false,
            tokens_file: PathBuf::from("config/tokens.toml"),
            max_body_bytes: 64 * 1024,
            request_timeout: "30s".into(),
            max_wait: "60s".into(),
            max_concurrent_requests: 256,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEvents {
    retention: String,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            retention: "30d".into(),
        }
    }
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// HTTPS with this PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    pub tokens_file: PathBuf,
    /// Largest request body accepted (413 past it).
    pub max_body_bytes: usize,
    /// Longest time to produce a response's head (audio bodies stream on).
    pub request_timeout: Duration,
    /// Longest `wait` a long-poll may ask for.
    pub max_wait: Duration,
    /// Requests answered at once; more wait their turn.
    pub max_concurrent_requests: usize,
}

/// Validated `[events]`.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Events older than this are deleted.
    pub retention: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

pub(super) fn validate_http(
    path: &Path,
    cwd: &Path,
    raw: RawHttp,
    errors: &mut Vec<ConfigError>,
) -> Option<HttpConfig> {
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(ConfigError::new(
                path,
                "http.listen",
                format!(
                    "'{}' is not an address:port such as \"127.0.0.1:8080\"",
                    raw.listen
                ),
            ));
            None
        }
    };
    for (key, v) in [
        ("http.max_body_bytes", raw.max_body_bytes),
        ("http.max_concurrent_requests", raw.max_concurrent_requests),
    ] {
        if v == 0 {
            errors.push(ConfigError::new(path, key, "must be at least 1"));
        }
    }
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), Some(k)) => Some((resolve(cwd, c), resolve(cwd, k))),
        (None, None) => None,
        _ => {
            errors.push(ConfigError::new(
                path,
                "http.tls_cert",
                "tls_cert and tls_key go together: give both (HTTPS) or neither (HTTP)",
            ));
            None
        }
    };
    let timeout = parse_duration(path, "http.request_timeout", &raw.request_timeout, errors);
    let max_wait = parse_duration(path, "http.max_wait", &raw.max_wait, errors);
    Some(HttpConfig {
        listen: listen?,
        tls,
        metrics_public: raw.metrics_public,
        tokens_file: resolve(cwd, &raw.tokens_file),
        max_body_bytes: raw.max_body_bytes,
        request_timeout: timeout?,
        max_wait: max_wait?,
        max_concurrent_requests: raw.max_concurrent_requests,
    })
}

pub(super) fn validate_events(
    path: &Path,
    raw: RawEvents,
    errors: &mut Vec<ConfigError>,
) -> EventsConfig {
    match parse_duration(path, "events.retention", &raw.retention, errors) {
        Some(retention) => EventsConfig { retention },
        None => EventsConfig::default(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn load(text: &str) -> Result<Settings, crate::config::ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("depot.toml");
        std::fs::write(&p, text).unwrap();
        Settings::load(&p, Path::new("/srv/depot"))
    }

    #[test]
    fn no_http_section_means_no_http_server() {
        let s = load("").unwrap();
        assert!(s.http.is_none());
        assert_eq!(s.events.retention, Duration::from_secs(30 * 86400));
    }

    #[test]
    fn http_defaults_and_errors() {
        let s = load("[http]\n").unwrap();
        let h = s.http.unwrap();
        assert_eq!(h.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(!h.metrics_public);
        assert_eq!(
            h.tokens_file,
            PathBuf::from("/srv/depot/config/tokens.toml")
        );
        assert_eq!(h.request_timeout, Duration::from_secs(30));
        let e =
            load("[http]\nlisten = \"nowhere\"\nmax_wait = \"x\"\n[events]\nretention = \"y\"\n")
                .unwrap_err();
        assert_eq!(e.0.len(), 3, "{e}");
        assert!(e.0.iter().any(|e| e.key == "http.listen"));
        assert!(e.0.iter().any(|e| e.key == "events.retention"));
        let e = load("[http]\ntls_cert = \"keys/http.crt\"\n").unwrap_err();
        assert!(e.0.iter().any(|e| e.key == "http.tls_cert"), "{e}");
        let s = load("[http]\ntls_cert = \"keys/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        assert_eq!(
            s.http.unwrap().tls,
            Some((
                PathBuf::from("/srv/depot/keys/c.pem"),
                PathBuf::from("/k.pem")
            ))
        );
    }
}
