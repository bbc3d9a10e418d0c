//! The strftime subset depot accepts, in one place: fixed-width numbers
//! (`%Y` 4 digits, `%y` 2 digits read as 1970–2069, `%m` `%d` `%H` `%M` `%S`
//! 2 digits, `%j` 3 digits), `%%` and literal characters other than '/'.
//!
//! A format is compiled once into a [`Format`]; which specifiers are allowed
//! and which combinations make a complete date depend on the use (a
//! file-name datetime or a date directory, see [`Use`]). Because every
//! specifier has a fixed width, a compiled format spans a known number of
//! bytes and parsing is exact: the text must have that width, literals must
//! match byte for byte and numbers must be all digits, so the accepted texts
//! are exactly those formatting a date would write (years 0000–9999).
//! Parsing never panics on any input.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One specifier of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Spec {
    Year,
    Year2,
    Month,
    Day,
    DayOfYear,
    Hour,
    Minute,
    Second,
}

impl Spec {
    /// Every specifier, in the order operators read them in messages.
    #[cfg(test)]
    pub(crate) const ALL: [Spec; 8] = [
        Spec::Year,
        Spec::Year2,
        Spec::Month,
        Spec::Day,
        Spec::DayOfYear,
        Spec::Hour,
        Spec::Minute,
        Spec::Second,
    ];

    fn from_char(c: char) -> Option<Spec> {
        Some(match c {
            'Y' => Spec::Year,
            'y' => Spec::Year2,
            'm' => Spec::Month,
            'd' => Spec::Day,
            'j' => Spec::DayOfYear,
            'H' => Spec::Hour,
            'M' => Spec::Minute,
            'S' => Spec::Second,
            _ => return None,
        })
    }

    /// The letter after '%'.
    pub(crate) fn letter(self) -> char {
        match self {
            Spec::Year => 'Y',
            Spec::Year2 => 'y',
            Spec::Month => 'm',
            Spec::Day => 'd',
            Spec::DayOfYear => 'j',
            Spec::Hour => 'H',
            Spec::Minute => 'M',
            Spec::Second => 'S',
        }
    }

    fn width(self) -> usize {
        match self {
            Spec::Year => 4,
            Spec::DayOfYear => 3,
            _ => 2,
        }
    }
}

/// What a format is for; decides the allowed specifiers and what makes it
/// complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// A file-name datetime: one day (by month and day, or day of the year)
    /// and optionally a time, whose parts may be left out (midnight) but
    /// not skipped over (%H%S).
    Datetime,
    /// A date directory: `%Y` (or `%y`), `%m` and `%d`, nothing else.
    Date,
}

impl Use {
    fn allows(self, spec: Spec) -> bool {
        match self {
            Use::Datetime => true,
            Use::Date => matches!(spec, Spec::Year | Spec::Year2 | Spec::Month | Spec::Day),
        }
    }
}

/// Why a format was refused; each use words it for its operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatError {
    /// '/' anywhere in the format.
    Slash,
    /// '%' followed by a character outside the allowed set.
    Unknown(char),
    /// '%' at the very end.
    Lone,
    /// A specifier given twice.
    Twice(Spec),
    /// The specifiers do not name one moment unambiguously.
    Incomplete(Missing),
}

/// Which completeness rule a format broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    BothYears,
    NoYear,
    DayOfYearWithMonthDay,
    NoMonthDay,
    MinuteWithoutHour,
    SecondWithoutMinute,
}

impl Missing {
    /// The file-name template's wording.
    pub(crate) fn problem(self) -> &'static str {
        match self {
            Missing::BothYears => "uses both %Y and %y",
            Missing::NoYear => "needs a year (%Y or %y)",
            Missing::DayOfYearWithMonthDay => "cannot combine %j with %m or %d",
            Missing::NoMonthDay => "needs a month and a day (%m and %d) or a day of the year (%j)",
            Missing::MinuteWithoutHour => "has %M without %H",
            Missing::SecondWithoutMinute => "has %S without %M",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Literal(char),
    Number(Spec),
}

/// A compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    source: String,
    items: Vec<Item>,
    width: usize,
}

impl Format {
    pub(crate) fn compile(src: &str, usage: Use) -> Result<Format, FormatError> {
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        let mut chars = src.chars();
        while let Some(c) = chars.next() {
            if c == '/' {
                return Err(FormatError::Slash);
            }
            if c != '%' {
                items.push(Item::Literal(c));
                continue;
            }
            let spec = match chars.next() {
                Some('%') => {
                    items.push(Item::Literal('%'));
                    continue;
                }
                None => return Err(FormatError::Lone),
                Some(s) => Spec::from_char(s)
                    .filter(|&spec| usage.allows(spec))
                    .ok_or(FormatError::Unknown(s))?,
            };
            if !seen.insert(spec) {
                return Err(FormatError::Twice(spec));
            }
            items.push(Item::Number(spec));
        }
        check_complete(&seen, usage).map_err(FormatError::Incomplete)?;
        let width = items
            .iter()
            .map(|item| match item {
                Item::Literal(c) => c.len_utf8(),
                Item::Number(spec) => spec.width(),
            })
            .sum();
        Ok(Format {
            source: src.to_string(),
            items,
            width,
        })
    }

