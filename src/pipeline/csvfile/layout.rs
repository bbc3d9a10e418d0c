//! Where the data sits in a metadata CSV: header keys, positional keys,
//! and turning one record into a row or the reason it is left out.

use std::collections::{BTreeMap, BTreeSet};

use csv::StringRecord;

use super::{CsvError, Layout, Row};

pub(super) fn too_many_columns(line: u64, found: usize, max: usize) -> CsvError {
    CsvError::Syntax {
        line,
        reason: format!("{found} columns; at most {max} are accepted"),
    }
}

/// Mapped keys of the header record; the filename key must be among them.
pub(super) fn header_keys(
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
pub(super) fn build_row(
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
pub(super) fn named_file(
    record: &StringRecord,
    layout: &Layout,
    keys: Option<&[String]>,
) -> Option<String> {
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
