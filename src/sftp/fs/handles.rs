//! The session's handle table: open files (with their upload, if opened
//! for writing) and directory listings, by the handle string the client
//! holds. Every handle also holds a place in the session's, account's and
//! server's handle budgets; the server-wide count of open uploads follows
//! the table.

use super::reply::{status, Reply};
use crate::jail::{DirListing, JailPath};
use crate::sftp::budget::HandleSlot;
use crate::sftp::upload::Upload;
use russh_sftp::protocol::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(super) struct FileHandle {
    pub(super) path: JailPath,
    pub(super) file: Arc<std::fs::File>,
    /// The descriptor's place in the session, account and server budgets.
    pub(super) _slot: HandleSlot,
    /// Keeps the sweep of stale uploads away from this file.
    pub(super) open: Option<crate::deposit::OpenFile>,
    pub(super) append: bool,
    /// Present when opened for writing.
    pub(super) upload: Option<Upload>,
    /// A WRITE failed (e.g. disk full): the file is not what the client
    /// sent, so its CLOSE must not complete the upload.
    pub(super) write_failed: bool,
}

pub(super) struct DirHandle {
    /// Out of the handle only while a READDIR reads the next page.
    pub(super) listing: Option<DirListing>,
    pub(super) _slot: HandleSlot,
}

pub(super) enum OpenHandle {
    File(FileHandle),
    Dir(DirHandle),
}

/// The open handles of one session, by the name the client holds.
pub(super) struct HandleTable {
    handles: HashMap<String, OpenHandle>,
    next: u64,
}

impl HandleTable {
    pub(super) fn new() -> Self {
        HandleTable {
            handles: HashMap::new(),
            next: 1,
        }
    }

    /// Adds `h` under a fresh name; an upload counts in `open_uploads`.
    pub(super) fn add(&mut self, h: OpenHandle, open_uploads: &AtomicUsize) -> String {
        if matches!(&h, OpenHandle::File(f) if f.upload.is_some()) {
            open_uploads.fetch_add(1, Ordering::SeqCst);
        }
        let name = format!("{:x}", self.next);
        self.next += 1;
        self.handles.insert(name.clone(), h);
        name
    }

    /// Removes the handle (CLOSE); an upload stops counting.
    pub(super) fn take(&mut self, handle: &str, open_uploads: &AtomicUsize) -> Reply<OpenHandle> {
        let h = self
            .handles
            .remove(handle)
            .ok_or_else(|| status(StatusCode::Failure, "Invalid handle"))?;
        if matches!(&h, OpenHandle::File(f) if f.upload.is_some()) {
            open_uploads.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(h)
    }

    pub(super) fn file(&mut self, handle: &str) -> Reply<&mut FileHandle> {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::File(f)) => Ok(f),
            _ => Err(status(StatusCode::Failure, "Invalid handle")),
        }
    }

    pub(super) fn dir(&mut self, handle: &str) -> Option<&mut DirHandle> {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::Dir(d)) => Some(d),
            _ => None,
        }
    }

    /// Open handles with an unfinished upload.
    pub(super) fn open_uploads(&self) -> usize {
        self.handles
            .values()
            .filter(|h| matches!(h, OpenHandle::File(f) if f.upload.is_some()))
            .count()
    }
}
