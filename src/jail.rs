//! The account jail: every path an SFTP client sends is resolved beneath the
//! account's root directory, and nothing the client says can reach outside it.
//!
//! Invariants:
//! - Client paths are first made lexical [`JailPath`]s: always absolute, with no
//!   `.`, `..` or empty components, no NUL and no component over 255 bytes, so
//!   `..` clamps at the jail root instead of climbing out of it.
//! - The kernel then resolves every path relative to the root directory fd with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`.
//!   Symlinks are never followed anywhere, even ones pointing back inside the
//!   jail: another process may plant or swap one at any moment, and refusing
//!   them all is the only rule that cannot race.
//! - Opens (open_file, stat, read_dir, set_permissions) are one `openat2` of
//!   the whole path, so the last component gets the same rules atomically.
//!   Operations on a name (mkdir, rmdir, unlink, rename, utimes) open the
//!   PARENT that way and then use the `*at` syscall on `(parent_fd, name)`
//!   without following the last component, so a symlink swapped in between
//!   steps leads nowhere.
//! - The jail root itself can never be removed, renamed or opened as a file.
//!
//! Everything here is blocking std code; callers run it on a blocking pool.
//! `path` holds the lexical paths, `error` the errno mapping; this file the
//! file operations on the root fd.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod error;
mod path;

pub use error::JailError;
pub use path::JailPath;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps, CWD};
use rustix::io::Errno;

/// Resolution rules for every path walk: stay under the root, follow nothing.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// How [`Jail::open_file`] opens a file; mirrors the SFTP open flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
    /// Implies write access.
    pub append: bool,
    /// Create, failing with `AlreadyExists` if the name exists; implies create.
    pub exclusive: bool,
    /// Permission bits for a newly created file (the umask still applies).
    pub mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read: false,
            write: false,
            create: false,
            truncate: false,
            append: false,
            exclusive: false,
            mode: 0o644,
        }
    }
}

impl OpenOptions {
    fn oflags(&self) -> Result<OFlags, JailError> {
        let write = self.write || self.append;
        if self.truncate && !write {
            // Linux would truncate even an O_RDONLY open; refuse like std does.
            return Err(JailError::Io(std::io::ErrorKind::InvalidInput.into()));
        }
        let mut flags = match (self.read, write) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        flags.set(OFlags::APPEND, self.append);
        flags.set(OFlags::TRUNC, self.truncate);
        flags.set(OFlags::CREATE, self.create || self.exclusive);
        flags.set(OFlags::EXCL, self.exclusive);
        Ok(flags)
    }

    fn create_mode(&self) -> Mode {
        // openat2 rejects a non-zero mode unless a file may be created.
        if self.create || self.exclusive {
            perm_bits(self.mode)
        } else {
            Mode::empty()
        }
    }
}

/// One directory entry with lstat-style metadata (symlinks are not followed).
#[derive(Debug)]
pub(crate) struct DirEntry {
    pub name: String,
    pub metadata: Metadata,
}

/// An account's root directory, held open so renames of its path elsewhere
/// cannot redirect it.
#[derive(Debug)]
pub struct Jail {
    root_fd: OwnedFd,
    root: PathBuf,
}

