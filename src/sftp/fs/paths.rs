//! Path operations: SETSTAT and FSETSTAT (times, modes, sizes; never the
//! bytes of an archive), RENAME (a plain rename, an upload's completion, or
//! an ingested conversation moving with its file), REMOVE, MKDIR and RMDIR,
//! each keeping the account's stored-bytes count right.

use super::links::break_link;
use super::reply::{blocking, fail, io_fail, metadata, parse, status, Reply};
use super::session::{before_change_by_path, SftpSession};
use crate::deposit::names::is_final;
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::sftp::policy::{customer_mode, refuse_final_name};
use crate::sftp::quota::{growth_refusal, Limits};
use crate::sftp::upload::complete;
use russh_sftp::protocol::{FileAttributes, StatusCode};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RenameKind {
    Plain,
    Completes,
    Moves,
}

/// SETSTAT/FSETSTAT size, with the account's count locked by the caller:
/// checked against the limits like a WRITE of nothing (growth is all hole).
/// `known` is the size the count knew, when it differs from the file's.
fn set_len_measured(
    file: &std::fs::File,
    limits: &Limits,
    used: u64,
    size: u64,
    known: Option<u64>,
) -> Reply<((), i64)> {
    let m = file.metadata().map_err(|e| io_fail(&e))?;
    let allocated = m.blocks().saturating_mul(512);
    if let Some(msg) = growth_refusal(limits, used, m.len(), allocated, size, 0) {
        return Err(status(StatusCode::Failure, msg));
    }
    file.set_len(size).map_err(|e| io_fail(&e))?;
    Ok(((), size as i64 - known.unwrap_or(m.len()) as i64))
}

/// Bytes a rename of `from` onto `to` frees: the file it replaces, unless
/// both names are the same file (then the rename changes nothing).
fn replaced_size(jail: &Jail, from: &JailPath, to: &JailPath) -> u64 {
    let Some(target) = jail.stat(to).ok().filter(|m| m.is_file()) else {
        return 0;
    };
    match jail.stat(from) {
        Ok(src) if (src.dev(), src.ino()) == (target.dev(), target.ino()) => 0,
        _ => target.len(),
    }
}

fn to_time(secs: Option<u32>) -> Option<SystemTime> {
    secs.map(|s| UNIX_EPOCH + Duration::from_secs(s as u64))
}

