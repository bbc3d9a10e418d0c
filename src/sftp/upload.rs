//! An upload in progress on one write handle, and the completion that turns
//! it into a journal row.
//!
//! The sha256 is computed as the bytes arrive when they arrive in order
//! (the normal case, also for a resumed upload: the existing prefix is hashed
//! from disk once), by a thread of the upload's own once it is large.
//! Writes out of order or overlapping make the running hash useless; then
//! the file is hashed from disk at completion instead.
//!
//! Hashing from disk is bounded by the file's size (whose holes are bounded
//! at WRITE and SETSTAT) and cancellable: a session that ends, or a server
//! shutting down, stops it within one read of 256 KiB.
//!
//! Completion = fsync the file's data and its directory when configured
//! while the journal row is committed, hand the entry to the pipeline. Only
//! after all of them does the client get OK.

use super::Shared;
use crate::deposit::hash::{clear_partial, hash_file_until, hash_range, Cancel, CancelOnDrop};
use crate::jail::{Jail, JailPath};
use crate::metrics::Metrics;
use crate::store::journal::{self, Entry, NewEntry, Source};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) struct Upload {
    hashing: Hashing,
    /// Bytes [0, hashed) are in the running hash (sent to it, when a thread
    /// does the hashing).
    hashed: u64,
    /// Current file length as far as this handle knows.
    pub(crate) len: u64,
    /// A WRITE happened (or the file was created or truncated at open).
    pub(crate) changed: bool,
    cancel: Cancel,
}

/// Where the running hash is computed. A small upload is hashed inline as
/// its WRITEs arrive. Past [`THREAD_AFTER`] bytes a thread of its own takes
/// over: the SFTP loop answers one request at a time, so hashing on its
/// path (about a second per GiB even with SHA extensions) would cap a large
/// upload's throughput; off the path it overlaps with receiving the next
/// WRITEs. The bounded queue keeps at most [`QUEUED`] write buffers waiting.
enum Hashing {
    Inline(Sha256),
    Thread {
        pieces: SyncSender<Piece>,
        done: JoinHandle<Option<Sha256>>,
    },
    /// Writes came out of order: the file is hashed from disk at completion.
    Abandoned,
}

enum Piece {
    Bytes(Vec<u8>),
    /// A range already on disk (the existing prefix of a resumed upload).
    FromFile(u64, u64),
}

const THREAD_AFTER: u64 = 1024 * 1024;
const QUEUED: usize = 8;

impl Upload {
    pub(crate) fn new(len_at_open: u64, created_or_truncated: bool, cancel: Cancel) -> Self {
        Upload {
            hashing: Hashing::Inline(Sha256::new()),
            hashed: 0,
            changed: created_or_truncated,
            len: len_at_open,
            cancel,
        }
    }

