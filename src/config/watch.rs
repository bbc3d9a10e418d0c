//! Hot reload of account files: a `notify` watcher on the accounts
//! directory and on the directories of the files accounts reference
//! (mapping CSVs, key files) → a short debounce → every account file whose
//! bytes (or referenced files' bytes) changed is loaded again → the new map
//! is published on the `watch` channel every session and the pipeline read.
//!
//! Invariants: an account whose file no longer validates keeps its previous
//! valid version (the errors are logged with file and key); a file that is
//! gone removes its account; an unreadable accounts directory changes
//! nothing. Directories are watched rather than files because editors
//! replace files by renaming, which silently ends a watch on the file; an
//! account file that is a symlink has its target's directory watched too.

use super::{load_account, Account, ConfigError};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The accounts in force, replaced whole on reload.
pub type Accounts = Arc<BTreeMap<String, Arc<Account>>>;

/// Editors write a file in several steps: wait this long after the first
/// event for the rest.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A full look even without events, in case the kernel dropped some.
const RESCAN: Duration = Duration::from_secs(30);

/// What one reload pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Files that did not validate, with their problems (the previous
    /// version of the account, if any, stays).
    pub invalid: Vec<ConfigError>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Remembers what every account file looked like when last read, so a pass
/// reloads only what changed and logs a broken file once, not on every event.
pub struct Reloader {
    dir: PathBuf,
    stamps: HashMap<PathBuf, [u8; 32]>,
}

impl Reloader {
    /// Starts from the accounts loaded at start-up (all valid).
    pub fn new(dir: &Path, current: &BTreeMap<String, Arc<Account>>) -> Reloader {
        let mut stamps = HashMap::new();
        for file in account_files(dir).unwrap_or_default() {
            let refs = refs_of(current, &file);
            stamps.insert(file.clone(), stamp(&file, &refs));
        }
        Reloader {
            dir: dir.to_path_buf(),
            stamps,
        }
    }

    /// Looks at every account file once; returns the new map when anything
    /// changed (`None` when nothing did, or the directory cannot be read).
    pub fn reload(
        &mut self,
        current: &BTreeMap<String, Arc<Account>>,
    ) -> (Option<BTreeMap<String, Arc<Account>>>, Changes) {
        let mut changes = Changes::default();
        let files = match account_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the accounts directory; accounts unchanged");
                return (None, changes);
            }
        };
        let mut next = current.clone();
        let mut seen = HashSet::new();
        for file in &files {
            let name = stem(file);
            seen.insert(name.clone());
            let old_refs = refs_of(current, file);
            let before = stamp(file, &old_refs);
            if self.stamps.get(file) == Some(&before) {
                continue;
            }
            match load_account(file, &self.dir, true) {
                Ok((acc, _)) => {
                    self.stamps
                        .insert(file.clone(), stamp(file, &acc.referenced_files));
                    match current.contains_key(&acc.name) {
                        true => changes.changed.push(acc.name.clone()),
                        false => changes.added.push(acc.name.clone()),
                    }
                    next.insert(acc.name.clone(), Arc::new(acc));
                }
                Err(errors) => {
                    self.stamps.insert(file.clone(), before);
                    changes.invalid.extend(errors);
                }
            }
        }
        for name in current.keys() {
            if !seen.contains(name) {
                next.remove(name);
                changes.removed.push(name.clone());
            }
        }
        let present: HashSet<&PathBuf> = files.iter().collect();
        self.stamps.retain(|f, _| present.contains(f));
        match changes.is_empty() {
            true => (None, changes),
            false => (Some(next), changes),
        }
    }
}

/// The `*.toml` files of the accounts directory, sorted.
fn account_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The referenced files of the account currently loaded from `file`.
fn refs_of(current: &BTreeMap<String, Arc<Account>>, file: &Path) -> Vec<PathBuf> {
    current
        .get(&stem(file))
        .map(|a| a.referenced_files.clone())
        .unwrap_or_default()
}

/// A digest of an account file and the files it references (a missing file
/// hashes differently from an empty one).
fn stamp(file: &Path, refs: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in std::iter::once(file).chain(refs.iter().map(PathBuf::as_path)) {
        h.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(bytes) => {
                h.update(b"\x01");
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update(b"\x00"),
        }
    }
    h.finalize().into()
}

/// What the watcher listens to: the accounts directory, the directories
/// of the files its symlinked account files point to (an edit there
/// changes nothing in the accounts directory itself), and the parents of
/// every referenced file that exist. Outside the accounts directory only
/// events about those files count: a key file's directory may be a busy
/// one (a home directory, a directory of logs), and every write there
/// would otherwise wake a reload pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Interest {
    accounts_dir: PathBuf,
    files: BTreeSet<PathBuf>,
}

