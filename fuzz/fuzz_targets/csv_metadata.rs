//! Metadata CSVs are uploaded by customers and their dialect is account
//! config: any bytes through any dialect must give rows, row errors or one
//! file error, never a panic, and a success keeps `csvfile`'s invariants.
//!
//! Input: delimiter byte, quote byte, layout flags byte, then the file. The
//! dialect bytes are masked to ASCII, as config only accepts one ASCII
//! character. Flags: bit 0 Windows-1252, bit 1 header, bits 2-3 skip_rows,
//! bit 4 the file name column is mapped from "Filename", bit 5 a three-key
//! column list instead of one.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use depot::pipeline::csvfile::{parse, CsvDialect, Encoding, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [delimiter, quote, flags, file @ ..] = data else {
        return;
    };
    let dialect = CsvDialect {
        delimiter: delimiter & 0x7F,
        quote: quote & 0x7F,
        encoding: if flags & 1 != 0 {
            Encoding::Windows1252
        } else {
            Encoding::Utf8
        },
    };
    let mapped = flags & 0x10 != 0;
    let filename_column = if mapped { "filename" } else { "Filename" };
    let column_list: &[&str] = if flags & 0x20 != 0 {
        &[filename_column, "advisor_firstname", "channel"]
    } else {
        &[filename_column]
    };
    let mut column_map = BTreeMap::new();
    if mapped {
        column_map.insert("Filename".to_owned(), "filename".to_owned());
    }
    column_map.insert("Advisor".to_owned(), "advisor_firstname".to_owned());
    let layout = Layout {
        skip_rows: usize::from((flags >> 2) & 3),
        header: flags & 2 != 0,
        column_map,
        column_list: column_list.iter().map(|s| s.to_string()).collect(),
        filename_column: filename_column.to_owned(),
    };

    let Ok(parsed) = parse(file, &dialect, &layout) else {
        return;
    };
    let mut names = BTreeSet::new();
    let mut last_line = 0;
    for row in &parsed.rows {
        assert!(!row.file_name.is_empty());
        assert!(!row.file_name.contains(['/', '\\']), "{:?}", row.file_name);
        assert_eq!(row.fields.get(filename_column), Some(&row.file_name));
        assert!(
            names.insert(&row.file_name),
            "duplicate {:?}",
            row.file_name
        );
        assert!(row.line >= 1 && row.line >= last_line, "line {}", row.line);
        last_line = row.line;
    }
    for error in &parsed.errors {
        assert!(error.line >= 1, "error line {}", error.line);
    }
});
