//! Stage 6: additional metadata from the account's latest CRM
//! snapshot, joined on the reconciliation key. Pure: the snapshot is an
//! indexed table loaded once; a lookup is one hash probe.

use super::crm::CrmTable;
use crate::config::{CrmSettings, OnConflict};
pub(crate) use crate::record::{CrmOutcome, CrmStatus};
use std::collections::BTreeMap;

/// The additional metadata for a call and what the join found.
pub(crate) fn enrich(
    settings: &CrmSettings,
    latest: Option<(i64, &CrmTable)>,
    metadata: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, CrmOutcome) {
    let mut additional = BTreeMap::new();
    let Some((snapshot, table)) = latest else {
        return (
            additional,
            CrmOutcome {
                status: CrmStatus::NoSnapshot,
                snapshot: None,
            },
        );
    };
    let outcome = |status| CrmOutcome {
        status,
        snapshot: Some(snapshot),
    };
    let Some(key) = metadata.get(&settings.key).filter(|k| !k.trim().is_empty()) else {
        return (additional, outcome(CrmStatus::NoKey));
    };
    let Some(row) = table.lookup(key.trim()) else {
        return (additional, outcome(CrmStatus::NoMatch));
    };
    for (column, value) in row {
        if metadata.contains_key(&column) && settings.on_conflict == OnConflict::KeepCall {
            continue;
        }
        additional.insert(column, value);
    }
    (additional, outcome(CrmStatus::Matched))
}
