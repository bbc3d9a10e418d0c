//! `depot check-name --account A NAME`: what a file name would yield under
//! the account's settings (fields, datetime, e-mail, reason label), or why
//! it would be rejected — without uploading anything.

use crate::config::load_account;
use crate::jail::JailPath;
use crate::pipeline::classify::{classify, Kind};
use crate::pipeline::{identify, names, reason, Rejection};
use anyhow::{anyhow, Result};
use serde_json::json;
use std::path::Path;

pub fn run(config: &Path, account: &str, name: &str, json_out: bool) -> Result<bool> {
    let settings = super::load_settings(config)?;
    let file = settings.server.accounts_dir.join(format!("{account}.toml"));
    let (acc, _) = load_account(&file, &settings.server.accounts_dir, false).map_err(|errs| {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow!("account '{account}': {}", all.join("; "))
    })?;
    // A bare name is checked as if uploaded into today's date directory.
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        let dir = acc
            .audio
            .as_ref()
            .map(|a| a.dir.as_str().to_string())
            .unwrap_or_default();
        let day = chrono::Utc::now()
            .with_timezone(&acc.timezone)
            .format("%Y%m%d");
        format!("{dir}/{day}/{name}")
    };
    let outcome = evaluate(&acc, &path);
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

fn evaluate(acc: &crate::config::Account, path: &str) -> Result<serde_json::Value, Rejection> {
    let p = JailPath::parse(path).map_err(|e| Rejection::new("path", e.to_string()))?;
    let deposit_date = match classify(acc, &p)? {
        Kind::Audio { deposit_date } => deposit_date,
        other => return Ok(json!({"path": path, "kind": format!("{other:?}")})),
    };
    let mut call = names::from_file_name(acc, p.file_name().unwrap_or_default(), deposit_date)?;
    reason::label(
        acc.contact_reasons.as_ref(),
        &mut call.metadata,
        &mut call.flags,
    )?;
    let advisor = match identify::identify(acc.advisors.as_ref(), &call.metadata, &mut call.flags)?
    {
        identify::AdvisorRef::ByEmail(a) => {
            json!({"email": a.email, "team": a.team, "connector": a.connector})
        }
        identify::AdvisorRef::Named(n) => json!({"name": n}),
        identify::AdvisorRef::Unknown => serde_json::Value::Null,
    };
    Ok(json!({
        "path": path,
        "started_at": call.started_at.map(|d| d.to_rfc3339()),
        "deposit_date": deposit_date.map(|d| d.to_string()),
        "metadata": call.metadata,
        "advisor": advisor,
        "flags": call.flags,
    }))
}
