//! `depot reprocess [--account A] [--rejected] [--repick] [ID...]`: runs the
//! pipeline again over deposits already received, e.g. after a contact-reason
//! mapping was fixed.
//!
//! `--rejected`: every deposit whose latest rejection is still open (not
//! cleared by a later success) and whose file is still in the jail gets a new
//! journal row (source `reprocess`, the file's current sha256); its open
//! rejections are closed in the same transaction, so a deposit refused again
//! has exactly one open rejection, and one that now succeeds has none. The
//! pipeline then runs in this process, as for `import`.
//!
//! `ID...`: each ingested conversation gets a journal row that redoes it
//! (source `reprocess`, its path, size and sha256, `redo_of`): the pipeline
//! runs again with the account's current settings, reading the jail's file
//! or, when the customer removed or replaced it, the archived copy. The new
//! conversation supersedes the old one and keeps its picking decision (the
//! counters end as they were); `--repick` takes the decision again.

use super::import::{run_local, Event, Local};
use crate::deposit::hash::hash_file;
use crate::jail::{Jail, JailError, JailPath, OpenOptions};
use crate::store::conversations::{self, open_rejections, Redoable, Rejected};
use crate::store::journal::{self, NewEntry, Redo, Source};
use crate::store::{self, Writer};
use anyhow::{bail, Result};
use rusqlite::Connection;
use std::path::Path;
use tokio::sync::mpsc;

/// Closes the deposit's open rejections and journals it again (one
/// savepoint: both or neither).
fn requeue(conn: &Connection, row: &NewEntry) -> store::Result<journal::Entry> {
    conversations::clear_rejections(conn, &row.account, &row.path)?;
    journal::insert(conn, row)
}

fn feed_rejected(
    local_jails: Vec<(Rejected, Option<Jail>)>,
    writer: Writer,
    events: mpsc::UnboundedSender<Event>,
) -> Result<()> {
    let reader = store::open(writer.path())?;
    let read = OpenOptions {
        read: true,
        ..Default::default()
    };
    for (r, jail) in local_jails {
        let label = format!("{}:{}", r.account, r.path);
        let skip = |why: &str| {
            let _ = events.send(Event::Skipped {
                label: label.clone(),
                why: why.to_string(),
            });
        };
        let Some(jail) = jail else {
            skip("the account is not configured");
            continue;
        };
        if journal::is_pending(&reader, &r.account, &r.path)? {
            skip("already waiting for the pipeline");
            continue;
        }
        let Ok(path) = JailPath::parse(&r.path) else {
            skip("not a jail path");
            continue;
        };
        let digest = match jail.open_file(&path, &read) {
            Ok(f) => hash_file(&f)?,
            Err(JailError::NotFound) => {
                skip("the file is no longer in the jail");
                continue;
            }
            Err(e) => {
                let _ = events.send(Event::Failed {
                    label,
                    error: e.to_string(),
                });
                continue;
            }
        };
        let row = NewEntry {
            account: r.account.clone(),
            path: r.path.clone(),
            size: digest.0,
            sha256: digest.1,
            source: Source::Reprocess,
        };
        let entry = writer.run_blocking(move |c| requeue(c, &row))?;
        tracing::info!(account = %entry.account, path = %entry.path, journal_id = entry.id, source = "reprocess", "deposit queued again");
        let _ = events.send(Event::Queued(entry));
    }
    Ok(())
}

/// Journals one redo row per conversation.
fn feed_ids(
    todo: Vec<(i64, Redoable)>,
    repick: bool,
    writer: Writer,
    events: mpsc::UnboundedSender<Event>,
) -> Result<()> {
    let reader = store::open(writer.path())?;
    for (id, c) in todo {
        if journal::is_pending(&reader, &c.account, &c.path)? {
            let _ = events.send(Event::Skipped {
                label: format!("conversation {id}"),
                why: "its deposit is already waiting for the pipeline".into(),
            });
            continue;
        }
        let row = NewEntry {
            account: c.account,
            path: c.path,
            size: c.size,
            sha256: c.sha256,
            source: Source::Reprocess,
        };
        let redo = Redo {
            conversation: id,
            repick,
        };
        let entry = writer.run_blocking(move |c| journal::insert_redo(c, &row, Some(redo)))?;
        tracing::info!(account = %entry.account, path = %entry.path, journal_id = entry.id, conversation_id = id, repick, source = "reprocess", "conversation queued again");
        let _ = events.send(Event::Queued(entry));
    }
    Ok(())
}

/// The conversations to redo, checked before anything is written: each
/// must exist, be the current ingested one, and belong to a configured
/// account (the one given with `--account`, if any).
fn redoable(
    reader: &Connection,
    local: &Local,
    account: Option<&str>,
    ids: &[i64],
) -> Result<Vec<(i64, Redoable)>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut todo = Vec::new();
    for id in ids {
        let Some(c) = conversations::redoable(reader, id)? else {
            bail!("no conversation {id}");
        };
        if let Some(a) = account.filter(|a| *a != c.account) {
            bail!(
                "conversation {id} belongs to account '{}', not '{a}'",
                c.account
            );
        }
        if !local.accounts.contains_key(&c.account) {
            bail!(
                "conversation {id}: account '{}' is not configured (or its file is invalid)",
                c.account
            );
        }
        match c.status.as_str() {
            "ingested" => todo.push((id, c)),
            "superseded" => bail!(
                "conversation {id} is superseded: reprocess the current conversation of {}",
                c.path
            ),
            other => bail!(
                "conversation {id} is {other}: only ingested conversations can be reprocessed"
            ),
        }
    }
    Ok(todo)
}

/// The command: returns false when some deposit could not be queued or
/// ingested.
pub fn run(
    config: &Path,
    account: Option<&str>,
    rejected: bool,
    repick: bool,
    ids: &[i64],
) -> Result<bool> {
    match (rejected, ids.is_empty()) {
        (true, false) => bail!("give either --rejected or conversation ids, not both"),
        (false, true) => bail!("nothing to reprocess: give --rejected or conversation ids"),
        _ if repick && ids.is_empty() => bail!("--repick applies to conversation ids"),
        _ => {}
    }
    let local = Local::load(config, account)?;
    super::init_logging(local.settings.log.format, "warn");
    let db = crate::server::db_path(&local.settings);
    if !db.exists() {
        bail!(
            "no database at {} yet: nothing was ever ingested",
            db.display()
        );
    }
    let reader = store::open(&db)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if !ids.is_empty() {
        let todo = redoable(&reader, &local, account, ids)?;
        drop(reader);
        let total = todo.len();
        let tally = rt.block_on(run_local(&local, total, move |w, ev| {
            feed_ids(todo, repick, w, ev)
        }))?;
        println!("reprocessed {}", tally.line(total));
        return Ok(tally.failed == 0);
    }
    let todo = open_rejections(&reader, account)?;
    drop(reader);
    let mut with_jails = Vec::new();
    for r in todo {
        let jail = match local.accounts.contains_key(&r.account) {
            true => Jail::open(&local.jail_root(&r.account)).ok(),
            false => None,
        };
        with_jails.push((r, jail));
    }
    let total = with_jails.len();
    let tally = rt.block_on(run_local(&local, total, move |w, ev| {
        feed_rejected(with_jails, w, ev)
    }))?;
    println!("reprocessed {}", tally.line(total));
    Ok(tally.failed == 0)
}
