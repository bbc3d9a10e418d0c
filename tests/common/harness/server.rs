//! A real depot started in-process on `127.0.0.1:0` inside a temp dir,
//! restartable on the same data, or left stopped for commands an operator
//! runs while depot is down. Its outcomes are read back from the file
//! system and from SQLite, never from the server's own answers alone; the
//! `depot` binary is run on the same config the way an operator runs it.

use super::clients::{self, Session, SftpRun, SFTP_TIMEOUT};
use super::config::{depot_toml, write_accounts, TestConfig};
use super::russh_client::{self, Client};
use super::wait::until_async;
use super::TestResult;
use depot::server::Running;
use depot::store::journal::{self, Entry};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use tempfile::TempDir;

/// A depot running in-process on a temp dir.
pub struct TestServer {
    pub tmp: TempDir,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub accounts_dir: PathBuf,
    running: Option<Running>,
}

impl TestServer {
    /// Starts a server with the default config (one account, `acme`).
    pub async fn start() -> TestResult<TestServer> {
        Self::start_with(TestConfig::default()).await
    }

    pub async fn start_with(config: TestConfig) -> TestResult<TestServer> {
        let mut server = Self::prepare(config)?;
        server.boot().await?;
        Ok(server)
    }

    /// Writes `depot.toml`, the accounts and their keys; does not start.
    pub fn prepare(config: TestConfig) -> TestResult<TestServer> {
        let tmp = tempfile::Builder::new().prefix("depot-it-").tempdir()?;
        let root = tmp.path();
        let accounts_dir = root.join("accounts");
        let keys_dir = root.join("keys");
        std::fs::create_dir_all(&accounts_dir)?;
        std::fs::create_dir_all(&keys_dir)?;
        let config_path = root.join("depot.toml");
        std::fs::write(&config_path, depot_toml(&config))?;
        write_accounts(&accounts_dir, &keys_dir, &config.accounts)?;
        Ok(TestServer {
            data_dir: root.join("data"),
            tmp,
            config_path,
            accounts_dir,
            running: None,
        })
    }

