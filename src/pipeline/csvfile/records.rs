//! Reading non-blank CSV records from any reader, one at a time, with the
//! line each one really starts on and a bound on a record's size.

use std::io::Read;

use csv::{Position, StringRecord};

use super::decode::{Decoded, ReadFailure};
use super::{CsvDialect, CsvError};

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
