//! Audio that waits for its metadata CSV row: completed when the row
//! arrives (or the wait runs out, per `on_timeout`), or turned into a
//! rejection when the row is unusable.

use super::call::{apply, crm_for, empty_draft};
use super::commit::{commit, Commit, Committed};
use super::context::{append_report, today, today_date, Failure, Pipeline};
use super::evaluate::{evaluate, Deposit, Evaluation, Metadata};
use super::Rejection;
use crate::config::Account;
use crate::jail::JailPath;
use crate::metrics::Metrics;
use crate::store::conversations::{self, Awaiting, Stored};
use crate::store::snapshots;
use anyhow::Context;
use chrono::{NaiveDate, Utc};
use std::collections::BTreeMap;

/// The conversation `id` if it still waits for its metadata row.
async fn awaiting(p: &Pipeline, id: i64) -> anyhow::Result<Option<Awaiting>> {
    Ok(p.writer
        .run(move |c| conversations::awaiting(c, id))
        .await?)
}

/// Completes an awaiting conversation with its CSV row, or (`row = None`)
/// as its wait ran out, per `on_timeout`.
pub(crate) async fn complete_awaiting(
    p: &Pipeline,
    account: &Account,
    id: i64,
    row: Option<BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    let Some(a) = awaiting(p, id).await? else {
        return Ok(());
    };
    let timed_out = row.is_none();
    let path = JailPath::parse(&a.path)
        .with_context(|| format!("awaiting conversation {}: path {}", a.id, a.path))?;
    let file_name = path.file_name().unwrap_or_default().to_string();
    let deposit_date = a
        .deposit_date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let crm = match crm_for(p, account).await {
        Ok(crm) => crm,
        Err(Failure::Transient(e)) => return Err(e),
        Err(Failure::Rejected(r)) => return reject_awaiting(p, account, &a, r).await,
    };
    let evaluation = evaluate(&Deposit {
        account,
        file_name: &file_name,
        deposit_date,
        metadata: Metadata::Waited {
            row: row.as_ref(),
            audio: a.audio.as_ref(),
        },
        crm: crm.as_ref().map(|(id, t)| (*id, t.as_ref())),
        today: today_date(account),
    });
    let mut draft = empty_draft(
        account,
        &a.path,
        a.journal_id,
        a.size,
        &a.sha256,
        &a.received_at,
    );
    draft.existing = Some(a.id);
    draft.deposit_date = deposit_date;
    match evaluation {
        Evaluation::Complete(call) => apply(account, &mut draft, call),
        Evaluation::Rejected(r) => return reject_awaiting(p, account, &a, r).await,
        // A call that waited is not made to wait again.
        Evaluation::Awaiting(_) => return Ok(()),
    }
    if let Stored::Conversation { id, picked } = p
        .writer
        .run(move |c| super::commit::store_conversation(c, &draft))
        .await?
    {
        Metrics::add(&p.metrics.conversations, 1);
        tracing::info!(account = %account.name, conversation_id = id, path = %a.path, picked, timed_out, "conversation completed with its metadata");
    }
    Ok(())
}

/// Rejects the awaiting conversation `id` (if it still awaits).
pub(crate) async fn reject_awaiting_id(
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
    let committed = p
        .writer
        .run(move |c| {
            let what = Commit::AwaitingRejected {
                awaiting: &a2,
                rejection: &r2,
                day: &day2,
                cap,
            };
            commit(c, a2.journal_id, what)
        })
        .await?;
    let Committed::Rejection(Some(recorded)) = committed else {
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
pub(crate) async fn expire_waits(p: &Pipeline) -> anyhow::Result<()> {
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