impl SftpSession {
    pub(super) async fn do_setstat(&mut self, path: JailPath, attrs: FileAttributes) -> Reply<()> {
        let jail = self.jail.clone();
        // Times and permissions leave a deposit's bytes as they are: a
        // client setting the modification time right after its upload
        // (rclone does, and fails the whole copy if refused) may do so
        // while the deposit is being ingested. A size change may not.
        let times_only = attrs.size.is_none();
        match times_only {
            true => self.check_area(&path)?,
            false => self.check_modifiable(&path)?,
        }
        let meta = jail.stat(&path).map_err(fail)?;
        if times_only && meta.nlink() > 1 {
            // Giving the name its own copy replaces the file under the
            // pipeline's feet: not while it is being ingested.
            self.check_modifiable(&path)?;
        }
        let old = meta.len();
        let mut copied = false;
        if meta.is_file()
            && (meta.nlink() > 1 || (attrs.size.is_some() && self.shared.seals.is_sealed(&meta)))
        {
            // Size, mode and times belong to the inode, which an archived
            // copy shares: give the customer's name its own copy first.
            let (j, p) = (jail.clone(), path.clone());
            let empty = attrs.size == Some(0);
            blocking(move || break_link(&j, &p, empty).map_err(fail)).await?;
            copied = true;
        }
        if let Some(size) = attrs.size {
            let opts = OpenOptions {
                write: true,
                ..Default::default()
            };
            let (p, j) = (path.clone(), jail.clone());
            let (limits, usage) = (self.limits(), self.quota_used.clone());
            // The copy made just before replaced the file the count knew.
            let known = copied.then_some(old);
            let seals = self.shared.seals.clone();
            blocking(move || {
                let file = j.open_file(&p, &opts).map_err(fail)?;
                let m = file.metadata().map_err(|e| io_fail(&e))?;
                before_change_by_path(&seals, &m)?;
                usage.change(|used| set_len_measured(&file, &limits, used, size, known))
            })
            .await?;
        }
        let is_dir = meta.is_dir();
        blocking(move || {
            if let Some(mode) = attrs.permissions {
                jail.set_permissions(&path, customer_mode(mode, is_dir))
                    .map_err(fail)?;
            }
            if attrs.atime.is_some() || attrs.mtime.is_some() {
                jail.set_times(&path, to_time(attrs.atime), to_time(attrs.mtime))
                    .map_err(fail)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn do_fsetstat(&mut self, handle: &str, attrs: FileAttributes) -> Reply<()> {
        let fh = self.file_handle(handle)?;
        let file = fh.file.clone();
        let shared_inode = file.metadata().is_ok_and(|m| m.nlink() > 1);
        if shared_inode && fh.upload.is_none() {
            // A read handle on an archived deposit: change the customer's
            // name (given its own copy), never the archive's inode.
            let path = fh.path.clone();
            return self.do_setstat(path, attrs).await;
        }
        if attrs.size.is_some()
            && file
                .metadata()
                .is_ok_and(|m| self.shared.seals.is_sealed(&m))
        {
            return Err(status(
                StatusCode::Failure,
                "The file was ingested meanwhile; upload it again to replace it",
            ));
        }
        let fh = self.file_handle(handle)?;
        if let Some(size) = attrs.size {
            if fh.upload.is_none() {
                return Err(status(
                    StatusCode::PermissionDenied,
                    "The file was not opened for writing",
                ));
            }
            let (limits, usage, f) = (self.limits(), self.quota_used.clone(), file.clone());
            blocking(move || usage.change(|used| set_len_measured(&f, &limits, used, size, None)))
                .await?;
            if let Some(up) = self.file_handle(handle)?.upload.as_mut() {
                up.invalidate();
                up.len = size;
            }
        }
        blocking(move || {
            if let Some(mode) = attrs.permissions {
                use std::os::unix::fs::PermissionsExt;
                let mode = customer_mode(mode, false);
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| io_fail(&e))?;
            }
            if attrs.atime.is_some() || attrs.mtime.is_some() {
                let mut t = std::fs::FileTimes::new();
                if let Some(a) = to_time(attrs.atime) {
                    t = t.set_accessed(a);
                }
                if let Some(m) = to_time(attrs.mtime) {
                    t = t.set_modified(m);
                }
                file.set_times(t).map_err(|e| io_fail(&e))?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn do_rename(&mut self, from: &str, to: &str, overwrite: bool) -> Reply<()> {
        let (from, to) = (parse(from)?, parse(to)?);
        self.check_modifiable(&from)?;
        self.check_modifiable(&to)?;
        let from_meta = metadata(|| self.jail.stat(&from).map_err(fail))?;
        let is_dir = from_meta.is_dir();
        let account = self.account.clone();
        let busy = match is_dir {
            true => self.shared.seals.any_under(&account.name, from.as_str()),
            false => self.shared.seals.is_sealed(&from_meta),
        };
        if busy {
            return Err(status(
                StatusCode::Failure,
                "The file is being ingested; retry in a moment",
            ));
        }
        if !is_dir {
            if let Some(msg) = refuse_final_name(&account, &to) {
                return Err(self.refuse_unwanted(&to, Some(&from), msg).await);
            }
        }
        let what = self.rename_kind(&from, &to, is_dir).await?;
        let jail = self.jail.clone();
        let (f, t) = (from.clone(), to.clone());
        let completes = what == RenameKind::Completes;
        let usage = self.quota_used.clone();
        let file = blocking(move || {
            usage.change(|_| -> Reply<((), i64)> {
                let replaced = replaced_size(&jail, &f, &t);
                jail.rename(&f, &t, overwrite).map_err(fail)?;
                Ok(((), -(replaced as i64)))
            })?;
            let file = match completes && jail.stat(&t).is_ok_and(|m| m.is_file()) {
                true => Some(
                    jail.open_file(
                        &t,
                        &OpenOptions {
                            read: true,
                            ..Default::default()
                        },
                    )
                    .map_err(fail)?,
                ),
                false => None,
            };
            Ok(file)
        })
        .await?;
        if what == RenameKind::Moves {
            self.move_records(&from, &to, is_dir).await;
            return Ok(());
        }
        let Some(file) = file else { return Ok(()) };
        complete(
            &self.shared,
            &self.jail,
            &account.name,
            &to,
            Arc::new(file),
            None,
            None,
        )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(account = %account.name, path = %to, error = %e, "upload could not be recorded");
                status(StatusCode::Failure, "The upload could not be recorded; please upload it again")
            })
    }

    /// What renaming `from` to `to` means for ingestion. A file or directory
    /// holding an ingested conversation, renamed to other final names,
    /// moves the conversation (its recorded path follows); any other file
    /// renamed to a final name is a completion; the rest is a plain rename.
    async fn rename_kind(&self, from: &JailPath, to: &JailPath, is_dir: bool) -> Reply<RenameKind> {
        let account = &self.account;
        if is_dir {
            let inside = |d: &JailPath| d.join("x").is_ok_and(|p| is_final(account, &p));
            return Ok(match inside(from) && inside(to) {
                true => RenameKind::Moves,
                false => RenameKind::Plain,
            });
        }
        if !is_final(account, to) {
            return Ok(RenameKind::Plain);
        }
        if !is_final(account, from) {
            return Ok(RenameKind::Completes);
        }
        let (acc, f) = (account.name.clone(), from.as_str().to_string());
        let ingested = self
            .shared
            .writer
            .run(move |c| crate::store::conversations::current(c, &acc, &f))
            .await
            .map_err(|e| {
                tracing::error!(account = %account.name, path = %from, error = %e, "cannot look up the file's conversation");
                status(StatusCode::Failure, "Operation failed; retry in a moment")
            })?;
        Ok(match ingested {
            Some(_) => RenameKind::Moves,
            None => RenameKind::Completes,
        })
    }

    /// Records that the deposits at `from` (a file, or everything under a
    /// directory) are now at `to`. The file system already moved them; if
    /// this fails, the start-up scan still knows them by their sha256.
    async fn move_records(&self, from: &JailPath, to: &JailPath, is_dir: bool) {
        let (acc, f, t) = (
            self.account.name.clone(),
            from.as_str().to_string(),
            to.as_str().to_string(),
        );
        let moved = self
            .shared
            .writer
            .run(move |c| crate::store::moves::move_deposits(c, &acc, &f, &t, is_dir))
            .await;
        match moved {
            Ok(n) => {
                tracing::info!(account = %self.account.name, from = %from, to = %to, conversations = n, "renamed; its conversations follow")
            }
            Err(e) => {
                tracing::error!(account = %self.account.name, from = %from, to = %to, error = %e, "renamed, but its conversations still name the old path")
            }
        }
    }

    pub(super) async fn do_remove(&mut self, path: JailPath) -> Reply<()> {
        self.check_modifiable(&path)?;
        let (jail, usage) = (self.jail.clone(), self.quota_used.clone());
        blocking(move || {
            usage.change(|_| {
                let m = jail.stat(&path).map_err(fail)?;
                jail.remove_file(&path).map_err(fail)?;
                Ok(((), if m.is_file() { -(m.len() as i64) } else { 0 }))
            })
        })
        .await
    }

    pub(super) fn do_mkdir(&mut self, path: &str, attrs: &FileAttributes) -> Reply<()> {
        let p = parse(path)?;
        self.check_modifiable(&p)?;
        let mode = customer_mode(attrs.permissions.unwrap_or(0o755), true);
        metadata(|| self.jail.mkdir(&p, mode).map_err(fail))
    }

    pub(super) fn do_rmdir(&mut self, path: &str) -> Reply<()> {
        let p = parse(path)?;
        self.check_modifiable(&p)?;
        metadata(|| self.jail.rmdir(&p).map_err(fail))
    }
}
