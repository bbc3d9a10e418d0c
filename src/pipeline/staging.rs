//! How every CSV deposit (metadata or CRM) is read: staged as a copy
//! checked against the journaled sha256, then parsed on a thread of lower
//! priority, one bounded record at a time.

use super::context::{not_as_acknowledged, transient, Failure, Pipeline};
use super::csvfile::Bounds;
use crate::config::Account;
use crate::jail::JailPath;
use crate::store::journal::Entry;
use anyhow::Context;
use std::path::PathBuf;

/// Stages the deposit at `dest` (`None`: it changed or was deleted since
/// its completion; a newer completion covers it).
/// Copies the CSV into the archive's staging area and checks it is the
/// acknowledged content; it is parsed from that copy. `None` when a newer
/// completion of the same path covers the row (already marked); bytes
/// changed or gone without one are a rejection that says so.
pub(super) async fn stage(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    dest: PathBuf,
) -> Result<Option<PathBuf>, Failure> {
    use crate::archive::{Source, Staged};
    let (root, sha) = (p.jail_root(&account.name), entry.sha256.clone());
    let jp = JailPath::parse(&entry.path)
        .with_context(|| format!("journal row {}: path {}", entry.id, entry.path))
        .map_err(transient)?;
    let sealed = p.seals.source(entry.id);
    let t = dest.clone();
    let staged = tokio::task::spawn_blocking(move || {
        let from = match &sealed {
            Some(f) => Source::sealed(f),
            None => Source::Jail {
                root: &root,
                path: &jp,
            },
        };
        crate::archive::stage(&from, &t, &sha)
    })
    .await
    .map_err(transient)?
    .map_err(transient)?;
    let found = match staged {
        Staged::Ready(_) => return Ok(Some(dest)),
        Staged::Changed { sha256 } => Some(sha256),
        Staged::Missing => None,
    };
    not_as_acknowledged(p, account, entry, found.as_deref()).await?;
    Ok(None)
}

/// Runs a CSV's parsing on a thread of its own at a lower scheduling
/// priority (nice +10): reading a million-row file must not take the CPU
/// from the sessions acknowledging other accounts' uploads. On Linux a
/// priority set with `PRIO_PROCESS` and no pid applies to the calling
/// thread only, so the rest of depot keeps its own.
pub(super) async fn low_priority<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("depot-csv".into())
        .spawn(move || {
            if let Err(e) = rustix::process::setpriority_process(None, 10) {
                tracing::debug!(error = %e, "cannot lower the CSV thread's priority");
            }
            let _ = tx.send(f());
        })?;
    Ok(rx.await?)
}

pub(super) fn bounds(p: &Pipeline) -> Bounds {
    Bounds {
        max_columns: p.limits.csv_max_columns,
        max_record_bytes: p.limits.csv_max_record_bytes,
    }
}
