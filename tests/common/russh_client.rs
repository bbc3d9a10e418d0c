//! The russh client side shared by the test binaries (part of the common
//! module): a handler that trusts the test server's host key,
//! connecting, logging in, and opening an SFTP session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The russh client handler: trusts any host key (the server is ours).
pub struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub type Handle = russh::client::Handle<Client>;

/// A client configuration that gives up after `idle` without traffic.
pub fn config(idle: Duration) -> russh::client::Config {
    russh::client::Config {
        inactivity_timeout: Some(idle),
        ..Default::default()
    }
}

/// Connects to the server on 127.0.0.1 (not yet authenticated).
pub async fn connect(port: u16, config: russh::client::Config) -> Result<Handle, russh::Error> {
    russh::client::connect(Arc::new(config), ("127.0.0.1", port), Client).await
}

/// Logs in as `account` with the private key in `key`.
pub async fn key_login(handle: &mut Handle, account: &str, key: &Path) -> Result<(), Error> {
    let key = russh::keys::load_secret_key(key, None)?;
    let auth = handle
        .authenticate_publickey(
            account,
            russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await?;
    match auth.success() {
        true => Ok(()),
        false => Err(format!("key login as {account} refused").into()),
    }
}

/// Logs in as `account` with a password.
pub async fn password_login(
    handle: &mut Handle,
    account: &str,
    password: &str,
) -> Result<(), Error> {
    match handle
        .authenticate_password(account, password)
        .await?
        .success()
    {
        true => Ok(()),
        false => Err(format!("password login as {account} refused").into()),
    }
}

/// Opens an SFTP session on a new channel; requests time out after
/// `timeout_secs`.
pub async fn open_sftp(
    handle: &Handle,
    timeout_secs: u64,
) -> Result<russh_sftp::client::RawSftpSession, Error> {
    let channel = handle.channel_open_session().await?;
    channel.request_subsystem(true, "sftp").await?;
    let sftp = russh_sftp::client::RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(timeout_secs);
    sftp.init().await?;
    Ok(sftp)
}
