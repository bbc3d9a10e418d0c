//! The archive: immutable copies of ingested audio and accepted CRM files,
//! under `data/archive/<account>/`.
//!
//! An archived object shares nothing with the customer's file: it is a copy
//! (a reflink where the file system has one, else a copy through a
//! buffer), so nothing done through SFTP — any handle, any SETSTAT, a rename or a
//! removal — reaches it. An object is first *staged*: copied under a
//! private temporary name, checked against the journaled sha256 (the bytes
//! are hashed as they are copied, in one pass — or not at all when that
//! sha256 was taken from the upload's own WRITEs through the only handle
//! that ever changed the sealed file), made read-only (0440) and fsynced.
//! The store then *puts* it under its final name (rename, directory fsync)
//! in the transaction that records it.
//! Directories are 0750.
//!
//! The interface is deliberately narrow (stage, put, open, check) so that
//! an object store can serve the archive later.

use crate::jail::{Jail, JailError, JailPath, OpenOptions};
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Archived objects: readable by the owner and its group, never writable.
const OBJECT_MODE: u32 = 0o440;
const DIR_MODE: u32 = 0o750;

/// Where a deposit's bytes are read from.
pub enum Source<'a> {
    /// The descriptor sealed at its completion (this process acknowledged
    /// it). `as_written`: its journaled sha256 is known to be that of the
    /// bytes it reads (`deposit::Sealed`), so the copy is not hashed again.
    Descriptor { file: &'a File, as_written: bool },
    /// The deposit's path in its jail (after a restart, or `depot import`).
    Jail { root: &'a Path, path: &'a JailPath },
    /// An object already archived (a reprocessed conversation).
    Archived(&'a Path),
}

impl<'a> Source<'a> {
    /// The sealed descriptor the SFTP front handed over.
    pub fn sealed(s: &'a crate::deposit::Sealed) -> Source<'a> {
        Source::Descriptor {
            file: &s.file,
            as_written: s.as_written,
        }
    }
}

/// What staging found.
pub enum Staged {
    /// A verified, read-only, durable copy at `path`, not yet put.
    Ready(PathBuf),
    /// The bytes are not the journaled ones any more.
    Changed { sha256: String },
    /// The deposit is gone (removed or renamed before it was archived).
    Missing,
}

/// Creates `dir` and its parents with the archive's directory mode.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

fn open_source(src: &Source<'_>) -> io::Result<Option<File>> {
    let opened = match src {
        Source::Descriptor { file, .. } => file.try_clone(),
        Source::Jail { root, path } => Jail::open(root)
            .map_err(io::Error::other)?
            .open_file(
                path,
                &OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .map_err(|e| match e {
                JailError::NotFound => io::ErrorKind::NotFound.into(),
                JailError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            }),
        Source::Archived(p) => File::open(p),
    };
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies `src` to `tmp` (which must not be in use) and checks its sha256.
/// Blocking.
pub fn stage(src: &Source<'_>, tmp: &Path, sha256: &str) -> io::Result<Staged> {
    let Some(from) = open_source(src)? else {
        return Ok(Staged::Missing);
    };
    if let Some(d) = tmp.parent() {
        create_dirs(d)?;
    }
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let copied = (|| -> io::Result<String> {
        let mut out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        // The copy is what the archive holds: its hash, not the source's
        // (unless the journaled one is known to be the source's).
        let hash = !matches!(
            src,
            Source::Descriptor {
                as_written: true,
                ..
            }
        );
        let now = copy(&from, &mut out, hash)?.unwrap_or_else(|| sha256.to_string());
        out.set_permissions(std::fs::Permissions::from_mode(OBJECT_MODE))?;
        out.sync_all()?;
        Ok(now)
    })();
    match copied {
        Ok(now) if now == sha256 => Ok(Staged::Ready(tmp.to_path_buf())),
        Ok(now) => {
            let _ = std::fs::remove_file(tmp);
            Ok(Staged::Changed { sha256: now })
        }
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// Copies `from` into the empty `out`; with `hash`, returns the sha256 of
/// what `out` now holds.
///
/// A reflink where the file system shares extents copy-on-write (btrfs,
/// xfs; the clone is then read back to hash it). Else the bytes go through
/// one buffer, hashed on the way: the hash is of exactly what was written,
/// and nothing is read twice (an in-kernel `copy_file_range` followed by a
/// read-back cost more CPU on tmpfs and ext4, which copy through the page
/// cache either way).
fn copy(from: &File, out: &mut File, hash: bool) -> io::Result<Option<String>> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    if rustix::fs::ioctl_ficlone(&*out, from).is_ok() {
        return match hash {
            true => crate::deposit::hash::hash_file(out).map(|(_, sha)| Some(sha)),
            false => Ok(None),
        };
    }
    let mut h = hash.then(Sha256::new);
    let len = from.metadata()?.len();
    let mut buf = vec![0u8; crate::deposit::hash::read_buffer_len(len)];
    let mut at = 0u64;
    loop {
        let n = match from.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(h) = h.as_mut() {
            h.update(&buf[..n]);
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(h.map(|h| hex::encode(h.finalize())))
}

/// Puts a staged object under its final name `dest`, durably.
pub fn put(staged: &Path, dest: &Path) -> io::Result<()> {
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    create_dirs(dir)?;
    std::fs::rename(staged, dest)?;
    File::open(dir)?.sync_all()
}

/// Opens an archived object for reading.
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Is the object at `path` intact (its sha256 the recorded one)?
pub fn check(path: &Path, sha256: &str) -> io::Result<bool> {
    let (_, now) = crate::deposit::hash::hash_file(&open(path)?)?;
    Ok(now == sha256)
}

/// Archives written by earlier versions were hard links to the customer's
/// file. Gives every such object an inode of its own (and the archive's
/// modes), so nothing the customer does can reach it. Blocking; run once
/// at start. Returns how many objects were separated.
pub(crate) fn separate_legacy_links(archive: &Path) -> io::Result<usize> {
    // Written after a complete pass: this version never links, so one
    // pass is enough.
    let done = archive.join(".separate");
    if done.exists() {
        return Ok(0);
    }
    let separated = separate(archive)?;
    create_dirs(archive)?;
    File::create(&done)?.sync_all()?;
    Ok(separated)
}

fn separate(archive: &Path) -> io::Result<usize> {
    let mut separated = 0;
    let mut dirs = vec![archive.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                if meta.mode() & 0o7777 != DIR_MODE {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(DIR_MODE))?;
                }
                dirs.push(path);
            } else if meta.is_file() && (meta.nlink() > 1 || meta.mode() & 0o7777 != OBJECT_MODE) {
                if meta.nlink() > 1 {
                    let tmp = path.with_extension("separating");
                    let from = File::open(&path)?;
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)?;
                    let mut reader = &from;
                    io::copy(&mut reader, &mut out)?;
                    out.set_permissions(std::fs::Permissions::from_mode(OBJECT_MODE))?;
                    out.sync_all()?;
                    std::fs::rename(&tmp, &path)?;
                    separated += 1;
                } else {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(OBJECT_MODE))?;
                }
            }
        }
    }
    Ok(separated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn a_staged_object_is_an_independent_read_only_copy() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.wav");
        std::fs::write(&src, b"recording").unwrap();
        let f = File::open(&src).unwrap();
        let tmp = dir.path().join("archive/.incoming/j1.wav");
        let Staged::Ready(staged) = stage(
            &Source::Descriptor {
                file: &f,
                as_written: false,
            },
            &tmp,
            &sha(b"recording"),
        )
        .unwrap() else {
            panic!("not staged");
        };
        let dest = dir.path().join("archive/2026/01/02/1.wav");
        put(&staged, &dest).unwrap();
        let m = std::fs::metadata(&dest).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o440);
        assert_eq!(m.nlink(), 1);
        assert_ne!(m.ino(), std::fs::metadata(&src).unwrap().ino());
        let dm = std::fs::metadata(dest.parent().unwrap()).unwrap();
        assert_eq!(dm.mode() & 0o777, 0o750);
        // The customer's file changes; the archive does not.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&src)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(check(&dest, &sha(b"recording")).unwrap());
    }

    #[test]
    fn a_descriptor_hashed_as_written_is_copied_without_a_second_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.wav");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let f = File::open(&src).unwrap();
        for as_written in [false, true] {
            let tmp = dir.path().join(format!("t/j{as_written}.wav"));
            let from = Source::Descriptor {
                file: &f,
                as_written,
            };
            let Staged::Ready(staged) = stage(&from, &tmp, &sha(&bytes)).unwrap() else {
                panic!("not staged");
            };
            assert_eq!(std::fs::read(&staged).unwrap(), bytes);
        }
        // Not hashed as written: the copy's own hash is the judge.
        let from = Source::Descriptor {
            file: &f,
            as_written: false,
        };
        let tmp = dir.path().join("t/j3.wav");
        let got = stage(&from, &tmp, &sha(b"other")).unwrap();
        assert!(matches!(got, Staged::Changed { sha256 } if sha256 == sha(&bytes)));
        assert!(!tmp.exists());
    }

    #[test]
    fn changed_or_missing_bytes_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.wav");
        std::fs::write(&src, b"new bytes").unwrap();
        let tmp = dir.path().join("t/j1.wav");
        let got = stage(&Source::Archived(&src), &tmp, &sha(b"old bytes")).unwrap();
        assert!(matches!(got, Staged::Changed { sha256 } if sha256 == sha(b"new bytes")));
        assert!(!tmp.exists());
        let gone = dir.path().join("gone.wav");
        assert!(matches!(
            stage(&Source::Archived(&gone), &tmp, "x").unwrap(),
            Staged::Missing
        ));
    }

    #[test]
    fn legacy_hard_links_are_separated() {
        let dir = tempfile::tempdir().unwrap();
        let jail_file = dir.path().join("a.wav");
        std::fs::write(&jail_file, b"abc").unwrap();
        let archive = dir.path().join("archive");
        std::fs::create_dir_all(archive.join("acme/2026/01/01")).unwrap();
        let obj = archive.join("acme/2026/01/01/1.wav");
        std::fs::hard_link(&jail_file, &obj).unwrap();
        assert_eq!(separate_legacy_links(&archive).unwrap(), 1);
        assert_eq!(std::fs::metadata(&obj).unwrap().nlink(), 1);
        assert_eq!(std::fs::metadata(&obj).unwrap().mode() & 0o7777, 0o440);
        std::fs::write(&jail_file, b"changed").unwrap();
        assert_eq!(std::fs::read(&obj).unwrap(), b"abc");
        assert_eq!(separate_legacy_links(&archive).unwrap(), 0);
    }
}
