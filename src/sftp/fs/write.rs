//! The write path: OPEN for writing (the upload policy: refused final
//! names, size and quota checks, link breaking, the partial-upload mark),
//! WRITE (measured against the account's limits with its count locked,
//! never into sealed bytes), fsync, and CLOSE, which completes the upload:
//! fsync, a journal row committed, then OK to the client.

use super::handles::{FileHandle, OpenHandle};
use super::links::break_link;
use super::reply::{blocking, fail, io_fail, metadata, parse, status, Reply};
use super::session::{before_change_by_path, SftpSession};
use crate::deposit::hash::Cancel;
use crate::deposit::names::{is_final, is_system_file};
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::metrics::Metrics;
use crate::sftp::policy::{customer_mode, refuse_final_name};
use crate::sftp::quota::{growth_refusal, Limits};
use crate::sftp::upload::{complete, in_memory, Upload};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use russh_sftp::server::StatusReply;
use rustix::io::Errno;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Marks a write refused because the file became an archived deposit.
const ARCHIVED: &str = "archived";

/// Why a WRITE did not happen: refused by a limit (nothing written), or
/// the file system failed.
enum WriteError {
    Refused(String),
    Io(std::io::Error),
}

/// How far a WRITE went.
enum Progress {
    /// All of it, at this offset.
    Done(u64),
    /// The file system would have made the session wait: the first
    /// `written` bytes are at `at`, the rest is for the blocking pool.
    Blocked { at: u64, written: usize },
}

