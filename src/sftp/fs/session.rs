//! One SFTP session's state: its account, the account's jail, its handle
//! table and the account's stored-bytes count, and the checks every
//! changing request passes (the jail's root and `/rejected` are read-only,
//! a deposit being ingested may not change).

use super::handles::{FileHandle, HandleTable, OpenHandle};
use super::reply::{status, Reply};
use crate::config::Account;
use crate::deposit::names::{is_rejected_area, REJECTED_DIR};
use crate::deposit::Deposit;
use crate::jail::{Jail, JailPath};
use crate::sftp::budget::HandleSlot;
use crate::sftp::quota::{Limits, Usage};
use crate::sftp::Shared;
use russh_sftp::protocol::StatusCode;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) struct SftpSession {
    pub(super) shared: Arc<Shared>,
    pub(super) account: Arc<Account>,
    pub(super) jail: Arc<Jail>,
    pub(super) peer: SocketAddr,
    pub(super) quota_used: Arc<Usage>,
    pub(super) handles: HandleTable,
}

impl SftpSession {
    /// Prepares the account's jail (created on first login, with its
    /// ingestion directories and `/rejected`).
    pub(crate) async fn start(
        shared: Arc<Shared>,
        account: Arc<Account>,
        peer: SocketAddr,
    ) -> anyhow::Result<Self> {
        let root =
            crate::deposit::Layout::new(&shared.settings.server.data_dir).jail(&account.name);
        let acc = account.clone();
        let shared2 = shared.clone();
        let (jail, quota_used) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            std::fs::create_dir_all(&root)?;
            let jail = Jail::open(&root)?;
            let mut dirs: Vec<JailPath> = acc.ingest_dirs().into_iter().cloned().collect();
            dirs.push(JailPath::parse(REJECTED_DIR)?);
            for d in dirs {
                jail.create_dir_all(&d, 0o755)?;
            }
            let quota_used = shared2.quota_usage(&acc.name, &root);
            Ok((Arc::new(jail), quota_used))
        })
        .await??;
        Ok(SftpSession {
            shared,
            account,
            jail,
            peer,
            quota_used,
            handles: HandleTable::new(),
        })
    }

    /// Takes a handle from the session's, account's and server's budgets.
    pub(super) fn reserve_handle(&self) -> Reply<HandleSlot> {
        self.shared
            .handles
            .reserve(&self.account.name, self.peer)
            .map_err(|r| status(StatusCode::Failure, r.message()))
    }

    pub(super) fn add_handle(&mut self, h: OpenHandle) -> Reply<String> {
        Ok(self.handles.add(h, &self.shared.open_uploads))
    }

    pub(super) fn take_handle(&mut self, handle: &str) -> Reply<OpenHandle> {
        self.handles.take(handle, &self.shared.open_uploads)
    }

    pub(super) fn file_handle(&mut self, handle: &str) -> Reply<&mut FileHandle> {
        self.handles.file(handle)
    }

    /// How far this account's files may grow.
    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_file_size: self.account.max_file_size,
            quota: self.account.quota_bytes,
            max_hole: self.shared.settings.server.max_hole,
        }
    }

    pub(super) fn in_flight(&self, p: &JailPath) -> bool {
        let set = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.contains(&Deposit::new(&self.account.name, p.as_str()))
    }

    /// Refuses changes to `/rejected` and to deposits being ingested.
    pub(super) fn check_modifiable(&self, p: &JailPath) -> Reply<()> {
        self.check_area(p)?;
        if self.in_flight(p) {
            return Err(status(
                StatusCode::Failure,
                "The file is being ingested; retry in a moment",
            ));
        }
        Ok(())
    }

    /// [`Self::check_modifiable`] for an OPEN for writing: a deposit being
    /// ingested whose bytes are sealed may be uploaded again at once (its
    /// name gets a fresh inode first, the new upload queues behind it);
    /// one the pipeline reads by its path (after a restart) may not.
    pub(super) fn check_replaceable(&self, p: &JailPath) -> Reply<()> {
        self.check_area(p)?;
        let sealed = || {
            self.jail
                .stat(p)
                .is_ok_and(|m| m.is_file() && self.shared.seals.is_sealed(&m))
        };
        if self.in_flight(p) && !sealed() {
            return Err(status(
                StatusCode::Failure,
                "The file is being ingested; retry in a moment",
            ));
        }
        Ok(())
    }

    /// Refuses changes to the jail's root and to `/rejected`.
    pub(super) fn check_area(&self, p: &JailPath) -> Reply<()> {
        if p.is_root() {
            return Err(status(StatusCode::PermissionDenied, "Permission denied"));
        }
        if is_rejected_area(p) {
            return Err(status(
                StatusCode::PermissionDenied,
                "The rejection reports are read-only",
            ));
        }
        Ok(())
    }

    /// Would changing this file in place change bytes that belong to an
    /// acknowledged deposit (sealed until archived) or to an archive
    /// written by an older version (a hard link)? Then the customer's name
    /// gets an inode of its own first.
    pub(super) fn shares_acknowledged_bytes(&self, m: &std::fs::Metadata) -> bool {
        m.nlink() > 1 || self.shared.seals.is_sealed(m)
    }
}

impl Drop for SftpSession {
    fn drop(&mut self) {
        let uploads = self.handles.open_uploads();
        if uploads > 0 {
            // A dropped connection: partial files stay, never journaled.
            self.shared
                .open_uploads
                .fetch_sub(uploads, Ordering::SeqCst);
            tracing::info!(account = %self.account.name, ip = %self.peer.ip(), uploads, "session ended with unfinished uploads; they are not ingested");
        }
    }
}

/// Before a file is changed by path (truncated at OPEN, resized by
/// SETSTAT) through the descriptor `m` describes: the handles holding its
/// inode hear of it first, and a deposit sealed since the caller's earlier
/// check is refused rather than cut.
pub(super) fn before_change_by_path(
    seals: &crate::deposit::Seals,
    m: &std::fs::Metadata,
) -> Reply<()> {
    seals.open.will_change(m);
    if seals.is_sealed(m) {
        return Err(status(
            StatusCode::Failure,
            "The file was completed meanwhile and is being ingested; retry in a moment",
        ));
    }
    Ok(())
}
