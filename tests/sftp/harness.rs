//! The test harness: a real depot started in-process on `127.0.0.1:0` inside
//! a temp dir, driven by real clients (OpenSSH `sftp` as a subprocess, and a
//! russh + russh-sftp client for what `sftp` cannot do: passwords, raw
//! requests, connections dropped mid-upload).
//!
//! Outcomes are read back from the file system and from SQLite, never from
//! the server's own answers alone. Nothing here sleeps to wait for an
//! outcome: [`eventually`] polls a condition under a deadline.

use crate::russh_client;
pub use crate::russh_client::Client;
use depot::server::Running;
use depot::store::journal::{self, Entry};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long one OpenSSH `sftp` run may take unless a test says otherwise.
pub const SFTP_TIMEOUT: Duration = Duration::from_secs(60);

/// One account of a test server.
#[derive(Clone)]
pub struct AccountSpec {
    pub name: String,
    /// Log in with a generated ed25519 key (written to `<tmp>/keys/<name>_ed25519`).
    pub key: bool,
    /// Log in with this password (hashed into the account file).
    pub password: Option<String>,
    /// TOML appended to the account file (sections like `[audio]`).
    pub extra: String,
}

impl AccountSpec {
    /// A key-only account with an `/audio` directory taking mp3 and wav in
    /// date directories (the shape every customer has).
    pub fn audio(name: &str) -> Self {
        AccountSpec {
            name: name.to_string(),
            key: true,
            password: None,
            extra: "[audio]\ndir = \"/audio\"\nextensions = [\"mp3\", \"wav\"]\n".into(),
        }
    }

    pub fn with_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }
}

/// What goes into the temp dir's `depot.toml` and accounts directory.
#[derive(Clone)]
pub struct TestConfig {
    pub accounts: Vec<AccountSpec>,
    pub ban_after_failures: u32,
    pub ban_window: String,
    pub ban_duration: String,
    pub max_attempts_per_connection: u32,
    /// Extra lines for `[server]` (e.g. `max_handles_per_session = 8`).
    pub server: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            accounts: vec![AccountSpec::audio("acme")],
            // High enough that no test bans itself by accident.
            ban_after_failures: 1000,
            ban_window: "5m".into(),
            ban_duration: "15m".into(),
            max_attempts_per_connection: 6,
            server: String::new(),
        }
    }
}

