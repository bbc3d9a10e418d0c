//! Round trips of every directive, refusals, and the shape/invalid split.

use super::*;
use chrono::Timelike;
use proptest::prelude::*;

/// Datetime formats that together use every specifier, with the parts
/// of a moment each one keeps.
const DATETIME_FORMATS: [&str; 6] = [
    "%Y%m%d_%H%M%S",
    "%Y-%m-%dT%H%M",
    "%Y%m%d%H",
    "%Y%j",
    "%y%j_%H%M%S",
    "100%%é%d.%m.%y",
];

const DATE_FORMATS: [&str; 4] = ["%Y%m%d", "%Y_%m_%d", "%d.%m.%y", "day-%Y%m%d-100%%"];

/// What `format` can say about `dt`: the parts it does not name are
/// midnight.
fn kept(format: &str, dt: NaiveDateTime) -> NaiveDateTime {
    let hour = if format.contains("%H") { dt.hour() } else { 0 };
    let minute = if format.contains("%M") {
        dt.minute()
    } else {
        0
    };
    let second = if format.contains("%S") {
        dt.second()
    } else {
        0
    };
    let time = NaiveTime::from_hms_opt(hour, minute, second).unwrap();
    dt.date().and_time(time)
}

fn moment(days: u64, seconds: u32, two_digit_year: bool) -> NaiveDateTime {
    let (start, span) = if two_digit_year {
        (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(), 36_524)
    } else {
        (NaiveDate::from_ymd_opt(0, 1, 1).unwrap(), 3_652_424)
    };
    let date = start + chrono::Days::new(days % span);
    let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds % 86_400, 0).unwrap();
    date.and_time(time)
}

#[test]
fn formats_cover_every_specifier() {
    for spec in Spec::ALL {
        let directive = format!("%{}", spec.letter());
        assert!(
            DATETIME_FORMATS.iter().any(|f| f.contains(&directive)),
            "{directive} has no round-trip case"
        );
        assert_eq!(Spec::from_char(spec.letter()), Some(spec));
    }
}

#[test]
fn widths_are_fixed() {
    let cases = [
        ("%Y%m%d_%H%M%S", 15),
        ("%y%j", 5),
        ("%Y%m%dé", 10),
        ("100%%%Y%m%d", 12),
    ];
    for (src, width) in cases {
        let f = Format::compile(src, Use::Datetime).unwrap();
        assert_eq!(f.width(), width, "format {src:?}");
        assert_eq!(f.source(), src);
    }
}

#[test]
fn refuses_formats() {
    use FormatError::*;
    let cases = [
        ("%Y/%m/%d", Use::Datetime, Slash),
        ("%Y%m%e", Use::Datetime, Unknown('e')),
        ("%Y%m%d%", Use::Datetime, Lone),
        ("%Y%m%d%Y", Use::Datetime, Twice(Spec::Year)),
        ("%Y%y%m%d", Use::Datetime, Incomplete(Missing::BothYears)),
        ("%m%d", Use::Datetime, Incomplete(Missing::NoYear)),
        (
            "%Y%j%d",
            Use::Datetime,
            Incomplete(Missing::DayOfYearWithMonthDay),
        ),
        ("%Y%m", Use::Datetime, Incomplete(Missing::NoMonthDay)),
        (
            "%Y%m%d%M",
            Use::Datetime,
            Incomplete(Missing::MinuteWithoutHour),
        ),
        (
            "%Y%m%d%H%S",
            Use::Datetime,
            Incomplete(Missing::SecondWithoutMinute),
        ),
        ("%Y%m%d%H", Use::Date, Unknown('H')),
        ("%Y%j", Use::Date, Unknown('j')),
        ("%Y%m", Use::Date, Incomplete(Missing::NoMonthDay)),
    ];
    for (src, usage, want) in cases {
        assert_eq!(Format::compile(src, usage), Err(want), "format {src:?}");
    }
}

#[test]
fn tells_shape_from_invalid() {
    let f = Format::compile("%Y_%m_%d", Use::Date).unwrap();
    let cases = [
        ("2026_02_11", Ok("2026-02-11T00:00:00")),
        ("2026_02_30", Err(Parse::Invalid)),
        ("2026_13_01", Err(Parse::Invalid)),
        ("2026_2_11", Err(Parse::Shape)),
        ("2026_02_11x", Err(Parse::Shape)),
        ("2026-02-11", Err(Parse::Shape)),
        ("+026_02_11", Err(Parse::Shape)),
        ("", Err(Parse::Shape)),
    ];
    for (text, want) in cases {
        let got = f
            .parse(text)
            .map(|dt| dt.format("%Y-%m-%dT%H:%M:%S").to_string());
        assert_eq!(got, want.map(str::to_string), "text {text:?}");
    }
}

#[test]
fn two_digit_years_pivot_at_70() {
    let f = Format::compile("%y%m%d", Use::Date).unwrap();
    assert_eq!(f.parse_date("690101"), NaiveDate::from_ymd_opt(2069, 1, 1));
    assert_eq!(f.parse_date("700101"), NaiveDate::from_ymd_opt(1970, 1, 1));
}

#[test]
fn years_beyond_four_digits_are_not_written() {
    let f = Format::compile("%Y%m%d", Use::Date).unwrap();
    let far = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
    assert_eq!(f.format(far.and_time(NaiveTime::MIN)), None);
}

proptest! {
    #[test]
    fn datetime_round_trips(days in any::<u64>(), seconds in any::<u32>()) {
        for src in DATETIME_FORMATS {
            let f = Format::compile(src, Use::Datetime).unwrap();
            let dt = moment(days, seconds, src.contains("%y"));
            let text = f.format(dt).unwrap();
            prop_assert_eq!(text.len(), f.width());
            prop_assert_eq!(f.parse(&text), Ok(kept(src, dt)), "format {} text {}", src, text);
        }
    }

    #[test]
    fn date_round_trips(days in any::<u64>()) {
        for src in DATE_FORMATS {
            let f = Format::compile(src, Use::Date).unwrap();
            let date = moment(days, 0, src.contains("%y")).date();
            let text = f.format(date.and_time(NaiveTime::MIN)).unwrap();
            prop_assert_eq!(f.parse_date(&text), Some(date), "format {} text {}", src, text);
        }
    }

    #[test]
    fn parsing_never_panics(src in "[%YymdjHMS_\\-é/]{0,12}|.{0,12}", text in "[0-9_\\-é]{0,16}|.{0,16}") {
        for usage in [Use::Datetime, Use::Date] {
            if let Ok(f) = Format::compile(&src, usage) {
                let _ = f.parse(&text);
            }
        }
    }
}