impl Jail {
    /// Opens `root`, which must exist and be a directory. The root path comes
    /// from server configuration, not a client, so it is opened plainly.
    pub(crate) fn open(root: &Path) -> std::io::Result<Jail> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root_fd = rustix::fs::openat(CWD, root, flags, Mode::empty())?;
        Ok(Jail {
            root_fd,
            root: root.to_path_buf(),
        })
    }

    pub(crate) fn root_path(&self) -> &Path {
        &self.root
    }

    /// Opens a regular file; directories, fifos, devices and symlinks are refused.
    pub(crate) fn open_file(&self, p: &JailPath, o: &OpenOptions) -> Result<File, JailError> {
        if p.is_root() {
            return Err(JailError::IsADirectory);
        }
        // O_NONBLOCK so a fifo or device cannot hang the open before we check it.
        let flags = o.oflags()? | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = self.resolve(p, flags, o.create_mode())?;
        require_regular(&fd)?;
        let fl = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// Flushes everything written on the jail's file system (one flush for a
    /// whole batch of files, instead of one per file).
    pub(crate) fn sync_filesystem(&self) -> Result<(), JailError> {
        // syncfs needs a real descriptor; the root is held as O_PATH.
        let fd = self.resolve(
            &JailPath::root(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        Ok(rustix::fs::syncfs(&fd)?)
    }

    /// Makes the directory `p`'s entries durable (fsync of the directory).
    pub(crate) fn sync_dir(&self, p: &JailPath) -> Result<(), JailError> {
        let fd = self.resolve(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(rustix::fs::fsync(&fd)?)
    }

    /// lstat semantics: a symlink entry is described, never followed.
    pub(crate) fn stat(&self, p: &JailPath) -> Result<Metadata, JailError> {
        let fd = self.resolve(p, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
        Ok(File::from(fd).metadata()?)
    }

    /// Lists a directory (without "." and ".."), sorted by name.
    pub(crate) fn read_dir(&self, p: &JailPath) -> Result<Vec<DirEntry>, JailError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let dir_fd = self.resolve(p, flags, Mode::empty())?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir_fd)? {
            let name = entry?.file_name().to_owned();
            if let Some(e) = entry_at(&dir_fd, name.to_bytes())? {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a directory for listing page by page: memory stays the same
    /// whatever the directory holds (the whole listing is never built).
    pub(crate) fn list_dir(&self, p: &JailPath) -> Result<DirListing, JailError> {
        let fd = self.resolve(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(DirListing {
            entries: rustix::fs::Dir::new(fd)?,
        })
    }

    pub(crate) fn mkdir(&self, p: &JailPath, mode: u32) -> Result<(), JailError> {
        let Some((parent, name)) = p.split_last() else {
            return Err(JailError::AlreadyExists);
        };
        let dir = self.open_dir(&parent)?;
        Ok(rustix::fs::mkdirat(&dir, name, perm_bits(mode))?)
    }

    /// Creates every missing level; each step re-opens only the level just
    /// made (beneath, no symlinks), so a symlink at any level is refused.
    pub(crate) fn create_dir_all(&self, p: &JailPath, mode: u32) -> Result<(), JailError> {
        let mut cur = self.open_dir(&JailPath::root())?;
        for name in p.components() {
            match rustix::fs::mkdirat(&cur, name, perm_bits(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            cur = open_dir_at(&cur, name)?;
        }
        Ok(())
    }

    pub(crate) fn rmdir(&self, p: &JailPath) -> Result<(), JailError> {
        let (dir, name) = self.parent_of(p)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?)
    }

    /// Removes a non-directory; a symlink is removed itself, never its target.
    pub(crate) fn remove_file(&self, p: &JailPath) -> Result<(), JailError> {
        let (dir, name) = self.parent_of(p)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?)
    }

    /// `overwrite == false` is SFTP v3 rename (fails if `to` exists);
    /// `true` is POSIX rename (posix-rename@openssh.com).
    pub(crate) fn rename(
        &self,
        from: &JailPath,
        to: &JailPath,
        overwrite: bool,
    ) -> Result<(), JailError> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        let flags = if overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags)?;
        Ok(())
    }

    /// Sets access/modification times; `None` leaves that time unchanged.
    /// A symlink's own times are set, never its target's.
    pub(crate) fn set_times(
        &self,
        p: &JailPath,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<(), JailError> {
        let times = Timestamps {
            last_access: to_timespec(atime)?,
            last_modification: to_timespec(mtime)?,
        };
        let Some((parent, name)) = p.split_last() else {
            let root = self.resolve(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
            return Ok(rustix::fs::futimens(&root, &times)?);
        };
        let dir = self.open_dir(&parent)?;
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        Ok(rustix::fs::utimensat(&dir, name, &times, flags)?)
    }

    /// Sets the 0o7777 permission bits of a file or directory; symlinks and
    /// special files are refused.
    pub(crate) fn set_permissions(&self, p: &JailPath, mode: u32) -> Result<(), JailError> {
        let path_fd = self.resolve(p, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
        let is_dir = require_file_or_dir(&path_fd)?;
        // fchmod needs a real (non-O_PATH) fd; reopen, still following nothing.
        let mut flags = OFlags::RDONLY | OFlags::NONBLOCK;
        flags.set(OFlags::DIRECTORY, is_dir);
        flags.set(OFlags::NOFOLLOW, !is_dir);
        match self.resolve(p, flags, Mode::empty()) {
            Ok(fd) => Ok(rustix::fs::fchmod(&fd, perm_bits(mode))?),
            // The owner may chmod a file it cannot read (e.g. after chmod 000).
            Err(JailError::PermissionDenied) => chmod_via_proc(&path_fd, mode),
            Err(e) => Err(e),
        }
    }

    /// Filesystem statistics for the filesystem holding the jail root.
    pub(crate) fn statvfs(&self) -> Result<rustix::fs::StatVfs, JailError> {
        Ok(rustix::fs::fstatvfs(&self.root_fd)?)
    }

    /// The one place client paths reach the kernel: resolved beneath the root
    /// with no symlinks at all. RESOLVE_NO_SYMLINKS covers the last component
    /// too (ELOOP), so directory opens leave out O_NOFOLLOW: with O_DIRECTORY
    /// it would turn a planted symlink into a misleading ENOTDIR. O_NOFOLLOW
    /// is added only where the link itself is wanted (O_PATH stat) or as a
    /// second guard on file opens.
    fn resolve(&self, p: &JailPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, JailError> {
        let flags = flags | OFlags::CLOEXEC;
        Ok(rustix::fs::openat2(
            &self.root_fd,
            p.relative(),
            flags,
            mode,
            RESOLVE,
        )?)
    }

    fn open_dir(&self, p: &JailPath) -> Result<OwnedFd, JailError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        self.resolve(p, flags, Mode::empty())
    }

    /// The parent directory fd and last name, for the `*at` calls; refuses the root.
    fn parent_of<'a>(&self, p: &'a JailPath) -> Result<(OwnedFd, &'a str), JailError> {
        let (parent, name) = p.split_last().ok_or(JailError::PermissionDenied)?;
        Ok((self.open_dir(&parent)?, name))
    }
}

/// An open directory read in pages (see [`Jail::list_dir`]). Entries are
/// in the directory's own order, not sorted: sorting needs them all.
pub(crate) struct DirListing {
    /// getdents64 on the directory's one fd, through rustix's bounded
    /// buffer. Entries are stat'ed relative to the same fd, one name at a
    /// time and without following symlinks, so nothing resolves outside
    /// the jail.
    entries: rustix::fs::Dir,
}

impl DirListing {
    /// Up to `max` more entries (with lstat metadata); empty at the end.
    pub(crate) fn next_page(&mut self, max: usize) -> Result<Vec<DirEntry>, JailError> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.entries.read() else {
                break;
            };
            let name = entry?.file_name().to_owned();
            if let Some(e) = entry_at(self.entries.fd()?, name.to_bytes())? {
                out.push(e);
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for DirListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirListing").finish_non_exhaustive()
    }
}

fn perm_bits(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> Result<OwnedFd, JailError> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat2(
        dir,
        name,
        flags,
        Mode::empty(),
        RESOLVE,
    )?)
}

/// Builds one listing entry; `None` for "."/".." or an entry removed meanwhile.
fn entry_at(dir: impl AsFd, name: &[u8]) -> Result<Option<DirEntry>, JailError> {
    if name == b"." || name == b".." {
        return Ok(None);
    }
    // std::fs::Metadata can only come from std, so stat an O_PATH|O_NOFOLLOW
    // fd of the entry: the same lstat answer as fstatat(AT_SYMLINK_NOFOLLOW).
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, OsStr::from_bytes(name), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(DirEntry {
        name: String::from_utf8_lossy(name).into_owned(),
        metadata: File::from(fd).metadata()?,
    }))
}

fn require_regular(fd: &OwnedFd) -> Result<(), JailError> {
    let st = rustix::fs::fstat(fd)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => Ok(()),
        rustix::fs::FileType::Directory => Err(JailError::IsADirectory),
        _ => Err(JailError::PermissionDenied),
    }
}

/// Returns whether the entry is a directory; anything but a file or directory
/// (symlink, fifo, socket, device) is refused.
fn require_file_or_dir(fd: &OwnedFd) -> Result<bool, JailError> {
    let st = rustix::fs::fstat(fd)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => Ok(false),
        rustix::fs::FileType::Directory => Ok(true),
        _ => Err(JailError::PermissionDenied),
    }
}

/// chmod through our own O_PATH fd's /proc entry, as glibc's fchmodat does:
/// the fd is pinned to an inode already checked not to be a symlink, so no
/// client-controlled path is walked here.
fn chmod_via_proc(fd: &OwnedFd, mode: u32) -> Result<(), JailError> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rustix::fs::chmod(proc_path.as_str(), perm_bits(mode))?)
}

fn to_timespec(t: Option<SystemTime>) -> Result<Timespec, JailError> {
    let Some(t) = t else {
        return Ok(Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        });
    };
    let too_far = || JailError::Io(std::io::ErrorKind::InvalidInput.into());
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).map_err(|_| too_far())?,
            d.subsec_nanos(),
        ),
        Err(before) => negative_parts(before.duration()).ok_or_else(too_far)?,
    };
    Ok(Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    })
}

/// Splits a time before the epoch into (negative secs, non-negative nanos).
fn negative_parts(d: std::time::Duration) -> Option<(i64, u32)> {
    let secs = i64::try_from(d.as_secs()).ok()?;
    match d.subsec_nanos() {
        0 => Some((-secs, 0)),
        n => Some((-secs - 1, 1_000_000_000 - n)),
    }
}

// Compile-time proof the jail can be shared across blocking-pool threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Jail>();
    assert_send_sync::<JailPath>();
};

#[cfg(test)]
mod tests;
