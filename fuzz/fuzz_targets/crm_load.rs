//! CRM files are uploaded by customers: any bytes through any dialect must
//! load or give one reason, never a panic, and a loaded table must answer
//! lookups consistently with its counts.
//!
//! Input: delimiter byte, quote byte, flags byte (bit 0 Windows-1252, bits
//! 1-2 pick the key column name), then the file. Dialect bytes are masked to
//! ASCII, as config only accepts one ASCII character.
#![no_main]

use std::collections::BTreeSet;

use depot::pipeline::crm::load;
use depot::pipeline::csvfile::{CsvDialect, Encoding};
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 4] = ["agent_id", "id", "a", "column_1"];

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
    let key = KEYS[usize::from((flags >> 1) & 3)];
    let Ok(table) = load(file, &dialect, key) else {
        return;
    };
    assert_eq!(table.key, key);
    assert!(!table.columns.iter().any(|c| c == key));
    assert!(table.duplicate_keys <= table.row_count);
    assert_eq!(table.len(), table.row_count - table.duplicate_keys);
    assert_eq!(table.lookup(""), None, "keys are never empty");
    // Every piece of the file is a candidate key: hits must be whole rows.
    let text = String::from_utf8_lossy(file);
    let pieces = text.split([char::from(dialect.delimiter), '\n', '\r']);
    for piece in pieces.take(1000) {
        if let Some(row) = table.lookup(piece) {
            assert_eq!(row.len(), table.columns.len());
            let columns: BTreeSet<&String> = table.columns.iter().collect();
            assert!(row.keys().eq(columns));
        }
    }
});