/// Writes `data` at `at`. With `nowait`, only as far as the file system
/// takes bytes without waiting for the disk (`RWF_NOWAIT`), stopping at
/// `EAGAIN` or `EOPNOTSUPP` (a file system without it). Returns the bytes
/// written and the error that stopped it, if any.
fn write_at(file: &std::fs::File, data: &[u8], at: u64, nowait: bool) -> (usize, Option<Errno>) {
    use rustix::io::ReadWriteFlags;
    let mut done = 0;
    while done < data.len() {
        let pos = at + done as u64;
        let wrote = match nowait {
            true => {
                let slice = [std::io::IoSlice::new(&data[done..])];
                rustix::io::pwritev2(file, &slice, pos, ReadWriteFlags::NOWAIT)
            }
            false => rustix::io::pwrite(file, &data[done..], pos),
        };
        match wrote {
            // A file system that takes nothing would loop forever.
            Ok(0) => return (done, Some(Errno::NOSPC)),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// One WRITE, with the account's count locked by the caller: the file is
/// measured, the write checked against the limits, done, and measured
/// again (also after a failed write: part of it may be on disk). Returns
/// where the bytes went (an append goes to the real end, whatever offset
/// the client gave) or the write's error, with the change in stored bytes.
/// With `nowait` it stops where the file system would wait, as
/// [`Progress::Blocked`].
fn write_measured(
    file: &std::fs::File,
    limits: &Limits,
    used: u64,
    append: bool,
    offset: u64,
    data: &[u8],
    nowait: bool,
) -> Result<(Result<Progress, WriteError>, i64), WriteError> {
    let m = file.metadata().map_err(WriteError::Io)?;
    let size = m.len();
    let at = if append { size } else { offset };
    let end = at.saturating_add(data.len() as u64);
    let allocated = m.blocks().saturating_mul(512);
    if let Some(msg) = growth_refusal(limits, used, size, allocated, end, data.len() as u64) {
        return Err(WriteError::Refused(msg));
    }
    let res = match write_at(file, data, at, nowait) {
        (_, None) => Ok(Progress::Done(at)),
        (written, Some(Errno::AGAIN | Errno::OPNOTSUPP)) if nowait => {
            Ok(Progress::Blocked { at, written })
        }
        (_, Some(e)) => Err(WriteError::Io(e.into())),
    };
    let after = file.metadata().map_or(end.max(size), |m| m.len());
    Ok((res, after as i64 - size as i64))
}

/// Another handle's CLOSE or RENAME may have completed this file
/// meanwhile: its acknowledged bytes are sealed until archived (and an
/// archive written by an older version may share the inode). Writing
/// through this descriptor would change them.
fn sealed(file: &std::fs::File, seals: &crate::deposit::Seals) -> bool {
    file.metadata()
        .is_ok_and(|m| m.nlink() > 1 || seals.is_sealed(&m))
}

impl SftpSession {
    /// Refuses a final name the account never ingests (`audio.on_unwanted
    /// = "refuse"`), and leaves a trace the customer can find: a log line
    /// and a line in today's `/rejected/` report. `from` is the temporary
    /// name of a refused RENAME, which stays where it is (the sweep removes
    /// it once it has been untouched long enough).
    pub(super) async fn refuse_unwanted(
        &self,
        p: &JailPath,
        from: Option<&JailPath>,
        msg: String,
    ) -> StatusReply {
        let account = &self.account;
        match from {
            Some(f) => {
                tracing::info!(account = %account.name, from = %f, to = %p, reason = %msg, "rename refused")
            }
            None => {
                tracing::info!(account = %account.name, path = %p, reason = %msg, "upload refused")
            }
        }
        let reason = msg.strip_prefix("file type: ").unwrap_or(&msg).to_string();
        let r = crate::pipeline::Rejection::new("file_type", reason);
        let day = crate::pipeline::context::today(account);
        let (acc, path, d) = (account.name.clone(), p.as_str().to_string(), day.clone());
        let row = self
            .shared
            .writer
            .run(move |c| crate::store::conversations::reject_refused(c, &acc, &path, &r, &d))
            .await;
        match row {
            Ok(Some(row)) => {
                Metrics::add(&self.shared.metrics.rejections, 1);
                let root = self.jail.root_path().to_path_buf();
                let name = account.name.clone();
                let style = crate::pipeline::report::Style::of(account);
                let appended = tokio::task::spawn_blocking(move || {
                    crate::pipeline::report::append(&root, &day, std::slice::from_ref(&row), style)
                })
                .await;
                if let Err(e) = appended.map_err(anyhow::Error::from).and_then(|r| r) {
                    tracing::warn!(account = %name, error = %format!("{e:#}"), "cannot append the refusal to the customer's rejection report; `depot rejections` lists it");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(account = %account.name, path = %p, error = %e, "cannot record the refused upload");
            }
        }
        status(StatusCode::PermissionDenied, msg)
    }

    fn quota_refusal(&self, growth: u64) -> Option<StatusReply> {
        let quota = self.account.quota_bytes?;
        let used = self.quota_used.current();
        (used.saturating_add(growth) > quota).then(|| {
            status(
                StatusCode::Failure,
                format!("Quota of {quota} bytes exceeded"),
            )
        })
    }

    fn check_upload_allowed(&self, p: &JailPath, attrs: &FileAttributes) -> Reply<()> {
        self.check_replaceable(p)?;
        if let (Some(max), Some(size)) = (self.account.max_file_size, attrs.size) {
            if size > max {
                return Err(status(
                    StatusCode::PermissionDenied,
                    format!("Files over {max} bytes are not accepted"),
                ));
            }
        }
        if let Some(e) = self.quota_refusal(1) {
            return Err(status(
                StatusCode::PermissionDenied,
                e.error_message.unwrap_or_default(),
            ));
        }
        Ok(())
    }

    pub(super) async fn do_open(
        &mut self,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Reply<String> {
        let path = parse(&filename)?;
        let write = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        if write {
            self.check_replaceable(&path)?;
            if let Some(msg) = refuse_final_name(&self.account, &path) {
                return Err(self.refuse_unwanted(&path, None, msg).await);
            }
            self.check_upload_allowed(&path, &attrs)?;
        }
        // Limits first: past them, no descriptor is even opened.
        let slot = self.reserve_handle()?;
        let opts = OpenOptions {
            // Upload handles are always readable: completion hashes the
            // file through this fd (a resumed upload's existing prefix, or
            // the whole file after out-of-order writes), and OpenSSH's
            // `reput` opens with WRITE|APPEND only.
            read: true,
            write,
            create: pflags.contains(OpenFlags::CREATE),
            truncate: pflags.contains(OpenFlags::TRUNCATE),
            append: pflags.contains(OpenFlags::APPEND),
            exclusive: pflags.contains(OpenFlags::EXCLUDE),
            mode: customer_mode(attrs.permissions.unwrap_or(0o644), false),
        };
        let mark = write && is_final(&self.account, &path);
        let before_meta = self.jail.stat(&path).ok();
        let before = before_meta.as_ref().map(|m| m.len());
        let mut copied = false;
        if write && before_meta.is_some_and(|m| m.is_file() && self.shares_acknowledged_bytes(&m)) {
            // A copy of the whole file: off the async threads.
            let (j, p) = (self.jail.clone(), path.clone());
            let truncate = opts.truncate;
            blocking(move || break_link(&j, &p, truncate).map_err(fail)).await?;
            copied = true;
        }
        let open_path = path.clone();
        let seals = self.shared.seals.clone();
        let open = move |jail: &Jail| -> Reply<(std::fs::File, u64)> {
            // Truncated after opening, on the inode actually opened.
            let untruncated = OpenOptions {
                truncate: false,
                ..opts
            };
            let file = jail.open_file(&open_path, &untruncated).map_err(fail)?;
            if opts.truncate {
                let m = file.metadata().map_err(|e| io_fail(&e))?;
                if m.len() > 0 {
                    before_change_by_path(&seals, &m)?;
                    file.set_len(0).map_err(|e| io_fail(&e))?;
                }
            }
            if mark {
                crate::deposit::hash::mark_partial(&file);
            }
            let len = file.metadata().map_err(|e| io_fail(&e))?.len();
            Ok((file, len))
        };
        let (file, len) = match (opts.truncate, before) {
            // Truncating a file with bytes in it changes what the account
            // stores: measured and opened with the count locked.
            (true, Some(old)) if old > 0 => {
                let (j, p, usage) = (self.jail.clone(), path.clone(), self.quota_used.clone());
                blocking(move || {
                    usage.change(|_| {
                        let old = match copied {
                            // The copy made just before replaced the
                            // file the count knew.
                            true => old,
                            false => j.stat(&p).map(|m| m.len()).unwrap_or(0),
                        };
                        let (file, len) = open(&j)?;
                        Ok(((file, len), len as i64 - old as i64))
                    })
                })
                .await?
            }
            _ => metadata(|| open(&self.jail))?,
        };
        let cancel = Cancel::new(self.shared.stop_hashing.clone());
        let upload = write.then(|| Upload::new(len, before.is_none() || opts.truncate, cancel));
        let open = file
            .metadata()
            .ok()
            .map(|m| self.shared.seals.open.hold(&m));
        self.add_handle(OpenHandle::File(FileHandle {
            path,
            file: Arc::new(file),
            _slot: slot,
            open,
            write_failed: false,
            append: opts.append,
            upload,
        }))
    }

    pub(super) async fn do_close(&mut self, handle: &str) -> Reply<()> {
        let OpenHandle::File(fh) = self.take_handle(handle)? else {
            return Ok(());
        };
        let Some(upload) = fh.upload else {
            return Ok(());
        };
        if fh.write_failed {
            // Never journal a file missing bytes the client sent; it stays
            // a partial upload (marked) for the client to send again.
            tracing::info!(account = %self.account.name, path = %fh.path, "upload closed after a failed write; not ingested");
            return Err(status(
                StatusCode::Failure,
                "A write to this file failed; upload it again",
            ));
        }
        if !upload.changed || !is_final(&self.account, &fh.path) {
            // Dot-named system files (`.DS_Store`, `._*`) never reach the
            // journal; they are counted here (the others by the pipeline).
            if upload.changed && fh.path.file_name().is_some_and(is_system_file) {
                Metrics::add(&self.shared.metrics.system_files_ignored, 1);
            }
            return Ok(());
        }
        complete(
            &self.shared,
            &self.jail,
            &self.account.name,
            &fh.path,
            fh.file,
            Some(upload),
            fh.open,
        )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(account = %self.account.name, path = %fh.path, error = %e, "upload could not be recorded");
                status(StatusCode::Failure, "The upload could not be recorded; please upload it again")
            })
    }

    pub(super) async fn do_write(&mut self, handle: &str, offset: u64, data: Vec<u8>) -> Reply<()> {
        let (limits, usage) = (self.limits(), self.quota_used.clone());
        let fh = self.file_handle(handle)?;
        let Some(mut up) = fh.upload.take() else {
            return Err(status(
                StatusCode::PermissionDenied,
                "The file was not opened for writing",
            ));
        };
        let (file, append) = (fh.file.clone(), fh.append);
        let n = data.len();
        let seals = self.shared.seals.clone();
        // Written right here when that cannot wait for a disk (tmpfs, or
        // what `RWF_NOWAIT` takes), and when no other session of the account
        // holds its count: each trip through the blocking pool costs two
        // thread hand-offs, which on a busy machine each wait for a core.
        // Not when the running hash itself may wait (a large upload's
        // hashing thread, an existing prefix to hash from disk).
        let nowait = !in_memory(&file);
        let inline = match sealed(&file, &seals) {
            _ if up.written_may_wait(offset, append) => None,
            true => Some(Err(WriteError::Io(std::io::Error::other(ARCHIVED)))),
            false => usage
                .try_change(|used| {
                    write_measured(&file, &limits, used, append, offset, &data, nowait)
                })
                .map(|r| r.and_then(|r| r)),
        };
        let (up, res) = match inline {
            Some(Ok(Progress::Done(at))) => {
                up.written(&file, at, data);
                (up, Ok(at))
            }
            Some(Err(e)) => {
                if matches!(e, WriteError::Io(_)) {
                    up.invalidate();
                }
                (up, Err(e))
            }
            // The rest (or all of it, when the count was busy or the first
            // byte would have waited) goes to the blocking pool.
            blocked => {
                let from = match blocked {
                    Some(Ok(Progress::Blocked { at, written })) if written > 0 => {
                        Some((at, written))
                    }
                    _ => None,
                };
                let cancel = up.cancel_on_drop();
                let done = tokio::task::spawn_blocking(move || {
                    if sealed(&file, &seals) {
                        return (up, Err(WriteError::Io(std::io::Error::other(ARCHIVED))));
                    }
                    let (append, offset, skip) = match from {
                        Some((at, written)) => (false, at + written as u64, written),
                        None => (append, offset, 0),
                    };
                    let res = usage
                        .change(|used| {
                            write_measured(
                                &file,
                                &limits,
                                used,
                                append,
                                offset,
                                &data[skip..],
                                false,
                            )
                        })
                        .and_then(|r| r)
                        .map(|p| match (p, from) {
                            (_, Some((at, _))) | (Progress::Done(at), None) => at,
                            (Progress::Blocked { at, .. }, None) => at,
                        });
                    match &res {
                        Ok(at) => up.written(&file, *at, data),
                        Err(WriteError::Io(_)) => up.invalidate(),
                        Err(WriteError::Refused(_)) => {}
                    }
                    (up, res)
                })
                .await
                .map_err(|_| status(StatusCode::Failure, "Operation failed"))?;
                cancel.done();
                done
            }
        };
        let fh = self.file_handle(handle)?;
        fh.upload = Some(up);
        match res {
            Ok(_) => {
                Metrics::add(&self.shared.metrics.bytes_in, n as u64);
                Ok(())
            }
            Err(WriteError::Io(e)) if e.to_string() == ARCHIVED => Err(status(
                StatusCode::Failure,
                "The file was ingested meanwhile; upload it again to replace it",
            )),
            Err(e) => {
                // Refused or failed, the file is not what the client sent:
                // its CLOSE must not complete it.
                fh.write_failed = true;
                Err(match e {
                    WriteError::Refused(msg) => status(StatusCode::Failure, msg),
                    WriteError::Io(e) => io_fail(&e),
                })
            }
        }
    }

    /// fsync@openssh.com: the client asks for its bytes on disk now.
    pub(super) async fn do_fsync(&mut self, handle: &str) -> Reply<()> {
        let file = self.file_handle(handle)?.file.clone();
        blocking(move || file.sync_all().map_err(|e| io_fail(&e))).await
    }
}

#[cfg(test)]
mod tests;
