//! The customer's own rejection report: `/rejected/YYYY-MM-DD.csv` in the
//! account's jail, read-only for the customer (the SFTP front refuses any
//! change under `/rejected/`).
//!
//! The report grows by appending the lines of each deposit's new
//! rejections, never by rewriting it: a day's report can hold a thousand
//! rejections per deposit, and rewriting it whole after each rejection cost
//! seconds once it was large. The header is written once, by whoever
//! creates the file. Appends to one file are serialised, within this
//! process and across processes (`depot import` runs a pipeline of its own
//! next to the server's), by an exclusive lock on the file. A rejection
//! cleared later stays listed: the report is the day's history.

use crate::jail::{Jail, JailError, JailPath, OpenOptions};
use crate::sftp::REJECTED_DIR;
use crate::store::conversations::ReportRow;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// The report's columns, in order.
pub const HEADER: [&str; 5] = ["path", "stage", "reason", "line", "time"];

/// Appends in one process go one at a time (several deposits of one account
/// are rejected concurrently; the file lock serialises other processes).
static WRITING: Mutex<()> = Mutex::new(());

/// The CSV lines of `rows`, with the header first when `header`.
pub fn render(rows: &[ReportRow], header: bool) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(HEADER)?;
    }
    for r in rows {
        let line = r.line.map(|l| l.to_string()).unwrap_or_default();
        w.write_record([r.path.as_str(), &r.stage, &r.reason, &line, &r.at])?;
    }
    w.into_inner().map_err(|e| anyhow!("csv: {e}"))
}

/// Appends `rows` to the report of `day`, creating it (with its header) if
/// needed. Costs the new lines, whatever the report's size.
pub fn append(jail_root: &Path, day: &str, rows: &[ReportRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(jail_root)?;
    let jail = Jail::open(jail_root)?;
    let dir = JailPath::parse(REJECTED_DIR).map_err(|e| anyhow!("{e}"))?;
    jail.create_dir_all(&dir, 0o755)
        .map_err(|e| anyhow!("{e}"))?;
    let dest = dir
        .join(&format!("{day}.csv"))
        .map_err(|e| anyhow!("{e}"))?;
    let mut f = open_for_append(&jail, &dest).context("open the rejection report")?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    let size = f.metadata()?.len();
    let mut out = Vec::new();
    // A crash in the middle of an earlier append may have left half a
    // line: end it, so the new lines stay lines of their own.
    if size > 0 && !ends_with_newline(&f, size)? {
        out.push(b'\n');
    }
    out.extend(render(rows, size == 0)?);
    f.write_all(&out)?;
    f.sync_data()?;
    Ok(())
}

/// Opens the report for appending. Reports written by earlier versions are
/// mode 0444; the owner makes them writable for itself again.
fn open_for_append(jail: &Jail, dest: &JailPath) -> Result<File> {
    // Read too: the last byte tells whether a line was left unfinished.
    let opts = OpenOptions {
        read: true,
        append: true,
        create: true,
        mode: 0o640,
        ..Default::default()
    };
    match jail.open_file(dest, &opts) {
        Ok(f) => Ok(f),
        Err(JailError::PermissionDenied) => {
            jail.set_permissions(dest, 0o640)
                .map_err(|e| anyhow!("{e}"))?;
            jail.open_file(dest, &opts).map_err(|e| anyhow!("{e}"))
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

fn ends_with_newline(f: &File, size: u64) -> Result<bool> {
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, reason: &str) -> ReportRow {
        ReportRow {
            path: path.to_owned(),
            stage: "file_name".to_owned(),
            reason: reason.to_owned(),
            line: None,
            at: "2026-02-11T10:00:00.000Z".to_owned(),
        }
    }

    #[test]
    fn appends_keep_earlier_bytes_and_write_the_header_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rejected/2026-02-11.csv");
        append(dir.path(), "2026-02-11", &[row("/a.mp3", "bad; name")]).unwrap();
        let first = std::fs::read(&file).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            "path,stage,reason,line,time\n/a.mp3,file_name,bad; name,,2026-02-11T10:00:00.000Z\n"
        );
        // A half-written line from a crash, then the next append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(b"/b.mp3,file_na")
            .unwrap();
        append(dir.path(), "2026-02-11", &[row("/c.mp3", "\"quoted\"")]).unwrap();
        let second = std::fs::read(&file).unwrap();
        assert!(second.starts_with(&first));
        let text = String::from_utf8_lossy(&second);
        assert_eq!(text.matches("path,stage").count(), 1, "{text}");
        assert!(
            text.ends_with(
                "/b.mp3,file_na\n/c.mp3,file_name,\"\"\"quoted\"\"\",,2026-02-11T10:00:00.000Z\n"
            ),
            "{text}"
        );
    }
}
