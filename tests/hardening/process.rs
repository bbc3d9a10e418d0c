//! A depot child process on a private temp directory: start, SIGKILL,
//! SIGTERM, restart on the same data. Clients connect with russh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

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

/// What a test may change in the generated configuration.
#[derive(Default)]
pub struct Options {
    /// Extra accounts: (name, TOML after the client key line).
    pub accounts: Vec<(String, String)>,
    /// Extra lines for `[server]` (e.g. `max_sessions_per_account = 256`).
    pub server: String,
    /// Lines for `[auth]`.
    pub auth: String,
    /// Where the data lives (default: `<dir>/data`).
    pub data_dir: Option<PathBuf>,
    /// Log level (default "warn").
    pub log_level: Option<String>,
}

impl Depot {
    /// Writes a config with one account (`account_toml` after the key line).
    pub fn new(account: &str, account_toml: &str) -> TestResult<Depot> {
        Depot::with_options(account, account_toml, Options::default())
    }

    /// Like [`Depot::new`], with extra accounts and server settings.
    pub fn with_options(account: &str, account_toml: &str, opts: Options) -> TestResult<Depot> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("accounts"))?;
        depot::keys::generate_ed25519(&root.join("client"), "test")?;
        let public = std::fs::read_to_string(root.join("client.pub"))?;
        let data_dir = opts.data_dir.unwrap_or_else(|| root.join("data"));
        std::fs::write(
            root.join("depot.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nhost_keys = [\"{0}/host\"]\ndata_dir = \"{1}\"\n\
                 accounts_dir = \"{0}/accounts\"\n{2}\n[auth]\n{3}\n[log]\nlevel = \"{4}\"\n",
                root.display(),
                data_dir.display(),
                opts.server,
                opts.auth,
                opts.log_level.as_deref().unwrap_or("warn"),
            ),
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("depot did not start: {}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok((status, t0.elapsed()));
            }
            if t0.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!(
                    "depot still running {limit:?} after SIGTERM: {}",
                    self.log()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("depot.log")).unwrap_or_default()
    }
}

impl Drop for Depot {
    fn drop(&mut self) {
        self.kill();
    }
}

use crate::russh_client;
pub use crate::russh_client::Client;

pub struct Session {
    _handle: russh::client::Handle<Client>,
    pub sftp: russh_sftp::client::RawSftpSession,
}

pub async fn connect(port: u16, account: &str, key: &Path) -> TestResult<Session> {
    let mut handle =
        russh_client::connect(port, russh_client::config(Duration::from_secs(20))).await?;
    russh_client::key_login(&mut handle, account, key).await?;
    let sftp = russh_client::open_sftp(&handle, 20).await?;
    Ok(Session {
        _handle: handle,
        sftp,
    })
}

/// Uploads `data` to `path` in chunks; `Ok(true)` only when the server
/// acknowledged the CLOSE.
pub async fn upload(s: &Session, path: &str, data: &[u8]) -> TestResult<bool> {
    use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
    let handle = s
        .sftp
        .open(
            path,
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await?
        .handle;
    for (i, chunk) in data.chunks(16 * 1024).enumerate() {
        s.sftp
            .write(handle.as_str(), (i * 16 * 1024) as u64, chunk.to_vec())
            .await?;
    }
    let status = s.sftp.close(handle).await?;
    Ok(status.status_code == StatusCode::Ok)
}

/// Opens an SSH connection to the server from `local` (any loopback
/// address: 127.0.0.2 is a different source IP for the ban list).
pub async fn ssh_from(
    port: u16,
    local: std::net::IpAddr,
) -> Result<russh::client::Handle<Client>, russh::Error> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let config = russh_client::config(Duration::from_secs(20));
    russh::client::connect_stream(Arc::new(config), stream, Client).await
}

impl Depot {
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

    /// The jail directory of `account` on disk.
    pub fn jail(&self, account: &str) -> PathBuf {
        self.data_dir.join("home").join(account)
    }

    /// Waits until no journal row is pending and `done(conversations)` holds.
    pub fn wait_ingested(&self, limit: Duration, done: impl Fn(i64) -> bool) -> TestResult<i64> {
        let deadline = Instant::now() + limit;
        loop {
            let c = depot::store::open_read(&self.db())?;
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
            if pending == 0 && done(convs) {
                return Ok(convs);
            }
            if Instant::now() > deadline {
                return Err(format!("still {pending} pending, {convs} conversations").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Downloads a whole file.
pub async fn download(s: &Session, path: &str) -> TestResult<Vec<u8>> {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let handle = s
        .sftp
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await?
        .handle;
    let mut out = Vec::new();
    loop {
        match s
            .sftp
            .read(handle.as_str(), out.len() as u64, 64 * 1024)
            .await
        {
            Ok(d) => out.extend_from_slice(&d.data),
            Err(russh_sftp::client::error::Error::Status(st))
                if st.status_code == russh_sftp::protocol::StatusCode::Eof =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    s.sftp.close(handle).await?;
    Ok(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
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
