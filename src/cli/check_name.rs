//! `depot check-name --account A NAME`: what a file name would yield under
//! the account's settings (fields, datetime, e-mail, reason label), or why
//! it would be rejected — without uploading anything. The answer is the
//! pipeline's own evaluation of the deposit, as it stands before any
//! metadata CSV row or CRM snapshot is known.

use crate::config::{load_account, Account};
use crate::jail::JailPath;
use crate::pipeline::classify::{classify, Kind};
use crate::pipeline::evaluate::{evaluate, Deposit, Evaluation, Metadata};
use crate::pipeline::Rejection;
use crate::record::AdvisorRef;
use anyhow::{anyhow, Result};
use chrono::NaiveDate;
use serde_json::json;
use std::path::Path;

pub fn run(config: &Path, account: &str, name: &str, json_out: bool) -> Result<bool> {
    let settings = super::load_settings(config)?;
    let file = settings.server.accounts_dir.join(format!("{account}.toml"));
    let (acc, _) = load_account(&file, &settings.server.accounts_dir, false).map_err(|errs| {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow!("account '{account}': {}", all.join("; "))
    })?;
    let today = chrono::Utc::now().with_timezone(&acc.timezone).date_naive();
    let path = deposit_path(&acc, name, today);
    let outcome = check(&acc, &path, today);
    let ok = outcome.is_ok();
    let doc = match outcome {
        Ok(v) => v,
        Err(r) => json!({"path": path, "rejected": {"stage": r.stage, "reason": r.reason}}),
    };
    if json_out {
        println!("{doc}");
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(ok)
}

/// A bare name is checked as if uploaded into today's date directory, named
/// in the account's first `date_dirs` format.
fn deposit_path(acc: &Account, name: &str, today: NaiveDate) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let Some(audio) = &acc.audio else {
        return format!("/{name}");
    };
    match audio.date_dirs.first() {
        Some(format) => format!("{}/{}/{name}", audio.dir, today.format(format)),
        None => format!("{}/{name}", audio.dir),
    }
}

fn check(acc: &Account, path: &str, today: NaiveDate) -> Result<serde_json::Value, Rejection> {
    let p = JailPath::parse(path).map_err(|e| Rejection::new("path", e.to_string()))?;
    let deposit_date = match classify(acc, &p)? {
        Kind::Audio { deposit_date } => deposit_date,
        other => return Ok(json!({"path": path, "kind": format!("{other:?}")})),
    };
    let metadata = match &acc.metadata_csv {
        None => Metadata::NotUsed,
        Some(_) => Metadata::Csv {
            row: None,
            broken: None,
        },
    };
    let evaluation = evaluate(&Deposit {
        account: acc,
        file_name: p.file_name().unwrap_or_default(),
        deposit_date,
        metadata,
        crm: None,
        today,
    });
    let (call, awaiting) = match evaluation {
        Evaluation::Rejected(r) => return Err(r),
        Evaluation::Complete(call) => (call, false),
        Evaluation::Awaiting(call) => (call, true),
    };
    let advisor = match &call.advisor {
        AdvisorRef::ByEmail(a) => {
            json!({"email": a.email, "team": a.team, "connector": a.connector})
        }
        AdvisorRef::Named(n) => json!({"name": n}),
        AdvisorRef::Unknown => serde_json::Value::Null,
    };
    let mut doc = json!({
        "path": path,
        "started_at": call.started_at.map(|d| d.to_rfc3339()),
        "deposit_date": deposit_date.map(|d| d.to_string()),
        "metadata": call.metadata,
        "advisor": advisor,
        "flags": call.flags,
    });
    if awaiting {
        // Ingestion waits for the metadata CSV row before naming the
        // advisor: so does the answer.
        doc["awaiting"] = json!("metadata_csv");
    }
    Ok(doc)
}

#[cfg(test)]
mod tests;
