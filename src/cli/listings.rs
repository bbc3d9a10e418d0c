//! `depot conversations | conversation ID | advisors | rejections`: read the
//! database (the server may be running; SQLite WAL allows it).

use super::output::{print, Format};
use crate::store::queries::{self, ConversationFilter};
use anyhow::{bail, Result};
use std::path::Path;

fn open(config: &Path) -> Result<rusqlite::Connection> {
    let settings = super::load_settings(config)?;
    let db = crate::server::db_path(&settings);
    if !db.exists() {
        bail!(
            "no database at {} yet: start `depot serve` first",
            db.display()
        );
    }
    Ok(crate::store::open(&db)?)
}

pub fn conversations(config: &Path, filter: &ConversationFilter, format: Format) -> Result<()> {
    let rows = queries::conversations(&open(config)?, filter)?;
    print(
        &rows,
        &[
            ("id", "id"),
            ("account", "account"),
            ("received_at", "received_at"),
            ("status", "status"),
            ("started_at", "started_at"),
            ("advisor", "advisor.email"),
            ("reason", "metadata.contact_reason_label"),
            ("picked", "picked"),
            ("picking_reason", "picking_reason"),
            ("path", "path"),
        ],
        format,
    )
}

pub fn conversation(config: &Path, id: i64) -> Result<bool> {
    match queries::conversation_by_id(&open(config)?, id)? {
        Some(c) => {
            println!("{}", serde_json::to_string_pretty(&c)?);
            Ok(true)
        }
        None => {
            eprintln!("no conversation {id}");
            Ok(false)
        }
    }
}

pub fn advisors(config: &Path, account: Option<&str>, format: Format) -> Result<()> {
    let rows = queries::advisors(&open(config)?, account)?;
    print(
        &rows,
        &[
            ("id", "id"),
            ("account", "account"),
            ("email", "email"),
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("team", "team"),
            ("connector", "connector"),
            ("created_at", "created_at"),
        ],
        format,
    )
}

pub fn rejections(
    config: &Path,
    account: Option<&str>,
    since: Option<&str>,
    format: Format,
) -> Result<()> {
    let mut rows = queries::rejections(&open(config)?, account, since)?;
    // The words the customer's report uses for what was checked.
    for r in &mut rows {
        let words = crate::pipeline::report::checked(
            r["stage"].as_str().unwrap_or_default(),
            r["line"].as_i64(),
        );
        if let Some(m) = r.as_object_mut() {
            m.insert("checked".into(), serde_json::Value::String(words));
        }
    }
    print(
        &rows,
        &[
            ("id", "id"),
            ("account", "account"),
            ("at", "at"),
            ("checked", "checked"),
            ("line", "line"),
            ("reason", "reason"),
            ("path", "path"),
        ],
        format,
    )
}

pub fn crm(config: &Path, account: Option<&str>, format: Format) -> Result<()> {
    let rows: Vec<serde_json::Value> = crate::store::snapshots::snapshots(&open(config)?, account)?
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "account": s.account, "path": s.path, "file": s.file, "rows": s.rows,
                "duplicate_keys": s.duplicate_keys, "loaded_at": s.loaded_at, "latest": s.latest,
            })
        })
        .collect();
    print(
        &rows,
        &[
            ("id", "id"),
            ("account", "account"),
            ("path", "path"),
            ("rows", "rows"),
            ("duplicate_keys", "duplicate_keys"),
            ("loaded_at", "loaded_at"),
            ("latest", "latest"),
        ],
        format,
    )
}
