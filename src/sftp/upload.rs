//! An upload in progress on one write handle, and the completion that turns
//! it into a journal row.
//!
//! The sha256 is computed as the bytes arrive when they arrive in order
//! (the normal case, also for a resumed upload: the existing prefix is hashed
//! from disk once). Writes out of order or overlapping make the running hash
//! useless; then the file is hashed from disk at completion instead.
//!
//! Completion = fsync file data when configured,
//! commit the journal row, hand the entry to the pipeline. Only after that
//! does the client get OK.

use super::Shared;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::journal::{self, Entry, NewEntry, Source};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Extended attribute set on a final-name file while an upload writes it:
/// after a crash, the start-up scan knows such a file is a partial upload,
/// not a complete file copied in by hand. (Where the file system has no
/// user xattrs, the mark is simply absent.)
const PARTIAL_XATTR: &str = "user.depot.partial";

pub fn mark_partial(file: &File) {
    let _ = rustix::fs::fsetxattr(file, PARTIAL_XATTR, b"1", rustix::fs::XattrFlags::empty());
}

pub fn clear_partial(file: &File) {
    let _ = rustix::fs::fremovexattr(file, PARTIAL_XATTR);
}

/// Was this file left behind by an upload that never completed?
pub fn is_partial(file: &File) -> bool {
    rustix::fs::fgetxattr(file, PARTIAL_XATTR, &mut [0u8; 8]).is_ok()
}

pub struct Upload {
    hasher: Sha256,
    /// Bytes [0, hashed) are in `hasher`.
    hashed: u64,
    in_order: bool,
    /// A WRITE happened (or the file was created or truncated at open).
    pub changed: bool,
    /// Current file length as far as this handle knows.
    pub len: u64,
}

impl Upload {
    pub fn new(len_at_open: u64, created_or_truncated: bool) -> Self {
        Upload {
            hasher: Sha256::new(),
            hashed: 0,
            in_order: true,
            changed: created_or_truncated,
            len: len_at_open,
        }
    }

    /// Call before writing `data` at `offset` of `file`: keeps the running
    /// hash in step when the write continues where hashing stopped (reading
    /// an existing prefix from disk when a resumed upload starts mid-file).
    pub fn before_write(&mut self, file: &File, offset: u64, data: &[u8]) {
        if !self.in_order {
            return;
        }
        if offset > self.hashed && offset <= self.len {
            if hash_range(file, self.hashed, offset, &mut self.hasher).is_err() {
                self.in_order = false;
                return;
            }
            self.hashed = offset;
        }
        if offset == self.hashed {
            self.hasher.update(data);
            self.hashed += data.len() as u64;
        } else {
            self.in_order = false;
        }
    }

    pub fn after_write(&mut self, offset: u64, n: usize) {
        self.changed = true;
        self.len = self.len.max(offset + n as u64);
    }

    /// Something other than an in-order write touched the bytes (a failed
    /// write, a truncate through FSETSTAT): the running hash is no longer
    /// trusted. Not a completion by itself: per SPEC §4.5 only a WRITE (or
    /// creating/truncating at OPEN) makes the CLOSE complete an upload.
    pub fn invalidate(&mut self) {
        self.in_order = false;
    }

    /// The final (size, sha256): from the running hash when it covers the
    /// whole file, else from disk.
    pub fn finish(self, file: &File) -> std::io::Result<(u64, String)> {
        let size = file.metadata()?.len();
        if self.in_order && self.hashed == size {
            return Ok((size, hex::encode(self.hasher.finalize())));
        }
        hash_file(file)
    }
}

fn hash_range(file: &File, from: u64, to: u64, h: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = from;
    while pos < to {
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
pub fn hash_file(file: &File) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let mut r = file;
    loop {
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

/// Makes a completed deposit durable and journaled; returns the entry after
/// it has been committed and handed to the pipeline.
pub async fn complete(
    shared: &Arc<Shared>,
    account: &str,
    path: &JailPath,
    file: Arc<File>,
    upload: Option<Upload>,
) -> anyhow::Result<Entry> {
    let fsync = shared.settings.server.fsync;
    let marked = file.clone();
    let (size, sha256) = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        let digest = match upload {
            Some(u) => u.finish(&file)?,
            None => {
                let f = file.try_clone()?;
                hash_file(&f)?
            }
        };
        if fsync {
            // The file's data. Its directory entry is not flushed here: the
            // journal commit that follows fsyncs SQLite's WAL, which on a
            // journaling file system (ext4, xfs, btrfs) commits the log
            // holding the earlier create or rename too — one flush saved on
            // every upload, the same durability.
            file.sync_data()?;
        }
        Ok(digest)
    })
    .await??;
    let new = NewEntry {
        account: account.to_string(),
        path: path.as_str().to_string(),
        size,
        sha256,
        source: Source::Sftp,
    };
    let entry = shared.writer.run(move |c| journal::insert(c, &new)).await?;
    // Journaled: no longer a partial upload (a crash before this line leaves
    // the mark, which the journal row overrides anyway).
    clear_partial(&marked);
    Metrics::add(&shared.metrics.completions, 1);
    tracing::info!(
        account,
        path = %entry.path,
        size = entry.size,
        sha256 = %entry.sha256,
        journal_id = entry.id,
        "upload complete"
    );
    // The pipeline may be gone at shutdown: the row stays pending and is
    // picked up again at the next start.
    let _ = shared.completions.send(entry.clone());
    Ok(entry)
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

    #[test]
    fn resumed_and_out_of_order_writes_hash_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello ").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut up = Upload::new(6, false);
        up.before_write(&f, 6, b"world");
        f.write_all_at(b"world", 6).unwrap();
        up.after_write(6, 5);
        let expected = hex::encode(Sha256::digest(b"hello world"));
        assert_eq!(up.finish(&f).unwrap(), (11, expected.clone()));
        let mut up = Upload::new(11, false);
        up.before_write(&f, 0, b"HELLO");
        f.write_all_at(b"HELLO", 0).unwrap();
        up.after_write(0, 5);
        let expected = hex::encode(Sha256::digest(b"HELLO world"));
        assert_eq!(up.finish(&f).unwrap(), (11, expected));
    }
}
