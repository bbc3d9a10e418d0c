//! `depot import --account A [--to DIR] PATH...`: backfill local recordings
//! as if they had been uploaded. Each file is copied into the
//! account's jail under DIR (default: the account's `audio.dir`), keeping
//! its path relative to the PATH it was found under, journaled (source
//! `import`), and ingested by the normal pipeline running in this process.
//!
//! Works whether or not the server runs: both write through SQLite (WAL,
//! busy timeout), each through its own single writer. Idempotent: a file
//! whose destination already holds the same bytes and has a journal row is
//! skipped. The in-process pipeline run it shares with `reprocess`
//! ([`run_local`]) is in its `local` module.

use crate::config::Account;
use crate::deposit::hash::hash_file;
use crate::deposit::names::{is_final, is_temp_name};
use crate::jail::{Jail, JailPath, OpenOptions};
use crate::store::journal::{self, NewEntry, Source};
use crate::store::{self, Writer};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

mod local;
pub(crate) use local::{run_local, Event, Local};

/// One local file and where it goes in the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub src: PathBuf,
    pub dest: JailPath,
}

/// What the import will do, worked out before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub items: Vec<Item>,
    /// Local files left out, and why.
    pub left_out: Vec<(PathBuf, String)>,
}

/// Lists the files under each PATH (a file stands for itself) with their
/// destination under `to`. Symbolic links inside a tree are not followed.
pub(crate) fn plan(account: &Account, to: &JailPath, paths: &[PathBuf]) -> Result<Plan> {
    let mut plan = Plan::default();
    for p in paths {
        let md = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if md.is_dir() {
            walk_local(account, to, p, p, &mut plan)?;
        } else {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            add(account, to, p, name.iter().map(String::as_str), &mut plan);
        }
    }
    Ok(plan)
}

fn walk_local(
    account: &Account,
    to: &JailPath,
    base: &Path,
    dir: &Path,
    plan: &mut Plan,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let md = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if md.is_dir() {
            walk_local(account, to, base, &path, plan)?;
        } else if md.is_file() {
            let rel: Vec<String> = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            add(account, to, &path, rel.iter().map(String::as_str), plan);
        } else {
            plan.left_out
                .push((path, "not a regular file (links are not followed)".into()));
        }
    }
    Ok(())
}

fn add<'a>(
    account: &Account,
    to: &JailPath,
    src: &Path,
    rel: impl Iterator<Item = &'a str>,
    plan: &mut Plan,
) {
    let mut dest = to.clone();
    for c in rel {
        match dest.join(c) {
            Ok(d) => dest = d,
            Err(e) => {
                plan.left_out
                    .push((src.to_path_buf(), format!("unusable name: {e}")));
                return;
            }
        }
    }
    let name = dest.file_name().unwrap_or_default();
    if is_temp_name(name) {
        plan.left_out
            .push((src.to_path_buf(), "temporary or hidden name".into()));
    } else if !is_final(account, &dest) {
        plan.left_out.push((
            src.to_path_buf(),
            format!("{dest} is outside the account's ingestion directories"),
        ));
    } else {
        plan.items.push(Item {
            src: src.to_path_buf(),
            dest,
        });
    }
}

/// Copies one item into the jail unless the same bytes are already there
/// and journaled; returns the row to insert, or why nothing is needed.
fn prepare(
    jail: &Jail,
    made: &mut HashSet<JailPath>,
    reader: &rusqlite::Connection,
    account: &str,
    item: &Item,
) -> Result<std::result::Result<NewEntry, String>> {
    let (size, sha256) = {
        let f = std::fs::File::open(&item.src)
            .with_context(|| format!("cannot open {}", item.src.display()))?;
        hash_file(&f)?
    };
    let read = OpenOptions {
        read: true,
        ..Default::default()
    };
    let same_bytes = match jail.open_file(&item.dest, &read) {
        Ok(f) => hash_file(&f)?.1 == sha256,
        Err(crate::jail::JailError::NotFound) => false,
        Err(e) => bail!("{}: {e}", item.dest),
    };
    if same_bytes {
        let latest = journal::latest_for_path(reader, account, item.dest.as_str())?;
        if latest.is_some_and(|e| e.sha256 == sha256) {
            return Ok(Err("already imported".into()));
        }
    } else {
        copy_in(jail, made, item)?;
    }
    Ok(Ok(NewEntry {
        account: account.to_string(),
        path: item.dest.as_str().to_string(),
        size,
        sha256,
        source: Source::Import,
    }))
}

