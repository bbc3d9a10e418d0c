//! An audio deposit through the stages: file-name metadata (unless the
//! account's metadata comes only from CSV), the metadata CSV row (or a wait
//! for it), contact reason, advisor, CRM enrichment, audio probe, archive,
//! then one stored conversation. Also completes audio that was waiting for
//! its CSV row, when the row arrives or the wait runs out.

use super::worker::{append_report, mark, today, transient, Failure, Pipeline};
use super::{audio, enrich, fields, identify, names, reason, Rejection};
use crate::archive::Staged;
use crate::config::{Account, MetadataUse, OnTimeout};
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, Awaiting, Draft, Stored};
use crate::store::journal::{self, Entry};
use crate::store::snapshots;
use chrono::{NaiveDate, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Metadata from the file name, unless `metadata_csv.use = "only"`.
fn base_call(
    account: &Account,
    file_name: &str,
    deposit_date: Option<NaiveDate>,
) -> Result<names::CallInfo, Rejection> {
    match &account.metadata_csv {
        Some(m) if m.use_ == MetadataUse::Only => Ok(names::CallInfo::default()),
        _ => names::from_file_name(account, file_name, deposit_date),
    }
}

/// Adds (or overrides with) the CSV row's fields, in the account's Unicode
/// form and checked by its `[audio.fields]` rules.
fn merge_row(
    account: &Account,
    call: &mut names::CallInfo,
    row: &BTreeMap<String, String>,
) -> Result<(), Rejection> {
    let filename_key = account
        .metadata_csv
        .as_ref()
        .map(|m| m.filename_column.as_str())
        .unwrap_or("filename");
    let normalize = account.audio.as_ref().map(|a| a.normalize);
    let mut values: BTreeMap<String, String> = row
        .iter()
        .filter(|(k, _)| k.as_str() != filename_key)
        .map(|(k, v)| match normalize {
            Some(n) => (k.clone(), fields::normalise(n, v)),
            None => (k.clone(), v.clone()),
        })
        .collect();
    if let Some(a) = &account.audio {
        fields::apply(&a.fields, &mut values)
            .map_err(|r| Rejection::new("metadata_csv", format!("metadata CSV row: {r}")))?;
    }
    call.metadata.extend(values);
    Ok(())
}

/// The account's CSV row for `file_name`: looked up under the name's
/// Unicode form first (a Mac sends NFD, a spreadsheet holds NFC), then as
/// the bytes arrived.
async fn metadata_row(
    p: &Pipeline,
    account: &Account,
    file_name: &str,
) -> Result<Option<BTreeMap<String, String>>, Failure> {
    let mut names = vec![file_name.to_string()];
    if let Some(a) = &account.audio {
        let normal = fields::normalise(a.normalize, file_name);
        if normal != file_name {
            names.insert(0, normal);
        }
    }
    for name in names {
        let acc = account.name.clone();
        let row = p
            .writer
            .run(move |c| snapshots::metadata_row(c, &acc, &name))
            .await
            .map_err(transient)?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// The common tail for every complete call: label, advisor, CRM, window.
async fn complete_call(
    p: &Pipeline,
    account: &Account,
    mut call: names::CallInfo,
    deposit_date: Option<NaiveDate>,
    draft: &mut Draft,
) -> Result<(), Failure> {
    reason::label(
        account.contact_reasons.as_ref(),
        &mut call.metadata,
        &mut call.flags,
    )?;
    let unresolved = call.flags.len();
    draft.advisor = identify::identify(account.advisors.as_ref(), &call.metadata, &mut call.flags)?;
    for flag in &call.flags[unresolved..] {
        tracing::info!(account = %account.name, path = %draft.path, flag = %flag, "call kept without an advisor record");
    }
    if let Some(crm) = &account.crm {
        let latest = super::csv_flow::latest_crm(p, account)
            .await
            .map_err(transient)?;
        let (additional, outcome) = enrich::enrich(
            crm,
            latest.as_ref().map(|(id, t)| (*id, t.as_ref())),
            &call.metadata,
        );
        draft.additional_metadata = additional;
        draft.crm = Some(outcome);
    }
    let tz = account.timezone;
    draft.window = call
        .started_at
        .map(|d| d.with_timezone(&tz).date_naive())
        .or(deposit_date)
        .unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive())
        .to_string();
    draft.started_at = call.started_at.map(|d| d.to_rfc3339());
    draft.metadata = call.metadata;
    draft.flags = call.flags;
    draft.picking = account
        .picking
        .as_ref()
        .map(|s| super::picking::PickingRule {
            percent: s.percent,
            max_per_advisor: s.max_per_advisor,
        });
    Ok(())
}

fn empty_draft(
    account: &Account,
    path: &str,
    journal_id: i64,
    size: u64,
    sha256: &str,
    received_at: &str,
) -> Draft {
    Draft {
        account: account.name.clone(),
        path: path.to_string(),
        journal_id,
        size,
        sha256: sha256.to_string(),
        received_at: received_at.to_string(),
        started_at: None,
        deposit_date: None,
        window: String::new(),
        metadata: BTreeMap::new(),
        flags: Vec::new(),
        advisor: identify::AdvisorRef::Unknown,
        audio: None,
        picking: None,
        archive: None,
        additional_metadata: BTreeMap::new(),
        crm: None,
        wait_until: None,
        existing: None,
        redo: None,
    }
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
    let mut redone = None;
    match entry.redo {
        Some(redo) => {
            redone = p
                .writer
                .run(move |c| conversations::redoable(c, redo.conversation))
                .await
                .map_err(transient)?;
        }
        None => {
            let (acc, e) = (account.name.clone(), entry.path.clone());
            let current = p
                .writer
                .run(move |c| conversations::current(c, &acc, &e))
                .await
                .map_err(transient)?;
            if let Some((id, sha)) = current {
                if sha == entry.sha256 {
                    return mark(p, entry.id, &format!("unchanged:{id}"))
                        .await
                        .map_err(Failure::Transient);
                }
            }
        }
    }
    let file_name = path.file_name().unwrap_or_default().to_string();
    let mut call = base_call(account, &file_name, deposit_date)?;
    let row = match &account.metadata_csv {
        None => None,
        Some(_) => metadata_row(p, account, &file_name).await?,
    };
    if let Some(r) = &row {
        merge_row(account, &mut call, r)?;
    }
    if row.is_none() && account.metadata_csv.is_some() {
        // Its row arrived broken: rejected now, not after the whole wait.
        let (acc, name) = (account.name.clone(), file_name.clone());
        let broken = p
            .writer
            .run(move |c| snapshots::row_error(c, &acc, &name))
            .await
            .map_err(transient)?;
        if let Some(reason) = broken {
            return Err(Rejection::new("metadata_csv", reason).into());
        }
    }
    let mut draft = empty_draft(
        account,
        &entry.path,
        entry.id,
        entry.size,
        &entry.sha256,
        &entry.completed_at,
    );
    draft.deposit_date = deposit_date.map(|d| d.to_string());
    draft.redo = entry.redo;
    if let Some(r) = &redone {
        draft.received_at = r.received_at.clone();
    }
    let archived = redone
        .and_then(|r| r.archive_path)
        .map(std::path::PathBuf::from);
    let waits = account.metadata_csv.as_ref().filter(|_| row.is_none());
    match waits {
        Some(m) => {
            let deadline = Utc::now()
                + chrono::Duration::from_std(m.wait).unwrap_or(chrono::Duration::days(1));
            draft.wait_until = Some(deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            draft.started_at = call.started_at.map(|d| d.to_rfc3339());
            draft.metadata = call.metadata;
            draft.flags = call.flags;
            draft.window = deposit_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| today(account));
        }
        None => complete_call(p, account, call, deposit_date, &mut draft).await?,
    }
    let window = NaiveDate::parse_from_str(&draft.window, "%Y-%m-%d")
        .unwrap_or_else(|_| Utc::now().date_naive());
    let ext = file_name
        .rsplit('.')
        .next()
        .unwrap_or("bin")
        .to_ascii_lowercase();
    let archive = p.archive_root(&account.name);
    let dir = archive.join(window.format("%Y/%m/%d").to_string());
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
            Some(f) => Source::Descriptor(f),
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
    draft.archive = Some((tmp.clone(), dir, ext));
    let awaiting = draft.wait_until.is_some();
    match p.writer.run(move |c| conversations::store(c, &draft)).await {
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

/// The deposit's bytes are not the ones its journal row acknowledged (only
/// possible when the row is resumed after a restart: while this process
/// runs, the deposit is sealed). A newer completion of the same path covers
/// it; without one, the customer is told, so that the row still ends in an
/// outcome.
pub(crate) async fn not_as_acknowledged(
    p: &Pipeline,
    account: &Account,
    entry: &Entry,
    found_sha256: Option<&str>,
) -> Result<(), Failure> {
    let (acc, path, id) = (account.name.clone(), entry.path.clone(), entry.id);
    let newer = p
        .writer
        .run(move |c| journal::newer_exists(c, &acc, &path, id))
        .await
        .map_err(transient)?;
    if newer {
        return mark(
            p,
            entry.id,
            "superseded: a newer completion of the same path replaced these bytes",
        )
        .await
        .map_err(Failure::Transient);
    }
    tracing::warn!(account = %account.name, path = %entry.path, journal_id = entry.id, expected = %entry.sha256, found = ?found_sha256, "deposit changed or vanished after its upload was acknowledged");
    let reason = match found_sha256 {
        Some(_) => "the file changed after its upload was acknowledged and no new upload replaced it; upload it again",
        None => "the file was removed or renamed before it could be ingested; upload it again",
    };
    Err(Failure::Rejected(Rejection::new("deposit", reason)))
}

/// The conversation `id` if it still waits for its metadata row.
async fn awaiting(p: &Pipeline, id: i64) -> anyhow::Result<Option<Awaiting>> {
    Ok(p.writer
        .run(move |c| conversations::awaiting(c, id))
        .await?)
}

/// Completes an awaiting conversation with its CSV row, or (`row = None`)
/// as its wait ran out, per `on_timeout`.
pub async fn complete_awaiting(
    p: &Pipeline,
    account: &Account,
    id: i64,
    row: Option<BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    let Some(a) = awaiting(p, id).await? else {
        return Ok(());
    };
    let timed_out = row.is_none();
    if timed_out
        && account
            .metadata_csv
            .as_ref()
            .is_some_and(|m| m.on_timeout == OnTimeout::Reject)
    {
        let wait = account
            .metadata_csv
            .as_ref()
            .map(|m| humantime::format_duration(m.wait).to_string())
            .unwrap_or_default();
        let r = Rejection::new(
            "metadata_csv",
            format!("no metadata CSV row named this file within {wait}"),
        );
        return reject_awaiting(p, account, &a, r).await;
    }
    let path = JailPath::parse(&a.path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let file_name = path.file_name().unwrap_or_default().to_string();
    let deposit_date = a
        .deposit_date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let mut call = match base_call(account, &file_name, deposit_date) {
        Ok(c) => c,
        Err(r) => return reject_awaiting(p, account, &a, r).await,
    };
    match &row {
        Some(r) => {
            if let Err(r) = merge_row(account, &mut call, r) {
                return reject_awaiting(p, account, &a, r).await;
            }
        }
        None => call.flags.push("metadata_csv_timeout".into()),
    }
    let mut draft = empty_draft(
        account,
        &a.path,
        a.journal_id,
        a.size,
        &a.sha256,
        &a.received_at,
    );
    draft.existing = Some(a.id);
    draft.deposit_date = a.deposit_date.clone();
    if let Some(info) = &a.audio {
        call.flags.extend(audio::extension_flag(info, &file_name));
    }
    match complete_call(p, account, call, deposit_date, &mut draft).await {
        Ok(()) => {}
        Err(Failure::Rejected(r)) => return reject_awaiting(p, account, &a, r).await,
        Err(Failure::Transient(e)) => return Err(e),
    }
    if let Stored::Conversation { id, picked } = p
        .writer
        .run(move |c| conversations::store(c, &draft))
        .await?
    {
        Metrics::add(&p.metrics.conversations, 1);
        tracing::info!(account = %account.name, conversation_id = id, path = %a.path, picked, timed_out, "conversation completed with its metadata");
    }
    Ok(())
}

/// Rejects the awaiting conversation `id` (if it still awaits).
pub async fn reject_awaiting_id(
    p: &Pipeline,
    account: &Account,
    id: i64,
    r: Rejection,
) -> anyhow::Result<()> {
    let Some(a) = awaiting(p, id).await? else {
        return Ok(());
    };
    reject_awaiting(p, account, &a, r).await
}

async fn reject_awaiting(
    p: &Pipeline,
    account: &Account,
    a: &Awaiting,
    r: Rejection,
) -> anyhow::Result<()> {
    let day = today(account);
    let (a2, r2, day2, cap) = (
        a.clone(),
        r.clone(),
        day.clone(),
        p.limits.max_rejections_per_deposit,
    );
    let recorded = p
        .writer
        .run(move |c| conversations::reject_awaiting(c, &a2, &r2, &day2, cap))
        .await?;
    let Some(recorded) = recorded else {
        // Its metadata row completed it in the meantime: nothing to reject.
        return Ok(());
    };
    if let Some(archived) = &a.archive_path {
        let _ = std::fs::remove_file(archived);
    }
    let rows = recorded.new_rows();
    if rows.is_empty() {
        tracing::info!(account = %account.name, path = %a.path, "same content as an open rejection of this path; nothing changes");
        return Ok(());
    }
    Metrics::add(&p.metrics.rejections, rows.len() as u64);
    tracing::info!(account = %account.name, path = %a.path, stage = r.stage, reason = %r.reason, "deposit rejected");
    append_report(p, account, day, rows).await
}

/// Applies `on_timeout` to every conversation whose wait has run out.
pub async fn expire_waits(p: &Pipeline) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let due = p
        .writer
        .run(move |c| snapshots::awaiting_due(c, &now))
        .await?;
    for id in due {
        let Some(a) = awaiting(p, id).await? else {
            continue;
        };
        match p.account(&a.account) {
            Some(account) => complete_awaiting(p, &account, id, None).await?,
            None => {
                tracing::warn!(conversation_id = id, account = %a.account, "awaiting conversation of an account no longer configured")
            }
        }
    }
    Ok(())
}
