//! The handle budget: every open file or directory handle holds one
//! descriptor, counted per session (one SSH connection, all its SFTP
//! channels together), per account and for the whole server.
//!
//! The server's share is what the process's descriptor limit leaves after
//! sockets, the database and the pipeline, so that clients opening handles
//! without end never make `accept` or SQLite fail with EMFILE. No account
//! may hold more than half of it, whatever `max_handles_per_account` says:
//! an account opening handles on every connection it may have still
//! leaves the others room to upload and read.

use crate::config::ServerConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The limits in force (after capping by the descriptor limit).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) server: usize,
    pub(crate) account: usize,
    pub(crate) session: usize,
}

#[derive(Default)]
struct Counts {
    server: usize,
    accounts: HashMap<String, usize>,
    /// A session is known by its peer address and port: unique among the
    /// connections alive at once, and known to every channel of it.
    sessions: HashMap<SocketAddr, usize>,
}

pub(crate) struct Budget {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// Which budget refused a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Session(usize),
    Account(usize),
    Server(usize),
}

impl Refused {
    /// What the client is told.
    pub(crate) fn message(self) -> String {
        match self {
            Refused::Session(n) => {
                format!(
                    "Too many open handles on this connection (at most {n}); close some and retry"
                )
            }
            Refused::Account(n) => {
                format!(
                    "Too many open handles for this account (at most {n}); close some and retry"
                )
            }
            Refused::Server(_) => "The server has too many open files; retry later".into(),
        }
    }
}

impl Budget {
    pub(crate) fn new(server: &ServerConfig) -> Budget {
        let total = file_handle_budget(server.max_sessions);
        let limits = limits(
            total,
            server.max_handles_per_account,
            server.max_handles_per_session,
        );
        if limits.account < server.max_handles_per_account
            || limits.session < server.max_handles_per_session
        {
            tracing::warn!(
                file_handles = total,
                per_account = limits.account,
                per_session = limits.session,
                "the open-files limit caps the handle budgets below server.max_handles_per_account/per_session; raise `ulimit -n` (LimitNOFILE) to give them their configured values"
            );
        }
        Budget {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one handle of `account`'s session from `peer`, or says which
    /// budget is spent.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        account: &str,
        peer: SocketAddr,
    ) -> Result<HandleSlot, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let session = c.sessions.get(&peer).copied().unwrap_or(0);
        let acc = c.accounts.get(account).copied().unwrap_or(0);
        let l = self.limits;
        let refused = if session >= l.session {
            Some(Refused::Session(l.session))
        } else if acc >= l.account {
            Some(Refused::Account(l.account))
        } else if c.server >= l.server {
            Some(Refused::Server(l.server))
        } else {
            None
        };
        if let Some(r) = refused {
            drop(c);
            tracing::warn!(account, ip = %peer.ip(), budget = ?r, "handle budget spent; open refused");
            return Err(r);
        }
        c.server += 1;
        *c.accounts.entry(account.to_string()).or_insert(0) += 1;
        *c.sessions.entry(peer).or_insert(0) += 1;
        Ok(HandleSlot {
            budget: self.clone(),
            account: account.to_string(),
            peer,
        })
    }

    fn release(&self, account: &str, peer: SocketAddr) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.server = c.server.saturating_sub(1);
        decrement(&mut c.accounts, account);
        decrement(&mut c.sessions, &peer);
    }

    /// Handles open now: (server, account, session of `peer`).
    #[cfg(test)]
    fn in_use(&self, account: &str, peer: SocketAddr) -> (usize, usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (
            c.server,
            c.accounts.get(account).copied().unwrap_or(0),
            c.sessions.get(&peer).copied().unwrap_or(0),
        )
    }
}

/// Forgets keys whose count reaches zero: the maps hold live ones only.
fn decrement<K>(map: &mut HashMap<K::Owned, usize>, key: &K)
where
    K: std::hash::Hash + Eq + ToOwned + ?Sized,
    K::Owned: std::hash::Hash + Eq + std::borrow::Borrow<K>,
{
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The budgets given `total` handles for the server: no account more than
/// half of it, no session more than its account.
fn limits(total: usize, per_account: usize, per_session: usize) -> Limits {
    let account = per_account.min((total / 2).max(1));
    Limits {
        server: total,
        account,
        session: per_session.min(account),
    }
}

/// One open handle's claim on the budgets, given back on drop.
pub(crate) struct HandleSlot {
    budget: Arc<Budget>,
    account: String,
    peer: SocketAddr,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.budget.release(&self.account, self.peer);
    }
}

/// Raises the soft open-files limit to the hard one (service managers
/// commonly start daemons at 1024), then returns how many handles all
/// sessions may hold: the limit less a reserve for every session's socket
/// and jail directory, the database and the pipeline.
fn file_handle_budget(max_sessions: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            let raised = rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %e, "cannot raise the open-files limit");
            }
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20) as usize;
    let reserve = 2 * max_sessions + 128;
    let budget = soft.saturating_sub(reserve).max(soft / 4);
    tracing::info!(fd_limit = soft, file_handles = budget, "open-files limit");
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: usize, account: usize, session: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limits: limits(total, account, session),
            counts: Mutex::new(Counts::default()),
        })
    }

    #[test]
    fn descriptor_limit_caps_accounts_at_half_and_sessions_at_their_account() {
        let l = limits(896, 1024, 256);
        assert_eq!((l.server, l.account, l.session), (896, 448, 256));
        let l = limits(256, 1024, 256);
        assert_eq!((l.account, l.session), (128, 128));
        let l = limits(100_000, 1024, 256);
        assert_eq!((l.account, l.session), (1024, 256));
    }

    #[test]
    fn each_budget_refuses_in_turn_and_slots_give_back() {
        let b = budget(10, 4, 3);
        let (p1, p2, p3): (SocketAddr, SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        );
        let mut held: Vec<HandleSlot> = (0..3).map(|_| b.reserve("a", p1).unwrap()).collect();
        assert_eq!(b.reserve("a", p1).err(), Some(Refused::Session(3)));
        held.push(b.reserve("a", p2).unwrap());
        assert_eq!(b.reserve("a", p2).err(), Some(Refused::Account(4)));
        // Another account still has room, until the server's is spent.
        held.extend((0..3).map(|_| b.reserve("b", p3).unwrap()));
        assert_eq!(b.in_use("b", p3), (7, 3, 3));
        let p4: SocketAddr = "127.0.0.1:4".parse().unwrap();
        held.extend((0..3).map(|_| b.reserve("c", p4).unwrap()));
        assert_eq!(b.reserve("d", p4).err(), Some(Refused::Session(3)));
        let p5: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(b.reserve("d", p5).err(), Some(Refused::Server(10)));
        drop(held);
        assert_eq!(b.in_use("a", p1), (0, 0, 0));
        let c = b.counts.lock().unwrap();
        assert!(c.accounts.is_empty() && c.sessions.is_empty());
    }
}
