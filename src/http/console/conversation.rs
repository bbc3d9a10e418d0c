//! One conversation: its metadata, CRM fields, audio player and history.

use super::frame::{advisor_name, local, s, tz_of, Chrome, St};
use super::{page, PageError, Viewer};
use crate::store::{api, queries};
use askama::Template;
use axum::extract::Path;
use axum::response::Response;
use rusqlite::OptionalExtension;
use serde_json::Value as Json;

pub(crate) struct Pair {
    pub(crate) key: String,
    pub(crate) value: String,
}

pub(crate) struct HistoryRow {
    pub(crate) id: i64,
    pub(crate) received: String,
    pub(crate) status: String,
    pub(crate) sha256: String,
}

#[derive(Template)]
#[template(path = "console/conversation.html")]
struct ConversationPage {
    chrome: Chrome,
    id: i64,
    account: String,
    timezone: String,
    path: String,
    received: String,
    started: String,
    status: String,
    size: i64,
    sha256: String,
    audio: String,
    has_audio: bool,
    metadata: Vec<Pair>,
    additional: Vec<Pair>,
    crm_status: String,
    crm_snapshot: String,
    advisor: Vec<Pair>,
    picked: bool,
    picking_reason: String,
    flags: Vec<String>,
    history: Vec<HistoryRow>,
}

fn pairs(m: &Json) -> Vec<Pair> {
    m.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| Pair {
                    key: k.clone(),
                    value: s(v),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn conversation(
    axum::extract::State(state): St,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id.parse().map_err(|_| PageError::not_found())?;
    let found = state
        .read(move |c| {
            let Some(conv) = queries::conversation_by_id(c, id)? else {
                return Ok(None);
            };
            let account = s(&conv["account"]);
            let path = s(&conv["path"]);
            let history = api::history(c, &account, &path, id)?;
            let snap = match conv["crm"]["snapshot"].as_i64() {
                Some(sid) => c
                    .query_row(
                        "SELECT path, loaded_at FROM crm_snapshots WHERE id = ?1 AND account = ?2",
                        rusqlite::params![sid, account],
                        |r| Ok((sid, r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                    .optional()?,
                None => None,
            };
            Ok(Some((conv, history, snap)))
        })
        .await?;
    let Some((c, history, snap)) = found else {
        return Err(PageError::not_found());
    };
    let account = s(&c["account"]);
    if !v.sees(&account) {
        return Err(PageError::not_found());
    }
    let tz = tz_of(&state, &account);
    let a = &c["advisor"];
    let mut advisor = Vec::new();
    if !a.is_null() {
        advisor.push(Pair {
            key: "name".into(),
            value: advisor_name(a),
        });
        for k in ["email", "team", "connector"] {
            if !a[k].is_null() {
                advisor.push(Pair {
                    key: k.into(),
                    value: s(&a[k]),
                });
            }
        }
    }
    let au = &c["audio"];
    let audio = if au.is_null() {
        "not probed".to_string()
    } else {
        format!(
            "{}, {:.1} s, {} Hz, {} channel(s)",
            s(&au["format"]),
            au["duration_seconds"].as_f64().unwrap_or(0.0),
            s(&au["sample_rate"]),
            s(&au["channels"])
        )
    };
    let crm_snapshot = match snap {
        Some((sid, path, at)) => format!("snapshot {sid}: {path}, received {}", local(&at, tz)),
        None => match c["crm"]["snapshot"].as_i64() {
            Some(sid) => format!("snapshot {sid}"),
            None => "none".into(),
        },
    };
    page(&ConversationPage {
        chrome: Chrome::new(&state, &v, "conversations", Some(&account)),
        id,
        timezone: tz.name().to_string(),
        path: s(&c["path"]),
        received: local(&s(&c["received_at"]), tz),
        started: c["started_at"]
            .as_str()
            .map(|t| local(t, tz))
            .unwrap_or_default(),
        status: s(&c["status"]).replace('_', " "),
        size: c["size"].as_i64().unwrap_or_default(),
        sha256: s(&c["sha256"]),
        audio,
        has_audio: !c["archive_path"].is_null(),
        metadata: pairs(&c["metadata"]),
        additional: pairs(&c["additional_metadata"]),
        crm_status: match &c["crm"] {
            Json::Null => "no CRM join".into(),
            crm => s(&crm["status"]).replace('_', " "),
        },
        crm_snapshot,
        advisor,
        picked: c["picked"].as_bool().unwrap_or(false),
        picking_reason: s(&c["picking_reason"]),
        flags: c["flags"]
            .as_array()
            .map(|f| f.iter().map(s).collect())
            .unwrap_or_default(),
        history: history
            .iter()
            .map(|h| HistoryRow {
                id: h["id"].as_i64().unwrap_or_default(),
                received: local(&s(&h["received_at"]), tz),
                status: s(&h["status"]).replace('_', " "),
                sha256: s(&h["sha256"]),
            })
            .collect(),
        account,
    })
}
