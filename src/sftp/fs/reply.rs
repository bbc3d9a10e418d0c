//! How the handler answers: the status a client may see for each failure
//! (short messages that reveal nothing about the server, the cause logged
//! here), where file-system work runs, and the encoding of attributes and
//! extension replies.

use crate::jail::{JailError, JailPath};
use russh_sftp::protocol::{ExtendedReply, FileAttributes, Packet, Status, StatusCode};
use russh_sftp::server::StatusReply;

/// Largest READ/WRITE payload (as advertised in limits@openssh.com).
pub(super) const MAX_IO: u32 = 261_120;

pub(super) type Reply<T> = Result<T, StatusReply>;

pub(super) fn status(code: StatusCode, msg: impl Into<String>) -> StatusReply {
    code.with_message(msg)
}

pub(super) fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

/// Maps a jail error to what the client may see; logs what it may not.
pub(super) fn fail(e: JailError) -> StatusReply {
    match e {
        JailError::NotFound => status(StatusCode::NoSuchFile, "No such file"),
        JailError::PermissionDenied => status(StatusCode::PermissionDenied, "Permission denied"),
        JailError::InvalidName(r) => {
            status(StatusCode::PermissionDenied, format!("Invalid name: {r}"))
        }
        JailError::AlreadyExists => status(StatusCode::Failure, "Already exists"),
        JailError::NotEmpty => status(StatusCode::Failure, "Directory not empty"),
        JailError::NotADirectory => status(StatusCode::NoSuchFile, "Not a directory"),
        JailError::IsADirectory => status(StatusCode::Failure, "Is a directory"),
        JailError::Io(e) => io_fail(&e),
    }
}

pub(super) fn io_fail(e: &std::io::Error) -> StatusReply {
    match e.raw_os_error() {
        Some(libc_enospc) if libc_enospc == rustix::io::Errno::NOSPC.raw_os_error() => {
            tracing::error!(error = %e, "disk full: uploads fail until space is freed in data_dir");
            status(StatusCode::Failure, "No space left on the server")
        }
        _ => {
            tracing::warn!(error = %e, "file operation failed");
            status(StatusCode::Failure, "Operation failed")
        }
    }
}

/// Runs file-system work that can take long (data, flushes, copies,
/// listings) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Reply<T> + Send + 'static,
) -> Reply<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(status(StatusCode::Failure, "Operation failed")))
}

/// Runs a metadata call (stat, open, mkdir, rename, ...) right here: each
/// is one or two system calls on the jail's directory fds, cheaper than the
/// two thread hand-offs of [`blocking`] — with four such requests per
/// uploaded file, 2000 small uploads took 17 % less time and 12 % less CPU.
/// OpenSSH's sftp-server makes the same calls synchronously.
pub(super) fn metadata<T>(f: impl FnOnce() -> Reply<T>) -> Reply<T> {
    f()
}

pub(super) fn parse(p: &str) -> Reply<JailPath> {
    JailPath::parse(p).map_err(fail)
}

pub(super) fn attrs_of(m: &std::fs::Metadata) -> FileAttributes {
    use std::os::unix::fs::MetadataExt;
    FileAttributes {
        size: Some(m.len()),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        user: None,
        group: None,
        permissions: Some(m.mode()),
        atime: Some(m.atime().clamp(0, u32::MAX as i64) as u32),
        mtime: Some(m.mtime().clamp(0, u32::MAX as i64) as u32),
    }
}

/// An extension request's body.
pub(super) fn decode<T: serde::de::DeserializeOwned>(data: Vec<u8>) -> Reply<T> {
    let mut bytes = bytes::Bytes::from(data);
    russh_sftp::de::from_bytes(&mut bytes)
        .map_err(|_| status(StatusCode::BadMessage, "Malformed request"))
}

/// An extension's reply packet.
pub(super) fn extended_reply(id: u32, value: &impl serde::Serialize) -> Reply<Packet> {
    let data = russh_sftp::ser::to_bytes(value)
        .map_err(|_| status(StatusCode::Failure, "Operation failed"))?
        .to_vec();
    Ok(Packet::ExtendedReply(ExtendedReply { id, data }))
}
