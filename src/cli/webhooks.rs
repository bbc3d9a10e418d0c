//! `depot webhooks`: each configured endpoint's delivery state (events
//! delivered, lag behind the feed, the failing attempt, parked events);
//! `depot webhooks retry NAME`: deliver that endpoint's parked events again.

use crate::store::{self, webhooks as state};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;

fn open(config: &Path) -> Result<(crate::config::Settings, rusqlite::Connection)> {
    let settings = super::load_settings(config)?;
    let db = crate::server::db_path(&settings);
    if !db.exists() {
        bail!(
            "no database at {} yet: start `depot serve` first",
            db.display()
        );
    }
    let conn = store::open(&db)?;
    Ok((settings, conn))
}

pub fn list(config: &Path, json_out: bool) -> Result<()> {
    let (settings, conn) = open(config)?;
    let last: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
    let known = state::all(&conn)?;
    let mut rows = Vec::new();
    for hook in &settings.webhooks {
        let (cur, parked) = known
            .iter()
            .find(|(c, _)| c.name == hook.name)
            .cloned()
            .unwrap_or_default();
        rows.push(json!({
            "name": hook.name, "url": hook.url, "delivered": cur.delivered,
            "delivered_seq": cur.delivered_seq, "lag": (last - cur.delivered_seq).max(0),
            "attempts": cur.attempts, "failures": cur.failures, "next_attempt_at": cur.next_attempt_at,
            "last_error": cur.last_error, "parked": parked,
        }));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no [[webhooks]] in {}", settings.path.display());
    }
    for r in &rows {
        println!(
            "{}  {}\n  delivered {} (up to seq {}), lag {}, parked {}, failing attempts {}{}",
            r["name"].as_str().unwrap_or_default(),
            r["url"].as_str().unwrap_or_default(),
            r["delivered"],
            r["delivered_seq"],
            r["lag"],
            r["parked"],
            r["attempts"],
            match r["last_error"].as_str() {
                Some(e) => format!(", last error: {e}"),
                None => String::new(),
            }
        );
    }
    Ok(())
}

pub fn retry(config: &Path, name: &str) -> Result<()> {
    let (settings, conn) = open(config)?;
    if !settings.webhooks.iter().any(|w| w.name == name) {
        bail!("no webhook named '{name}' in {}", settings.path.display());
    }
    let n = state::retry_parked(&conn, name)?;
    println!(
        "{n} parked event(s) of '{name}' will be delivered again (within 30 s if depot is running)"
    );
    Ok(())
}
