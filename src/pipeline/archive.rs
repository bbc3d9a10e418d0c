//! Archive copies (SPEC §5.10): ingested audio (and accepted CRM files) are
//! hard-linked — copied where a link is impossible — out of the customer's
//! jail, so deleting or overwriting the customer's copy loses nothing. A
//! copy is staged under a temporary name and checked against the journaled
//! sha256 before anything refers to it.

use crate::jail::{Jail, JailPath, OpenOptions};
use anyhow::Context;
use std::path::Path;

/// Links (or copies) `path` of the jail at `jail_root` to `dest`.
pub fn link_or_copy(jail_root: &Path, path: &JailPath, dest: &Path) -> anyhow::Result<()> {
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(dest);
    let jail = Jail::open(jail_root).context("open jail")?;
    let mut src = jail
        .open_file(
            path,
            &OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .map_err(anyhow::Error::from)
        .context("open deposit")?;
    // Link through the opened descriptor, so no path (and no symlink swapped
    // in since) is followed.
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&src));
    let linked = rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        dest,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    );
    if linked.is_err() {
        let mut out = std::fs::File::create(dest)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
    }
    Ok(())
}

/// Stages `path` at `dest` and checks its content is the journaled one.
/// `Ok(false)` when the file changed after its upload completed: a newer
/// completion of the same path carries the new content.
/// A deposit deleted before ingestion is likewise `Ok(false)`.
pub fn stage(jail_root: &Path, path: &JailPath, dest: &Path, sha256: &str) -> anyhow::Result<bool> {
    if let Err(e) = link_or_copy(jail_root, path, dest) {
        if e.downcast_ref::<crate::jail::JailError>()
            .is_some_and(|j| matches!(j, crate::jail::JailError::NotFound))
        {
            return Ok(false);
        }
        return Err(e);
    }
    let f = std::fs::File::open(dest)?;
    let (_, now) = crate::sftp::hash_file(&f)?;
    if now != sha256 {
        let _ = std::fs::remove_file(dest);
        return Ok(false);
    }
    Ok(true)
}

/// Stages a copy of an archived file at `dest` (a reprocessed conversation
/// whose deposit left the jail); `Ok(false)` when it is missing or is not
/// the expected content.
pub fn stage_file(src: &Path, dest: &Path, sha256: &str) -> anyhow::Result<bool> {
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(dest);
    if std::fs::hard_link(src, dest).is_err() {
        match std::fs::copy(src, dest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    let (_, now) = crate::sftp::hash_file(&std::fs::File::open(dest)?)?;
    if now != sha256 {
        let _ = std::fs::remove_file(dest);
        return Ok(false);
    }
    Ok(true)
}
