//! `audio.filename` templates come from account config and stems from
//! customers' file names: compiling any source and matching any stem must
//! end in a value or a reason, never a panic.
//!
//! Input: template source, a 0xFF byte (never in UTF-8), then the stem; each
//! half is decoded lossily, so every input is used. Without 0xFF the whole
//! input is both the source and the stem.
#![no_main]

use chrono_tz::Europe::Paris;
use depot::pipeline::template::Template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, stem) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let source = String::from_utf8_lossy(source);
    let stem = String::from_utf8_lossy(stem);
    let Ok(template) = Template::compile(&source) else {
        return;
    };
    assert_eq!(template.source(), source);
    let names = template.fields();
    assert!(!names.is_empty(), "a compiled template has a field");
    // Paris has both a DST gap and a fold, so localisation is exercised.
    let first = template.parse(&stem, Paris);
    if let Ok(parsed) = &first {
        for key in parsed.fields.keys() {
            assert!(names.contains(&key.as_str()), "unknown field {key:?}");
        }
    }
    assert_eq!(
        first,
        template.parse(&stem, Paris),
        "parse is deterministic"
    );
});
