//! Acknowledged deposits awaiting their outcome are sealed.
//!
//! Between the OK a client gets for a completed upload and the moment the
//! pipeline has made the deposit's archive copy, the bytes the journal row
//! names exist only in the customer's file. A seal holds that file's inode
//! (device, inode number) and an open descriptor of it:
//! - the SFTP front refuses every change to a sealed inode through a handle
//!   (WRITE, FSETSTAT) — another handle opened before the completion, on the
//!   temporary name or the final one, can no longer alter acknowledged
//!   bytes — and gives the customer's name a fresh inode before changing it
//!   by path (OPEN for writing, SETSTAT);
//! - the pipeline copies the archive from the sealed descriptor, so a
//!   rename or removal of the name meanwhile changes nothing either.
//!
//! The seal of a journal row is released when that row has its outcome.
//! Seals live in memory: after a restart no handle survives, and the
//! pipeline reads the deposit by its path and checks its sha256.
//!
//! [`Layout`] is where deposits and what depot makes of them live in the
//! data directory; every front (SFTP, import, scan, sweep) and the
//! pipeline ask it rather than spell the paths.

pub mod hash;
pub mod names;

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The data directory's layout: `home/<account>/` (each account's jail),
/// `archive/<account>/` (immutable copies), `depot.db`, `depot.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Where every jail lives.
    pub(crate) fn homes(&self) -> PathBuf {
        self.data_dir.join("home")
    }

    /// The account's jail: what its customer sees as `/`.
    pub fn jail(&self, account: &str) -> PathBuf {
        self.homes().join(account)
    }

    /// Where archived objects live.
    pub(crate) fn archives(&self) -> PathBuf {
        self.data_dir.join("archive")
    }

    /// The account's archived recordings and CRM files.
    pub fn archive(&self, account: &str) -> PathBuf {
        self.archives().join(account)
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join("depot.db")
    }

    /// Held by the one `depot serve` of this data directory.
    pub fn lock(&self) -> PathBuf {
        self.data_dir.join("depot.lock")
    }
}

/// A file's identity on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Inode {
    pub dev: u64,
    pub ino: u64,
}

impl Inode {
    pub fn of(m: &Metadata) -> Inode {
        Inode {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// How many seals each inode has (several journal rows may name it).
    inodes: HashMap<Inode, usize>,
    /// The sealed descriptor of each journal row not yet done, with the
    /// deposit it names.
    rows: HashMap<i64, (Deposit, Seal)>,
}

/// A deposit: (account, path inside its jail).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Deposit {
    pub account: String,
    pub path: String,
}

impl Deposit {
    pub fn new(account: &str, path: &str) -> Deposit {
        Deposit {
            account: account.to_string(),
            path: path.to_string(),
        }
    }
}

/// The deposits the pipeline is ingesting right now: the SFTP front
/// refuses to change them meanwhile.
pub type Ingesting = Arc<Mutex<HashSet<Deposit>>>;

/// The registry of sealed deposits, shared by the SFTP front and the
/// pipeline.
#[derive(Default)]
pub struct Seals {
    inner: Mutex<Inner>,
    /// Files the SFTP front holds open (the sweep of stale uploads never
    /// removes one).
    pub open: Arc<OpenFiles>,
}

/// One seal on one inode; dropping it unseals (once no other seal holds
/// the inode).
pub struct Seal {
    seals: Arc<Seals>,
    inode: Inode,
    file: Arc<File>,
    as_written: bool,
}

/// A sealed deposit's descriptor, as the pipeline copies it.
pub struct Sealed {
    pub file: Arc<File>,
    /// The journaled sha256 was computed from the bytes as they were
    /// written, through the only handle that ever changed the file: it is
    /// the sha256 of what the descriptor reads, without hashing it again.
    pub as_written: bool,
}

impl Seal {
    /// See [`Sealed::as_written`]: said only by the completion that took the
    /// digest from the WRITEs of an undisturbed handle, after sealing.
    pub(crate) fn hashed_as_written(&mut self) {
        self.as_written = true;
    }
}

impl Drop for Seal {
    fn drop(&mut self) {
        let mut inner = self.seals.lock();
        if let Some(n) = inner.inodes.get_mut(&self.inode) {
            *n -= 1;
            if *n == 0 {
                inner.inodes.remove(&self.inode);
            }
        }
    }
}

impl Seals {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot poison the registry.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals `file`'s inode; from now on no handle changes it.
    pub(crate) fn seal(self: &Arc<Self>, file: &Arc<File>) -> std::io::Result<Seal> {
        let inode = Inode::of(&file.metadata()?);
        *self.lock().inodes.entry(inode).or_insert(0) += 1;
        Ok(Seal {
            seals: self.clone(),
            inode,
            file: file.clone(),
            as_written: false,
        })
    }