    /// The format as the operator wrote it.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// How many bytes every matching text has.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Reads `text` as a date and time; see [`Parse`] for the two ways it
    /// can fail.
    pub(crate) fn parse(&self, text: &str) -> Result<NaiveDateTime, Parse> {
        let numbers = self.read(text).ok_or(Parse::Shape)?;
        numbers.to_naive().ok_or(Parse::Invalid)
    }

    /// Reads `text` as a date (a date-directory name).
    pub(crate) fn parse_date(&self, text: &str) -> Option<NaiveDate> {
        self.parse(text).ok().map(|dt| dt.date())
    }

    /// Writes `dt` with this format; `None` when a number does not fit its
    /// width (a year outside 0–9999) so the text would not parse back.
    /// depot only reads names its clients chose; writing is what proves, in
    /// tests, that reading gives every value back.
    #[cfg(test)]
    pub(crate) fn format(&self, dt: NaiveDateTime) -> Option<String> {
        use chrono::{Datelike, Timelike};
        let mut out = String::with_capacity(self.width);
        for item in &self.items {
            match *item {
                Item::Literal(c) => out.push(c),
                Item::Number(spec) => {
                    let n = match spec {
                        Spec::Year => u32::try_from(dt.year()).ok().filter(|&y| y <= 9999)?,
                        Spec::Year2 => u32::try_from(dt.year().rem_euclid(100)).ok()?,
                        Spec::Month => dt.month(),
                        Spec::Day => dt.day(),
                        Spec::DayOfYear => dt.ordinal(),
                        Spec::Hour => dt.hour(),
                        Spec::Minute => dt.minute(),
                        Spec::Second => dt.second(),
                    };
                    out.push_str(&format!("{n:0width$}", width = spec.width()));
                }
            }
        }
        Some(out)
    }

    /// Reads `text` against the items; `None` when the shape differs.
    fn read(&self, text: &str) -> Option<Numbers> {
        if text.len() != self.width {
            return None;
        }
        let mut numbers = Numbers::default();
        let mut pos = 0;
        for item in &self.items {
            match *item {
                Item::Literal(c) => {
                    if !text.get(pos..)?.starts_with(c) {
                        return None;
                    }
                    pos += c.len_utf8();
                }
                Item::Number(spec) => {
                    let digits = text.get(pos..pos + spec.width())?;
                    if !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    numbers.set(spec, digits.parse().ok()?);
                    pos += spec.width();
                }
            }
        }
        Some(numbers)
    }
}

/// Why a text did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// Wrong width, a literal that differs, or a non-digit in a number.
    Shape,
    /// The right shape, but no such date or time (30 February, hour 25).
    Invalid,
}

fn check_complete(seen: &BTreeSet<Spec>, usage: Use) -> Result<(), Missing> {
    let has = |s| seen.contains(&s);
    match (has(Spec::Year), has(Spec::Year2)) {
        (true, true) => return Err(Missing::BothYears),
        (false, false) => return Err(Missing::NoYear),
        _ => {}
    }
    let month_day = has(Spec::Month) || has(Spec::Day);
    if has(Spec::DayOfYear) && month_day {
        return Err(Missing::DayOfYearWithMonthDay);
    }
    let month_and_day = has(Spec::Month) && has(Spec::Day);
    let day_of_year = has(Spec::DayOfYear) && usage == Use::Datetime;
    if !(day_of_year || month_and_day) {
        return Err(Missing::NoMonthDay);
    }
    if has(Spec::Minute) && !has(Spec::Hour) {
        return Err(Missing::MinuteWithoutHour);
    }
    if has(Spec::Second) && !has(Spec::Minute) {
        return Err(Missing::SecondWithoutMinute);
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Numbers {
    year: i32,
    month: u32,
    day: u32,
    day_of_year: Option<u32>,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Numbers {
    fn set(&mut self, spec: Spec, n: u32) {
        // At most 4 digits, so every value fits.
        match spec {
            Spec::Year => self.year = n as i32,
            Spec::Year2 if n < 70 => self.year = 2000 + n as i32,
            Spec::Year2 => self.year = 1900 + n as i32,
            Spec::Month => self.month = n,
            Spec::Day => self.day = n,
            Spec::DayOfYear => self.day_of_year = Some(n),
            Spec::Hour => self.hour = n,
            Spec::Minute => self.minute = n,
            Spec::Second => self.second = n,
        }
    }

    fn to_naive(&self) -> Option<NaiveDateTime> {
        let date = match self.day_of_year {
            Some(doy) => NaiveDate::from_yo_opt(self.year, doy)?,
            None => NaiveDate::from_ymd_opt(self.year, self.month, self.day)?,
        };
        let time = NaiveTime::from_hms_opt(self.hour, self.minute, self.second)?;
        Some(date.and_time(time))
    }
}

#[cfg(test)]
mod tests {
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
}
