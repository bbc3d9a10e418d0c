//! One SSH connection: authentication (password, public key,
//! keyboard-interactive mapped to password), then the `sftp` subsystem.
//! Nothing else (shells, exec, forwarding) is offered.
//!
//! Once logged in, a small task per connection watches the accounts in force
//! and disconnects the session when its account is removed; a changed
//! account keeps serving its open sessions. Logging in frees the
//! connection's place among the unauthenticated and takes a session slot
//! of the server and of the account.

use super::admission::Pending;
use super::auth::{ip_allowed, FailureOutcome};
use super::{AccountSlot, Shared};
use crate::config::Account;
use crate::metrics::Metrics;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    account: Option<Arc<Account>>,
    slot: Option<AccountSlot>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The connection's place among the unauthenticated, until login.
    pending: Option<Pending>,
    opened_at: Instant,
    /// Closes the session if its account is removed; stopped on drop.
    removal_watch: Option<tokio::task::AbortHandle>,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr, pending: Pending) -> Self {
        Connection {
            shared,
            peer,
            account: None,
            slot: None,
            channels: HashMap::new(),
            pending: Some(pending),
            opened_at: Instant::now(),
            removal_watch: None,
        }
    }

    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[
                    MethodKind::PublicKey,
                    MethodKind::Password,
                    MethodKind::KeyboardInteractive,
                ][..],
            )),
            partial_success: false,
        }
    }

    /// Counts a failed attempt against the source IP and logs why (the
    /// client hears nothing but "rejected"). An address banned meanwhile
    /// (its attempt started before the ban) is disconnected instead: it
    /// gets no further tries on a connection it opened before the ban.
    fn failed(&self, user: &str, method: &str, why: &str) -> Result<Auth, russh::Error> {
        let m = &self.shared.metrics;
        let ip = self.peer.ip();
        match self.shared.bans.record_failure(ip, Instant::now()) {
            FailureOutcome::AlreadyBanned => return Err(self.refuse_banned()),
            FailureOutcome::BannedNow => {
                Metrics::add(&m.auth_failures, 1);
                tracing::info!(ip = %ip, user, method, reason = why, "authentication failed");
                Metrics::add(&m.bans, 1);
                tracing::warn!(
                    ip = %ip,
                    duration = %humantime::format_duration(self.shared.bans.ban_duration()),
                    "address banned after repeated authentication failures"
                );
            }
            FailureOutcome::Counted(_) => {
                Metrics::add(&m.auth_failures, 1);
                tracing::info!(ip = %ip, user, method, reason = why, "authentication failed");
            }
        }
        Ok(Self::reject())
    }

    fn banned(&self) -> bool {
        self.shared.bans.is_banned(self.peer.ip(), Instant::now())
    }

    /// Ends a connection whose address is banned: the error closes it.
    fn refuse_banned(&self) -> russh::Error {
        tracing::debug!(ip = %self.peer.ip(), "login attempt from a banned address; disconnecting");
        russh::Error::Disconnect
    }

    /// Final checks common to every method, then the session is the account's.
    fn accept(&mut self, account: Arc<Account>, method: &str) -> Auth {
        let slot = match self.shared.acquire_account_slot(&account.name) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::warn!(account = %account.name, ip = %self.peer.ip(), limit, "session limit reached; login refused");
                return Self::reject();
            }
        };
        if let Some(p) = self.pending.take() {
            p.authenticated();
        }
        tracing::info!(account = %account.name, ip = %self.peer.ip(), method, "session opened");
        Metrics::add(&self.shared.metrics.sessions, 1);
        self.slot = Some(slot);
        self.account = Some(account);
        Auth::Accept
    }

    async fn password_login(
        &mut self,
        user: &str,
        password: &str,
        method: &str,
    ) -> Result<Auth, russh::Error> {
        if self.account.is_some() {
            return Ok(Self::reject());
        }
        let account = self.shared.account(user);
        let hash = account.as_ref().and_then(|a| a.password_hash.as_deref());
        // Checked again when this address's turn comes: no argon2 work
        // for an address banned while its attempt queued.
        let ok = self
            .shared
            .passwords
            .verify(self.peer.ip(), hash, password, || !self.banned())
            .await;
        let Some(ok) = ok else {
            return Err(self.refuse_banned());
        };
        match account {
            None => self.failed(user, method, "unknown user"),
            Some(_) if !ok => self.failed(user, method, "wrong password"),
            Some(a) if !ip_allowed(&a, self.peer.ip()) => {
                self.failed(user, method, "address not in allowed_ips")
            }
            Some(a) => Ok(self.accept(a, method)),
        }
    }

    fn key_allowed(
        &self,
        user: &str,
        key: &russh::keys::PublicKey,
    ) -> Result<Arc<Account>, &'static str> {
        let account = self.shared.account(user).ok_or("unknown user")?;
        if !account
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
        {
            return Err("key not authorised");
        }
        if !ip_allowed(&account, self.peer.ip()) {
            return Err("address not in allowed_ips");
        }
        Ok(account)
    }
}

/// Disconnects `handle` when `account` leaves the accounts in force. Ends
/// quietly when the accounts channel closes (server shutdown).
async fn close_when_removed(
    mut accounts: tokio::sync::watch::Receiver<crate::config::Accounts>,
    account: String,
    ip: std::net::IpAddr,
    handle: russh::server::Handle,
) {
    loop {
        if !accounts.borrow_and_update().contains_key(&account) {
            tracing::info!(account = %account, ip = %ip, "account removed; closing its session");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "account closed".into(),
                    String::new(),
                )
                .await;
            return;
        }
        if accounts.changed().await.is_err() {
            return;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(w) = &self.removal_watch {
            w.abort();
        }
        if let Some(a) = &self.account {
            tracing::info!(
                account = %a.name,
                ip = %self.peer.ip(),
                duration_ms = self.opened_at.elapsed().as_millis() as u64,
                "session closed"
            );
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(a) = &self.account {
            let task = tokio::spawn(close_when_removed(
                self.shared.accounts.clone(),
                a.name.clone(),
                self.peer.ip(),
                session.handle(),
            ));
            self.removal_watch = Some(task.abort_handle());
        }
        Ok(())
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.password_login(user, password, "password").await
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer proves nothing: not counted as a failure (clients offer
        // every key of their agent), only the signed attempt is.
        Ok(match self.key_allowed(user, offer.public_key) {
            Ok(_) => Auth::Accept,
            Err(_) => Self::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.account.is_some() {
            return Ok(Self::reject());
        }
        if self.banned() {
            return Err(self.refuse_banned());
        }
        match self.key_allowed(user, key.public_key) {
            Ok(a) => Ok(self.accept(a, "publickey")),
            Err(why) => self.failed(user, "publickey", why),
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let answer =
            response.and_then(|mut r| r.next().map(|b| String::from_utf8_lossy(&b).into_owned()));
        match answer {
            None => Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Borrowed(""),
                prompts: Cow::Owned(vec![(Cow::Borrowed("Password: "), false)]),
            }),
            Some(pw) => self.password_login(user, &pw, "keyboard-interactive").await,
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.account.is_none() || self.channels.len() >= 4 {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(account), true) = (self.account.clone(), name == "sftp") else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let sftp = match super::fs::SftpSession::start(self.shared.clone(), account, self.peer)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot prepare the account's jail; check data_dir permissions");
                session.channel_failure(channel_id)?;
                return Ok(());
            }
        };
        session.channel_success(channel_id)?;
        super::channel::serve(channel, sftp);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}
