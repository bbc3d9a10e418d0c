//! Admission of connections that have not logged in yet. They are counted
//! apart from sessions, per source address and in all. Past the
//! per-address cap a new connection is dropped at accept. When the total is
//! full, the oldest connection of the address holding the most is dropped
//! to make room, unless the new one comes from such an address itself: a
//! flood of silent or chattering sockets from a few addresses sheds its own
//! connections, never a legitimate login from elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Refusals are logged at most this often (a flood would fill the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// What ended a connection's unauthenticated phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Authenticated,
    /// Dropped to make room for a newer connection from a lighter address.
    Evicted,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    PerIp,
    Total,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    per_ip: HashMap<IpAddr, usize>,
    /// By id, so oldest first.
    conns: BTreeMap<u64, (IpAddr, oneshot::Sender<Verdict>)>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

/// The unauthenticated connections, per address and in all.
pub(crate) struct Unauthenticated {
    max_per_ip: usize,
    max_total: usize,
    inner: Mutex<Inner>,
}

/// An unauthenticated connection's place; freed on login or when dropped.
pub(crate) struct Pending {
    registry: Arc<Unauthenticated>,
    id: u64,
}

impl Pending {
    /// The connection logged in: it no longer counts as unauthenticated.
    pub(crate) fn authenticated(self) {
        if let Some(tx) = self.registry.remove(self.id) {
            let _ = tx.send(Verdict::Authenticated);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl Unauthenticated {
    pub(crate) fn new(max_per_ip: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Unauthenticated {
            max_per_ip: max_per_ip.max(1),
            max_total: max_total.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a new connection from `ip`, evicting the oldest
    /// connection of the heaviest address when the total is full.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(Pending, oneshot::Receiver<Verdict>), Refused> {
        let mut g = self.lock();
        let here = g.per_ip.get(&ip).copied().unwrap_or(0);
        if here >= self.max_per_ip {
            return Err(self.refused(&mut g, ip, Refused::PerIp));
        }
        if g.conns.len() >= self.max_total {
            let heaviest = g.per_ip.values().copied().max().unwrap_or(0);
            if here >= heaviest {
                return Err(self.refused(&mut g, ip, Refused::Total));
            }
            let victim = g
                .conns
                .iter()
                .find(|(_, (v, _))| g.per_ip.get(v) == Some(&heaviest))
                .map(|(id, _)| *id);
            if let Some(tx) = victim.and_then(|id| Self::remove_locked(&mut g, id)) {
                let _ = tx.send(Verdict::Evicted);
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        let (tx, rx) = oneshot::channel();
        g.conns.insert(id, (ip, tx));
        *g.per_ip.entry(ip).or_insert(0) += 1;
        Ok((
            Pending {
                registry: self.clone(),
                id,
            },
            rx,
        ))
    }

    /// Counts a refusal; logs the count now and then.
    fn refused(&self, g: &mut Inner, ip: IpAddr, why: Refused) -> Refused {
        g.refused_since_log += 1;
        let now = Instant::now();
        if g.last_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                ip = %ip,
                limit = match why {
                    Refused::PerIp => "auth.max_unauthenticated_per_ip",
                    Refused::Total => "auth.max_unauthenticated",
                },
                refused = g.refused_since_log,
                "unauthenticated connections over the limit are dropped at accept"
            );
            g.refused_since_log = 0;
            g.last_log = Some(now);
        }
        tracing::debug!(ip = %ip, ?why, "connection dropped: too many unauthenticated");
        why
    }

    fn remove(&self, id: u64) -> Option<oneshot::Sender<Verdict>> {
        Self::remove_locked(&mut self.lock(), id)
    }

    fn remove_locked(g: &mut Inner, id: u64) -> Option<oneshot::Sender<Verdict>> {
        let (ip, tx) = g.conns.remove(&id)?;
        if let Some(n) = g.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                g.per_ip.remove(&ip);
            }
        }
        Some(tx)
    }

    /// (from `ip`, in all) unauthenticated connections now.
    #[cfg(test)]
    pub(crate) fn counts(&self, ip: IpAddr) -> (usize, usize) {
        let g = self.lock();
        (g.per_ip.get(&ip).copied().unwrap_or(0), g.conns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_cap_refuses_the_newcomer() {
        let r = Unauthenticated::new(2, 10);
        let _a = r.admit(ip(2)).unwrap();
        let _b = r.admit(ip(2)).unwrap();
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::PerIp));
        assert!(r.admit(ip(3)).is_ok());
    }

    #[test]
    fn a_full_server_sheds_the_heaviest_address_oldest_first() {
        let r = Unauthenticated::new(10, 4);
        let (_a1, mut rx1) = r.admit(ip(2)).unwrap();
        let (_a2, mut rx2) = r.admit(ip(2)).unwrap();
        let (_a3, mut rx3) = r.admit(ip(2)).unwrap();
        let (_b, mut rxb) = r.admit(ip(3)).unwrap();
        // The heaviest address cannot push out others' connections...
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::Total));
        // ...but a login from elsewhere pushes out its oldest.
        let (_c, _) = r.admit(ip(4)).unwrap();
        assert_eq!(rx1.try_recv(), Ok(Verdict::Evicted));
        assert!(rx2.try_recv().is_err() && rx3.try_recv().is_err() && rxb.try_recv().is_err());
        assert_eq!(r.counts(ip(2)), (2, 4));
    }

    #[test]
    fn login_and_drop_free_the_place() {
        let r = Unauthenticated::new(1, 1);
        let (p, mut rx) = r.admit(ip(2)).unwrap();
        p.authenticated();
        assert_eq!(rx.try_recv(), Ok(Verdict::Authenticated));
        assert_eq!(r.counts(ip(2)), (0, 0));
        let (p, _) = r.admit(ip(2)).unwrap();
        drop(p);
        assert_eq!(r.counts(ip(2)), (0, 0));
    }
}
