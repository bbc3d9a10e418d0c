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
mod tests;
