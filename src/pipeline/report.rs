//! The customer's own rejection report: `/rejected/YYYY-MM-DD.csv` in the
//! account's jail (SPEC §5.11), rewritten whole from the database after each
//! rejection (so it is always complete, even after a crash), replaced
//! atomically, read-only for the customer.

use crate::jail::{Jail, JailPath, OpenOptions};
use crate::sftp::REJECTED_DIR;
use crate::store::conversations::ReportRow;
use anyhow::{anyhow, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Rewrites in one process go one at a time (several deposits of one
/// account are rejected concurrently).
static WRITING: Mutex<()> = Mutex::new(());
/// Makes each temporary name unique, also across processes (`depot import`
/// runs its own pipeline next to the server's).
static SEQ: AtomicU64 = AtomicU64::new(0);

pub fn render(rows: &[ReportRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["path", "stage", "reason", "line", "time"])?;
    for r in rows {
        let line = r.line.map(|l| l.to_string()).unwrap_or_default();
        w.write_record([r.path.as_str(), &r.stage, &r.reason, &line, &r.at])?;
    }
    w.into_inner().map_err(|e| anyhow!("csv: {e}"))
}

pub fn write(jail_root: &Path, day: &str, rows: &[ReportRow]) -> Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(jail_root)?;
    let jail = Jail::open(jail_root)?;
    let dir = JailPath::parse(REJECTED_DIR).map_err(|e| anyhow!("{e}"))?;
    jail.create_dir_all(&dir, 0o755)
        .map_err(|e| anyhow!("{e}"))?;
    let tmp = dir
        .join(&format!(
            ".{day}.csv.{}-{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
        .map_err(|e| anyhow!("{e}"))?;
    let dest = dir
        .join(&format!("{day}.csv"))
        .map_err(|e| anyhow!("{e}"))?;
    let opts = OpenOptions {
        write: true,
        create: true,
        truncate: true,
        mode: 0o444,
        ..Default::default()
    };
    let mut f = jail.open_file(&tmp, &opts).map_err(|e| anyhow!("{e}"))?;
    f.write_all(&render(rows)?)?;
    f.sync_all()?;
    jail.rename(&tmp, &dest, true).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