    /// A guard that cancels this upload's hashing when dropped.
    pub(crate) fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop::new(self.cancel.clone())
    }

    /// Call after `data` was written at `offset` of `file`: keeps the
    /// running hash in step when the write continues where hashing stopped
    /// (taking an existing prefix from disk when a resumed upload starts
    /// mid-file).
    pub(crate) fn written(&mut self, file: &Arc<File>, offset: u64, data: Vec<u8>) {
        let (len_before, n) = (self.len, data.len() as u64);
        self.changed = true;
        self.len = self.len.max(offset + n);
        if matches!(self.hashing, Hashing::Abandoned) {
            return;
        }
        if offset > self.hashed && offset <= len_before {
            let (from, to) = (self.hashed, offset);
            if !self.feed(file, Piece::FromFile(from, to)) {
                return;
            }
            self.hashed = offset;
        }
        if offset != self.hashed {
            self.hashing = Hashing::Abandoned;
            return;
        }
        if self.feed(file, Piece::Bytes(data)) {
            self.hashed += n;
        }
    }

    /// True when [`Upload::written`] for a write at `offset` may wait: for
    /// room in the hashing thread's queue, or to hash an existing prefix
    /// from disk. Conservative for an append, whose offset is the real end.
    pub(crate) fn written_may_wait(&self, offset: u64, append: bool) -> bool {
        match self.hashing {
            Hashing::Thread { .. } => true,
            Hashing::Abandoned => false,
            Hashing::Inline(_) => self.len > self.hashed && (append || offset > self.hashed),
        }
    }

    /// Adds `piece` to the running hash; false (and hashing abandoned) when
    /// that failed.
    fn feed(&mut self, file: &Arc<File>, piece: Piece) -> bool {
        if self.hashed >= THREAD_AFTER {
            self.start_thread(file);
        }
        let ok = match &mut self.hashing {
            Hashing::Inline(h) => add(h, file, &piece, &self.cancel),
            Hashing::Thread { pieces, .. } => pieces.send(piece).is_ok(),
            Hashing::Abandoned => false,
        };
        if !ok {
            self.hashing = Hashing::Abandoned;
        }
        ok
    }

    fn start_thread(&mut self, file: &Arc<File>) {
        let Hashing::Inline(h) = &self.hashing else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(QUEUED);
        let (mut h, file, cancel) = (h.clone(), file.clone(), self.cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("depot-hash".into())
            .spawn(move || {
                let mut ok = true;
                while let Ok(piece) = rx.recv() {
                    // After a failure, keep receiving so the sender never
                    // blocks; the result is thrown away.
                    ok = ok && add(&mut h, &file, &piece, &cancel);
                }
                ok.then_some(h)
            });
        // Without a thread (resource limits), hashing stays inline.
        if let Ok(done) = spawned {
            self.hashing = Hashing::Thread { pieces: tx, done };
        }
    }

    /// Something other than an in-order write touched the bytes (a failed
    /// write, a truncate through FSETSTAT): the running hash is no longer
    /// trusted. Not a completion by itself: only a WRITE (or
    /// creating/truncating at OPEN) makes the CLOSE complete an upload.
    pub(crate) fn invalidate(&mut self) {
        self.hashing = Hashing::Abandoned;
    }

    /// [`Upload::finish`] when the running hash covers the whole file and
    /// nothing waits (no thread to join, nothing to read from disk);
    /// `None` when `finish` is needed, off the async threads.
    pub(crate) fn finish_now(&mut self, file: &File) -> Option<std::io::Result<Digested>> {
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Some(Err(e)),
        };
        if self.hashed != size || !matches!(self.hashing, Hashing::Inline(_)) {
            return None;
        }
        match std::mem::replace(&mut self.hashing, Hashing::Abandoned) {
            Hashing::Inline(h) => Some(Ok(Digested::running(size, h))),
            _ => None,
        }
    }

    /// The final digest: from the running hash when it covers the whole
    /// file, else from disk. Blocks until a hashing thread is done.
    pub(crate) fn finish(self, file: &File) -> std::io::Result<Digested> {
        let size = file.metadata()?.len();
        let running = match self.hashing {
            Hashing::Inline(h) => Some(h),
            Hashing::Thread { pieces, done } => {
                drop(pieces);
                done.join().ok().flatten()
            }
            Hashing::Abandoned => None,
        };
        match running {
            Some(h) if self.hashed == size => Ok(Digested::running(size, h)),
            _ => Digested::from_disk(file, &self.cancel),
        }
    }
}

/// A completed upload's size and sha256.
#[derive(Debug)]
pub(crate) struct Digested {
    pub size: u64,
    pub sha256: String,
    /// Taken from the running hash, i.e. from the WRITEs of this upload's
    /// handle as they arrived, not from the file.
    pub running: bool,
}

impl Digested {
    fn running(size: u64, h: Sha256) -> Digested {
        Digested {
            size,
            sha256: hex::encode(h.finalize()),
            running: true,
        }
    }

    fn from_disk(file: &File, cancel: &Cancel) -> std::io::Result<Digested> {
        let (size, sha256) = hash_file_until(file, cancel)?;
        Ok(Digested {
            size,
            sha256,
            running: false,
        })
    }
}

/// True when the file's bytes are in memory only (tmpfs): writing or
/// flushing them never waits for a disk.
pub(crate) fn in_memory(file: &File) -> bool {
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    rustix::fs::fstatfs(file).is_ok_and(|s| s.f_type as u32 == TMPFS_MAGIC)
}

fn add(h: &mut Sha256, file: &File, piece: &Piece, cancel: &Cancel) -> bool {
    match piece {
        Piece::Bytes(b) => {
            h.update(b);
            true
        }
        Piece::FromFile(from, to) => hash_range(file, *from, *to, h, cancel).is_ok(),
    }
}

