//! Decoding a CSV file's bytes to UTF-8: whole files in memory, or as they
//! are read, in bounded windows, for the streaming reader.

#[cfg(test)]
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;

use thiserror::Error;

#[cfg(test)]
use super::CsvError;
use super::Encoding;

pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[cfg(test)]
/// Decodes a whole file. A UTF-8 BOM is stripped and then means UTF-8 whatever
/// the configured encoding (those three bytes never start a real Windows-1252
/// CSV, and re-reading UTF-8 as Windows-1252 would garble every accent).
pub(crate) fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, CsvError> {
    decode_borrowed(bytes, encoding).map(Cow::into_owned)
}

#[cfg(test)]
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

#[cfg(test)]
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

/// Raw bytes decoded at a time.
const CHUNK: usize = 64 * 1024;

/// Why [`Decoded`] stopped, carried inside the `io::Error` the csv reader
/// reports.
#[derive(Debug, Error)]
pub(super) enum ReadFailure {
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
pub(super) struct Decoded<R> {
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
    pub(super) fn new(inner: R, encoding: Encoding) -> Self {
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
    pub(super) fn begin_record(&mut self, offset: u64, limit: u64) {
        let drop = offset
            .saturating_sub(self.window_start)
            .min(self.window.len() as u64);
        self.window.drain(..drop as usize);
        self.window_start += drop;
        self.limit = limit;
    }

    /// How many line breaks (`\n`, with any `\r`) follow `offset` at once.
    pub(super) fn breaks_at(&self, offset: u64) -> u64 {
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
