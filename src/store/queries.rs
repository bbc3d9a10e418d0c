//! Reading for the operator CLI: conversations, advisors and rejections as
//! the JSON documents the CLI prints (the shape is a contract other tools parse).

use super::Result;
use rusqlite::{types::Value, Connection, OptionalExtension, Row};
use serde_json::{json, Map, Value as Json};

#[derive(Debug, Default, Clone)]
pub struct ConversationFilter {
    pub account: Option<String>,
    /// Received on or after this date/time (RFC 3339 or YYYY-MM-DD).
    pub since: Option<String>,
    pub picked: Option<bool>,
    pub status: Option<String>,
    pub limit: Option<u64>,
}

pub(crate) const CONVERSATION_SELECT: &str =
    "SELECT c.id, c.account, c.path, c.size, c.sha256, c.received_at, c.status,
    c.started_at, c.metadata, c.additional_metadata, c.crm, c.picked, c.picking_reason, c.audio,
    c.flags, c.deposit_date, c.archive_path, c.advisor_name,
    a.id, a.email, a.team, a.connector, a.first_name, a.last_name
    FROM conversations c LEFT JOIN advisors a ON a.id = c.advisor_id";

fn parse_json(s: Option<String>) -> Json {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Json::Null)
}

pub(crate) fn conversation(r: &Row<'_>) -> rusqlite::Result<Json> {
    let advisor = match r.get::<_, Option<i64>>(18)? {
        Some(id) => json!({
            "id": id, "email": r.get::<_, String>(19)?, "team": r.get::<_, Option<String>>(20)?,
            "connector": r.get::<_, Option<String>>(21)?, "first_name": r.get::<_, String>(22)?,
            "last_name": r.get::<_, String>(23)?,
        }),
        None => match r.get::<_, Option<String>>(17)? {
            Some(name) => json!({"id": null, "name": name}),
            None => Json::Null,
        },
    };
    let additional = parse_json(r.get(9)?);
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "account": r.get::<_, String>(1)?,
        "path": r.get::<_, String>(2)?,
        "size": r.get::<_, i64>(3)?,
        "sha256": r.get::<_, String>(4)?,
        "received_at": r.get::<_, String>(5)?,
        "status": r.get::<_, String>(6)?,
        "started_at": r.get::<_, Option<String>>(7)?,
        "metadata": parse_json(r.get(8)?),
        "additional_metadata": if additional.is_null() { json!({}) } else { additional },
        "crm": parse_json(r.get(10)?),
        "advisor": advisor,
        "picked": r.get::<_, bool>(11)?,
        "picking_reason": r.get::<_, Option<String>>(12)?,
        "audio": parse_json(r.get(13)?),
        "flags": parse_json(r.get(14)?),
        "deposit_date": r.get::<_, Option<String>>(15)?,
        "archive_path": r.get::<_, Option<String>>(16)?,
    }))
}

pub fn conversations(conn: &Connection, f: &ConversationFilter) -> Result<Vec<Json>> {
    let mut sql = format!("{CONVERSATION_SELECT} WHERE 1=1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(a) = &f.account {
        args.push(a.clone().into());
        sql += &format!(" AND c.account = ?{}", args.len());
    }
    if let Some(s) = &f.since {
        args.push(s.clone().into());
        sql += &format!(" AND c.received_at >= ?{}", args.len());
    }
    if let Some(p) = f.picked {
        args.push((p as i64).into());
        sql += &format!(" AND c.picked = ?{}", args.len());
    }
    if let Some(s) = &f.status {
        args.push(s.clone().into());
        sql += &format!(" AND c.status = ?{}", args.len());
    }
    sql += " ORDER BY c.id";
    if let Some(l) = f.limit {
        sql += &format!(" LIMIT {l}");
    }
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), conversation)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn conversation_by_id(conn: &Connection, id: i64) -> Result<Option<Json>> {
    Ok(conn
        .prepare(&format!("{CONVERSATION_SELECT} WHERE c.id = ?1"))?
        .query_row([id], conversation)
        .optional()?)
}

pub fn advisors(conn: &Connection, account: Option<&str>) -> Result<Vec<Json>> {
    let mut st = conn.prepare(
        "SELECT id, account, email, first_name, last_name, team, connector, created_at FROM advisors
         WHERE ?1 IS NULL OR account = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([account], |r| {
        Ok(json!({
            "id": r.get::<_, i64>(0)?, "account": r.get::<_, String>(1)?, "email": r.get::<_, String>(2)?,
            "first_name": r.get::<_, String>(3)?, "last_name": r.get::<_, String>(4)?,
            "team": r.get::<_, Option<String>>(5)?, "connector": r.get::<_, Option<String>>(6)?,
            "created_at": r.get::<_, String>(7)?,
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Open rejections (a successful re-upload of the path clears them).
pub fn rejections(
    conn: &Connection,
    account: Option<&str>,
    since: Option<&str>,
) -> Result<Vec<Json>> {
    let mut st = conn.prepare(
        "SELECT id, account, path, stage, reason, line, at FROM rejections
         WHERE cleared_at IS NULL AND (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR at >= ?2) ORDER BY id",
    )?;
    let rows = st.query_map([account, since], |r| {
        let mut m = Map::new();
        m.insert("id".into(), json!(r.get::<_, i64>(0)?));
        m.insert("account".into(), json!(r.get::<_, String>(1)?));
        m.insert("path".into(), json!(r.get::<_, String>(2)?));
        m.insert("stage".into(), json!(r.get::<_, String>(3)?));
        m.insert("reason".into(), json!(r.get::<_, String>(4)?));
        m.insert("line".into(), json!(r.get::<_, Option<i64>>(5)?));
        m.insert("at".into(), json!(r.get::<_, String>(6)?));
        Ok(Json::Object(m))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
