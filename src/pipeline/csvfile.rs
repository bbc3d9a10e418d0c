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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read;

use csv::{Position, StringRecord};
use thiserror::Error;

pub use crate::config::{CsvDialect, Encoding};

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

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes a whole file. A UTF-8 BOM is stripped and then means UTF-8 whatever
/// the configured encoding (those three bytes never start a real Windows-1252
/// CSV, and re-reading UTF-8 as Windows-1252 would garble every accent).
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, CsvError> {
    decode_borrowed(bytes, encoding).map(Cow::into_owned)
}

fn decode_borrowed(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, CsvError> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return decode_utf8(rest, UTF8_BOM.len());
    }
    match encoding {
        Encoding::Utf8 => decode_utf8(bytes, 0),
        Encoding::Windows1252 => {
            let (text, had_errors) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            if had_errors {
                return Err(CsvError::Decode("not valid Windows-1252".to_owned()));
            }
            Ok(text)
        }
    }
}

/// `base` is how many bytes were stripped before `bytes`, so the offset in the
/// message is the one in the customer's file.
fn decode_utf8(bytes: &[u8], base: usize) -> Result<Cow<'_, str>, CsvError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(err) => {
            let at = err.valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            Err(CsvError::Decode(format!(
                "not valid UTF-8 at byte {} (line {line}); is the file Windows-1252?",
                base + at
            )))
        }
    }
}

/// How large one CSV file's records may be. Parsing is streaming, so these
/// bound its memory whatever the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_columns: usize,
    /// Bytes of one record, quoted line breaks included.
    pub max_record_bytes: usize,
}

