//! What an audio deposit and a call completed with its CSV row share
//! around their evaluation: the CRM snapshot lookup, and the draft the
//! evaluation fills.

use super::context::{today_date, transient, Failure, Pipeline};
use super::evaluate::Call;
use super::identify;
use crate::config::Account;
use crate::store::conversations::Draft;
use std::collections::BTreeMap;

/// Fills a draft with what the stages made of its call.
pub(super) fn apply(account: &Account, draft: &mut Draft, call: Call) {
    for flag in &call.without_advisor {
        tracing::info!(account = %account.name, path = %draft.path, flag = %flag, "call kept without an advisor record");
    }
    draft.window = call.window;
    draft.started_at = call.started_at.map(|d| d.to_rfc3339());
    draft.metadata = call.metadata;
    draft.flags = call.flags;
    draft.advisor = call.advisor;
    draft.additional_metadata = call.additional_metadata;
    draft.crm = call.crm;
    draft.picking = call.picking;
}

/// The account's latest CRM snapshot, when the call will be enriched.
pub(super) async fn crm_for(
    p: &Pipeline,
    account: &Account,
) -> Result<Option<(i64, std::sync::Arc<super::crm::CrmTable>)>, Failure> {
    match &account.crm {
        Some(_) => super::crm_flow::latest_crm(p, account)
            .await
            .map_err(transient),
        None => Ok(None),
    }
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
