//! Reading for the HTTP API: conversation pages newest first with a cursor
//! that stays valid while new conversations arrive (it is the last id seen:
//! the next page starts below it), a conversation's earlier versions, and
//! where a conversation's archived audio is.

use super::queries::{conversation, CONVERSATION_SELECT};
use super::Result;
use rusqlite::{types::Value, Connection, OptionalExtension};
use serde_json::Value as Json;

#[derive(Debug, Default, Clone)]
pub struct PageFilter {
    pub account: Option<String>,
    /// `received_at >= since` (RFC 3339 or YYYY-MM-DD).
    pub since: Option<String>,
    /// `received_at < until`.
    pub until: Option<String>,
    pub picked: Option<bool>,
    pub status: Option<String>,
    /// An advisor id, or an advisor's e-mail.
    pub advisor: Option<String>,
    /// Only ids below this (the previous page's `next_cursor`).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One page, newest first, and the cursor of the next page if there is one.
pub fn conversation_page(conn: &Connection, f: &PageFilter) -> Result<(Vec<Json>, Option<i64>)> {
    let mut sql = format!("{CONVERSATION_SELECT} WHERE 1=1");
    let mut args: Vec<Value> = Vec::new();
    let mut add = |cond: &str, v: Value, sql: &mut String| {
        args.push(v);
        *sql += &cond.replace('?', &format!("?{}", args.len()));
    };
    if let Some(a) = &f.account {
        add(" AND c.account = ?", a.clone().into(), &mut sql);
    }
    if let Some(s) = &f.since {
        add(" AND c.received_at >= ?", s.clone().into(), &mut sql);
    }
    if let Some(u) = &f.until {
        add(" AND c.received_at < ?", u.clone().into(), &mut sql);
    }
    if let Some(p) = f.picked {
        add(" AND c.picked = ?", (p as i64).into(), &mut sql);
    }
    if let Some(s) = &f.status {
        add(" AND c.status = ?", s.clone().into(), &mut sql);
    }
    if let Some(adv) = &f.advisor {
        match adv.parse::<i64>() {
            Ok(id) => add(" AND c.advisor_id = ?", id.into(), &mut sql),
            Err(_) => add(" AND a.email = ?", adv.clone().into(), &mut sql),
        }
    }
    if let Some(b) = f.before_id {
        add(" AND c.id < ?", b.into(), &mut sql);
    }
    // One more than asked: tells whether a next page exists.
    sql += &format!(" ORDER BY c.id DESC LIMIT {}", f.limit as u64 + 1);
    let mut st = conn.prepare(&sql)?;
    let mut items = st
        .query_map(rusqlite::params_from_iter(args), conversation)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = if items.len() > f.limit as usize {
        items.truncate(f.limit as usize);
        items.last().and_then(|c| c["id"].as_i64())
    } else {
        None
    };
    Ok((items, next))
}

/// The other versions of conversation `id`'s deposit (same account and
/// path), newest first.
pub fn history(conn: &Connection, account: &str, path: &str, id: i64) -> Result<Vec<Json>> {
    let mut st = conn.prepare(&format!(
        "{CONVERSATION_SELECT} WHERE c.account = ?1 AND c.path = ?2 AND c.id != ?3 ORDER BY c.id DESC"
    ))?;
    let rows = st.query_map(rusqlite::params![account, path, id], conversation)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Where a conversation's audio is kept.
#[derive(Debug, Clone)]
pub struct AudioRef {
    pub account: String,
    pub sha256: String,
    /// The archived file, once archived.
    pub archive_path: Option<String>,
    /// The format probed from the bytes (`mp3`, `wav`).
    pub format: Option<String>,
}

pub fn audio(conn: &Connection, id: i64) -> Result<Option<AudioRef>> {
    Ok(conn
        .prepare_cached(
            "SELECT account, sha256, archive_path, json_extract(audio, '$.format') FROM conversations WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(AudioRef {
                account: r.get(0)?,
                sha256: r.get(1)?,
                archive_path: r.get(2)?,
                format: r.get(3)?,
            })
        })
        .optional()?)
}