impl Interest {
    fn of(dir: &Path, accounts: &BTreeMap<String, Arc<Account>>) -> Interest {
        let mut files = BTreeSet::new();
        for file in account_files(dir).unwrap_or_default() {
            let linked = std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink());
            if let Some(target) = linked.then(|| std::fs::canonicalize(&file).ok()).flatten() {
                if target.parent().is_some_and(Path::is_dir) {
                    files.insert(target);
                }
            }
        }
        for a in accounts.values() {
            for f in &a.referenced_files {
                if f.parent().is_some_and(Path::is_dir) {
                    files.insert(f.clone());
                }
            }
        }
        Interest {
            accounts_dir: dir.to_path_buf(),
            files,
        }
    }

    /// The directories to watch: the accounts directory and the parent of
    /// every file of interest.
    fn dirs(&self) -> BTreeSet<PathBuf> {
        let parents = self.files.iter().filter_map(|f| f.parent());
        std::iter::once(self.accounts_dir.as_path())
            .chain(parents)
            .map(Path::to_path_buf)
            .collect()
    }

    /// True when an event about `paths` may change an account (an event
    /// that names no path, such as the kernel's queue overflowing, may).
    fn counts(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty()
            || paths
                .iter()
                .any(|p| p.parent() == Some(&self.accounts_dir) || self.files.contains(p))
    }
}

/// Our own reads of the files show up as access events: only writes count.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn log(changes: &Changes) {
    for name in &changes.added {
        tracing::info!(account = %name, "account added");
    }
    for name in &changes.changed {
        tracing::info!(account = %name, "account updated; applies to new sessions");
    }
    for name in &changes.removed {
        tracing::info!(account = %name, "account removed; its sessions are closed");
    }
    for e in &changes.invalid {
        tracing::error!(file = %e.file.display(), key = %e.key, error = %e.message, "invalid account file; the previous valid version (if any) stays in force");
    }
}

/// Watches `dir` (and referenced files) until `shutdown` turns true,
/// publishing every change on `tx`. The task owns the sender: when it ends,
/// receivers see the channel closed.
pub fn spawn(
    dir: PathBuf,
    tx: watch::Sender<Accounts>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let (ev_tx, mut events) = mpsc::unbounded_channel::<()>();
    let initial = tx.borrow().clone();
    let interest = Arc::new(Mutex::new(Interest::of(&dir, &initial)));
    let heard = interest.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev)
                if relevant(&ev.kind)
                    && heard
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .counts(&ev.paths) =>
            {
                let _ = ev_tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "account file watcher error"),
        })?;
    let mut watched = BTreeSet::new();
    let wanted = interest.lock().unwrap_or_else(|p| p.into_inner()).dirs();
    sync_watches(&mut watcher, &mut watched, wanted);
    let reloader = Arc::new(Mutex::new(Reloader::new(&dir, &initial)));
    Ok(tokio::spawn(async move {
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                }
                _ = rescan.tick() => {}
            }
            let current = tx.borrow().clone();
            let r = reloader.clone();
            let cur = current.clone();
            let pass = tokio::task::spawn_blocking(move || {
                r.lock().unwrap_or_else(|p| p.into_inner()).reload(&cur)
            })
            .await;
            let (next, changes) = match pass {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "account reload failed; accounts unchanged");
                    continue;
                }
            };
            log(&changes);
            if let Some(next) = next {
                let next_interest = Interest::of(&dir, &next);
                let wanted = next_interest.dirs();
                *interest.lock().unwrap_or_else(|p| p.into_inner()) = next_interest;
                sync_watches(&mut watcher, &mut watched, wanted);
                tx.send_replace(Arc::new(next));
            }
        }
    }))
}