/// Writes under a temporary name (never ingested), then renames it over
/// the destination, so a reader never sees half a file under a final name.
/// Not flushed here: a whole batch is flushed at once before it is journaled.
/// `made` holds the directories this import already created.
fn copy_in(jail: &Jail, made: &mut HashSet<JailPath>, item: &Item) -> Result<()> {
    let (Some(dir), Some(name)) = (item.dest.parent(), item.dest.file_name()) else {
        bail!("{} is not a file path", item.dest);
    };
    if !made.contains(&dir) {
        jail.create_dir_all(&dir, 0o755)
            .with_context(|| format!("cannot create {dir}"))?;
        made.insert(dir.clone());
    }
    let tmp = dir.join(&format!(".{name}.import.tmp"))?;
    let write = OpenOptions {
        write: true,
        create: true,
        truncate: true,
        ..Default::default()
    };
    let mut out = jail
        .open_file(&tmp, &write)
        .with_context(|| format!("cannot create {tmp}"))?;
    let mut src = std::fs::File::open(&item.src)?;
    // File to file: the kernel copies (copy_file_range), no buffer here.
    std::io::copy(&mut src, &mut out)?;
    jail.rename(&tmp, &item.dest, true)
        .with_context(|| format!("cannot rename {tmp} to {}", item.dest))?;
    Ok(())
}

/// Rows journaled per database job (one commit, one file-system flush).
const BATCH: usize = 256;

/// The feeding side of an import: copy, then journal in batches.
fn feed_import(
    jail: Jail,
    account: String,
    items: Vec<Item>,
    fsync: bool,
    writer: Writer,
    events: mpsc::UnboundedSender<Event>,
) -> Result<()> {
    let reader = store::open(writer.path())?;
    let mut batch: Vec<NewEntry> = Vec::new();
    let mut made = HashSet::new();
    let flush = |batch: &mut Vec<NewEntry>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // The batch's copies are durable before any of them is journaled.
        if fsync {
            jail.sync_filesystem()?;
        }
        let rows = std::mem::take(batch);
        let entries = writer.run_blocking(move |c| {
            rows.iter()
                .map(|r| journal::insert(c, r))
                .collect::<store::Result<Vec<_>>>()
        })?;
        for e in entries {
            tracing::info!(account = %e.account, path = %e.path, size = e.size, sha256 = %e.sha256, journal_id = e.id, source = "import", "deposit imported");
            let _ = events.send(Event::Queued(e));
        }
        Ok(())
    };
    for item in &items {
        let label = item.dest.as_str().to_string();
        match prepare(&jail, &mut made, &reader, &account, item) {
            Ok(Ok(row)) => batch.push(row),
            Ok(Err(why)) => {
                let _ = events.send(Event::Skipped { label, why });
            }
            Err(e) => {
                let _ = events.send(Event::Failed {
                    label,
                    error: format!("{e:#}"),
                });
            }
        }
        if batch.len() >= BATCH {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)
}

/// The command: returns false when some file could not be imported.
pub fn run(config: &Path, account: &str, to: Option<&str>, paths: &[PathBuf]) -> Result<bool> {
    let local = Local::load(config, Some(account))?;
    super::init_logging(local.settings.log.format, "warn");
    let acc = local
        .accounts
        .get(account)
        .cloned()
        .context("account vanished")?;
    let to = match (to, &acc.audio) {
        (Some(d), _) => JailPath::parse(d).map_err(|e| anyhow::anyhow!("--to {d}: {e}"))?,
        (None, Some(a)) => a.dir.clone(),
        (None, None) => {
            bail!("account '{account}' has no [audio] section: say where with --to DIR")
        }
    };
    let plan = plan(&acc, &to, paths)?;
    for (p, why) in &plan.left_out {
        eprintln!("left out {}: {why}", p.display());
    }
    let root = local.jail_root(account);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let jail = Jail::open(&root)?;
    let fsync = local.settings.server.fsync;
    let total = plan.items.len();
    let name = account.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tally = rt.block_on(run_local(&local, total, move |w, ev| {
        feed_import(jail, name, plan.items, fsync, w, ev)
    }))?;
    println!("imported {}", tally.line(total));
    Ok(tally.failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(dir: &Path) -> Account {
        let hash = crate::sftp::auth::hash_password("pw").unwrap();
        let file = dir.join("acme.toml");
        std::fs::write(
            &file,
            format!("password_hash = {hash:?}\n[audio]\ndir = \"/audio\"\n"),
        )
        .unwrap();
        crate::config::load_account(&file, dir, false).unwrap().0
    }

    #[test]
    fn plan_keeps_paths_relative_to_each_argument() {
        let tmp = tempfile::tempdir().unwrap();
        let acc = account(tmp.path());
        let src = tmp.path().join("recs");
        std::fs::create_dir_all(src.join("20260211")).unwrap();
        std::fs::write(src.join("20260211/a.wav"), b"a").unwrap();
        std::fs::write(src.join("20260211/.DS_Store"), b"x").unwrap();
        std::fs::write(tmp.path().join("b.wav"), b"b").unwrap();
        let to = JailPath::parse("/audio").unwrap();
        let p = plan(&acc, &to, &[src.clone(), tmp.path().join("b.wav")]).unwrap();
        let dests: Vec<&str> = p.items.iter().map(|i| i.dest.as_str()).collect();
        assert_eq!(dests, vec!["/audio/20260211/a.wav", "/audio/b.wav"]);
        assert_eq!(p.left_out.len(), 1);
        let outside = plan(&acc, &JailPath::parse("/elsewhere").unwrap(), &[src]).unwrap();
        assert!(outside.items.is_empty());
        assert!(plan(&acc, &to, &[tmp.path().join("missing")]).is_err());
    }
}
