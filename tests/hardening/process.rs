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
    child: Option<Child>,
}

fn free_port() -> TestResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Depot {
    /// Writes a config with one account (`account_toml` after the key line).
    pub fn new(account: &str, account_toml: &str) -> TestResult<Depot> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("accounts"))?;
        depot::keys::generate_ed25519(&root.join("client"), "test")?;
        let public = std::fs::read_to_string(root.join("client.pub"))?;
        std::fs::write(
            root.join("depot.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nhost_keys = [\"{0}/host\"]\ndata_dir = \"{0}/data\"\n\
                 accounts_dir = \"{0}/accounts\"\n[log]\nlevel = \"warn\"\n",
                root.display()
            ),
        )?;
        std::fs::write(
            root.join("accounts").join(format!("{account}.toml")),
            format!("authorized_keys = [\"{}\"]\n{account_toml}", public.trim()),
        )?;
        Ok(Depot {
            dir,
            port,
            child: None,
        })
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data/depot.db")
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
        let child = Command::new(env!("CARGO_BIN_EXE_depot"))
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("depot.log")).unwrap_or_default()
    }
}

impl Drop for Depot {
    fn drop(&mut self) {
        self.kill();
    }
}

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

pub struct Session {
    _handle: russh::client::Handle<Client>,
    pub sftp: russh_sftp::client::RawSftpSession,
}

pub async fn connect(port: u16, account: &str, key: &Path) -> TestResult<Session> {
    let key = russh::keys::load_secret_key(key, None)?;
    let config = russh::client::Config {
        inactivity_timeout: Some(Duration::from_secs(20)),
        ..Default::default()
    };
    let mut handle = russh::client::connect(Arc::new(config), ("127.0.0.1", port), Client).await?;
    let auth = handle
        .authenticate_publickey(
            account,
            russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await?;
    if !auth.success() {
        return Err("login refused".into());
    }
    let channel = handle.channel_open_session().await?;
    channel.request_subsystem(true, "sftp").await?;
    let sftp = russh_sftp::client::RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(20);
    sftp.init().await?;
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
