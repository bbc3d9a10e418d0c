//! A depot child process on a private temp directory: start, SIGKILL,
//! SIGTERM, restart on the same data, its file descriptors and memory read
//! from /proc. Clients connect with russh (see the clients module).

use super::config::{process_toml, Options};
use super::wait::until_blocking;
use super::TestResult;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Depot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// `ulimit` arguments for the server's open-files limit, e.g.
    /// `-S -n 1024` (a service manager's usual soft limit) or `-n 1024`.
    pub ulimit_nofile: Option<String>,
}

/// The depot binary under test: `DEPOT_BIN` when set (a private copy, for
/// a target directory other builds write to), else the one cargo built.
pub fn depot_bin() -> PathBuf {
    std::env::var_os("DEPOT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_depot")))
}

fn free_port() -> TestResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Depot {
    /// Writes a config with one account (`account_toml` after the key line).
    pub fn new(account: &str, account_toml: &str) -> TestResult<Depot> {
        Depot::with_options(account, account_toml, Options::default())
    }

    /// Like [`Depot::new`], with extra accounts and server settings. Every
    /// account trusts the one client key at [`Depot::key`].
    pub fn with_options(account: &str, account_toml: &str, opts: Options) -> TestResult<Depot> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("accounts"))?;
        depot::keys::generate_ed25519(&root.join("client"), "test")?;
        let public = std::fs::read_to_string(root.join("client.pub"))?;
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| root.join("data"));
        std::fs::write(
            root.join("depot.toml"),
            process_toml(root, port, &data_dir, &opts),
        )?;
        let mut accounts = vec![(account.to_string(), account_toml.to_string())];
        accounts.extend(opts.accounts);
        for (name, toml) in accounts {
            std::fs::write(
                root.join("accounts").join(format!("{name}.toml")),
                format!("authorized_keys = [\"{}\"]\n{toml}", public.trim()),
            )?;
        }
        Ok(Depot {
            dir,
            port,
            data_dir,
            child: None,
            ulimit_nofile: None,
        })
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn db(&self) -> PathBuf {
        self.data_dir.join("depot.db")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// The jail directory of `account` on disk.
    pub fn jail(&self, account: &str) -> PathBuf {
        self.data_dir.join("home").join(account)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) -> TestResult {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("depot.log"))?;
        let mut cmd = match &self.ulimit_nofile {
            // `exec` keeps the pid: the shell becomes depot.
            Some(args) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit {args} && exec \"$0\" \"$@\""))
                    .arg(depot_bin());
                c
            }
            None => Command::new(depot_bin()),
        };
        let child = cmd
            .arg("--config")
            .arg(self.dir.path().join("depot.toml"))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let port = self.port;
        until_blocking(
            Duration::from_secs(20),
            Duration::from_millis(20),
            "depot to accept connections",
            || Ok(std::net::TcpStream::connect(("127.0.0.1", port)).ok()),
        )
        .map_err(|e| format!("depot did not start ({e}): {}", self.log()))?;
        Ok(())
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> TestResult {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()?;
            let status = c.wait()?;
            if !status.success() {
                return Err(format!("depot exited with {status}: {}", self.log()).into());
            }
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns its status
    /// and how long it took (SIGKILL and an error past `limit`).
    pub fn terminate(
        &mut self,
        limit: Duration,
    ) -> TestResult<(std::process::ExitStatus, Duration)> {
        let mut c = self.child.take().ok_or("depot is not running")?;
        let t0 = Instant::now();
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        let exited = until_blocking(
            limit,
            Duration::from_millis(10),
            "depot to exit after SIGTERM",
            || Ok(c.try_wait()?),
        );
        match exited {
            Ok(status) => Ok((status, t0.elapsed())),
            Err(_) => {
                let _ = c.kill();
                let _ = c.wait();
                Err(format!(
                    "depot still running {limit:?} after SIGTERM: {}",
                    self.log()
                )
                .into())
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("depot.log")).unwrap_or_default()
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> TestResult<usize> {
        let pid = self.pid().ok_or("depot is not running")?;
        Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
    }

    /// Peak resident set size (VmHWM) of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> TestResult<u64> {
        let pid = self.pid().ok_or("depot is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .ok_or("no VmHWM")?;
        Ok(line.split_whitespace().nth(1).ok_or("bad VmHWM")?.parse()?)
    }

    /// Waits until no journal row is pending and `done(conversations)` holds.
    pub fn wait_ingested(&self, limit: Duration, done: impl Fn(i64) -> bool) -> TestResult<i64> {
        let mut seen = (0, 0);
        until_blocking(
            limit,
            Duration::from_millis(50),
            "ingestion to settle",
            || {
                let c = super::ingest::open_db(&self.db())?;
                let pending: i64 = c.query_row(
                    "SELECT count(*) FROM journal WHERE state = 'pending'",
                    [],
                    |r| r.get(0),
                )?;
                let convs: i64 = c.query_row(
                    "SELECT count(*) FROM conversations WHERE status != 'superseded'",
                    [],
                    |r| r.get(0),
                )?;
                seen = (pending, convs);
                Ok((pending == 0 && done(convs)).then_some(convs))
            },
        )
        .map_err(|e| format!("{e}: still {} pending, {} conversations", seen.0, seen.1).into())
    }
}

impl Drop for Depot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Tests that measure time take this exclusively; every other test takes
/// it shared, so no load runs beside a latency measurement.
static TIMING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// For tests that measure latency: nothing else runs meanwhile.
pub async fn timing_exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    TIMING.write().await
}

/// For every other test: may run beside each other, not beside a timing test.
pub async fn timing_shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    TIMING.read().await
}
