//! The one evaluation of an audio deposit: from the account's settings,
//! the file's name and date directory, its metadata CSV row (or the lack
//! of one) and the account's latest CRM snapshot to what it becomes — a
//! complete call, a call awaiting its row, or a rejection. Pure: whoever
//! needs the answer (the worker, the completion of awaiting calls,
//! `depot check-name`) gathers the inputs and gets the same answer.

use super::crm::CrmTable;
use super::{audio, enrich, fields, identify, names, reason, Rejection};
use crate::config::{Account, MetadataUse, OnTimeout};
use crate::record::{AdvisorRef, AudioInfo, CrmOutcome, PickingRule};
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::collections::BTreeMap;

/// A metadata CSV row: column → value.
pub type Row = BTreeMap<String, String>;

/// What is known of the deposit's metadata CSV row.
#[derive(Debug, Clone, Copy)]
pub enum Metadata<'a> {
    /// The account takes no metadata CSV.
    NotUsed,
    /// A fresh deposit: its row if it arrived, else why a row naming it
    /// could not be read, if one did.
    Csv {
        row: Option<&'a Row>,
        broken: Option<&'a str>,
    },
    /// A call that waited for its row: the row, or `None` when the wait ran
    /// out; `audio` is what its bytes were probed as.
    Waited {
        row: Option<&'a Row>,
        audio: Option<&'a AudioInfo>,
    },
}

/// Everything an audio deposit is evaluated from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deposit<'a> {
    pub account: &'a Account,
    pub file_name: &'a str,
    /// The date of its date directory, if any.
    pub deposit_date: Option<NaiveDate>,
    pub metadata: Metadata<'a>,
    /// The account's latest CRM snapshot, when it has `[crm]` and one.
    pub crm: Option<(i64, &'a CrmTable)>,
    /// Today in the account's timezone (the window of a call without any
    /// other date).
    pub today: NaiveDate,
}

/// What the stages made of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub started_at: Option<DateTime<FixedOffset>>,
    pub metadata: BTreeMap<String, String>,
    pub flags: Vec<String>,
    /// The picking window: the call's day in the account's timezone.
    pub window: NaiveDate,
    pub advisor: AdvisorRef,
    /// Flags added because no advisor record could be made.
    pub without_advisor: Vec<String>,
    pub additional_metadata: BTreeMap<String, String>,
    pub crm: Option<CrmOutcome>,
    pub picking: Option<PickingRule>,
}

/// What an audio deposit becomes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Evaluation {
    Complete(Call),
    /// Stored, waiting for its metadata CSV row (no advisor, no picking yet).
    Awaiting(Call),
    Rejected(Rejection),
}

pub(crate) fn evaluate(d: &Deposit<'_>) -> Evaluation {
    match evaluated(d) {
        Ok(e) => e,
        Err(r) => Evaluation::Rejected(r),
    }
}

fn evaluated(d: &Deposit<'_>) -> Result<Evaluation, Rejection> {
    let account = d.account;
    if let Metadata::Waited { row: None, .. } = d.metadata {
        if let Some(m) = account
            .metadata_csv
            .as_ref()
            .filter(|m| m.on_timeout == OnTimeout::Reject)
        {
            let wait = humantime::format_duration(m.wait).to_string();
            return Err(Rejection::new(
                "metadata_csv",
                format!("no metadata CSV row named this file within {wait}"),
            ));
        }
    }
    let mut call = base_call(account, d.file_name, d.deposit_date)?;
    match d.metadata {
        Metadata::NotUsed => {}
        Metadata::Csv { row: Some(r), .. } => merge_row(account, &mut call, r)?,
        // Its row arrived broken: rejected now, not after the whole wait.
        Metadata::Csv {
            row: None,
            broken: Some(reason),
        } => return Err(Rejection::new("metadata_csv", reason)),
        Metadata::Csv {
            row: None,
            broken: None,
        } => {
            return Ok(Evaluation::Awaiting(Call {
                started_at: call.started_at,
                metadata: call.metadata,
                flags: call.flags,
                window: d.deposit_date.unwrap_or(d.today),
                advisor: AdvisorRef::Unknown,
                without_advisor: Vec::new(),
                additional_metadata: BTreeMap::new(),
                crm: None,
                picking: None,
            }))
        }
        Metadata::Waited { row, audio: info } => {
            match row {
                Some(r) => merge_row(account, &mut call, r)?,
                None => call.flags.push("metadata_csv_timeout".into()),
            }
            if let Some(info) = info {
                call.flags.extend(audio::extension_flag(info, d.file_name));
            }
        }
    }
    complete(d, call).map(Evaluation::Complete)
}

/// The common tail of every complete call: label, advisor, CRM, window.
fn complete(d: &Deposit<'_>, mut call: super::names::CallInfo) -> Result<Call, Rejection> {
    let account = d.account;
    reason::label(
        account.contact_reasons.as_ref(),
        &mut call.metadata,
        &mut call.flags,
    )?;
    let unresolved = call.flags.len();
    let advisor = identify::identify(account.advisors.as_ref(), &call.metadata, &mut call.flags)?;
    let without_advisor = call.flags[unresolved..].to_vec();
    let (additional_metadata, crm) = match &account.crm {
        Some(settings) => {
            let (additional, outcome) = enrich::enrich(settings, d.crm, &call.metadata);
            (additional, Some(outcome))
        }
        None => (BTreeMap::new(), None),
    };
    let tz = account.timezone;
    let window = call
        .started_at
        .map(|t| t.with_timezone(&tz).date_naive())
        .or(d.deposit_date)
        .unwrap_or(d.today);
    Ok(Call {
        started_at: call.started_at,
        metadata: call.metadata,
        flags: call.flags,
        window,
        advisor,
        without_advisor,
        additional_metadata,
        crm,
        picking: account.picking.as_ref().map(|s| PickingRule {
            percent: s.percent,
            max_per_advisor: s.max_per_advisor,
        }),
    })
}

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
