//! Stage 3: metadata from the file name through the account's
//! compiled template, the call's start time in the account's timezone, and
//! a flag when that time falls on another day than the date directory.
//! The name is first brought to the account's Unicode form, and the
//! `[audio.fields]` rules then apply to what it gave.

use super::template::stem_and_extension;
use super::{fields, Rejection};
use crate::config::Account;
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::collections::BTreeMap;

/// What a file name says about a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallInfo {
    pub metadata: BTreeMap<String, String>,
    pub started_at: Option<DateTime<FixedOffset>>,
    pub flags: Vec<String>,
}

pub(crate) fn from_file_name(
    account: &Account,
    file_name: &str,
    deposit_date: Option<NaiveDate>,
) -> Result<CallInfo, Rejection> {
    let Some(audio) = account.audio.as_ref() else {
        return Ok(CallInfo::default());
    };
    let Some(template) = audio.filename.as_ref() else {
        return Ok(CallInfo::default());
    };
    let file_name = fields::normalise(audio.normalize, file_name);
    let (stem, _) = stem_and_extension(&file_name);
    let parsed = template
        .parse(stem, account.timezone)
        .map_err(|reason| Rejection::new("file_name", reason))?;
    let mut flags = Vec::new();
    let mut metadata = parsed.fields;
    fields::apply(&audio.fields, &mut metadata).map_err(|r| Rejection::new("file_name", r))?;
    if let Some((change, naive)) = parsed.clock {
        // The stored timestamp is the resolved instant; the time as written
        // stays visible next to the flag.
        flags.push(change.flag().to_string());
        metadata.insert(
            "datetime_local".to_string(),
            naive.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
    }
    if let (Some(dt), Some(day)) = (parsed.datetime, deposit_date) {
        let local = dt.with_timezone(&account.timezone).date_naive();
        if local != day {
            flags.push(format!("datetime_not_on_deposit_date ({local} vs {day})"));
        }
    }
    Ok(CallInfo {
        metadata,
        started_at: parsed.datetime,
        flags,
    })
}
