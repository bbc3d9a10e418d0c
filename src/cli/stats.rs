//! `depot stats [--json]`: the counters. Totals that the database
//! holds anyway (completions, conversations, rejections by stage, advisors)
//! are counted there; what only the server process knows (sessions, bytes,
//! auth failures, bans) comes from the counters it saves every few seconds
//! (`metrics::spawn_saver`), so this works while the server runs. The
//! collection itself is [`crate::metrics::stats`], shared with `/metrics`.

use crate::deposit::Layout;
use crate::store;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::metrics::stats::{collect, Retrying, ServerCounters, Stats};

fn listing(map: &BTreeMap<String, u64>) -> String {
    let total: u64 = map.values().sum();
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
    match parts.is_empty() {
        true => "0".to_string(),
        false => format!("{total} ({})", parts.join(", ")),
    }
}

fn print_human(s: &Stats) {
    match &s.server {
        Some(srv) => {
            let state = match srv.running {
                true => "running",
                false => "not running (last saved counters)",
            };
            println!(
                "server: {state}; started {}, saved {}",
                srv.started_at, srv.updated_at
            );
            for (k, v) in &srv.counters {
                println!("  {k:<14} {v}");
            }
        }
        None => println!("server: never ran on this database"),
    }
    println!("database:");
    println!("  completions    {}", listing(&s.completions));
    println!("  pending        {}", s.pending);
    println!("  retrying       {}", s.retrying);
    if let Some(r) = &s.oldest_retrying {
        println!(
            "    oldest completed {}, last error: {}",
            r.completed_at, r.last_error
        );
    }
    println!("  conversations  {}", listing(&s.conversations));
    println!("  picked         {}", s.picked);
    println!("  rejections     {}", listing(&s.rejections));
    println!("  open           {}", listing(&s.open_rejections));
    println!("  advisors       {}", s.advisors);
}

pub fn run(config: &Path, json: bool) -> Result<()> {
    let settings = super::load_settings(config)?;
    let db = Layout::new(&settings.server.data_dir).database();
    if !db.exists() {
        bail!(
            "no database at {} yet: start `depot serve` first",
            db.display()
        );
    }
    let stats = collect(&store::open(&db)?)?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&stats)?),
        false => print_human(&stats),
    }
    Ok(())
}
