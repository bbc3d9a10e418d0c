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
    session_timeout: String,
    max_console_sessions: usize,
    admins: Vec<RawAdmin>,
}

/// One `[[http.admins]]` entry: an operator of the web console.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    name: String,
    password_hash: String,
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
            session_timeout: "8h".into(),
            max_console_sessions: 10_000,
            admins: Vec::new(),
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
    /// A console session ends this long after its log-in.
    pub session_timeout: Duration,
    /// Console sessions kept at once; past it the oldest is ended.
    pub max_console_sessions: usize,
    /// Operators of the web console (they see every account).
    pub admins: Vec<Admin>,
}

/// An operator of the web console: a name and an argon2id PHC hash.
#[derive(Debug, Clone)]
pub struct Admin {
    pub name: String,
    pub password_hash: String,
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
        ("http.max_console_sessions", raw.max_console_sessions),
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
    let session_timeout =
        parse_duration(path, "http.session_timeout", &raw.session_timeout, errors);
    let mut admins: Vec<Admin> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, a) in raw.admins.into_iter().enumerate() {
        let key = format!("http.admins[{i}]");
        if a.name.trim().is_empty() {
            errors.push(ConfigError::new(
                path,
                format!("{key}.name"),
                "must not be empty",
            ));
            continue;
        }
        if names.contains(&a.name) {
            errors.push(ConfigError::new(
                path,
                format!("{key}.name"),
                format!(
                    "'{}' is named twice; each operator needs its own name",
                    a.name
                ),
            ));
            continue;
        }
        names.push(a.name.clone());
        let checked = match argon2::PasswordHash::new(&a.password_hash) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => super::argon2_cost_allowed(&h),
            _ => Err("not an argon2id PHC string ($argon2id$v=19$...); make one with `depot hash-password`".to_string()),
        };
        match checked {
            Ok(()) => admins.push(Admin {
                name: a.name,
                password_hash: a.password_hash,
            }),
            Err(why) => errors.push(ConfigError::new(path, format!("{key}.password_hash"), why)),
        }
    }
    Some(HttpConfig {
        listen: listen?,
        tls,
        metrics_public: raw.metrics_public,
        tokens_file: resolve(cwd, &raw.tokens_file),
        max_body_bytes: raw.max_body_bytes,
        request_timeout: timeout?,
        max_wait: max_wait?,
        max_concurrent_requests: raw.max_concurrent_requests,
        session_timeout: session_timeout?,
        max_console_sessions: raw.max_console_sessions,
        admins,
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
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::server::load_text as load;

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

    #[test]
    fn console_admins_and_sessions() {
        let hash = crate::sftp::auth::hash_password("s3cret").unwrap();
        let s = load(&format!(
            "[http]\nsession_timeout = \"1h\"\n[[http.admins]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap();
        let h = s.http.unwrap();
        assert_eq!(h.session_timeout, Duration::from_secs(3600));
        assert_eq!(h.max_console_sessions, 10_000);
        assert_eq!(h.admins.len(), 1);
        assert_eq!(h.admins[0].name, "ops");
        let e = load(&format!(
            "[http]\n[[http.admins]]\nname = \"ops\"\npassword_hash = \"plain\"\n[[http.admins]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap_err();
        assert!(
            e.0.iter().any(|e| e.key == "http.admins[0].password_hash"),
            "{e}"
        );
        assert!(e.0.iter().any(|e| e.key == "http.admins[1].name"), "{e}");
    }
}
