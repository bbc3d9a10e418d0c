//! The call-metadata stages an audio deposit and a call completed with its
//! CSV row share: file-name metadata, the merge of the CSV row, then the
//! common tail (contact reason, advisor, CRM enrichment, picking window).

use super::context::{today_date, transient, Failure, Pipeline};
use super::{enrich, fields, identify, names, reason, Rejection};
use crate::config::{Account, MetadataUse};
use crate::store::conversations::Draft;
use chrono::{NaiveDate, Utc};
use std::collections::BTreeMap;

/// Metadata from the file name, unless `metadata_csv.use = "only"`.
pub(super) fn base_call(
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
pub(super) fn merge_row(
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

/// The common tail for every complete call: label, advisor, CRM, window.
pub(super) async fn complete_call(
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
        let latest = super::crm_flow::latest_crm(p, account)
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
        .unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
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

pub(super) fn empty_draft(
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
        window: today_date(account),
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