impl Bounds {
    /// For a file accepted earlier (a CRM snapshot reloaded after a
    /// restart): whatever the limits say now, it is not judged again.
    pub const ACCEPTED: Bounds = Bounds {
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
pub enum Item {
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
pub fn stream<R: Read>(
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

fn too_many_columns(line: u64, found: usize, max: usize) -> CsvError {
    CsvError::Syntax {
        line,
        reason: format!("{found} columns; at most {max} are accepted"),
    }
}

/// Mapped keys of the header record; the filename key must be among them.
fn header_keys(
    record: &StringRecord,
    layout: &Layout,
    max_columns: usize,
) -> Result<Vec<String>, CsvError> {
    if record.len() > max_columns {
        return Err(CsvError::Header(format!(
            "the header has {} columns; at most {max_columns} are accepted",
            record.len()
        )));
    }
    let keys = column_keys(record, &layout.column_map).map_err(CsvError::Header)?;
    if keys.contains(&layout.filename_column) {
        return Ok(keys);
    }
    // Name the column as the customer wrote it, not as it is mapped.
    let wanted = layout
        .column_map
        .iter()
        .find(|(_, key)| **key == layout.filename_column)
        .map_or(layout.filename_column.as_str(), |(name, _)| name.as_str());
    let names: Vec<&str> = record.iter().map(str::trim).collect();
    Err(CsvError::Header(format!(
        "no '{wanted}' column in the header (columns: {})",
        names.join(", ")
    )))
}

/// One data record to a row. `keys` is fixed by the header, or (positional
/// layout) by the first record wide enough for `column_list`.
fn build_row(
    record: &StringRecord,
    line: u64,
    layout: &Layout,
    keys: &mut Option<Vec<String>>,
) -> Result<Row, String> {
    let found = record.len();
    let keys = match keys {
        Some(keys) => keys,
        None if found < layout.column_list.len() => {
            return Err(wrong_width(layout.column_list.len(), found));
        }
        None => keys.insert(positional_keys(&layout.column_list, found)),
    };
    if found != keys.len() {
        return Err(wrong_width(keys.len(), found));
    }
    let mut fields: BTreeMap<String, String> = keys
        .iter()
        .zip(record.iter())
        .map(|(key, value)| (key.clone(), value.trim().to_owned()))
        .collect();
    let file_name = fields
        .get(&layout.filename_column)
        .map(|value| base_name(value).to_owned())
        .unwrap_or_default();
    if file_name.is_empty() {
        return Err(format!(
            "no file name in column '{}'",
            layout.filename_column
        ));
    }
    fields.insert(layout.filename_column.clone(), file_name.clone());
    Ok(Row {
        line,
        file_name,
        fields,
    })
}

/// The file name a row that could not be read still holds, found by the
/// file name column's position (header or positional list).
fn named_file(record: &StringRecord, layout: &Layout, keys: Option<&[String]>) -> Option<String> {
    let column = &layout.filename_column;
    let index = match keys {
        Some(keys) => keys.iter().position(|k| k == column)?,
        None => layout.column_list.iter().position(|k| k == column)?,
    };
    let name = base_name(record.get(index)?.trim());
    (!name.is_empty()).then(|| name.to_owned())
}

fn wrong_width(expected: usize, found: usize) -> String {
    format!("expected {expected} columns, found {found}")
}

fn positional_keys(list: &[String], width: usize) -> Vec<String> {
    (0..width)
        .map(|i| list.get(i).cloned().unwrap_or_else(|| column_n(i)))
        .collect()
}

fn column_n(index: usize) -> String {
    format!("column_{}", index + 1)
}

/// The final path component, whichever separator the customer's system uses.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path).trim()
}

/// Keys for a header record: trimmed names through `map`, an empty name
/// becomes `column_N`. Two columns with the same key would make rows
/// ambiguous, so that is an error (its text is shown to the customer).
pub(crate) fn column_keys(
    record: &StringRecord,
    map: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut keys = Vec::with_capacity(record.len());
    for (i, name) in record.iter().map(str::trim).enumerate() {
        let key = match map.get(name) {
            Some(key) => key.clone(),
            None if name.is_empty() => column_n(i),
            None => name.to_owned(),
        };
        if !seen.insert(key.clone()) {
            return Err(format!(
                "column '{key}' appears twice in the header (again as column {})",
                i + 1
            ));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Non-blank records of a CSV read from any reader, one reused buffer,
/// with the line each record really starts on (csv's own position points
/// before skipped blank lines).
pub(crate) struct Records<R: Read> {
    reader: csv::Reader<Decoded<R>>,
    record: StringRecord,
    max_record_bytes: usize,
}

impl<R: Read> Records<R> {
    pub(crate) fn new(input: R, dialect: &CsvDialect, max_record_bytes: usize) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .double_quote(true)
            .from_reader(Decoded::new(input, dialect.encoding));
        Records {
            reader,
            record: StringRecord::new(),
            max_record_bytes,
        }
    }

    /// Reads the next non-blank record; returns its line, `None` at the end.
    pub(crate) fn next(&mut self) -> Result<Option<u64>, CsvError> {
        loop {
            let start = self.reader.position().clone();
            let limit = start
                .byte()
                .saturating_add(self.max_record_bytes.saturating_add(READ_AHEAD) as u64);
            self.reader.get_mut().begin_record(start.byte(), limit);
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {
                    let line = self.line(self.record.position());
                    let size = self.reader.position().byte() - start.byte();
                    if size > self.max_record_bytes as u64 {
                        return Err(self.too_large(line));
                    }
                    if self.record.iter().all(|f| f.trim().is_empty()) {
                        continue;
                    }
                    return Ok(Some(line));
                }
                Err(err) => {
                    let line = self.line(err.position().or(Some(&start)));
                    return Err(match err.kind() {
                        csv::ErrorKind::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref())
                        {
                            Some(ReadFailure::Decode(msg)) => CsvError::Decode(msg.clone()),
                            Some(ReadFailure::TooLarge) => self.too_large(self.line(Some(&start))),
                            None => CsvError::Read(io.to_string()),
                        },
                        csv::ErrorKind::Utf8 { err, .. } => CsvError::Syntax {
                            line,
                            reason: format!("field {} is not valid text", err.field() + 1),
                        },
                        _ => CsvError::Syntax {
                            line,
                            reason: err.to_string(),
                        },
                    });
                }
            }
        }
    }

    fn too_large(&self, line: u64) -> CsvError {
        CsvError::Syntax {
            line,
            reason: format!(
                "a row of more than {} bytes; is the delimiter or a quote wrong?",
                self.max_record_bytes
            ),
        }
    }

    /// The record read by the last successful `next`.
    pub(crate) fn record(&self) -> &StringRecord {
        &self.record
    }

    /// Line of the first byte at or after `pos` that is not a line break.
    fn line(&self, pos: Option<&Position>) -> u64 {
        let Some(pos) = pos else { return 0 };
        pos.line() + self.reader.get_ref().breaks_at(pos.byte())
    }
}

/// What the csv reader may have buffered beyond the record it is reading.
const READ_AHEAD: usize = 64 * 1024;
/// Raw bytes decoded at a time.
const CHUNK: usize = 64 * 1024;

/// Why [`Decoded`] stopped, carried inside the `io::Error` the csv reader
/// reports.
#[derive(Debug, Error)]
enum ReadFailure {
    #[error("{0}")]
    Decode(String),
    #[error("record too large")]
    TooLarge,
}

/// A file's bytes as UTF-8, decoded as they are read: a UTF-8 BOM is
/// stripped and then means UTF-8 whatever the configured encoding (those
/// three bytes never start a real Windows-1252 CSV, and re-reading UTF-8
/// as Windows-1252 would garble every accent); invalid UTF-8 stops the
/// read with a message naming the byte and line.
///
/// It keeps the decoded bytes from the start of the record being read
/// (so the line a record starts on can be found) and refuses to produce
/// more than a bounded number past that start: one huge record cannot
/// take the memory a whole file would.
struct Decoded<R> {
    inner: R,
    encoding: Encoding,
    started: bool,
    eof: bool,
    /// Raw bytes read but not yet decoded (an incomplete UTF-8 sequence).
    raw: Vec<u8>,
    /// Offset and line (0-based) in the file of `raw[0]`.
    raw_offset: u64,
    raw_lines: u64,
    cp1252: Option<encoding_rs::Decoder>,
    /// Decoded bytes not yet handed out, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Decoded bytes handed out so far.
    produced: u64,
    /// No byte at or past this offset is handed out.
    limit: u64,
    /// Handed-out bytes from offset `window_start` on.
    window: VecDeque<u8>,
    window_start: u64,
}

impl<R: Read> Decoded<R> {
    fn new(inner: R, encoding: Encoding) -> Self {
        Decoded {
            inner,
            encoding,
            started: false,
            eof: false,
            raw: Vec::new(),
            raw_offset: 0,
            raw_lines: 0,
            cp1252: None,
            out: Vec::new(),
            out_pos: 0,
            produced: 0,
            limit: u64::MAX,
            window: VecDeque::new(),
            window_start: 0,
        }
    }

    /// A new record starts at `offset`: earlier bytes are no longer needed,
    /// and nothing at or past `limit` may be produced for it.
    fn begin_record(&mut self, offset: u64, limit: u64) {
        let drop = offset
            .saturating_sub(self.window_start)
            .min(self.window.len() as u64);
        self.window.drain(..drop as usize);
        self.window_start += drop;
        self.limit = limit;
    }

    /// How many line breaks (`\n`, with any `\r`) follow `offset` at once.
    fn breaks_at(&self, offset: u64) -> u64 {
        let Some(from) = offset.checked_sub(self.window_start) else {
            return 0;
        };
        let from = usize::try_from(from).map_or(self.window.len(), |f| f.min(self.window.len()));
        self.window
            .range(from..)
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .filter(|&&b| b == b'\n')
            .count() as u64
    }

    fn fill_raw(&mut self, want: usize) -> std::io::Result<()> {
        let mut buf = [0u8; 8192];
        while !self.eof && self.raw.len() < want {
            match self.inner.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Decodes the next chunk into `out`; leaves it empty at the end.
    fn refill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        if !self.started {
            self.started = true;
            self.fill_raw(UTF8_BOM.len())?;
            if self.raw.starts_with(UTF8_BOM) {
                self.raw.drain(..UTF8_BOM.len());
                self.raw_offset = UTF8_BOM.len() as u64;
                self.encoding = Encoding::Utf8;
            } else if self.encoding == Encoding::Windows1252 {
                self.cp1252 = Some(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling());
            }
        }
        while self.out.is_empty() && !(self.eof && self.raw.is_empty()) {
            self.fill_raw(self.raw.len() + CHUNK)?;
            match &mut self.cp1252 {
                Some(decoder) => {
                    let room = decoder
                        .max_utf8_buffer_length(self.raw.len())
                        .unwrap_or(CHUNK * 3);
                    self.out.resize(room, 0);
                    let (_, read, written, _) =
                        decoder.decode_to_utf8(&self.raw, &mut self.out, self.eof);
                    self.out.truncate(written);
                    self.consume_raw(read);
                }
                None => self.decode_utf8()?,
            }
        }
        Ok(())
    }

    fn decode_utf8(&mut self) -> std::io::Result<()> {
        let valid = match std::str::from_utf8(&self.raw) {
            Ok(_) => self.raw.len(),
            // An incomplete sequence at the end of what was read so far.
            Err(e) if e.error_len().is_none() && !self.eof => e.valid_up_to(),
            Err(e) => {
                let at = e.valid_up_to();
                let line = self.raw_lines + 1 + newlines(&self.raw[..at]);
                return Err(std::io::Error::other(ReadFailure::Decode(format!(
                    "not valid UTF-8 at byte {} (line {line}); is the file Windows-1252?",
                    self.raw_offset + at as u64
                ))));
            }
        };
        self.out.extend_from_slice(&self.raw[..valid]);
        self.consume_raw(valid);
        Ok(())
    }

    fn consume_raw(&mut self, n: usize) {
        self.raw_lines += newlines(&self.raw[..n]);
        self.raw_offset += n as u64;
        self.raw.drain(..n);
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.produced >= self.limit {
            return Err(std::io::Error::other(ReadFailure::TooLarge));
        }
        if self.out_pos >= self.out.len() {
            self.refill()?;
        }
        let room = usize::try_from(self.limit - self.produced).unwrap_or(usize::MAX);
        let n = buf.len().min(self.out.len() - self.out_pos).min(room);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        self.produced += n as u64;
        self.window.extend(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The shared sample: a quoted `;`, doubled quotes and an embedded newline.
    const SAMPLE: &str = "Filename;Advisor;Comment\n\
        a.mp3;Jean;\"said \"\"hello\"\"; then left\"\n\
        b.mp3; Zoé ;\"two\nlines\"\n\
        c.mp3;Ana;plain\n";

    fn utf8() -> CsvDialect {
        CsvDialect {
            delimiter: b';',
            quote: b'"',
            encoding: Encoding::Utf8,
        }
    }

    fn cp1252() -> CsvDialect {
        CsvDialect {
            encoding: Encoding::Windows1252,
            ..utf8()
        }
    }

    fn with_header(skip_rows: usize) -> Layout {
        Layout {
            skip_rows,
            header: true,
            column_map: [("Filename", "filename"), ("Advisor", "advisor_firstname")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            column_list: Vec::new(),
            filename_column: "filename".to_owned(),
        }
    }

    fn positional() -> Layout {
        Layout {
            skip_rows: 0,
            header: false,
            column_map: BTreeMap::new(),
            column_list: vec!["filename".to_owned(), "advisor_firstname".to_owned()],
            filename_column: "filename".to_owned(),
        }
    }

    fn row(line: u64, pairs: &[(&str, &str)]) -> Row {
        let fields: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Row {
            line,
            file_name: fields["filename"].clone(),
            fields,
        }
    }

    fn sample_row(line: u64, file: &str, advisor: &str, comment: &str) -> Row {
        row(
            line,
            &[
                ("filename", file),
                ("advisor_firstname", advisor),
                ("Comment", comment),
            ],
        )
    }

    fn sample_rows(first_line: u64) -> Vec<Row> {
        vec![
            sample_row(first_line, "a.mp3", "Jean", "said \"hello\"; then left"),
            sample_row(first_line + 1, "b.mp3", "Zoé", "two\nlines"),
            sample_row(first_line + 3, "c.mp3", "Ana", "plain"),
        ]
    }

    /// The file names the broken rows still name, in order.
    fn named(mut p: Parsed, names: &[Option<&str>]) -> Parsed {
        for (e, n) in p.errors.iter_mut().zip(names) {
            e.file_name = n.map(str::to_owned);
        }
        p
    }

    fn ok(rows: Vec<Row>, errors: &[(u64, &str)]) -> Result<Parsed, CsvError> {
        let errors = errors
            .iter()
            .map(|(line, reason)| RowError {
                line: *line,
                reason: reason.to_string(),
                file_name: None,
            })
            .collect();
        Ok(Parsed { rows, errors })
    }

    /// Windows-1252 bytes for the few non-ASCII characters the tests use.
    fn to_cp1252(text: &str) -> Vec<u8> {
        text.chars()
            .map(|c| match c {
                'é' => 0xE9,
                'ç' => 0xE7,
                'û' => 0xFB,
                '€' => 0x80,
                c if c.is_ascii() => c as u8,
                c => panic!("no Windows-1252 byte for {c} in this test"),
            })
            .collect()
    }

    #[test]
    fn parse_cases() {
        let crlf_1252 = "Filename;Advisor;Comment\r\n\
            a.mp3;François;\"coût 12€; payé\"\r\n\
            b.mp3;Zoé;\"two\r\nlines\"\r\n";
        // (name, file, dialect, layout, expected)
        type Case = (
            &'static str,
            Vec<u8>,
            CsvDialect,
            Layout,
            Result<Parsed, CsvError>,
        );
        let cases: Vec<Case> = vec![
            (
                "semicolon, quoted ; and newline, doubled quotes",
                SAMPLE.into(),
                utf8(),
                with_header(1),
                ok(sample_rows(2), &[]),
            ),
            (
                "windows-1252 with CRLF",
                to_cp1252(crlf_1252),
                cp1252(),
                with_header(1),
                ok(
                    vec![
                        sample_row(2, "a.mp3", "François", "coût 12€; payé"),
                        sample_row(3, "b.mp3", "Zoé", "two\r\nlines"),
                    ],
                    &[],
                ),
            ),
            (
                "UTF-8 BOM",
                [UTF8_BOM, SAMPLE.as_bytes()].concat(),
                utf8(),
                with_header(1),
                ok(sample_rows(2), &[]),
            ),
            (
                "UTF-8 BOM wins over a windows-1252 setting",
                [UTF8_BOM, SAMPLE.as_bytes()].concat(),
                cp1252(),
                with_header(1),
                ok(sample_rows(2), &[]),
            ),
            (
                "title row, then the header",
                format!("Export 11/02/2026;;\n{SAMPLE}").into(),
                utf8(),
                with_header(2),
                ok(sample_rows(3), &[]),
            ),
            (
                "short row is an error, the others are kept",
                "Filename;Advisor;Comment\n\"x\ny\";Jean;c\nb.mp3;Ana\nc.mp3;Ana;ok\n".into(),
                utf8(),
                with_header(1),
                ok(
                    vec![
                        sample_row(2, "x\ny", "Jean", "c"),
                        sample_row(5, "c.mp3", "Ana", "ok"),
                    ],
                    &[(4, "expected 3 columns, found 2")],
                )
                .map(|p| named(p, &[Some("b.mp3")])),
            ),
            (
                "positional columns, extra ones named column_N, directories stripped",
                "rec/2026/a.mp3;Jean;x;y\nC:\\rec\\b.wav;Ana;;\n;Nobody;x;y\nc.mp3;Ana;x\n".into(),
                utf8(),
                positional(),
                ok(
                    vec![
                        row(
                            1,
                            &[
                                ("filename", "a.mp3"),
                                ("advisor_firstname", "Jean"),
                                ("column_3", "x"),
                                ("column_4", "y"),
                            ],
                        ),
                        row(
                            2,
                            &[
                                ("filename", "b.wav"),
                                ("advisor_firstname", "Ana"),
                                ("column_3", ""),
                                ("column_4", ""),
                            ],
                        ),
                    ],
                    &[
                        (3, "no file name in column 'filename'"),
                        (4, "expected 4 columns, found 3"),
                    ],
                )
                .map(|p| named(p, &[None, Some("c.mp3")])),
            ),
            (
                "positional row narrower than the list",
                "a.mp3\n".into(),
                utf8(),
                positional(),
                ok(vec![], &[(1, "expected 2 columns, found 1")])
                    .map(|p| named(p, &[Some("a.mp3")])),
            ),
            (
                "duplicate file name: the last row wins, at its position",
                "Filename;Advisor;Comment\na.mp3;Jean;1\nb.mp3;Ana;2\ndir/a.mp3;Luc;3\n".into(),
                utf8(),
                with_header(1),
                ok(
                    vec![
                        sample_row(3, "b.mp3", "Ana", "2"),
                        sample_row(4, "a.mp3", "Luc", "3"),
                    ],
                    &[],
                ),
            ),
            (
                "blank lines in the middle and at the end",
                "Filename;Advisor;Comment\n\na.mp3;Jean;1\r\n\r\n  \n;;\nb.mp3;Ana;2\n\n\n \n"
                    .into(),
                utf8(),
                with_header(1),
                ok(
                    vec![
                        sample_row(3, "a.mp3", "Jean", "1"),
                        sample_row(7, "b.mp3", "Ana", "2"),
                    ],
                    &[],
                ),
            ),
            (
                "invalid UTF-8",
                b"Filename;Advisor\na.mp3;Fran\xE7ois\n".to_vec(),
                utf8(),
                with_header(1),
                Err(CsvError::Decode(
                    "not valid UTF-8 at byte 27 (line 2); is the file Windows-1252?".into(),
                )),
            ),
            (
                "header without the file name column",
                "File;Advisor\na.mp3;Jean\n".into(),
                utf8(),
                with_header(1),
                Err(CsvError::Header(
                    "no 'Filename' column in the header (columns: File, Advisor)".into(),
                )),
            ),
            (
                "header naming one key twice",
                "Filename;filename\na.mp3;b.mp3\n".into(),
                utf8(),
                with_header(1),
                Err(CsvError::Header(
                    "column 'filename' appears twice in the header (again as column 2)".into(),
                )),
            ),
            (
                "empty file with a header expected",
                "\n\n".into(),
                utf8(),
                with_header(1),
                Err(CsvError::Header(
                    "no header row: it should be row 1, but the file has only 0 rows".into(),
                )),
            ),
            (
                "header only",
                "Filename;Advisor\r\n".into(),
                utf8(),
                with_header(1),
                ok(vec![], &[]),
            ),
        ];
        for (name, bytes, dialect, layout, want) in cases {
            assert_eq!(parse(&bytes, &dialect, &layout), want, "case: {name}");
        }
    }

    #[test]
    fn decode_cases() {
        let cases: Vec<(&[u8], Encoding, Result<&str, CsvError>)> = vec![
            (b"abc", Encoding::Utf8, Ok("abc")),
            (b"\xEF\xBB\xBFabc", Encoding::Utf8, Ok("abc")),
            (
                b"\xEF\xBB\xBFcaf\xC3\xA9",
                Encoding::Windows1252,
                Ok("café"),
            ),
            (b"caf\xE9 \x80", Encoding::Windows1252, Ok("café €")),
            (
                b"\xEF\xBB\xBFa\nb\xFF",
                Encoding::Utf8,
                Err(CsvError::Decode(
                    "not valid UTF-8 at byte 6 (line 2); is the file Windows-1252?".into(),
                )),
            ),
        ];
        for (bytes, encoding, want) in cases {
            assert_eq!(
                decode(bytes, encoding).as_deref(),
                want.as_ref().map(|s| *s),
                "input: {bytes:?}"
            );
        }
    }

    /// Hands out at most one byte per read: every boundary a record, a
    /// line break or a UTF-8 sequence can straddle.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    fn streamed<R: Read>(
        input: R,
        dialect: &CsvDialect,
        layout: &Layout,
        bounds: Bounds,
    ) -> Result<Vec<Item>, CsvError> {
        let mut items = Vec::new();
        let mut each = |item| {
            items.push(item);
            Ok(())
        };
        stream(input, dialect, layout, bounds, &mut each).unwrap()?;
        Ok(items)
    }

    #[test]
    fn a_large_file_streams_with_the_right_lines() {
        // Well past the decoder's 64 KiB chunks: accents, CRLF, quoted
        // newlines and blank lines everywhere.
        let mut csv = String::from("Filename;Advisor;Comment\r\n");
        let mut want = Vec::new();
        let mut line = 2;
        for i in 0..5000 {
            if i % 7 == 0 {
                csv.push_str("\r\n \n");
                line += 2;
            }
            let comment = if i % 3 == 0 {
                "\"two\nlines\""
            } else {
                "éàü€"
            };
            csv.push_str(&format!("f{i}.mp3;Zoé{i};{comment}\r\n"));
            want.push((line, format!("f{i}.mp3")));
            line += if i % 3 == 0 { 2 } else { 1 };
        }
        let got: Vec<(u64, String)> = parse(csv.as_bytes(), &utf8(), &with_header(1))
            .unwrap()
            .rows
            .into_iter()
            .map(|r| (r.line, r.file_name))
            .collect();
        assert_eq!(got, want);
        let trickled = streamed(
            Trickle(csv.as_bytes()),
            &utf8(),
            &with_header(1),
            Bounds::default(),
        );
        let lines: Vec<u64> = trickled
            .unwrap()
            .into_iter()
            .map(|item| match item {
                Item::Row(r) => r.line,
                Item::Error(e) => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(lines, want.iter().map(|w| w.0).collect::<Vec<_>>());
    }

    #[test]
    fn bounds_refuse_wide_and_huge_records() {
        let bounds = Bounds {
            max_columns: 3,
            max_record_bytes: 100,
        };
        let cases: Vec<(&str, String, Layout, CsvError)> = vec![
            (
                "wide header",
                "Filename;Advisor;a;b\nx.mp3;A;1;2\n".into(),
                with_header(1),
                CsvError::Header("the header has 4 columns; at most 3 are accepted".into()),
            ),
            (
                "wide first positional row",
                "x.mp3;A;1;2\n".into(),
                positional(),
                CsvError::Syntax {
                    line: 1,
                    reason: "4 columns; at most 3 are accepted".into(),
                },
            ),
            (
                "one huge quoted cell",
                format!("Filename;Advisor\n\nx.mp3;\"{}\"\n", "y".repeat(5000)),
                with_header(1),
                CsvError::Syntax {
                    line: 3,
                    reason: "a row of more than 100 bytes; is the delimiter or a quote wrong?"
                        .into(),
                },
            ),
            (
                "a record just over the bound",
                format!("Filename;Advisor\nx.mp3;{}\n", "y".repeat(95)),
                with_header(1),
                CsvError::Syntax {
                    line: 2,
                    reason: "a row of more than 100 bytes; is the delimiter or a quote wrong?"
                        .into(),
                },
            ),
        ];
        for (name, csv, layout, want) in cases {
            let got = streamed(csv.as_bytes(), &utf8(), &layout, bounds);
            assert_eq!(got, Err(want), "case: {name}");
        }
        // Within the bounds: read.
        let fits = format!("Filename;Advisor\nx.mp3;{}\n", "y".repeat(90));
        assert!(streamed(fits.as_bytes(), &utf8(), &with_header(1), bounds).is_ok());
    }

    #[test]
    fn a_utf8_error_far_into_the_file_names_its_byte_and_line() {
        let mut csv = b"Filename;Advisor\n".to_vec();
        for i in 0..20_000 {
            csv.extend_from_slice(format!("f{i}.mp3;Zoé\n").as_bytes());
        }
        let at = csv.len() + 6;
        csv.extend_from_slice(b"x.mp3;Fran\xE7ois\n");
        let want = CsvError::Decode(format!(
            "not valid UTF-8 at byte {} (line 20002); is the file Windows-1252?",
            at + 4
        ));
        assert_eq!(parse(&csv, &utf8(), &with_header(1)), Err(want.clone()));
        let trickled = streamed(Trickle(&csv), &utf8(), &with_header(1), Bounds::default());
        assert_eq!(trickled.map(|i| i.len()), Err(want));
    }

    proptest! {
        #[test]
        fn one_byte_reads_give_what_whole_reads_give(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b';'), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0xC3), Just(0xA9)],
                0..300,
            ),
            header in any::<bool>(),
            latin in any::<bool>(),
        ) {
            let dialect = CsvDialect {
                encoding: if latin { Encoding::Windows1252 } else { Encoding::Utf8 },
                ..utf8()
            };
            let layout = Layout { header, ..with_header(0) };
            let whole = streamed(bytes.as_slice(), &dialect, &layout, Bounds::default());
            let trickled = streamed(Trickle(&bytes), &dialect, &layout, Bounds::default());
            prop_assert_eq!(whole, trickled);
        }

        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            delimiter in any::<u8>(),
            quote in any::<u8>(),
            header in any::<bool>(),
            skip_rows in 0usize..3,
            latin in any::<bool>(),
        ) {
            let dialect = CsvDialect {
                delimiter,
                quote,
                encoding: if latin { Encoding::Windows1252 } else { Encoding::Utf8 },
            };
            let layout = Layout { skip_rows, header, ..with_header(0) };
            let _ = parse(&bytes, &dialect, &layout);
            let _ = parse(&bytes, &dialect, &Layout { skip_rows, ..positional() });
        }
    }
}
