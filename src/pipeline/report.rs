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
//!
//! It is written for the customer's spreadsheet: UTF-8 with a BOM (or
//! accents break), the account's `report.delimiter` (`;` by default, which
//! European spreadsheets split on), times in the account's timezone with
//! their offset, what was checked in words ("file name", "metadata CSV
//! line 4") rather than stage names, and long paths shortened in the
//! middle so a line stays readable.

use crate::deposit::names::REJECTED_DIR;
use crate::jail::{Jail, JailError, JailPath, OpenOptions};
use crate::store::conversations::ReportRow;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// The report's columns, in order.
pub const HEADER: [&str; 4] = ["time", "file", "checked", "reason"];

/// Longest path a report line shows; longer ones keep their start and end.
pub(crate) const MAX_PATH_CHARS: usize = 200;
/// Longest reason a report line shows (a reason may quote a long name).
pub(crate) const MAX_REASON_CHARS: usize = 300;

/// The UTF-8 byte order mark spreadsheet programs need to read UTF-8.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How one account's report is written.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub timezone: chrono_tz::Tz,
    pub delimiter: u8,
}

impl Style {
    pub fn of(account: &crate::config::Account) -> Style {
        Style {
            timezone: account.timezone,
            delimiter: account.report_delimiter,
        }
    }
}

/// What a stage checked, in the words a customer reads.
pub fn checked(stage: &str, line: Option<i64>) -> String {
    let words = match stage {
        "file_name" => "file name",
        "date_directory" => "date directory",
        "contact_reason" => "contact reason",
        "metadata_csv" => "metadata CSV",
        "file_type" | "classify" => "file type",
        "crm" => "CRM file",
        "deposit" => "deposit",
        "audio" => "audio content",
        "advisor" => "advisor",
        "fields" => "field rules",
        "path" => "file path",
        other => return other.replace('_', " "),
    };
    match line {
        Some(l) => format!("{words} line {l}"),
        None => words.to_owned(),
    }
}

/// `at` (RFC 3339, UTC) in `tz`, to the second, with the offset.
pub(crate) fn local_time(at: &str, tz: chrono_tz::Tz) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string(),
        Err(_) => at.to_owned(),
    }
}

/// `s` cut to at most `max` characters by replacing its middle with `…`.
pub(crate) fn shorten_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max < 3 {
        return s.to_owned();
    }
    let keep = max - 1;
    let head = keep / 2;
    let tail = keep - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// Appends in one process go one at a time (several deposits of one account
/// are rejected concurrently; the file lock serialises other processes).
static WRITING: Mutex<()> = Mutex::new(());

/// The CSV lines of `rows`, with the BOM and header first when `header`.
pub(crate) fn render(rows: &[ReportRow], header: bool, style: Style) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if header {
        out.extend_from_slice(BOM);
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(style.delimiter)
        .from_writer(out);
    if header {
        w.write_record(HEADER)?;
    }
    for r in rows {
        w.write_record([
            local_time(&r.at, style.timezone).as_str(),
            &shorten_middle(&r.path, MAX_PATH_CHARS),
            &checked(&r.stage, r.line),
            &shorten_middle(&r.reason, MAX_REASON_CHARS),
        ])?;
    }
    w.into_inner().map_err(|e| anyhow!("csv: {e}"))
}

/// Appends `rows` to the report of `day`, creating it (with its header) if
/// needed. Costs the new lines, whatever the report's size.
pub fn append(jail_root: &Path, day: &str, rows: &[ReportRow], style: Style) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(jail_root)?;
    let jail = Jail::open(jail_root)?;
    let dir = JailPath::parse(REJECTED_DIR)?;
    jail.create_dir_all(&dir, 0o755)
        .context("create the rejection report's directory")?;
    let dest = dir
        .join(&format!("{day}.csv"))
        .context("name the rejection report")?;
    let mut f = open_for_append(&jail, &dest).context("open the rejection report")?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    let size = f.metadata()?.len();
    let mut out = Vec::new();
    // A crash in the middle of an earlier append may have left half a
    // line: end it, so the new lines stay lines of their own.
    if size > 0 && !ends_with_newline(&f, size)? {
        out.push(b'\n');
    }
    out.extend(render(rows, size == 0, style)?);
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
            jail.set_permissions(dest, 0o640)?;
            Ok(jail.open_file(dest, &opts)?)
        }
        Err(e) => Err(e.into()),
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

    fn row(path: &str, stage: &str, line: Option<i64>, reason: &str) -> ReportRow {
        ReportRow {
            path: path.to_owned(),
            stage: stage.to_owned(),
            reason: reason.to_owned(),
            line,
            at: "2026-02-11T10:00:00.000Z".to_owned(),
        }
    }

    const PARIS: Style = Style {
        timezone: chrono_tz::Europe::Paris,
        delimiter: b';',
    };

    #[test]
    fn appends_keep_earlier_bytes_and_write_the_bom_and_header_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rejected/2026-02-11.csv");
        let first_row = row("/a.mp3", "file_name", None, "bad; name é");
        append(dir.path(), "2026-02-11", &[first_row], PARIS).unwrap();
        let first = std::fs::read(&file).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            "\u{feff}time;file;checked;reason\n2026-02-11 11:00:00+01:00;/a.mp3;file name;\"bad; name é\"\n"
        );
        // A half-written line from a crash, then the next append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(b"2026-02-11 11:00:00+01:00;/b.mp3;fi")
            .unwrap();
        let csv_row = row(
            "/m.csv",
            "metadata_csv",
            Some(4),
            "expected 7 columns, found 6",
        );
        append(dir.path(), "2026-02-11", &[csv_row], PARIS).unwrap();
        let second = std::fs::read(&file).unwrap();
        assert!(second.starts_with(&first));
        let text = String::from_utf8_lossy(&second);
        assert_eq!(text.matches("time;file").count(), 1, "{text}");
        assert_eq!(text.matches('\u{feff}').count(), 1, "{text}");
        assert!(
            text.ends_with(
                "/b.mp3;fi\n2026-02-11 11:00:00+01:00;/m.csv;metadata CSV line 4;expected 7 columns, found 6\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_delimiter_is_the_accounts() {
        let style = Style {
            timezone: chrono_tz::UTC,
            delimiter: b',',
        };
        let out = render(&[row("/a.txt", "file_type", None, "x")], true, style).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\u{feff}time,file,checked,reason\n2026-02-11 10:00:00+00:00,/a.txt,file type,x\n"
        );
    }

    #[test]
    fn long_paths_are_shortened_in_the_middle() {
        let long = format!("/audio/20260211/{}.mp3", "x".repeat(480));
        let short = shorten_middle(&long, MAX_PATH_CHARS);
        assert_eq!(short.chars().count(), MAX_PATH_CHARS);
        assert!(short.starts_with("/audio/20260211/xx"), "{short}");
        assert!(short.ends_with("xx.mp3") && short.contains('…'), "{short}");
        assert_eq!(shorten_middle("/a.mp3", MAX_PATH_CHARS), "/a.mp3");
    }

    #[test]
    fn stages_read_as_words() {
        assert_eq!(checked("date_directory", None), "date directory");
        assert_eq!(checked("metadata_csv", Some(4)), "metadata CSV line 4");
        assert_eq!(checked("crm", None), "CRM file");
        assert_eq!(checked("file_type", None), "file type");
    }
}
