//! CRM loader (being written; interface only).
pub use crate::config::CsvDialect;
use std::collections::{BTreeMap, HashMap};

pub struct CrmTable {
    pub key: String,
    pub columns: Vec<String>,
    pub rows: HashMap<String, Vec<String>>,
    pub row_count: usize,
    pub duplicate_keys: usize,
}
impl CrmTable {
    pub fn lookup(&self, key_value: &str) -> Option<BTreeMap<String, String>> {
        let r = self.rows.get(key_value)?;
        Some(
            self.columns
                .iter()
                .cloned()
                .zip(r.iter().cloned())
                .collect(),
        )
    }
}
pub fn load(_bytes: &[u8], _dialect: &CsvDialect, _key: &str) -> Result<CrmTable, String> {
    Err("CRM files are not supported yet".into())
}
