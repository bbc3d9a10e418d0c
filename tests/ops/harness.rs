//! The operations tests' harness: a real depot started in-process on
//! `127.0.0.1:0` inside a temp dir, the `depot` binary run as operators run
//! it (`--config`, from the temp dir, no terminal), password logins through
//! a russh client, and outcomes read back from SQLite. Waits are polls under
//! a deadline, never bare sleeps. (Same shape as tests/sftp/harness.rs,
//! which belongs to the SFTP suite.)

use crate::russh_client;
pub use crate::russh_client::Client;
use depot::server::Running;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const PASSWORD: &str = "correct horse battery staple";

/// The seed's file-name template.
pub const TEMPLATE: &str = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}";

/// An account file body: password login, `/audio` with the seed template,
/// then `extra` sections.
pub fn account_toml(extra: &str) -> TestResult<String> {
    let hash = depot::sftp::auth::hash_password(PASSWORD)?;
    Ok(format!(
        "password_hash = {hash:?}\ntimezone = \"Europe/Paris\"\n\n[audio]\ndir = \"/audio\"\nfilename = {TEMPLATE:?}\n{extra}"
    ))
}

/// A valid recording's name for call `i` (reason `reason`) and its bytes
/// (contents differ per call).
pub fn recording(i: u32, reason: &str) -> (String, Vec<u8>) {
    let (h, m, s) = (8 + i / 3600, (i / 60) % 60, i % 60);
    let name = format!(
        "2026_02_11_{h:02}_{m:02}_{s:02}_Jean-Pierre_Dupont_Entrant_478_0682316817_{reason}.wav"
    );
    let secs = 0.05 + f64::from(i % 100) * 0.001;
    (name, depot::pipeline::audio::sine_wav(secs, 8000))
}

/// Writes `n` recordings into `<dir>/20260211/`.
pub fn recordings(dir: &Path, n: u32, reason: &str) -> TestResult<PathBuf> {
    let day = dir.join("20260211");
    std::fs::create_dir_all(&day)?;
    for i in 0..n {
        let (name, bytes) = recording(i, reason);
        std::fs::write(day.join(name), bytes)?;
    }
    Ok(dir.to_path_buf())
}

/// A depot on a temp dir, restartable on the same data; or no server at
/// all, for commands run while depot is stopped.
pub struct Depot {
    pub tmp: TempDir,
    pub config_path: PathBuf,
    pub accounts_dir: PathBuf,
    pub data_dir: PathBuf,
    running: Option<Running>,
}

impl Depot {
    /// Writes `depot.toml` and one file per `(name, body)`; does not start.
    pub fn new(accounts: &[(&str, String)]) -> TestResult<Depot> {
        let tmp = tempfile::Builder::new().prefix("depot-ops-").tempdir()?;
        let root = tmp.path();
        let accounts_dir = root.join("accounts");
        std::fs::create_dir_all(&accounts_dir)?;
        std::fs::create_dir_all(root.join("keys"))?;
        let config_path = root.join("depot.toml");
        std::fs::write(
            &config_path,
            "[server]\nlisten = \"127.0.0.1:0\"\nhost_keys = [\"keys/ssh_host_ed25519_key\"]\n\
             data_dir = \"data\"\naccounts_dir = \"accounts\"\nidle_timeout = \"2m\"\nfsync = false\n\n\
             [auth]\nban_after_failures = 1000\nmax_concurrent_password_checks = 4\n\n\
             [log]\nlevel = \"warn\"\n",
        )?;
        for (name, body) in accounts {
            std::fs::write(accounts_dir.join(format!("{name}.toml")), body)?;
        }
        Ok(Depot {
            data_dir: root.join("data"),
            tmp,
            config_path,
            accounts_dir,
            running: None,
        })
    }

    pub async fn start(&mut self) -> TestResult {
        let settings = depot::config::Settings::load(&self.config_path, self.tmp.path())?;
        self.running = Some(depot::server::start(settings).await?);
        Ok(())
    }

    pub async fn stop(&mut self) -> TestResult {
        if let Some(r) = self.running.take() {
            r.shutdown().await?;
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.running
            .as_ref()
            .expect("the server runs")
            .addr()
            .port()
    }

    pub fn account_file(&self, name: &str) -> PathBuf {
        self.accounts_dir.join(format!("{name}.toml"))
    }

    pub fn jail(&self, account: &str) -> PathBuf {
        self.data_dir.join("home").join(account)
    }

    pub fn local(&self, name: &str) -> PathBuf {
        self.tmp.path().join("local").join(name)
    }

    /// Runs the `depot` binary from the temp dir with this config.
    pub async fn cli(&self, args: &[&str]) -> TestResult<Output> {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_depot"))
            .current_dir(self.tmp.path())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        Ok(tokio::time::timeout(Duration::from_secs(300), out).await??)
    }

    /// Like [`Depot::cli`], but the command must exit 0; returns stdout.
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

    fn db(&self) -> TestResult<rusqlite::Connection> {
        Ok(depot::store::open_read(&self.data_dir.join("depot.db"))?)
    }

    /// Conversations of `account` that are not superseded.
    pub fn conversations(&self, account: &str) -> TestResult<i64> {
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

    pub fn journal_rows(&self, account: &str) -> TestResult<usize> {
        Ok(depot::store::journal::for_account(&self.db()?, account)?.len())
    }

    /// A russh connection logged in with the password, or why not.
    pub async fn login(&self, account: &str) -> TestResult<Session> {
        let mut handle =
            russh_client::connect(self.port(), russh_client::config(Duration::from_secs(30)))
                .await?;
        russh_client::password_login(&mut handle, account, PASSWORD).await?;
        let sftp = russh_client::open_sftp(&handle, 10).await?;
        Ok(Session { handle, sftp })
    }

    /// Polls `what` every 50 ms until it holds, or fails after `limit`.
    pub async fn eventually<F, Fut>(&self, limit: Duration, what: &str, mut cond: F) -> TestResult
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !cond().await {
            if Instant::now() >= deadline {
                return Err(format!("timed out after {limit:?} waiting for: {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// A logged-in SFTP session.
pub struct Session {
    pub handle: russh::client::Handle<Client>,
    pub sftp: russh_sftp::client::RawSftpSession,
}