    /// Loads the settings from disk (as `depot serve` would) and starts.
    ///
    /// A start refused because this very process still holds the data
    /// directory's lock is tried again: a child that another test forked
    /// while the previous server ran keeps a copy of that lock until it
    /// execs. Only servers started in-process beside parallel tests meet
    /// this; a lock held by anyone else fails at once.
    pub async fn boot(&mut self) -> TestResult {
        let own = format!("another depot serve (pid {})", std::process::id());
        let (config_path, root, own) = (&self.config_path, self.tmp.path(), &own);
        let running = until_async(
            Duration::from_secs(10),
            "the data directory's lock to be released by this process",
            || async move {
                let settings = depot::config::Settings::load(config_path, root)?;
                match depot::server::start(settings).await {
                    Ok(running) => Ok(Some(running)),
                    Err(e) if format!("{e:#}").contains(own) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await?;
        self.running = Some(running);
        Ok(())
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the server is running")
    }

    pub fn port(&self) -> u16 {
        self.running().addr().port()
    }

    /// The HTTP API's base URL (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        let addr = self.running().http_addr.expect("[http] is configured");
        format!("http://{addr}")
    }

    /// The HTTP API's tokens file (starts absent: no token is valid).
    pub fn tokens_file(&self) -> PathBuf {
        self.tmp.path().join("tokens.toml")
    }

    /// Graceful shutdown; the temp dir stays for inspection or a restart.
    pub async fn stop(&mut self) -> TestResult {
        if let Some(r) = self.running.take() {
            r.shutdown().await?;
        }
        Ok(())
    }

    /// Starts again on the same config and data (a new port).
    pub async fn restart(&mut self) -> TestResult {
        self.stop().await?;
        self.boot().await
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("depot.db")
    }

    pub fn key_path(&self, account: &str) -> PathBuf {
        self.tmp
            .path()
            .join("keys")
            .join(format!("{account}_ed25519"))
    }

    /// `<accounts>/<name>.toml`, for edits while the server runs.
    pub fn account_file(&self, name: &str) -> PathBuf {
        self.accounts_dir.join(format!("{name}.toml"))
    }

    /// `<data>/home/<account>`: the account's jail on the real file system.
    pub fn jail(&self, account: &str) -> PathBuf {
        self.data_dir.join("home").join(account)
    }

    /// A scratch directory for the client's local files.
    pub fn local(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join("local");
        std::fs::create_dir_all(&dir).expect("create local dir");
        dir.join(name)
    }

    fn db(&self) -> TestResult<rusqlite::Connection> {
        super::ingest::open_db(&self.db_path())
    }

    /// Every journal row of `account`, oldest first.
    pub fn journal(&self, account: &str) -> TestResult<Vec<Entry>> {
        Ok(journal::for_account(&self.db()?, account)?)
    }

    pub fn pending(&self) -> TestResult<Vec<Entry>> {
        Ok(journal::pending(&self.db()?)?)
    }

    pub fn journal_rows(&self, account: &str) -> TestResult<usize> {
        Ok(self.journal(account)?.len())
    }

    /// Conversations of `account` that are not superseded.
    pub fn live_conversations(&self, account: &str) -> TestResult<i64> {
        Ok(self.db()?.query_row(
            "SELECT count(*) FROM conversations WHERE account = ?1 AND status != 'superseded'",
            [account],
            |r| r.get(0),
        )?)
    }

    pub fn open_rejections(&self, account: &str) -> TestResult<i64> {
        Ok(self.db()?.query_row(
            "SELECT count(*) FROM rejections WHERE account = ?1 AND cleared_at IS NULL",
            [account],
            |r| r.get(0),
        )?)
    }

    /// Runs the `depot` binary from the temp dir with this config, as an
    /// operator in the install directory would (no terminal, and no
    /// `RUST_LOG` from the test's environment changing what it prints).
    pub async fn cli(&self, args: &[&str]) -> TestResult<Output> {
        clients::depot_cli(self.tmp.path(), &self.config_path, args).await
    }

    /// Like [`TestServer::cli`], but the command must exit 0; returns stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> TestResult<String> {
        let out = self.cli(args).await?;
        if !out.status.success() {
            return Err(format!(
                "depot {args:?} failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs OpenSSH `sftp -b` with `batch` as `account` (key login).
    pub async fn sftp(&self, account: &str, batch: &str) -> TestResult<SftpRun> {
        self.sftp_with_timeout(account, batch, SFTP_TIMEOUT).await
    }

    pub async fn sftp_with_timeout(
        &self,
        account: &str,
        batch: &str,
        limit: Duration,
    ) -> TestResult<SftpRun> {
        clients::openssh_sftp(
            self.port(),
            account,
            &self.key_path(account),
            batch,
            self.tmp.path(),
            limit,
        )
        .await
    }

    /// Like [`TestServer::sftp`], but the batch must succeed.
    pub async fn sftp_ok(&self, account: &str, batch: &str) -> TestResult<SftpRun> {
        let run = self.sftp(account, batch).await?;
        if !run.success {
            return Err(format!("sftp failed; batch:\n{batch}\noutput:\n{}", run.output()).into());
        }
        Ok(run)
    }

    /// A russh connection (not yet authenticated).
    pub async fn connect(&self) -> Result<russh::client::Handle<Client>, russh::Error> {
        russh_client::connect(self.port(), russh_client::config(Duration::from_secs(30))).await
    }

    /// A russh client logged in with the account's key, with an SFTP session.
    pub async fn raw_sftp(&self, account: &str) -> TestResult<Session> {
        let mut handle = self.connect().await?;
        russh_client::key_login(&mut handle, account, &self.key_path(account)).await?;
        Session::open(handle, 30).await
    }

    /// Like [`TestServer::raw_sftp`], logged in with a password.
    pub async fn password_sftp(&self, account: &str, password: &str) -> TestResult<Session> {
        let mut handle = self.connect().await?;
        russh_client::password_login(&mut handle, account, password).await?;
        Session::open(handle, 30).await
    }
}
