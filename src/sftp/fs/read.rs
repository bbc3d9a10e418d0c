//! The read path: READ (at most [`MAX_IO`] bytes a request), STAT and
//! FSTAT, directory listings page by page, and statvfs.

use super::handles::{DirHandle, OpenHandle};
use super::reply::{attrs_of, blocking, fail, io_fail, metadata, parse, status, Reply, MAX_IO};
use super::session::SftpSession;
use crate::metrics::Metrics;
use crate::sftp::upload::in_memory;
use russh_sftp::extensions::Statvfs;
use russh_sftp::protocol::{File, FileAttributes, StatusCode};

/// Directory entries per READDIR reply: also all a directory handle holds
/// in memory at once (besides rustix's getdents buffer, at most 24 KiB).
const READDIR_CHUNK: usize = 128;

/// Reads up to `len` bytes at `offset` into a buffer it does not zero first.
/// With `wait` false it only answers from memory (tmpfs, or the page cache
/// as `RWF_NOWAIT` finds it) and gives `None` when the disk would be read.
fn read_at(file: &std::fs::File, offset: u64, len: usize, wait: bool) -> Option<Reply<Vec<u8>>> {
    use rustix::io::{Errno, ReadWriteFlags};
    let memory = wait || in_memory(file);
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let (start, at) = (buf.len(), offset + buf.len() as u64);
        let read = if memory {
            rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)
        } else {
            buf.resize(len, 0);
            let slice = &mut [std::io::IoSliceMut::new(&mut buf[start..])];
            let read = rustix::io::preadv2(file, slice, at, ReadWriteFlags::NOWAIT);
            buf.truncate(start + *read.as_ref().unwrap_or(&0));
            read
        };
        match read {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::AGAIN | Errno::OPNOTSUPP) if !wait => return None,
            Err(e) => return Some(Err(io_fail(&e.into()))),
        }
    }
    Some(Ok(buf))
}

impl SftpSession {
    pub(super) async fn do_read(&mut self, handle: &str, offset: u64, len: u32) -> Reply<Vec<u8>> {
        let file = self.file_handle(handle)?.file.clone();
        let len = len.min(MAX_IO) as usize;
        // Bytes in memory are read right here, without the two thread
        // hand-offs of the blocking pool: a 256 MiB download made about two
        // thousand of them, which on a busy machine each waited for a core.
        let buf = match read_at(&file, offset, len, false) {
            Some(read) => read?,
            None => {
                blocking(move || read_at(&file, offset, len, true).unwrap_or(Ok(Vec::new())))
                    .await?
            }
        };
        if buf.is_empty() && len > 0 {
            return Err(status(StatusCode::Eof, "End of file"));
        }
        Metrics::add(&self.shared.metrics.bytes_out, buf.len() as u64);
        Ok(buf)
    }

    pub(super) fn do_stat(&self, path: &str) -> Reply<FileAttributes> {
        let p = parse(path)?;
        let m = metadata(|| self.jail.stat(&p).map_err(fail))?;
        Ok(attrs_of(&m))
    }

    pub(super) fn do_fstat(&mut self, handle: &str) -> Reply<FileAttributes> {
        let file = &self.file_handle(handle)?.file;
        let m = metadata(|| file.metadata().map_err(|e| io_fail(&e)))?;
        Ok(attrs_of(&m))
    }

    pub(super) async fn do_opendir(&mut self, path: &str) -> Reply<String> {
        let p = parse(path)?;
        let slot = self.reserve_handle()?;
        let jail = self.jail.clone();
        let listing = blocking(move || jail.list_dir(&p).map_err(fail)).await?;
        self.add_handle(OpenHandle::Dir(DirHandle {
            listing: Some(listing),
            _slot: slot,
        }))
    }

    /// The next page of the listing, read and stat'ed now: a directory
    /// handle never holds more than one page.
    pub(super) async fn do_readdir(&mut self, handle: &str) -> Reply<Vec<File>> {
        let Some(dir) = self.handles.dir(handle) else {
            return Err(status(StatusCode::Failure, "Invalid handle"));
        };
        let mut listing = dir
            .listing
            .take()
            .ok_or_else(|| status(StatusCode::Failure, "Invalid handle"))?;
        let (listing, page) = tokio::task::spawn_blocking(move || {
            let page = listing.next_page(READDIR_CHUNK);
            (listing, page)
        })
        .await
        .map_err(|_| status(StatusCode::Failure, "Operation failed"))?;
        if let Some(dir) = self.handles.dir(handle) {
            dir.listing = Some(listing);
        }
        let page = page.map_err(fail)?;
        if page.is_empty() {
            return Err(status(StatusCode::Eof, "End of directory"));
        }
        Ok(page
            .into_iter()
            .map(|e| File::new(e.name, attrs_of(&e.metadata)))
            .collect())
    }

    /// statvfs@openssh.com: the file system holding the jail.
    pub(super) fn do_statvfs(&self) -> Reply<Statvfs> {
        let s = self.jail.statvfs().map_err(fail)?;
        Ok(Statvfs {
            block_size: s.f_bsize,
            fragment_size: s.f_frsize,
            blocks: s.f_blocks,
            blocks_free: s.f_bfree,
            blocks_avail: s.f_bavail,
            inodes: s.f_files,
            inodes_free: s.f_ffree,
            inodes_avail: s.f_favail,
            fs_id: 0,
            flags: 0,
            name_max: 255,
        })
    }
}