/// The output of one OpenSSH `sftp` run.
#[derive(Debug)]
pub struct SftpRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl SftpRun {
    /// Everything the client printed (`sftp -b` splits echo and errors).
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A depot running in-process on a temp dir. Restartable on the same data.
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
        let tmp = tempfile::Builder::new().prefix("depot-it-").tempdir()?;
        let root = tmp.path();
        let data_dir = root.join("data");
        let accounts_dir = root.join("accounts");
        let keys_dir = root.join("keys");
        std::fs::create_dir_all(&accounts_dir)?;
        std::fs::create_dir_all(&keys_dir)?;
        let config_path = root.join("depot.toml");
        std::fs::write(&config_path, depot_toml(&config))?;
        for a in &config.accounts {
            let mut text = String::new();
            if a.key {
                let key_path = keys_dir.join(format!("{}_ed25519", a.name));
                depot::keys::generate_ed25519(&key_path, &format!("{}@test", a.name))?;
                let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
                writeln!(text, "authorized_keys = [{:?}]", public.trim())?;
            }
            if let Some(pw) = &a.password {
                let hash = depot::sftp::auth::hash_password(pw)?;
                writeln!(text, "password_hash = {hash:?}")?;
            }
            text.push_str(&a.extra);
            std::fs::write(accounts_dir.join(format!("{}.toml", a.name)), text)?;
        }
        let mut server = TestServer {
            tmp,
            config_path,
            data_dir,
            accounts_dir,
            running: None,
        };
        server.boot().await?;
        Ok(server)
    }

    /// Loads the settings from disk (as `depot serve` would) and starts.
    async fn boot(&mut self) -> TestResult {
        let settings = depot::config::Settings::load(&self.config_path, self.tmp.path())?;
        self.running = Some(depot::server::start(settings).await?);
        Ok(())
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the server is running")
    }

    pub fn port(&self) -> u16 {
        self.running().addr().port()
    }

    /// The HTTP API's base URL (`http://127.0.0.1:PORT`).
    #[allow(dead_code)] // the HTTP tests live in the pipeline binary
    pub fn http_url(&self) -> String {
        let addr = self.running().http_addr.expect("[http] is configured");
        format!("http://{addr}")
    }

    /// The HTTP API's tokens file (starts absent: no token is valid).
    #[allow(dead_code)]
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

    /// Every journal row of `account`, oldest first.
    pub fn journal(&self, account: &str) -> TestResult<Vec<Entry>> {
        let conn = depot::store::open_read(&self.db_path())?;
        Ok(journal::for_account(&conn, account)?)
    }

    pub fn pending(&self) -> TestResult<Vec<Entry>> {
        let conn = depot::store::open_read(&self.db_path())?;
        Ok(journal::pending(&conn)?)
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
        let batch_file = tempfile::Builder::new()
            .prefix("batch-")
            .tempfile_in(self.tmp.path())?;
        std::fs::write(batch_file.path(), batch)?;
        let child = tokio::process::Command::new("sftp")
            .arg("-b")
            .arg(batch_file.path())
            .arg("-i")
            .arg(self.key_path(account))
            .arg("-P")
            .arg(self.port().to_string())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-F",
                "/dev/null",
            ])
            .arg(format!("{account}@127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| format!("sftp did not finish within {limit:?}; batch:\n{batch}"))??;
        Ok(SftpRun {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
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

    /// A russh client logged in with the account's key, with an SFTP
    /// session. Keep the handle alive as long as the session is used.
    pub async fn raw_sftp(&self, account: &str) -> TestResult<RawClient> {
        let mut handle = self.connect().await?;
        russh_client::key_login(&mut handle, account, &self.key_path(account)).await?;
        RawClient::open(handle).await
    }

    /// Like [`TestServer::raw_sftp`], logged in with a password.
    pub async fn password_sftp(&self, account: &str, password: &str) -> TestResult<RawClient> {
        let mut handle = self.connect().await?;
        russh_client::password_login(&mut handle, account, password).await?;
        RawClient::open(handle).await
    }
}

fn depot_toml(c: &TestConfig) -> String {
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         host_keys = [\"keys/ssh_host_ed25519_key\"]\n\
         data_dir = \"data\"\n\
         accounts_dir = \"accounts\"\n\
         idle_timeout = \"2m\"\n\
         {}\n\
         \n\
         [auth]\n\
         max_attempts_per_connection = {}\n\
         ban_after_failures = {}\n\
         ban_window = {:?}\n\
         ban_duration = {:?}\n\
         max_concurrent_password_checks = 2\n\
         \n\
         [http]\n\
         listen = \"127.0.0.1:0\"\n\
         tokens_file = \"tokens.toml\"\n\
         \n\
         [log]\n\
         level = \"warn\"\n",
        c.server, c.max_attempts_per_connection, c.ban_after_failures, c.ban_window, c.ban_duration
    )
}

/// An authenticated russh connection with a raw SFTP session on it.
pub struct RawClient {
    pub handle: russh::client::Handle<Client>,
    pub sftp: russh_sftp::client::RawSftpSession,
}

impl RawClient {
    async fn open(handle: russh::client::Handle<Client>) -> TestResult<RawClient> {
        let sftp = russh_client::open_sftp(&handle, 30).await?;
        Ok(RawClient { handle, sftp })
    }

    /// Drops the TCP connection without closing anything first (what a
    /// client crash or a network cut looks like to the server).
    pub async fn cut(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        drop(self.sftp);
        drop(self.handle);
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually<F>(limit: Duration, what: &str, mut cond: F) -> TestResult
where
    F: FnMut() -> bool,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Async variant of [`eventually`].
pub async fn eventually_async<F, Fut>(limit: Duration, what: &str, mut cond: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> TestResult<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Deterministic, incompressible-looking test content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every file and directory under `dir` with its size and content hash,
/// for "nothing changed here" assertions.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p.clone());
                out.push((p, 0, "dir".into()));
            } else {
                let h = std::fs::read(&p)
                    .map(|b| sha256_hex(&b))
                    .unwrap_or_default();
                out.push((p, md.len(), h));
            }
        }
    }
    out.sort();
    out
}
