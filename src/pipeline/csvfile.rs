//! Metadata CSV reader (being written; interface only).
pub use crate::config::{CsvDialect, Encoding};
use std::collections::BTreeMap;

pub struct Layout {
    pub skip_rows: usize,
    pub header: bool,
    pub column_map: BTreeMap<String, String>,
    pub column_list: Vec<String>,
    pub filename_column: String,
}
pub struct Row {
    pub line: u64,
    pub file_name: String,
    pub fields: BTreeMap<String, String>,
}
pub struct RowError {
    pub line: u64,
    pub reason: String,
}
pub struct Parsed {
    pub rows: Vec<Row>,
    pub errors: Vec<RowError>,
}
pub enum CsvError {
    Decode(String),
    Header(String),
    Syntax { line: u64, reason: String },
}
pub fn parse(_bytes: &[u8], _dialect: &CsvDialect, _layout: &Layout) -> Result<Parsed, CsvError> {
    Err(CsvError::Header(
        "metadata CSVs are not supported yet".into(),
    ))
}
