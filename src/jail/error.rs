//! Why a jailed operation failed, with errno mapped to the few outcomes an
//! SFTP status code distinguishes.

use rustix::io::Errno;

/// Why a jailed operation failed, in the terms an SFTP status code needs.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("no such file or directory")]
    NotFound,
    /// Also used for a symlink met on the way, an escape attempt, or an
    /// operation the jail forbids on its root.
    #[error("permission denied")]
    PermissionDenied,
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("already exists")]
    AlreadyExists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("i/o error: {0}")]
    Io(#[source] std::io::Error),
}

impl From<Errno> for JailError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::NOENT => JailError::NotFound,
            // EXDEV: RESOLVE_BENEATH saw an escape; ELOOP: a symlink was met.
            Errno::XDEV | Errno::LOOP | Errno::ACCESS | Errno::PERM => JailError::PermissionDenied,
            Errno::EXIST => JailError::AlreadyExists,
            Errno::NOTEMPTY => JailError::NotEmpty,
            Errno::NOTDIR => JailError::NotADirectory,
            Errno::ISDIR => JailError::IsADirectory,
            other => JailError::Io(other.into()),
        }
    }
}

impl From<std::io::Error> for JailError {
    /// std calls (e.g. `File::metadata`) report errno too; map it the same way.
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) => Errno::from_raw_os_error(code).into(),
            None => JailError::Io(e),
        }
    }
}

pub(super) fn invalid(reason: &str) -> JailError {
    JailError::InvalidName(reason.to_string())
}