    /// Keeps `seal` until journal row `journal_id` has its outcome.
    pub fn bind(&self, journal_id: i64, deposit: Deposit, seal: Seal) {
        let old = self.lock().rows.insert(journal_id, (deposit, seal));
        drop(old);
    }

    /// Is a sealed deposit of `account` at `dir` or below it? (A directory
    /// holding one is not renamed until its deposit has its outcome.)
    pub(crate) fn any_under(&self, account: &str, dir: &str) -> bool {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.lock()
            .rows
            .values()
            .any(|(d, _)| d.account == account && (d.path == dir || d.path.starts_with(&prefix)))
    }

    pub(crate) fn is_sealed(&self, m: &Metadata) -> bool {
        self.lock().inodes.contains_key(&Inode::of(m))
    }

    /// The sealed descriptor of a journal row, if its completion happened
    /// in this process.
    pub fn source(&self, journal_id: i64) -> Option<Sealed> {
        self.lock().rows.get(&journal_id).map(|(_, s)| Sealed {
            file: s.file.clone(),
            as_written: s.as_written,
        })
    }

    /// Journal row `journal_id` has its outcome: its inode may change again.
    pub fn release(&self, journal_id: i64) {
        let seal = self.lock().rows.remove(&journal_id);
        drop(seal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_names_every_place() {
        let l = Layout::new(Path::new("/srv/data"));
        assert_eq!(l.jail("acme"), Path::new("/srv/data/home/acme"));
        assert_eq!(l.archive("acme"), Path::new("/srv/data/archive/acme"));
        assert_eq!(l.database(), Path::new("/srv/data/depot.db"));
        assert_eq!(l.lock(), Path::new("/srv/data/depot.lock"));
    }

    #[test]
    fn an_upload_handle_is_undisturbed_only_while_nothing_else_touches_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let (ma, mb) = (
            std::fs::metadata(&a).unwrap(),
            std::fs::metadata(&b).unwrap(),
        );
        let files = Arc::new(OpenFiles::default());
        let alone = files.hold(&ma);
        assert!(alone.undisturbed());
        // Another file's handles and changes are no concern of it.
        let other = files.hold(&mb);
        files.will_change(&mb);
        assert!(alone.undisturbed());
        drop(other);
        // A second handle on the inode, even one already closed again.
        let second = files.hold(&ma);
        assert!(!alone.undisturbed() && !second.undisturbed());
        drop(second);
        assert!(!alone.undisturbed());
        drop(alone);
        // A change by path while held.
        let again = files.hold(&ma);
        assert!(again.undisturbed());
        files.will_change(&ma);
        assert!(!again.undisturbed());
        drop(again);
        assert!(!files.is_open(&ma));
        // A handle opened while another still holds the inode never is.
        let first = files.hold(&ma);
        let late = files.hold(&ma);
        drop(first);
        assert!(!late.undisturbed());
    }

    #[test]
    fn a_seal_holds_until_every_row_naming_the_inode_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, b"abc").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let seals = Arc::new(Seals::default());
        let meta = std::fs::metadata(&path).unwrap();
        assert!(!seals.is_sealed(&meta));
        let dep = Deposit {
            account: "acme".into(),
            path: "/audio/d/a.wav".into(),
        };
        seals.bind(1, dep.clone(), seals.seal(&file).unwrap());
        seals.bind(2, dep, seals.seal(&file).unwrap());
        assert!(seals.is_sealed(&meta));
        assert!(seals.any_under("acme", "/audio"));
        assert!(seals.any_under("acme", "/audio/d/a.wav"));
        assert!(!seals.any_under("acme", "/aud"));
        assert!(!seals.any_under("other", "/audio"));
        assert!(seals.source(1).is_some());
        seals.release(1);
        assert!(seals.is_sealed(&meta));
        assert!(seals.source(1).is_none());
        seals.release(2);
        assert!(!seals.is_sealed(&meta));
        // Releasing twice, or a row never bound, is harmless.
        seals.release(2);
        seals.release(7);
    }
}

