//! Hashing a deposit's bytes, and the mark of an upload in progress.
//!
//! Hashing from disk is bounded by the file's size (whose holes are bounded
//! at WRITE and SETSTAT) and cancellable: a session that ends, or a server
//! shutting down, stops it within one read of 256 KiB.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Extended attribute set on a final-name file while an upload writes it:
/// after a crash, the start-up scan knows such a file is a partial upload,
/// not a complete file copied in by hand. (Where the file system has no
/// user xattrs, the mark is simply absent.)
const PARTIAL_XATTR: &str = "user.depot.partial";

pub(crate) fn mark_partial(file: &File) {
    let _ = rustix::fs::fsetxattr(file, PARTIAL_XATTR, b"1", rustix::fs::XattrFlags::empty());
}

pub(crate) fn clear_partial(file: &File) {
    let _ = rustix::fs::fremovexattr(file, PARTIAL_XATTR);
}

/// Was this file left behind by an upload that never completed?
pub(crate) fn is_partial(file: &File) -> bool {
    rustix::fs::fgetxattr(file, PARTIAL_XATTR, &mut [0u8; 8]).is_ok()
}

/// Stops hashing from disk: set for one upload when its session's task is
/// dropped, or for all at once when the server shuts down.
#[derive(Clone, Default)]
pub(crate) struct Cancel {
    upload: Arc<AtomicBool>,
    server: Arc<AtomicBool>,
}

impl Cancel {
    /// A flag of its own, and the server's `stop` shared by all uploads.
    pub fn new(server: Arc<AtomicBool>) -> Cancel {
        Cancel {
            upload: Arc::default(),
            server,
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.upload.load(Ordering::Relaxed) || self.server.load(Ordering::Relaxed)
    }
}

/// Cancels hashing when dropped before [`CancelOnDrop::done`]: held by the
/// async side of a blocking call that hashes, so a session task aborted
/// (disconnect, shutdown) never leaves a thread hashing gigabytes behind.
pub(crate) struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// Guards `cancel` until [`CancelOnDrop::done`].
    pub fn new(cancel: Cancel) -> CancelOnDrop {
        CancelOnDrop(Some(cancel))
    }

    /// The call finished: nothing to cancel.
    pub fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.upload.store(true, Ordering::Relaxed);
        }
    }
}

pub fn cancelled() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        "hashing cancelled: the session or the server is ending",
    )
}

/// A read buffer for `len` bytes: big enough to read them in one call (plus
/// one to see the end), at most 256 KiB.
pub(crate) fn read_buffer_len(len: u64) -> usize {
    (len.saturating_add(1)).clamp(4096, 256 * 1024) as usize
}

pub(crate) fn hash_range(
    file: &File,
    from: u64,
    to: u64,
    h: &mut Sha256,
    cancel: &Cancel,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; read_buffer_len(to.saturating_sub(from))];
    let mut pos = from;
    while pos < to {
        if cancel.is_set() {
            return Err(cancelled());
        }
        let want = ((to - pos) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// (size, sha256 hex) of a whole file.
pub(crate) fn hash_file(file: &File) -> std::io::Result<(u64, String)> {
    hash_file_until(file, &Cancel::default())
}

/// [`hash_file`], stopped with an `Interrupted` error once `cancel` is set.
pub(crate) fn hash_file_until(file: &File, cancel: &Cancel) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    // Sized by the file: a zeroed 256 KiB buffer for every small recording
    // cost more than hashing it (`depot import`, the pipeline's check).
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; read_buffer_len(len)];
    let mut size = 0u64;
    let mut r = file;
    loop {
        if cancel.is_set() {
            return Err(cancelled());
        }
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    // `read` moved the shared offset; nobody else relies on it (all I/O
    // is positional).
    Ok((size, hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn partial_mark_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("a.mp3")).unwrap();
        f.write_all(b"abc").unwrap();
        if rustix::fs::fsetxattr(
            &f,
            "user.depot.probe",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )
        .is_err()
        {
            eprintln!("skipped: this file system has no user xattrs");
            return;
        }
        assert!(!is_partial(&f));
        mark_partial(&f);
        assert!(is_partial(&f));
        clear_partial(&f);
        assert!(!is_partial(&f));
    }
}
