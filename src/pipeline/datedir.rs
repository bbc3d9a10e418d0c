//! Date directories: audio sits in a directory named after its
//! deposit date, in one of the account's `audio.date_dirs` formats.
//!
//! Matching is strict: a name is accepted only if formatting the parsed date
//! with the same format gives the name back byte for byte, so "2026211",
//! "20260230" or "2026_02_11x" never become a date. The format subset is the
//! one file-name datetimes use (`template::strftime`), restricted to dates:
//! every number has a fixed width, so a name matches only when it has
//! exactly the format's shape and names a real day. Formats are checked once
//! at config time by [`validate_date_format`]; [`parse_date_dir`] still never
//! panics on a format that skipped that check.

use chrono::NaiveDate;

use super::template::strftime::{Format, FormatError, Missing, Use};

/// The date named by `name` under the first format that matches it exactly.
pub(crate) fn parse_date_dir(formats: &[String], name: &str) -> Option<NaiveDate> {
    formats.iter().find_map(|f| parse_strict(f, name))
}

/// A format that fails [`validate_date_format`] matches nothing. Compiling
/// a format of a few characters costs less than listing the directory that
/// asked, so the settings keep the formats as the operator wrote them.
fn parse_strict(format: &str, name: &str) -> Option<NaiveDate> {
    Format::compile(format, Use::Date).ok()?.parse_date(name)
}

/// Config-time check of one `audio.date_dirs` entry: numeric `%Y` (or `%y`),
/// `%m` and `%d` exactly once each, `%%`, and literal text without '/'.
pub(crate) fn validate_date_format(f: &str) -> Result<(), String> {
    Format::compile(f, Use::Date)
        .map(drop)
        .map_err(|e| match e {
            FormatError::Slash => {
                format!("date directory format '{f}': '/' cannot appear in a directory name")
            }
            FormatError::Twice(spec) => {
                format!(
                    "date directory format '{f}': %{} appears twice",
                    spec.letter()
                )
            }
            FormatError::Unknown(other) => format!(
            "date directory format '{f}': unknown specifier '%{other}' (supported: %Y %y %m %d %%)"
        ),
            FormatError::Lone => format!("date directory format '{f}' ends with a lone '%'"),
            FormatError::Incomplete(Missing::BothYears) => {
                format!("date directory format '{f}' uses both %Y and %y")
            }
            FormatError::Incomplete(_) => {
                format!("date directory format '{f}' needs %Y (or %y), %m and %d")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> Vec<String> {
        vec!["%Y%m%d".to_string(), "%Y_%m_%d".to_string()]
    }

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn parses_strictly() {
        let cases = [
            ("20260211", date(2026, 2, 11)),
            ("2026_02_11", date(2026, 2, 11)),
            ("20240229", date(2024, 2, 29)),
            ("2026211", None),
            ("20260230", None),
            ("2026_02_11x", None),
            ("x2026_02_11", None),
            ("2026_2_11", None),
            ("2026_02_1", None),
            ("+2026_02_11", None),
            (" 20260211", None),
            ("2026-02-11", None),
            ("020260211", None),
            ("", None),
            ("audio", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_date_dir(&defaults(), name), want, "name {name:?}");
        }
    }

    #[test]
    fn other_formats() {
        let cases = [
            ("%d-%m-%Y", "11-02-2026", date(2026, 2, 11)),
            ("%d-%m-%Y", "1-02-2026", None),
            ("%y%m%d", "260211", date(2026, 2, 11)),
            ("%y%m%d", "20260211", None),
            ("rec_%Y%m%d", "rec_20260211", date(2026, 2, 11)),
            ("rec_%Y%m%d", "REC_20260211", None),
            ("%Y%m%d%Q", "20260211", None),
        ];
        for (format, name, want) in cases {
            assert_eq!(
                parse_date_dir(&[format.to_string()], name),
                want,
                "{format:?} {name:?}"
            );
        }
    }

    #[test]
    fn no_formats_match_nothing() {
        assert_eq!(parse_date_dir(&[], "20260211"), None);
    }

    #[test]
    fn validates_formats() {
        let cases = [
            ("%Y%m%d", Ok(())),
            ("%Y_%m_%d", Ok(())),
            ("%d.%m.%y", Ok(())),
            ("day-%Y%m%d-100%%", Ok(())),
            ("%Y%m", Err("date directory format '%Y%m' needs %Y (or %y), %m and %d")),
            ("%m%d", Err("date directory format '%m%d' needs %Y (or %y), %m and %d")),
            ("%Y%y%m%d", Err("date directory format '%Y%y%m%d' uses both %Y and %y")),
            ("%Y%m%d%d", Err("date directory format '%Y%m%d%d': %d appears twice")),
            ("%Y%m%d%H", Err("date directory format '%Y%m%d%H': unknown specifier '%H' (supported: %Y %y %m %d %%)")),
            ("%Y%b%d", Err("date directory format '%Y%b%d': unknown specifier '%b' (supported: %Y %y %m %d %%)")),
            ("%Y%m%d%", Err("date directory format '%Y%m%d%' ends with a lone '%'")),
            ("%Y/%m/%d", Err("date directory format '%Y/%m/%d': '/' cannot appear in a directory name")),
        ];
        for (format, want) in cases {
            assert_eq!(
                validate_date_format(format),
                want.map_err(str::to_string),
                "format {format:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(format in "[%YymdHbQ_\\-]{0,12}|.{0,12}", name in "[0-9_\\-]{0,12}|.{0,12}") {
            let _ = parse_date_dir(std::slice::from_ref(&format), &name);
            let _ = validate_date_format(&format);
        }

        #[test]
        fn round_trips_every_valid_date(days in 0i64..80_000) {
            let d = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(days as u64);
            for f in defaults() {
                let name = d.format(&f).to_string();
                prop_assert_eq!(parse_date_dir(&defaults(), &name), Some(d));
            }
        }
    }
}
