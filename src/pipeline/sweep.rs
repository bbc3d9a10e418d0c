//! The sweep of stale uploads: temporary names (`*.part`, `*.filepart`,
//! `*.partial`, `*.tmp`, dot-files) and final names still carrying the
//! partial mark (a transfer cut off midway) that nobody touched for the
//! account's `audio.sweep_after` are removed, so an abandoned upload does
//! not sit in the customer's jail (and count against its quota) forever.
//!
//! A file is "touched" when its content or its name changes (the later of
//! mtime and ctime): a client resuming an upload or renaming it keeps it.
//! Never removed: a file an SFTP handle holds open, a deposit awaiting its
//! outcome (sealed), system files (`.DS_Store`...) and anything in
//! `/rejected`. The walk goes through the [`Jail`], so symlinks are never
//! followed. Blocking code: call it from `spawn_blocking`.

use crate::config::Account;
use crate::deposit::hash::is_partial;
use crate::deposit::names::{is_final, is_system_file, is_temp_name, REJECTED_DIR};
use crate::deposit::Seals;
use crate::jail::{Jail, JailPath, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `audio.sweep_after` for accounts without `[audio]`.
pub(crate) const DEFAULT_SWEEP_AFTER: Duration = Duration::from_secs(7 * 86400);

/// How long `account`'s stale uploads are kept.
pub fn sweep_after(account: &Account) -> Duration {
    account
        .audio
        .as_ref()
        .map_or(DEFAULT_SWEEP_AFTER, |a| a.sweep_after)
}

/// How often the sweep runs for accounts keeping stale uploads `after`:
/// often enough to remove them soon after they are due, rarely enough that
/// walking the jails costs nothing noticeable.
pub(crate) fn period(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15 * 60))
}

/// Removes `account`'s stale uploads as of `now`; returns the paths
/// removed with their sizes.
pub fn sweep(
    jail: &Jail,
    account: &Account,
    seals: &Seals,
    now: SystemTime,
) -> Vec<(JailPath, u64)> {
    let mut out = Vec::new();
    let stale_before = now.checked_sub(sweep_after(account)).unwrap_or(UNIX_EPOCH);
    walk(
        jail,
        account,
        seals,
        &JailPath::root(),
        stale_before,
        &mut out,
    );
    out
}

fn walk(
    jail: &Jail,
    account: &Account,
    seals: &Seals,
    dir: &JailPath,
    stale_before: SystemTime,
    out: &mut Vec<(JailPath, u64)>,
) {
    let entries = match jail.read_dir(dir) {
        Ok(e) => e,
        Err(crate::jail::JailError::NotFound) => return,
        Err(e) => {
            tracing::warn!(account = %account.name, dir = %dir, error = %e, "sweep cannot list a directory; skipped");
            return;
        }
    };
    for e in entries {
        let Ok(path) = dir.join(&e.name) else {
            continue;
        };
        let m = &e.metadata;
        if m.file_type().is_dir() {
            if path.as_str() != REJECTED_DIR {
                walk(jail, account, seals, &path, stale_before, out);
            }
            continue;
        }
        if !m.file_type().is_file() || last_touched(m) > stale_before {
            continue;
        }
        if seals.open.is_open(m) || seals.is_sealed(m) {
            continue;
        }
        let stale = match is_temp_name(&e.name) {
            true => !is_system_file(&e.name),
            false => is_final(account, &path) && marked_partial(jail, &path),
        };
        if !stale {
            continue;
        }
        match jail.remove_file(&path) {
            Ok(()) => {
                seals.open.removed(&account.name, m.len());
                tracing::info!(account = %account.name, path = %path, bytes = m.len(), "stale upload removed by the sweep");
                out.push((path, m.len()));
            }
            Err(e) => {
                tracing::warn!(account = %account.name, path = %path, error = %e, "sweep cannot remove a stale upload; will retry")
            }
        }
    }
}

/// The later of the last content change and the last name change.
fn last_touched(m: &std::fs::Metadata) -> SystemTime {
    let ctime = UNIX_EPOCH
        + Duration::from_secs(m.ctime().max(0) as u64)
        + Duration::from_nanos(m.ctime_nsec().max(0) as u64);
    m.modified().map_or(ctime, |mtime| mtime.max(ctime))
}

fn marked_partial(jail: &Jail, path: &JailPath) -> bool {
    let read = OpenOptions {
        read: true,
        ..Default::default()
    };
    jail.open_file(path, &read).is_ok_and(|f| is_partial(&f))
}