/// The files SFTP handles hold open, by inode (a name may change under an
/// open handle). Only the process serving SFTP knows them: it marks the
/// registry as tracked, and the sweep of stale uploads runs only where it
/// is (never in `depot import`, which cannot see a server's handles).
///
/// It also tells an upload whether anything but its own handle may have
/// changed its file while it was open: another handle on the inode (held
/// before it can write), or a change by path (announced before it is made,
/// see [`OpenFiles::will_change`]). Only when nothing did is the sha256
/// computed from the WRITEs as they arrived the sha256 of the file.
#[derive(Default)]
pub struct OpenFiles {
    inodes: Mutex<HashMap<Inode, Held>>,
    tracked: std::sync::atomic::AtomicBool,
    /// Told (account, bytes) for each file the sweep removed: the SFTP
    /// front's running count of what an account stores follows.
    on_removed: std::sync::OnceLock<RemovedHook>,
}

#[derive(Default)]
struct Held {
    handles: usize,
    /// Bumped by every hold, and by every change by path, while held.
    disturbances: u64,
}

type RemovedHook = Box<dyn Fn(&str, u64) + Send + Sync>;

impl OpenFiles {
    /// Called by the SFTP front: from now on every handle is registered.
    pub(crate) fn set_tracked(&self) {
        self.tracked
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets what to do when the sweep removes a file (once).
    pub(crate) fn set_on_removed(&self, hook: RemovedHook) {
        let _ = self.on_removed.set(hook);
    }

    /// The sweep removed `bytes` of `account`'s files.
    pub fn removed(&self, account: &str, bytes: u64) {
        if let Some(hook) = self.on_removed.get() {
            hook(account, bytes);
        }
    }

    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Inode, Held>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an open handle of the file `m` describes, until the
    /// returned guard is dropped. Call it before the handle can write.
    pub fn hold(self: &Arc<Self>, m: &Metadata) -> OpenFile {
        let inode = Inode::of(m);
        let mut map = self.lock();
        let held = map.entry(inode).or_default();
        let alone = held.handles == 0;
        held.handles += 1;
        held.disturbances += 1;
        let seen = held.disturbances;
        drop(map);
        OpenFile {
            files: self.clone(),
            inode,
            alone,
            seen,
        }
    }

    /// The file `m` describes is about to be changed by path, not through
    /// a handle (truncated at OPEN, resized by SETSTAT): the handles
    /// holding it count that as a disturbance. Call it before the change.
    pub(crate) fn will_change(&self, m: &Metadata) {
        if let Some(held) = self.lock().get_mut(&Inode::of(m)) {
            held.disturbances += 1;
        }
    }

    pub(crate) fn is_open(&self, m: &Metadata) -> bool {
        self.lock().contains_key(&Inode::of(m))
    }
}

/// One open handle's registration in [`OpenFiles`].
pub struct OpenFile {
    files: Arc<OpenFiles>,
    inode: Inode,
    /// No other handle held the inode when this one was registered.
    alone: bool,
    /// The inode's disturbances right after this registration.
    seen: u64,
}

impl OpenFile {
    /// Nothing but this handle can have changed the file since it was
    /// registered: no other handle held it then or since, and no change by
    /// path was announced. Conclusive once the inode is sealed (from then
    /// on no handle writes it and no change by path is made).
    pub(crate) fn undisturbed(&self) -> bool {
        self.alone
            && self
                .files
                .lock()
                .get(&self.inode)
                .is_some_and(|h| h.disturbances == self.seen)
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let mut map = self.files.lock();
        if let Some(held) = map.get_mut(&self.inode) {
            held.handles -= 1;
            if held.handles == 0 {
                map.remove(&self.inode);
            }
        }
    }
}
