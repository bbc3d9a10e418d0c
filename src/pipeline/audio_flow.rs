//! An audio deposit through the stages: file-name metadata (unless the
//! account's metadata comes only from CSV), the metadata CSV row (or a wait
//! for it), contact reason, advisor, CRM enrichment, audio probe, archive,
//! then one stored conversation.

use super::call::{apply, crm_for, empty_draft};
use super::context::{mark, not_as_acknowledged, settle, today_date, transient, Failure, Pipeline};
use super::evaluate::{evaluate, Deposit, Evaluation, Metadata};
use super::{audio, fields};
use crate::archive::Staged;
use crate::config::Account;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, ArchiveTarget, Stored};
use crate::store::journal::{Entry, Outcome};
use crate::store::snapshots;
use chrono::{NaiveDate, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the store knows about an audio deposit before it is evaluated,
/// read in one trip: the conversation it redoes or the current one at its
/// path, and its metadata CSV row (or why that row was refused).
struct Known {
    redone: Option<conversations::Redoable>,
    current: Option<(i64, String)>,
    row: Option<BTreeMap<String, String>>,
    broken: Option<String>,
}

/// The CSV row is looked up under the name's Unicode form first (a Mac
/// sends NFD, a spreadsheet holds NFC), then as the bytes arrived.
async fn known(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    file_name: &str,
) -> Result<Known, Failure> {
    let mut names = vec![file_name.to_string()];
    if let Some(a) = &account.audio {
        let normal = fields::normalise(a.normalize, file_name);
        if normal != file_name {
            names.insert(0, normal);
        }
    }
    let (acc, path, redo) = (account.name.clone(), entry.path.clone(), entry.redo);
    let uses_csv = account.metadata_csv.is_some();
    p.writer
        .run(move |c| {
            let (redone, current) = match redo {
                Some(redo) => (conversations::redoable(c, redo.conversation)?, None),
                None => (None, conversations::current(c, &acc, &path)?),
            };
            let (mut row, mut broken) = (None, None);
            if uses_csv {
                for name in &names {
                    row = snapshots::metadata_row(c, &acc, name)?;
                    if row.is_some() {
                        break;
                    }
                }
                if row.is_none() {
                    broken = snapshots::row_error(c, &acc, &names[names.len() - 1])?;
                }
            }
            Ok(Known {
                redone,
                current,
                row,
                broken,
            })
        })
        .await
        .map_err(transient)
}

pub async fn audio(
    p: &Pipeline,
    account: &Arc<Account>,
    entry: &Entry,
    path: &JailPath,
    deposit_date: Option<NaiveDate>,
) -> Result<(), Failure> {
    // A reprocessed conversation runs again although its content is the
    // same; it keeps its deposit's received_at, and its archived copy
    // stands in for a file the customer removed or replaced.
    let file_name = path.file_name().unwrap_or_default().to_string();
    let Known {
        redone,
        current,
        row,
        broken,
    } = known(p, account, entry, &file_name).await?;
    if let Some((id, sha)) = current {
        if sha == entry.sha256 {
            return mark(p, entry, Outcome::Unchanged(id))
                .await
                .map_err(Failure::Transient);
        }
    }
    let crm = match account.metadata_csv.is_none() || row.is_some() {
        true => crm_for(p, account).await?,
        false => None,
    };
    let metadata = match &account.metadata_csv {
        None => Metadata::NotUsed,
        Some(_) => Metadata::Csv {
            row: row.as_ref(),
            broken: broken.as_deref(),
        },
    };
    let evaluation = evaluate(&Deposit {
        account,
        file_name: &file_name,
        deposit_date,
        metadata,
        crm: crm.as_ref().map(|(id, t)| (*id, t.as_ref())),
        today: today_date(account),
    });
    let mut draft = empty_draft(
        account,
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
        Evaluation::Rejected(r) => return Err(r.into()),
        Evaluation::Complete(call) => apply(account, &mut draft, call),
        Evaluation::Awaiting(call) => {
            let wait = account
                .metadata_csv
                .as_ref()
                .map_or(std::time::Duration::ZERO, |m| m.wait);
            let deadline =
                Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1));
            draft.wait_until = Some(deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            apply(account, &mut draft, call);
        }
    }
    let ext = file_name
        .rsplit('.')
        .next()
        .unwrap_or("bin")
        .to_ascii_lowercase();
    let archive = p.archive_root(&account.name);
    let dir = archive.join(draft.window.format("%Y/%m/%d").to_string());
    let tmp = archive
        .join(".incoming")
        .join(format!("j{}.{ext}", entry.id));
    let (root, jp, t, sha, ext2) = (
        p.jail_root(&account.name),
        path.clone(),
        tmp.clone(),
        entry.sha256.clone(),
        ext.clone(),
    );
    let sealed = p.seals.source(entry.id);
    let probed = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
        use crate::archive::{stage, Source};
        let from_deposit = match &sealed {
            Some(f) => Source::sealed(f),
            None => Source::Jail {
                root: &root,
                path: &jp,
            },
        };
        let mut staged = stage(&from_deposit, &t, &sha).map_err(transient)?;
        if let (false, Some(a)) = (matches!(staged, Staged::Ready(_)), &archived) {
            staged = stage(&Source::Archived(a), &t, &sha).map_err(transient)?;
        }
        let info = match &staged {
            Staged::Ready(copy) => {
                let f = std::fs::File::open(copy).map_err(transient)?;
                match audio::probe(f, &ext2) {
                    Ok(info) => Some(info),
                    Err(r) => {
                        let _ = std::fs::remove_file(copy);
                        return Err(r.into());
                    }
                }
            }
            _ => None,
        };
        Ok((staged, info))
    })
    .await
    .map_err(transient)??;
    let info = match probed {
        (Staged::Ready(_), Some(info)) => info,
        (Staged::Changed { sha256 }, _) => {
            return not_as_acknowledged(p, account, entry, Some(&sha256)).await;
        }
        _ => return not_as_acknowledged(p, account, entry, None).await,
    };
    draft.flags.extend(audio::extension_flag(&info, &file_name));
    // The archived object is named by what it holds, not by its upload name.
    let ext = match info.format.is_empty() {
        true => ext,
        false => info.format.clone(),
    };
    draft.audio = Some(info);
    draft.archive = Some(ArchiveTarget {
        staged: tmp.clone(),
        dir,
        ext,
    });
    let awaiting = draft.wait_until.is_some();
    match settle(p, entry, move |c| {
        super::commit::store_conversation(c, &draft)
    })
    .await
    {
        Ok(Stored::Conversation { id, picked }) => {
            // A call waiting for its CSV row is counted when it completes
            // (it may still end as a rejection): counters count outcomes.
            if !awaiting {
                Metrics::add(&p.metrics.conversations, 1);
            }
            if awaiting {
                tracing::info!(account = %account.name, conversation_id = id, path = %entry.path, "conversation awaiting its metadata CSV row");
            } else {
                tracing::info!(account = %account.name, conversation_id = id, path = %entry.path, picked, "conversation stored");
            }
            Ok(())
        }
        Ok(Stored::Unchanged { .. }) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(transient(e))
        }
    }
}
