//! Rendering lists of JSON records for people (aligned columns), or for
//! machines (`--json`: one JSON document; `--csv`: a header and rows).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Csv,
}

impl Format {
    pub fn from_flags(json: bool, csv: bool) -> Format {
        match (json, csv) {
            (true, _) => Format::Json,
            (_, true) => Format::Csv,
            _ => Format::Human,
        }
    }
}

/// A cell's text: strings bare, null empty, objects compact JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Looks up a dotted path (`advisor.email`) in a record.
fn field<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, k| v.get(k))
}

/// Prints `records` with the given (header, dotted path) columns.
pub fn print(records: &[Value], columns: &[(&str, &str)], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(records.to_vec()))?
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(columns.iter().map(|(h, _)| *h))?;
            for r in records {
                w.write_record(columns.iter().map(|(_, p)| cell(field(r, p))))?;
            }
            w.flush()?;
        }
        Format::Human => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| columns.iter().map(|(_, p)| cell(field(r, p))).collect())
                .collect();
            let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count()).min(60);
                }
            }
            let line = |cells: Vec<String>| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{:<w$}", c, w = *w))
                    .collect();
                println!("{}", padded.join("  ").trim_end());
            };
            line(columns.iter().map(|(h, _)| h.to_string()).collect());
            for row in rows {
                line(row);
            }
            if records.is_empty() {
                println!("(none)");
            }
        }
    }
    Ok(())
}
