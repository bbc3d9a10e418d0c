//! The clients tests drive a server with: OpenSSH `sftp -b` as a
//! subprocess (what customers run), the `depot` binary (what operators
//! run), and a russh + russh-sftp session for
//! what `sftp` cannot express (passwords, handles kept open, raw requests,
//! connections cut mid-upload, a chosen source address).

use super::russh_client::{self, Client};
use super::TestResult;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// How long one OpenSSH `sftp` run may take unless a test says otherwise.
pub const SFTP_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Runs OpenSSH `sftp -b` with `batch` against `127.0.0.1:port` as
/// `account`, logging in with the private key `key`; the batch file is
/// written into `scratch`. Killed if it runs past `limit`.
pub async fn openssh_sftp(
    port: u16,
    account: &str,
    key: &Path,
    batch: &str,
    scratch: &Path,
    limit: Duration,
) -> TestResult<SftpRun> {
    let batch_file = tempfile::Builder::new()
        .prefix("batch-")
        .tempfile_in(scratch)?;
    std::fs::write(batch_file.path(), batch)?;
    let child = tokio::process::Command::new("sftp")
        .arg("-b")
        .arg(batch_file.path())
        .arg("-i")
        .arg(key)
        .arg("-P")
        .arg(port.to_string())
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

/// Runs the `depot` binary with `--config config` from `cwd`, as an
/// operator would: no terminal, and no `RUST_LOG` from the test's
/// environment changing what it prints. Killed past 300 s.
pub async fn depot_cli(cwd: &Path, config: &Path, args: &[&str]) -> TestResult<Output> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .current_dir(cwd)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .map_err(|_| format!("depot {args:?} ran past 300 s"))??)
}

/// An authenticated russh connection with a raw SFTP session on it. Keep
/// it alive as long as the session is used.
pub struct Session {
    pub handle: russh::client::Handle<Client>,
    pub sftp: russh_sftp::client::RawSftpSession,
}

impl Session {
    /// Opens the SFTP subsystem on `handle`; requests time out after
    /// `timeout_secs`.
    pub async fn open(
        handle: russh::client::Handle<Client>,
        timeout_secs: u64,
    ) -> TestResult<Session> {
        let sftp = russh_client::open_sftp(&handle, timeout_secs).await?;
        Ok(Session { handle, sftp })
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

/// A session on `127.0.0.1:port` logged in as `account` with the key in `key`.
pub async fn connect(port: u16, account: &str, key: &Path) -> TestResult<Session> {
    let mut handle =
        russh_client::connect(port, russh_client::config(Duration::from_secs(20))).await?;
    russh_client::key_login(&mut handle, account, key).await?;
    Session::open(handle, 20).await
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

/// Uploads `data` to `path` in chunks; `Ok(true)` only when the server
/// acknowledged the CLOSE.
pub async fn raw_upload(s: &Session, path: &str, data: &[u8]) -> TestResult<bool> {
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
