//! An audio deposit through the stages: file-name metadata (unless the
//! account's metadata comes only from CSV), the metadata CSV row (or a wait
//! for it), contact reason, advisor, CRM enrichment, audio probe, archive,
//! then one stored conversation.

use super::call::{apply, crm_for, empty_draft};
use super::context::{
    mark, not_as_acknowledged, today_date, transient, Failure, Pipeline, Readers,
};
use super::evaluate::{evaluate, Deposit, Evaluation, Metadata};
use super::{audio, fields};
use crate::archive::{stage, Source, Staged};
use crate::config::Account;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, ArchiveTarget, Draft, Stored};
use crate::store::journal::{Entry, Outcome};
use crate::store::snapshots;
use chrono::{NaiveDate, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the store knows about an audio deposit before it is evaluated,
/// read in one read transaction: the conversation it redoes or the current
/// one at its path, and its metadata CSV row (or why that row was refused).
struct Known {
    redone: Option<conversations::Redoable>,
    current: Option<(i64, String)>,
    row: Option<BTreeMap<String, String>>,
    broken: Option<String>,
}

/// The names a deposit's CSV row is looked up under: the name's Unicode
/// form first (a Mac sends NFD, a spreadsheet holds NFC), then as the
/// bytes arrived.
fn csv_names(account: &Account, file_name: &str) -> Vec<String> {
    let mut names = vec![file_name.to_string()];
    if let Some(a) = &account.audio {
        let normal = fields::normalise(a.normalize, file_name);
        if normal != file_name {
            names.insert(0, normal);
        }
    }
    names
}

/// The deposit's CSV row under the first of `names` that has one, else
/// why its row was refused (looked up under the name as it arrived, the
/// last of `names`).
type StoredRow = (Option<BTreeMap<String, String>>, Option<String>);

fn stored_row(
    c: &rusqlite::Connection,
    account: &str,
    names: &[String],
) -> crate::store::Result<StoredRow> {
    for name in names {
        if let Some(row) = snapshots::metadata_row(c, account, name)? {
            return Ok((Some(row), None));
        }
    }
    let broken = match names.last() {
        Some(last) => snapshots::row_error(c, account, last)?,
        None => None,
    };
    Ok((None, broken))
}

/// True when the deposit's CSV row, or why it was refused, is stored now.
fn row_known(
    c: &rusqlite::Connection,
    account: &str,
    names: &[String],
) -> crate::store::Result<bool> {
    let (row, broken) = stored_row(c, account, names)?;
    Ok(row.is_some() || broken.is_some())
}

/// How many times a call found awaiting is evaluated again because its CSV
/// row arrived between the read and the commit.
const ROW_RACES: usize = 3;

fn known(
    c: &rusqlite::Connection,
    account: &Account,
    entry: &Entry,
    file_name: &str,
) -> crate::store::Result<Known> {
    let names = csv_names(account, file_name);
    let (acc, path) = (&account.name, &entry.path);
    let (redone, current) = match entry.redo {
        Some(redo) => (conversations::redoable(c, redo.conversation)?, None),
        None => (None, conversations::current(c, acc, path)?),
    };
    let (row, broken) = match account.metadata_csv {
        Some(_) => stored_row(c, acc, &names)?,
        None => (None, None),
    };
    Ok(Known {
        redone,
        current,
        row,
        broken,
    })
}

/// What the blocking step made of a deposit.
enum Prepared {
    /// Its content is the conversation's at its path already.
    Unchanged(i64),
    /// Evaluated, archived copy staged and probed: ready to commit.
    Ready(Box<Draft>),
    Rejected(super::Rejection),
    /// The bytes are not the acknowledged ones (the digest found, if any).
    NotAsAcknowledged(Option<String>),
}

/// Everything the blocking step needs, owned.
struct Job {
    account: Arc<Account>,
    entry: Entry,
    path: JailPath,
    file_name: String,
    deposit_date: Option<NaiveDate>,
    crm: Option<(i64, Arc<super::crm::CrmTable>)>,
    jail_root: std::path::PathBuf,
    archive_root: std::path::PathBuf,
    sealed: Option<crate::deposit::Sealed>,
}

pub async fn audio(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
    path: &JailPath,
    deposit_date: Option<NaiveDate>,
) -> Result<(), Failure> {
    // The CRM snapshot comes from a cache; taken here, where loading it may
    // wait, and used below only when the call is enriched.
    let crm = crm_for(p, account).await?;
    let file_name = path.file_name().unwrap_or_default().to_string();
    let mut races = 0;
    loop {
        let job = Job {
            account: account.clone(),
            entry: entry.clone(),
            path: path.clone(),
            file_name: file_name.clone(),
            deposit_date,
            crm: crm.clone(),
            jail_root: p.jail_root(&account.name),
            archive_root: p.archive_root(&account.name),
            sealed: p.seals.source(entry.id),
        };
        // What the store knows, the evaluation, the archive copy and its
        // probe in one step off the async threads: the read goes through a
        // reader connection of its own, not through the writer thread.
        let readers = p.readers.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&readers, job))
            .await
            .map_err(transient)??;
        let draft = match prepared {
            Prepared::Unchanged(id) => {
                return mark(p, entry, Outcome::Unchanged(id))
                    .await
                    .map_err(Failure::Transient)
            }
            Prepared::Rejected(r) => return Err(r.into()),
            Prepared::NotAsAcknowledged(sha) => {
                return not_as_acknowledged(p, account, entry, sha.as_deref()).await
            }
            Prepared::Ready(draft) => draft,
        };
        let tmp = draft.archive.as_ref().map(|a| a.staged.clone());
        let awaiting = draft.wait_until.is_some();
        let drop_staged = || {
            if let Some(t) = &tmp {
                let _ = std::fs::remove_file(t);
            }
        };
        // A call found awaiting its CSV row is committed so only if the row
        // (or why it was refused) is still not stored: the CSV's flow looks
        // for awaiting calls after storing its rows, so a row stored
        // between this deposit's read and its commit would otherwise be
        // seen by neither. The check runs in the commit's transaction.
        let recheck = (awaiting && races < ROW_RACES)
            .then(|| (account.name.clone(), csv_names(account, &file_name)));
        let committed = p
            .writer
            .run(move |c| {
                if let Some((acc, names)) = &recheck {
                    if row_known(c, acc, names)? {
                        return Ok(None);
                    }
                }
                super::commit::store_conversation(c, &draft).map(Some)
            })
            .await;
        return match committed {
            Ok(None) => {
                drop_staged();
                races += 1;
                continue;
            }
            Ok(Some(Stored::Conversation { id, picked })) => {
                // A call waiting for its CSV row is counted when it
                // completes (it may still end as a rejection): counters
                // count outcomes.
                if awaiting {
                    tracing::info!(account = %account.name, conversation_id = id, path = %entry.path, "conversation awaiting its metadata CSV row");
                } else {
                    Metrics::add(&p.metrics.conversations, 1);
                    tracing::info!(account = %account.name, conversation_id = id, path = %entry.path, picked, "conversation stored");
                }
                Ok(())
            }
            Ok(Some(Stored::Unchanged { .. })) => {
                drop_staged();
                Ok(())
            }
            Err(e) => {
                drop_staged();
                Err(transient(e))
            }
        };
    }
}

