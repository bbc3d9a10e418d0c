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

/// Verifies passwords off the async threads, at most N at once, and at
/// most one at a time per source address: a brute-forcing address queues
/// behind its own attempts instead of taking every slot, so logins from
/// elsewhere keep their latency (and the ban count is exact: a failure is
/// recorded before the same address's next check starts).
pub(crate) struct PasswordChecker {
    permits: Semaphore,
    /// One lane per address with a check running or queued.
    lanes: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// Verified against when the user does not exist, so an unknown name
    /// costs the same as a wrong password.
    decoy_hash: String,
}

/// A place in an address's lane; the lane is forgotten when the last
/// holder leaves (also when the waiting task is cancelled).
struct LaneTicket<'a> {
    checker: &'a PasswordChecker,
    ip: IpAddr,
    lane: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LaneTicket<'_> {
    fn drop(&mut self) {
        let mut lanes = self.checker.lanes.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else is running or waiting.
        if Arc::strong_count(&self.lane) == 2 {
            lanes.remove(&self.ip);
        }
    }
}

impl PasswordChecker {
    pub fn new(max_concurrent: usize) -> anyhow::Result<Self> {
        Ok(PasswordChecker {
            permits: Semaphore::new(max_concurrent.max(1)),
            lanes: Mutex::new(HashMap::new()),
            decoy_hash: hash_password("depot-decoy-password-never-matches")?,
        })
    }

    fn ticket(&self, ip: IpAddr) -> LaneTicket<'_> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let lane = lanes.entry(ip).or_default().clone();
        LaneTicket {
            checker: self,
            ip,
            lane,
        }
    }

    /// True when `password` matches the account's hash. `None` (unknown
    /// user or no password set) still pays for one argon2 verification.
    /// `still_wanted` runs once it is this address's turn: `false` skips
    /// the check (e.g. the address was banned while it waited).
    pub async fn verify(
        &self,
        ip: IpAddr,
        hash: Option<&str>,
        password: &str,
        still_wanted: impl FnOnce() -> bool,
    ) -> Option<bool> {
        let ticket = self.ticket(ip);
        let _turn = ticket.lane.lock().await;
        if !still_wanted() {
            return None;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Some(false);
        };
        let (hash, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.decoy_hash.clone(), false),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            // Validation refuses costlier hashes; checked again here so no
            // hash can make a guess cost more than the bounds.
            PasswordHash::new(&hash)
                .ok()
                .filter(|h| crate::config::argon2_cost_allowed(h).is_ok())
                .is_some_and(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
        })
        .await
        .unwrap_or(false);
        Some(ok && real)
    }
}

/// Is `ip` allowed to log in to `account`?
pub(crate) fn ip_allowed(account: &Account, ip: IpAddr) -> bool {
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
pub(crate) struct BanList {
    cfg: AuthConfig,
    ips: Mutex<HashMap<IpAddr, IpRecord>>,
}

/// What recording a failure did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailureOutcome {
    Counted(usize),
    /// This failure crossed the limit: the IP is banned from now on.
    BannedNow,
    /// The IP was banned already (an attempt that started before the ban):
    /// not counted again.
    AlreadyBanned,
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
            return FailureOutcome::AlreadyBanned;
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
            login_grace_time: Duration::from_secs(30),
            max_unauthenticated_per_ip: 10,
            max_unauthenticated: 64,
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
        assert_eq!(bans.record_failure(ip, t0), FailureOutcome::AlreadyBanned);
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
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            checker.verify(ip, Some(&hash), "s3cret", || true).await,
            Some(true)
        );
        assert_eq!(
            checker.verify(ip, Some(&hash), "wrong", || true).await,
            Some(false)
        );
        assert_eq!(
            checker
                .verify(ip, None, "depot-decoy-password-never-matches", || true)
                .await,
            Some(false)
        );
        assert_eq!(
            checker.verify(ip, Some(&hash), "s3cret", || false).await,
            None
        );
        assert!(
            checker.lanes.lock().unwrap().is_empty(),
            "lanes are forgotten"
        );
    }

    /// The decoy costs what a real hash made by `depot hash-password`
    /// costs: the same argon2 parameters, so timing cannot tell an unknown
    /// user from a wrong password.
    #[test]
    fn the_decoy_has_the_default_parameters() {
        let checker = PasswordChecker::new(1).unwrap();
        let decoy = PasswordHash::new(&checker.decoy_hash).unwrap();
        let real = hash_password("s3cret").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(decoy.algorithm, real.algorithm);
        let cost = |h: &PasswordHash<'_>| {
            let p = argon2::Params::try_from(h).unwrap();
            (p.m_cost(), p.t_cost(), p.p_cost())
        };
        let d = argon2::Params::default();
        assert_eq!(cost(&decoy), cost(&real));
        assert_eq!(cost(&decoy), (d.m_cost(), d.t_cost(), d.p_cost()));
    }

    /// Waits (yielding) until `cond` holds; panics after a generous bound.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Regression (brute-force test): one address's queued checks must not
    /// hold every slot; another address's check runs beside them. Checked
    /// on state, not on time: while the attacker has checks running and
    /// queued, the other address finds a free slot the moment its turn
    /// comes. The attacker's hash is the costliest iteration count allowed,
    /// so its checks are still in flight then however busy the machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_take_every_check_slot() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let checker = Arc::new(PasswordChecker::new(2).unwrap());
        let slow = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(19 * 1024, 10, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let slow_hash = slow.hash_password(b"s3cret", &salt).unwrap().to_string();
        let hash = hash_password("s3cret").unwrap();
        let attacker: IpAddr = "127.0.0.1".parse().unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (c, h) = (checker.clone(), slow_hash.clone());
                tokio::spawn(async move { c.verify(attacker, Some(&h), "wrong", || true).await })
            })
            .collect();
        // Lane holders: the map's reference plus one per check in flight.
        let in_flight = || {
            let lanes = checker.lanes.lock().unwrap();
            lanes.get(&attacker).map_or(0, |l| Arc::strong_count(l) - 1)
        };
        until("the attacker's checks to run and queue", || {
            in_flight() >= 2 && checker.permits.available_permits() == 1
        })
        .await;
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let seen = (AtomicUsize::new(0), AtomicUsize::new(0));
        let ok = checker
            .verify(other, Some(&hash), "s3cret", || {
                seen.0
                    .store(checker.permits.available_permits(), Ordering::SeqCst);
                seen.1.store(in_flight(), Ordering::SeqCst);
                true
            })
            .await;
        assert_eq!(ok, Some(true));
        let (free, attacker_left) = (seen.0.into_inner(), seen.1.into_inner());
        assert!(
            attacker_left >= 1,
            "the attacker's checks were over already"
        );
        assert!(
            free >= 1,
            "no slot was free when the other address's turn came"
        );
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(false));
        }
    }
}
