//! Metadata CSV files: the bytes of one uploaded CSV in, one
//! metadata row per audio file name out, plus the rows that must be reported
//! back to the customer as rejections.
//!
//! Streaming: [`stream`] reads any reader one record at a time, decoding as
//! it goes, and hands each row to the caller, so memory is bounded by
//! [`Bounds`] (columns, bytes per record), not by the file; [`parse`] does
//! the same over bytes in memory and collects. Nothing logged; the caller
//! stores the rows and records the errors. Invariants of a successful [`parse`]: every [`Row`] has a non-empty
//! `file_name` that is a bare name (no directory part) and is also stored under
//! `filename_column` in its `fields`; file names in `rows` are unique (the last
//! row for a name wins, kept at its own position); every line number is the
//! 1-based line on which the record starts in the file, even after quoted
//! newlines and blank lines. A whole-file problem (encoding, header) is a
//! [`CsvError`]; a bad row is a [`RowError`] and never stops the other rows.
//! Blank records (every field empty after trimming) are skipped everywhere,
//! and do not count towards `skip_rows`. The decoding and record-reading
//! helpers are shared with the CRM loader (`super::crm`).
//!
//! Split by what it holds: `decode` (bytes to UTF-8, streaming or whole),
//! `records` (non-blank records and their lines), `layout` (header and
//! positional keys, record to row); this file holds the types and the two
//! entry points.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use thiserror::Error;

pub use crate::config::{CsvDialect, Encoding};

mod decode;
mod layout;
mod records;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use decode::decode;
pub(crate) use layout::column_keys;
use layout::{build_row, header_keys, named_file, too_many_columns};
pub(crate) use records::Records;

/// Where the data sits in a metadata CSV and what its columns are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Records to skip at the top (CSV records, not lines; blank ones don't count).
    pub skip_rows: usize,
    /// The last skipped record holds the column names (`skip_rows` 0 counts as 1).
    pub header: bool,
    /// Header name -> metadata key (`header = true`); unmapped columns keep their name.
    pub column_map: BTreeMap<String, String>,
    /// Positional keys (`header = false`); further columns are named `column_N` (1-based).
    pub column_list: Vec<String>,
    /// The (mapped) key naming the audio file.
    pub filename_column: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Final path component of the file name column.
    pub file_name: String,
    /// Every key of the row, the file name key included.
    pub fields: BTreeMap<String, String>,
}

/// A row that was left out; `reason` is shown to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
    /// The audio file the broken row still names, when its file name cell
    /// can be found: that audio is rejected at once with this reason
    /// instead of waiting for a row that is not coming.
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rows: Vec<Row>,
    pub errors: Vec<RowError>,
}

/// Why a whole file was rejected; the message is shown to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CsvError {
    #[error("{0}")]
    Decode(String),
    #[error("{0}")]
    Header(String),
    #[error("line {line}: {reason}")]
    Syntax { line: u64, reason: String },
    /// The file could not be read (an I/O error, not the customer's doing).
    #[error("cannot read the file: {0}")]
    Read(String),
}

/// How large one CSV file's records may be. Parsing is streaming, so these
/// bound its memory whatever the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub max_columns: usize,
    /// Bytes of one record, quoted line breaks included.
    pub max_record_bytes: usize,
}

impl Bounds {
    /// For a file accepted earlier (a CRM snapshot reloaded after a
    /// restart): whatever the limits say now, it is not judged again.
    pub(crate) const ACCEPTED: Bounds = Bounds {
        max_columns: usize::MAX,
        max_record_bytes: u32::MAX as usize,
    };
}

impl Default for Bounds {
    fn default() -> Self {
        let limits = crate::config::PipelineLimits::default();
        Bounds {
            max_columns: limits.csv_max_columns,
            max_record_bytes: limits.csv_max_record_bytes,
        }
    }
}

/// One data record of a metadata CSV, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Row(Row),
    Error(RowError),
}

/// Parses a whole metadata CSV held in memory; see the module comment for
/// what is guaranteed.
pub fn parse(bytes: &[u8], dialect: &CsvDialect, layout: &Layout) -> Result<Parsed, CsvError> {
    let mut rows: Vec<Option<Row>> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut each = |item| {
        match item {
            Item::Row(row) => {
                if let Some(earlier) = by_name.insert(row.file_name.clone(), rows.len()) {
                    rows[earlier] = None;
                }
                rows.push(Some(row));
            }
            Item::Error(e) => errors.push(e),
        }
        Ok(())
    };
    match stream(bytes, dialect, layout, Bounds::default(), &mut each) {
        Ok(parsed) => parsed?,
        Err(e) => return Err(CsvError::Read(format!("{e:#}"))),
    }
    Ok(Parsed {
        rows: rows.into_iter().flatten().collect(),
        errors,
    })
}

/// Streams a metadata CSV: `each` gets every data record, a row or a row
/// error, in file order, one at a time (duplicate file names included: the
/// caller keeps the last). Memory is bounded by `bounds`, not by the file.
/// The outer error is `each`'s own (it stops the parse); the inner one is
/// why the file as a whole is refused — records before it were already
/// passed to `each`, so a caller that must not act on a refused file makes
/// a first pass that only checks.
pub(crate) fn stream<R: Read>(
    input: R,
    dialect: &CsvDialect,
    layout: &Layout,
    bounds: Bounds,
    each: &mut dyn FnMut(Item) -> anyhow::Result<()>,
) -> anyhow::Result<Result<(), CsvError>> {
    let mut records = Records::new(input, dialect, bounds.max_record_bytes);
    let skip = if layout.header {
        layout.skip_rows.max(1)
    } else {
        layout.skip_rows
    };
    let mut keys = None;
    for skipped in 1..=skip {
        match records.next() {
            Err(e) => return Ok(Err(e)),
            Ok(Some(_)) => {}
            Ok(None) if layout.header => {
                return Ok(Err(CsvError::Header(format!(
                    "no header row: it should be row {skip}, but the file has only {} rows",
                    skipped - 1
                ))));
            }
            Ok(None) => return Ok(Ok(())),
        }
        if layout.header && skipped == skip {
            match header_keys(records.record(), layout, bounds.max_columns) {
                Ok(k) => keys = Some(k),
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    loop {
        let line = match records.next() {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e)),
        };
        let record = records.record();
        if keys.is_none() && record.len() > bounds.max_columns {
            return Ok(Err(too_many_columns(
                line,
                record.len(),
                bounds.max_columns,
            )));
        }
        match build_row(record, line, layout, &mut keys) {
            Ok(row) => each(Item::Row(row))?,
            Err(reason) => {
                let file_name = named_file(record, layout, keys.as_deref());
                each(Item::Error(RowError {
                    line,
                    reason,
                    file_name,
                }))?
            }
        }
    }
}