fn sync_watches(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    wanted: BTreeSet<PathBuf>,
) {
    for d in watched.difference(&wanted) {
        let _ = watcher.unwatch(d);
    }
    watched.retain(|d| wanted.contains(d));
    for d in wanted {
        if watched.contains(&d) {
            continue;
        }
        match watcher.watch(&d, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(d);
            }
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory for account changes")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn account(extra: &str) -> String {
        let hash = crate::sftp::auth::hash_password("pw").unwrap();
        format!("password_hash = {hash:?}\n{extra}")
    }

    #[test]
    fn reload_adds_changes_keeps_invalid_and_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "a.toml", &account(""));
        let loaded = super::super::load_accounts(dir, false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut current = loaded.accounts;
        let mut r = Reloader::new(dir, &current);
        assert!(r.reload(&current).0.is_none(), "nothing changed yet");

        write(dir, "b.toml", &account("timezone = \"Europe/Paris\"\n"));
        let (next, ch) = r.reload(&current);
        assert_eq!(ch.added, vec!["b".to_string()]);
        current = next.unwrap();
        assert_eq!(current["b"].timezone, chrono_tz::Europe::Paris);

        write(dir, "b.toml", &account("timezone = \"Mars/Olympus\"\n"));
        let (next, ch) = r.reload(&current);
        assert!(next.is_none());
        assert_eq!(ch.invalid.len(), 1);
        assert_eq!(ch.invalid[0].key, "timezone");
        assert_eq!(current["b"].timezone, chrono_tz::Europe::Paris);
        // The same broken file is not reported again.
        assert!(r.reload(&current).1.invalid.is_empty());

        std::fs::remove_file(dir.join("b.toml")).unwrap();
        let (next, ch) = r.reload(&current);
        assert_eq!(ch.removed, vec!["b".to_string()]);
        assert!(!next.unwrap().contains_key("b"));
    }

    #[test]
    fn a_changed_mapping_file_reloads_its_account() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "r.csv", "id,label\n1,One\n");
        write(
            dir,
            "a.toml",
            &account("[contact_reasons]\nfile = \"r.csv\"\n"),
        );
        let current = super::super::load_accounts(dir, false).accounts;
        let mut r = Reloader::new(dir, &current);
        write(dir, "r.csv", "id,label\n1,One\n2,Two\n");
        let (next, ch) = r.reload(&current);
        assert_eq!(ch.changed, vec!["a".to_string()]);
        let next = next.unwrap();
        let labels = &next["a"].contact_reasons.as_ref().unwrap().labels;
        assert_eq!(labels.get("2").map(String::as_str), Some("Two"));
    }

    /// A hash whose argon2 cost is over the bounds is an invalid edit:
    /// named by file and key, and the previous version stays in force.
    #[test]
    fn a_costly_password_hash_keeps_the_previous_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "a.toml", &account(""));
        let current = super::super::load_accounts(dir, false).accounts;
        let before = current["a"].password_hash.clone();
        let mut r = Reloader::new(dir, &current);
        write(
            dir,
            "a.toml",
            "password_hash = \"$argon2id$v=19$m=4194304,t=3000,p=1$c2FsdHNhbHRzYWx0$2m1EV0Ywb7zzJkcn+GXbXqXwYjAhOgG4bmAd3aTmXAo\"\n",
        );
        let (next, ch) = r.reload(&current);
        assert!(next.is_none());
        assert_eq!(ch.invalid.len(), 1, "{:?}", ch.invalid);
        assert_eq!(ch.invalid[0].key, "password_hash");
        assert!(ch.invalid[0].file.ends_with("a.toml"));
        assert_eq!(current["a"].password_hash, before);
    }

    /// An account file that is a symlink: the directory of its target is
    /// watched, so an edit there is seen without the periodic rescan.
    #[test]
    fn the_target_directory_of_a_symlinked_account_is_watched() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, managed) = (tmp.path().join("accounts"), tmp.path().join("managed"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&managed).unwrap();
        write(&managed, "a.toml", &account(""));
        std::os::unix::fs::symlink(managed.join("a.toml"), dir.join("a.toml")).unwrap();
        let current = super::super::load_accounts(&dir, false).accounts;
        let interest = Interest::of(&dir, &current);
        let managed = std::fs::canonicalize(&managed).unwrap();
        assert!(interest.dirs().contains(&managed), "{interest:?}");
        assert!(interest.counts(&[managed.join("a.toml")]));
        assert!(!interest.counts(&[managed.join("other.toml")]));
    }

    /// A key file's directory is watched, but only the key file's own
    /// events count there: writes to its neighbours (logs beside it) do
    /// not wake a reload pass. Anything in the accounts directory does.
    #[test]
    fn only_the_referenced_file_counts_in_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, keys) = (tmp.path().join("accounts"), tmp.path().join("keys"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b\n";
        write(&keys, "a.pub", key);
        let file = format!("authorized_keys_file = {:?}\n", keys.join("a.pub"));
        write(&dir, "a.toml", &file);
        let current = super::super::load_accounts(&dir, false).accounts;
        assert!(current.contains_key("a"), "the test account loads");
        let interest = Interest::of(&dir, &current);
        assert!(interest.dirs().contains(&keys), "{interest:?}");
        assert!(interest.counts(&[keys.join("a.pub")]));
        assert!(!interest.counts(&[keys.join("server.log")]));
        assert!(interest.counts(&[dir.join("new.toml")]));
        // A rename names both ends: the key file replaced by an editor.
        assert!(interest.counts(&[keys.join(".a.pub.swp"), keys.join("a.pub")]));
        assert!(interest.counts(&[]), "an event without a path (overflow)");
    }

    #[test]
    fn an_unreadable_directory_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("accounts");
        std::fs::create_dir(&dir).unwrap();
        write(&dir, "a.toml", &account(""));
        let current = super::super::load_accounts(&dir, false).accounts;
        let mut r = Reloader::new(&dir, &current);
        std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
        assert!(r.reload(&current).0.is_none());
    }
}