/// Reads what the store knows of the deposit, evaluates it, stages its
/// archive copy and probes it. A reprocessed conversation runs again
/// although its content is the same; it keeps its deposit's received_at,
/// and its archived copy stands in for a file the customer removed or
/// replaced.
fn prepare(readers: &Readers, job: Job) -> Result<Prepared, Failure> {
    let Job {
        account,
        entry,
        path,
        file_name,
        deposit_date,
        crm,
        jail_root,
        archive_root,
        sealed,
    } = job;
    let Known {
        redone,
        current,
        row,
        broken,
    } = readers
        .read(|c| known(c, &account, &entry, &file_name))
        .map_err(transient)?;
    if let Some((id, sha)) = current {
        if sha == entry.sha256 {
            return Ok(Prepared::Unchanged(id));
        }
    }
    let crm = crm.filter(|_| account.metadata_csv.is_none() || row.is_some());
    let metadata = match &account.metadata_csv {
        None => Metadata::NotUsed,
        Some(_) => Metadata::Csv {
            row: row.as_ref(),
            broken: broken.as_deref(),
        },
    };
    let evaluation = evaluate(&Deposit {
        account: &account,
        file_name: &file_name,
        deposit_date,
        metadata,
        crm: crm.as_ref().map(|(id, t)| (*id, t.as_ref())),
        today: today_date(&account),
    });
    let mut draft = empty_draft(
        &account,
        &entry.path,
        entry.id,
        entry.size,
        &entry.sha256,
        &entry.completed_at,
    );
    draft.deposit_date = deposit_date;
    draft.redo = entry.redo;
    if let Some(r) = &redone {
        draft.received_at = r.received_at.clone();
    }
    let archived = redone
        .and_then(|r| r.archive_path)
        .map(std::path::PathBuf::from);
    match evaluation {
        Evaluation::Rejected(r) => return Ok(Prepared::Rejected(r)),
        Evaluation::Complete(call) => apply(&account, &mut draft, call),
        Evaluation::Awaiting(call) => {
            let wait = account
                .metadata_csv
                .as_ref()
                .map_or(std::time::Duration::ZERO, |m| m.wait);
            let deadline =
                Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1));
            draft.wait_until = Some(deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            apply(&account, &mut draft, call);
        }
    }
    let ext = file_name
        .rsplit('.')
        .next()
        .unwrap_or("bin")
        .to_ascii_lowercase();
    let dir = archive_root.join(draft.window.format("%Y/%m/%d").to_string());
    let tmp = archive_root
        .join(".incoming")
        .join(format!("j{}.{ext}", entry.id));
    let from_deposit = match &sealed {
        Some(f) => Source::sealed(f),
        None => Source::Jail {
            root: &jail_root,
            path: &path,
        },
    };
    let mut staged = stage(&from_deposit, &tmp, &entry.sha256).map_err(transient)?;
    if let (false, Some(a)) = (matches!(staged, Staged::Ready(_)), &archived) {
        staged = stage(&Source::Archived(a), &tmp, &entry.sha256).map_err(transient)?;
    }
    let info = match &staged {
        Staged::Ready(copy) => {
            let f = std::fs::File::open(copy).map_err(transient)?;
            match audio::probe(f, &ext) {
                Ok(info) => info,
                Err(r) => {
                    let _ = std::fs::remove_file(copy);
                    return Ok(Prepared::Rejected(r));
                }
            }
        }
        Staged::Changed { sha256 } => return Ok(Prepared::NotAsAcknowledged(Some(sha256.clone()))),
        _ => return Ok(Prepared::NotAsAcknowledged(None)),
    };
    draft.flags.extend(audio::extension_flag(&info, &file_name));
    // The archived object is named by what it holds, not by its upload name.
    let ext = match info.format.is_empty() {
        true => ext,
        false => info.format.clone(),
    };
    draft.audio = Some(info);
    draft.archive = Some(ArchiveTarget {
        staged: tmp,
        dir,
        ext,
    });
    Ok(Prepared::Ready(Box::new(draft)))
}
