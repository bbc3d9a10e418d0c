//! Authentication defences: argon2id password checks with bounded
//! concurrency and equal cost for unknown users, and the per-IP ban list.
//!
//! Nothing here tells the client why a login failed; callers log the reason.

use crate::config::{Account, AuthConfig};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Hashes a password as an argon2id PHC string with argon2's defaults.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

/// Verifies passwords off the async threads, at most N at once.
pub struct PasswordChecker {
    permits: Semaphore,
    /// Verified against when the user does not exist, so an unknown name
    /// costs the same as a wrong password.
    decoy_hash: String,
}

impl PasswordChecker {
    pub fn new(max_concurrent: usize) -> anyhow::Result<Self> {
        Ok(PasswordChecker {
            permits: Semaphore::new(max_concurrent.max(1)),
            decoy_hash: hash_password("depot-decoy-password-never-matches")?,
        })
    }

    /// True when `password` matches the account's hash. `None` (unknown
    /// user or no password set) still pays for one argon2 verification.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hash, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.decoy_hash.clone(), false),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && real
    }
}

/// Is `ip` allowed to log in to `account`?
pub fn ip_allowed(account: &Account, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    account.allowed_ips.is_empty() || account.allowed_ips.iter().any(|n| n.contains(&ip))
}

struct IpRecord {
    failures: Vec<Instant>,
    banned_until: Option<Instant>,
}

/// Failures per source IP within a window; past the limit the IP is banned.
pub struct BanList {
    cfg: AuthConfig,
    ips: Mutex<HashMap<IpAddr, IpRecord>>,
}

/// What recording a failure did.
#[derive(Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    Counted(usize),
    /// This failure crossed the limit: the IP is banned from now on.
    BannedNow,
}

impl BanList {
    pub fn new(cfg: AuthConfig) -> Arc<Self> {
        Arc::new(BanList {
            cfg,
            ips: Mutex::new(HashMap::new()),
        })
    }

    /// Is `ip` banned at `now`?
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        match ips.get_mut(&ip).and_then(|r| r.banned_until) {
            Some(until) if until > now => true,
            Some(_) => {
                ips.remove(&ip);
                false
            }
            None => false,
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> FailureOutcome {
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if ips.len() > 100_000 {
            // Bound memory under a spray from many addresses: forget stale entries.
            let window = self.cfg.ban_window;
            ips.retain(|_, r| {
                r.banned_until.is_some_and(|u| u > now)
                    || r.failures.iter().any(|t| now.duration_since(*t) < window)
            });
        }
        let rec = ips.entry(ip).or_insert(IpRecord {
            failures: Vec::new(),
            banned_until: None,
        });
        if rec.banned_until.is_some_and(|u| u > now) {
            return FailureOutcome::Counted(rec.failures.len());
        }
        let window = self.cfg.ban_window;
        rec.failures.retain(|t| now.duration_since(*t) < window);
        rec.failures.push(now);
        if self.cfg.ban_after_failures > 0
            && rec.failures.len() >= self.cfg.ban_after_failures as usize
        {
            rec.banned_until = Some(now + self.cfg.ban_duration);
            rec.failures.clear();
            return FailureOutcome::BannedNow;
        }
        FailureOutcome::Counted(rec.failures.len())
    }

    pub fn ban_duration(&self) -> Duration {
        self.cfg.ban_duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(after: u32) -> AuthConfig {
        AuthConfig {
            max_attempts_per_connection: 6,
            ban_after_failures: after,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(30),
            max_concurrent_password_checks: 2,
        }
    }

    #[test]
    fn ban_after_limit_then_expires() {
        let bans = BanList::new(cfg(3));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(bans.record_failure(ip, t0), FailureOutcome::Counted(1));
        assert_eq!(bans.record_failure(ip, t0), FailureOutcome::Counted(2));
        assert!(!bans.is_banned(ip, t0));
        assert_eq!(bans.record_failure(ip, t0), FailureOutcome::BannedNow);
        assert!(bans.is_banned(ip, t0 + Duration::from_secs(29)));
        assert!(!bans.is_banned(ip, t0 + Duration::from_secs(31)));
        assert!(!bans.is_banned("127.0.0.2".parse().unwrap(), t0));
    }

    #[test]
    fn failures_outside_window_do_not_count() {
        let bans = BanList::new(cfg(2));
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        bans.record_failure(ip, t0);
        assert_eq!(
            bans.record_failure(ip, t0 + Duration::from_secs(61)),
            FailureOutcome::Counted(1)
        );
    }

    #[tokio::test]
    async fn password_verification() {
        let checker = PasswordChecker::new(2).unwrap();
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(checker.verify(Some(&hash), "s3cret").await);
        assert!(!checker.verify(Some(&hash), "wrong").await);
        assert!(
            !checker
                .verify(None, "depot-decoy-password-never-matches")
                .await
        );
    }
}