/// The final digest of `upload` (or of the whole file, with no upload), on
/// the blocking pool.
async fn hash_blocking(
    file: Arc<File>,
    upload: Option<Upload>,
    cancel: Cancel,
) -> std::io::Result<Digested> {
    tokio::task::spawn_blocking(move || match upload {
        Some(u) => u.finish(&file),
        None => Digested::from_disk(&file.try_clone()?, &cancel),
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The completed file made durable (when configured): its data, and its
/// name by a flush of its directory — the file's own fdatasync does not
/// cover its name on a file system without a journal (ext2, ext4 made
/// without one), nor a rename that gave it its final name. On tmpfs, where
/// nothing waits for a disk, the data flush is taken inline and the name
/// needs none; elsewhere both run on the blocking pool, at the same time.
async fn flush(
    jail: Arc<Jail>,
    path: &JailPath,
    file: Arc<File>,
    fsync: bool,
) -> std::io::Result<()> {
    if !fsync {
        return Ok(());
    }
    if in_memory(&file) {
        return file.sync_data();
    }
    let data = tokio::task::spawn_blocking(move || file.sync_data());
    let dir = path.parent();
    let name = tokio::task::spawn_blocking(move || match dir {
        Some(dir) => jail
            .sync_dir(&dir)
            .map_err(|e| std::io::Error::other(e.to_string())),
        None => Ok(()),
    });
    let (data, name) = tokio::join!(data, name);
    data.map_err(std::io::Error::other)??;
    name.map_err(std::io::Error::other)?
}

/// Makes a completed deposit durable and journaled; returns the entry after
/// it has been committed and handed to the pipeline. `held` is the upload
/// handle's registration among the open files (none for a rename).
///
/// The flushes of its data and directory and the journal commit run at the
/// same time (on a disk, fsyncs that would otherwise queue one behind the
/// other); the client hears OK only after all of them. A crash in between
/// can leave a journal row for an upload that was never acknowledged: the
/// pipeline treats it like any other (bytes that did not survive are a
/// rejection saying so, and the client's retry of the unacknowledged upload
/// supersedes it).
pub(crate) async fn complete(
    shared: &Arc<Shared>,
    jail: &Arc<Jail>,
    account: &str,
    path: &JailPath,
    file: Arc<File>,
    upload: Option<Upload>,
    held: Option<crate::deposit::OpenFile>,
) -> anyhow::Result<Entry> {
    let fsync = shared.settings.server.fsync;
    let marked = file.clone();
    // Sealed before it is hashed: from here on no handle of any session can
    // change the bytes the journal row is about to name.
    let mut seal = shared.seals.seal(&file)?;
    let cancel = match &upload {
        Some(u) => u.cancel.clone(),
        None => Cancel::new(shared.stop_hashing.clone()),
    };
    // Dropped with this future (the session ended): the hashing stops.
    let guard = CancelOnDrop::new(cancel.clone());
    // An upload hashed inline as it arrived has nothing left to read: its
    // digest is taken right here, without a hand-off to the blocking pool.
    let mut upload = upload;
    let digest = match upload.as_mut().and_then(|u| u.finish_now(&file)) {
        Some(digest) => digest?,
        None => hash_blocking(file.clone(), upload, cancel).await?,
    };
    guard.done();
    // Asked after sealing, when nothing can disturb the file any more: a
    // digest of the WRITEs of the only handle that changed it is the digest
    // of its bytes, and the archive copy need not be hashed again.
    if digest.running && held.as_ref().is_some_and(|h| h.undisturbed()) {
        seal.hashed_as_written();
    }
    drop(held);
    let new = NewEntry {
        account: account.to_string(),
        path: path.as_str().to_string(),
        size: digest.size,
        sha256: digest.sha256,
        source: Source::Sftp,
    };
    let (flushed, entry) = tokio::join!(
        flush(jail.clone(), path, file, fsync),
        shared.writer.run(move |c| journal::insert(c, &new))
    );
    let entry = entry?;
    shared.seals.bind(
        entry.id,
        crate::deposit::Deposit {
            account: entry.account.clone(),
            path: entry.path.clone(),
        },
        seal,
    );
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
    // Journaled, but not durable: the client must not hear OK (the row is
    // ingested all the same, from the bytes that are there).
    if let Err(e) = flushed {
        tracing::error!(account, path = %entry.path, journal_id = entry.id, error = %e,
            "cannot flush a completed upload to disk; the client is told it failed: check the file system");
        return Err(e.into());
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn pair(d: Digested) -> (u64, String) {
        (d.size, d.sha256)
    }

    #[test]
    fn a_cancelled_upload_stops_hashing_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let f = Arc::new(File::open(&path).unwrap());
        let mut up = Upload::new(1 << 20, false, Cancel::default());
        up.invalidate();
        drop(up.cancel_on_drop());
        let e = up.finish(&f).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted);
        // The server's flag stops every upload's hashing.
        let server = Arc::new(AtomicBool::new(false));
        let mut up = Upload::new(1 << 20, false, Cancel::new(server.clone()));
        up.invalidate();
        server.store(true, Ordering::Relaxed);
        assert_eq!(
            up.finish(&f).unwrap_err().kind(),
            std::io::ErrorKind::Interrupted
        );
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
        let f = Arc::new(f);
        let mut up = Upload::new(6, false, Cancel::default());
        f.write_all_at(b"world", 6).unwrap();
        up.written(&f, 6, b"world".to_vec());
        let expected = hex::encode(Sha256::digest(b"hello world"));
        let d = up.finish(&f).unwrap();
        // The existing prefix was read by this handle as it resumed: still
        // the digest of what it wrote onto that prefix.
        assert!(d.running);
        assert_eq!(pair(d), (11, expected.clone()));
        let mut up = Upload::new(11, false, Cancel::default());
        f.write_all_at(b"HELLO", 0).unwrap();
        up.written(&f, 0, b"HELLO".to_vec());
        let expected = hex::encode(Sha256::digest(b"HELLO world"));
        let d = up.finish(&f).unwrap();
        assert!(!d.running, "the unwritten tail came from disk");
        assert_eq!(pair(d), (11, expected));
    }

    #[test]
    fn finish_now_only_when_the_running_hash_covers_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        let mut up = Upload::new(0, true, Cancel::default());
        f.write_all_at(b"hello", 0).unwrap();
        up.written(&f, 0, b"hello".to_vec());
        let expected = hex::encode(Sha256::digest(b"hello"));
        let d = up.finish_now(&f).unwrap().unwrap();
        assert!(d.running);
        assert_eq!(pair(d), (5, expected));
        // Bytes the running hash never saw (another handle's): from disk.
        let mut up = Upload::new(5, false, Cancel::default());
        f.write_all_at(b" world", 5).unwrap();
        assert!(up.finish_now(&f).is_none());
        let expected = hex::encode(Sha256::digest(b"hello world"));
        assert_eq!(pair(up.finish(&f).unwrap()), (11, expected.clone()));
        // Out of order: from disk too (hashing from disk reads through the
        // descriptor's offset, which the first one left at the end).
        std::io::Seek::rewind(&mut &*f).unwrap();
        let mut up = Upload::new(11, false, Cancel::default());
        f.write_all_at(b"w", 6).unwrap();
        up.written(&f, 6, b"w".to_vec());
        assert!(up.finish_now(&f).is_none());
        assert_eq!(pair(up.finish(&f).unwrap()), (11, expected));
    }

    #[test]
    fn a_large_upload_is_hashed_by_its_thread_also_when_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..5 * THREAD_AFTER).map(|i| (i * 7 % 251) as u8).collect();
        let prefix = 3 * THREAD_AFTER as usize / 2;
        std::fs::write(&path, &data[..prefix]).unwrap();
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        // Resumed at the old end: the prefix comes from disk, the rest from
        // the WRITEs, most of it through the hashing thread.
        let mut up = Upload::new(prefix as u64, false, Cancel::default());
        for (i, chunk) in data[prefix..].chunks(100_000).enumerate() {
            let off = (prefix + i * 100_000) as u64;
            f.write_all_at(chunk, off).unwrap();
            up.written(&f, off, chunk.to_vec());
        }
        assert!(matches!(up.hashing, Hashing::Thread { .. }));
        let expected = hex::encode(Sha256::digest(&data));
        assert_eq!(pair(up.finish(&f).unwrap()), (data.len() as u64, expected));
    }

    #[test]
    fn an_out_of_order_write_abandons_the_thread_and_hashes_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        let mut up = Upload::new(0, true, Cancel::default());
        let block = vec![1u8; THREAD_AFTER as usize];
        for i in 0..3u64 {
            f.write_all_at(&block, i * THREAD_AFTER).unwrap();
            up.written(&f, i * THREAD_AFTER, block.clone());
        }
        f.write_all_at(b"zz", 10).unwrap();
        up.written(&f, 10, b"zz".to_vec());
        assert!(matches!(up.hashing, Hashing::Abandoned));
        let expected = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
        assert_eq!(pair(up.finish(&f).unwrap()), (3 * THREAD_AFTER, expected));
    }
}
