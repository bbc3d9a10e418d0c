//! The contact-reason mapping file, read by its header: which columns
//! hold the id and the label, and which delimiter splits them.

use std::collections::HashMap;
use std::path::Path;

/// Delimiters tried, in order, when `contact_reasons.delimiter` is not set.
const REASON_DELIMITERS: [u8; 4] = [b',', b';', b'|', b'\t'];

/// Reads a contact-reason mapping CSV by its header: the first non-blank
/// row names the id and label columns (`columns`, compared without case or
/// surrounding spaces), in any position, with other columns ignored. The
/// delimiter is the one given, or the first of , ; | TAB that splits the
/// header into both names. UTF-8 with or without BOM.
pub(super) fn read_reason_file(
    path: &Path,
    columns: &[String; 2],
    delimiter: Option<u8>,
) -> Result<HashMap<String, String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read ({e})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
    parse_reasons(text.trim_start_matches('\u{feff}'), columns, delimiter)
}

pub(super) fn parse_reasons(
    text: &str,
    columns: &[String; 2],
    delimiter: Option<u8>,
) -> Result<HashMap<String, String>, String> {
    let [id_name, label_name] = columns;
    // Blank lines above the header are skipped; line numbers still count them.
    let skipped = text.lines().take_while(|l| l.trim().is_empty()).count();
    let header = text.lines().nth(skipped).unwrap_or("");
    let position = |d: u8, name: &str| {
        split_header(header, d)
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let tried: Vec<u8> = match delimiter {
        Some(d) => vec![d],
        None => REASON_DELIMITERS.to_vec(),
    };
    let found = tried
        .iter()
        .find_map(|&d| Some((d, position(d, id_name)?, position(d, label_name)?)));
    let Some((delimiter, id_col, label_col)) = found else {
        let shown: String = header.chars().take(80).collect();
        let how = match delimiter {
            Some(d) => format!("split by '{}'", shown_delimiter(d)),
            None => "split by any of , ; | TAB".to_string(),
        };
        return Err(format!(
            "the header row '{shown}' ({how}) does not name both columns '{id_name}' and '{label_name}'; \
             set contact_reasons.columns to the header's names (e.g. [\"reason_id\", \"reason_label\"]) \
             and contact_reasons.delimiter if needed"
        ));
    };
    let body = text.split_inclusive('\n').skip(skipped).collect::<String>();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut map = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("cannot be read as CSV ({e})"))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0) + skipped as u64;
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(id), Some(label)) = (rec.get(id_col), rec.get(label_col)) else {
            return Err(format!(
                "line {line}: expected the '{id_name}' and '{label_name}' columns separated by '{}'",
                shown_delimiter(delimiter)
            ));
        };
        if id.trim().is_empty() {
            return Err(format!("line {line}: the '{id_name}' column is empty"));
        }
        map.insert(id.trim().to_string(), label.trim().to_string());
    }
    Ok(map)
}

fn split_header(header: &str, delimiter: u8) -> Vec<String> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(header.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .unwrap_or_default()
}

fn shown_delimiter(d: u8) -> String {
    match d {
        b'\t' => "TAB".to_string(),
        d => (d as char).to_string(),
    }
}
