//! File-name templates: an account's `audio.filename` is compiled
//! once into a [`Template`], which then turns a file stem into metadata fields
//! plus an optional timestamp, or into a rejection reason a customer can act on.
//!
//! Syntax: literal text and `{name}`, `{name:digits}` or `{name:FORMAT}` where
//! FORMAT contains `%`. Names are `[a-z0-9_]+` and unique. FORMAT is a subset
//! of strftime made only of fixed-width numbers — `%Y` (4 digits), `%y` (2,
//! 00–69 → 20xx, 70–99 → 19xx), `%m` `%d` `%H` `%M` `%S` (2), `%j` (3) — plus
//! literal characters and `%%`; anything else is refused at compile time, so a
//! datetime field always spans a known number of bytes.
//!
//! Invariants of a compiled template: at least one field; at most one datetime
//! field (its value goes to [`Parsed::datetime`], never to [`Parsed::fields`]);
//! the field named `datetime` has a format; two fields are only adjacent when
//! the first is the fixed-width datetime, so every plain field is bounded by
//! the literal that follows it — or, for the trailing run of fields sharing
//! one separator, by that separator. Matching never panics on any input.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
};
use chrono_tz::Tz;

/// Why a template source was refused; displayed to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is empty")]
    Empty,
    #[error("template has no {{field}}")]
    NoFields,
    #[error("unclosed '{{' at column {0}")]
    Unclosed(usize),
    #[error("unmatched '}}' at column {0} (braces are not allowed in literal text)")]
    Unmatched(usize),
    #[error("empty field name at column {0}")]
    EmptyName(usize),
    #[error("invalid field name '{0}': use lowercase letters, digits and '_'")]
    BadName(String),
    #[error("field '{0}' appears twice")]
    Duplicate(String),
    #[error("'/' cannot appear in a file name template")]
    Slash,
    #[error("field '{field}': unknown type '{kind}' (expected 'digits' or a strftime format containing '%')")]
    UnknownType { field: String, kind: String },
    #[error("field '{field}': unknown strftime specifier '{spec}' (supported: %Y %y %m %d %j %H %M %S %%)")]
    UnknownSpecifier { field: String, spec: String },
    #[error("field '{field}': format '{format}' {problem}")]
    BadFormat {
        field: String,
        format: String,
        problem: String,
    },
    #[error("field 'datetime' needs a strftime format, e.g. {{datetime:%Y%m%d_%H%M%S}}")]
    DatetimeWithoutFormat,
    #[error("only one field may have a strftime format ('{0}' and '{1}')")]
    TwoDatetimes(String, String),
    #[error("fields '{0}' and '{1}' need literal text between them (only a datetime field has a fixed width)")]
    Adjacent(String, String),
}

/// What a stem yields: text fields by name, and the datetime field (if the
/// template has one) localised in the account's timezone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub fields: BTreeMap<String, String>,
    pub datetime: Option<DateTime<FixedOffset>>,
    /// Set when the wall-clock time fell in a DST gap or fold, with the
    /// naive local time as written in the name.
    pub clock: Option<Clock>,
}

/// A DST change the datetime met, and the naive local time as written.
pub type Clock = (ClockChange, NaiveDateTime);

/// How a wall-clock time related to a daylight-saving change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockChange {
    /// The time does not exist (spring forward); it was read with the
    /// offset in force before the change, so 02:30 becomes 03:30 summer time.
    Gap,
    /// The time exists twice (fall back); the first occurrence was taken.
    Ambiguous,
}

impl ClockChange {
    /// The flag a conversation carries.
    pub fn flag(self) -> &'static str {
        match self {
            ClockChange::Gap => "dst_gap",
            ClockChange::Ambiguous => "dst_ambiguous",
        }
    }
}

/// A compiled `audio.filename` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    /// Parts matched left to right.
    head: Vec<Part>,
    /// The trailing fields sharing one separator, matched by splitting.
    run: Option<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Text,
    Digits,
    Datetime(DateFormat),
}

/// The trailing run `{f1}SEP{f2}SEP...{fk}`, optionally led by SEP itself.
/// Splitting the rest of the stem on SEP lets a rejection say how many
/// fields were found instead of blaming whichever field happened to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    sep: Option<String>,
    lead: bool,
    fields: Vec<Field>,
    /// The field just before the run, for "expected 6 fields after the datetime".
    after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DateFormat {
    source: String,
    items: Vec<Item>,
    width: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Literal(char),
    Number(Spec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Spec {
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

    fn width(self) -> usize {
        match self {
            Spec::Year => 4,
            Spec::DayOfYear => 3,
            _ => 2,
        }
    }
}

/// Splits a file name at its last dot. A hidden name (`.profile`) and a name
/// ending in a dot have no extension.
pub fn stem_and_extension(file_name: &str) -> (&str, Option<&str>) {
    match file_name.rfind('.') {
        Some(i) if i > 0 && i + 1 < file_name.len() => (&file_name[..i], Some(&file_name[i + 1..])),
        _ => (file_name, None),
    }
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, TemplateError> {
        if src.is_empty() {
            return Err(TemplateError::Empty);
        }
        let parts = tokenize(src)?;
        check_fields(&parts)?;
        let (head, run) = split_run(parts);
        Ok(Template {
            source: src.to_string(),
            head,
            run,
        })
    }

    /// The template as the operator wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every field name in template order, the datetime field included.
    pub fn fields(&self) -> Vec<&str> {
        let head = self.head.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.name.as_str()),
            Part::Literal(_) => None,
        });
        let run = self
            .run
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name.as_str()));
        head.chain(run).collect()
    }

    /// Matches a file stem; the error is the rejection reason, naming the
    /// first field that failed.
    pub fn parse(&self, stem: &str, tz: Tz) -> Result<Parsed, String> {
        let mut parsed = Parsed {
            fields: BTreeMap::new(),
            datetime: None,
            clock: None,
        };
        let rest = self.match_head(stem, tz, &mut parsed)?;
        match &self.run {
            Some(run) => match_run(run, rest, &mut parsed.fields)?,
            None if !rest.is_empty() => {
                return Err(format!(
                    "unexpected '{}' at the end of the name",
                    shown(rest)
                ))
            }
            None => {}
        }
        Ok(parsed)
    }

    fn match_head<'s>(&self, stem: &'s str, tz: Tz, out: &mut Parsed) -> Result<&'s str, String> {
        let mut rest = stem;
        let mut prev: Option<&str> = None;
        for (i, part) in self.head.iter().enumerate() {
            rest = match part {
                Part::Literal(lit) => expect_literal(rest, lit, prev)?,
                Part::Field(f) => {
                    prev = Some(&f.name);
                    match &f.kind {
                        Kind::Datetime(fmt) => {
                            let (dt, clock, rest) = match_datetime(&f.name, fmt, rest, tz)?;
                            out.datetime = Some(dt);
                            out.clock = clock;
                            rest
                        }
                        _ => {
                            let stop = self.literal_after(i);
                            match_bounded(f, rest, stop, &mut out.fields)?
                        }
                    }
                }
            };
        }
        Ok(rest)
    }

    /// The literal that bounds the plain head field at `i`. Compile-time
    /// checks guarantee one exists (in the head, or as the run's lead).
    fn literal_after(&self, i: usize) -> Option<&str> {
        match self.head.get(i + 1) {
            Some(Part::Literal(l)) => Some(l),
            Some(Part::Field(_)) => None,
            None => self
                .run
                .as_ref()
                .filter(|r| r.lead)
                .and_then(|r| r.sep.as_deref()),
        }
    }
}

// ---- compiling -------------------------------------------------------------

fn tokenize(src: &str) -> Result<Vec<Part>, TemplateError> {
    let chars: Vec<char> = src.chars().collect();
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => {
                let len = chars[i + 1..].iter().position(|&c| c == '}' || c == '{');
                let Some(len) = len.filter(|&n| chars[i + 1 + n] == '}') else {
                    return Err(TemplateError::Unclosed(i + 1));
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                parts.push(Part::Field(compile_field(&inner, i + 1)?));
                i += len + 2;
            }
            '}' => return Err(TemplateError::Unmatched(i + 1)),
            '/' => return Err(TemplateError::Slash),
            c => {
                literal.push(c);
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

fn compile_field(inner: &str, column: usize) -> Result<Field, TemplateError> {
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    if name.is_empty() {
        return Err(TemplateError::EmptyName(column));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(TemplateError::BadName(name.to_string()));
    }
    let kind = match kind {
        Some(k) if k.contains('%') => Kind::Datetime(compile_format(name, k)?),
        _ if name == "datetime" => return Err(TemplateError::DatetimeWithoutFormat),
        None => Kind::Text,
        Some("digits") => Kind::Digits,
        Some(k) => {
            return Err(TemplateError::UnknownType {
                field: name.to_string(),
                kind: k.to_string(),
            })
        }
    };
    Ok(Field {
        name: name.to_string(),
        kind,
    })
}

fn compile_format(field: &str, src: &str) -> Result<DateFormat, TemplateError> {
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        if c == '/' {
            return Err(TemplateError::Slash);
        }
        if c != '%' {
            items.push(Item::Literal(c));
            continue;
        }
        let next = chars.next();
        let spec = match next {
            Some('%') => {
                items.push(Item::Literal('%'));
                continue;
            }
            Some(s) => Spec::from_char(s),
            None => None,
        };
        let Some(spec) = spec else {
            let spec = next.map_or("%".to_string(), |s| format!("%{s}"));
            return Err(TemplateError::UnknownSpecifier {
                field: field.to_string(),
                spec,
            });
        };
        if !seen.insert(spec) {
            return Err(bad_format(field, src, "uses a specifier twice"));
        }
        items.push(Item::Number(spec));
    }
    check_complete(&seen).map_err(|problem| bad_format(field, src, problem))?;
    let width = items
        .iter()
        .map(|item| match item {
            Item::Literal(c) => c.len_utf8(),
            Item::Number(spec) => spec.width(),
        })
        .sum();
    Ok(DateFormat {
        source: src.to_string(),
        items,
        width,
    })
}

/// A datetime format must name one day unambiguously; time parts may be
/// left out (midnight) but not skipped over (%H%S).
fn check_complete(seen: &BTreeSet<Spec>) -> Result<(), &'static str> {
    let has = |s| seen.contains(&s);
    match (has(Spec::Year), has(Spec::Year2)) {
        (true, true) => return Err("uses both %Y and %y"),
        (false, false) => return Err("needs a year (%Y or %y)"),
        _ => {}
    }
    let month_day = has(Spec::Month) || has(Spec::Day);
    if has(Spec::DayOfYear) && month_day {
        return Err("cannot combine %j with %m or %d");
    }
    let month_and_day = has(Spec::Month) && has(Spec::Day);
    if !(has(Spec::DayOfYear) || month_and_day) {
        return Err("needs a month and a day (%m and %d) or a day of the year (%j)");
    }
    if has(Spec::Minute) && !has(Spec::Hour) {
        return Err("has %M without %H");
    }
    if has(Spec::Second) && !has(Spec::Minute) {
        return Err("has %S without %M");
    }
    Ok(())
}

fn bad_format(field: &str, format: &str, problem: &str) -> TemplateError {
    TemplateError::BadFormat {
        field: field.to_string(),
        format: format.to_string(),
        problem: problem.to_string(),
    }
}

fn check_fields(parts: &[Part]) -> Result<(), TemplateError> {
    let fields: Vec<&Field> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Literal(_) => None,
        })
        .collect();
    if fields.is_empty() {
        return Err(TemplateError::NoFields);
    }
    let mut names = BTreeSet::new();
    if let Some(f) = fields.iter().find(|f| !names.insert(f.name.as_str())) {
        return Err(TemplateError::Duplicate(f.name.clone()));
    }
    let datetimes: Vec<&str> = fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Datetime(_)))
        .map(|f| f.name.as_str())
        .collect();
    if let [first, second, ..] = datetimes[..] {
        return Err(TemplateError::TwoDatetimes(first.into(), second.into()));
    }
    for pair in parts.windows(2) {
        if let [Part::Field(a), Part::Field(b)] = pair {
            if !matches!(a.kind, Kind::Datetime(_)) {
                return Err(TemplateError::Adjacent(a.name.clone(), b.name.clone()));
            }
        }
    }
    Ok(())
}

/// Cuts the trailing run of plain fields that share one separator off the
/// parts; what is left is matched left to right.
fn split_run(mut parts: Vec<Part>) -> (Vec<Part>, Option<Run>) {
    let mut start = parts.len();
    let mut sep: Option<String> = None;
    while start > 0 && is_plain(parts.get(start - 1)) {
        start -= 1;
        let between = match (
            start.checked_sub(1).map(|i| &parts[i]),
            start.checked_sub(2),
        ) {
            (Some(Part::Literal(l)), Some(j)) if is_plain(parts.get(j)) => l.clone(),
            _ => break,
        };
        if sep.as_ref().is_some_and(|s| *s != between) {
            break;
        }
        sep = Some(between);
        start -= 1;
    }
    if start == parts.len() {
        return (parts, None);
    }
    // A single trailing field is bounded by the literal before it, if any.
    let lead = match start.checked_sub(1).map(|i| &parts[i]) {
        Some(Part::Literal(l)) if sep.is_none() || sep.as_ref() == Some(l) => {
            sep = Some(l.clone());
            true
        }
        _ => false,
    };
    let fields = parts
        .split_off(start)
        .into_iter()
        .filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Literal(_) => None,
        })
        .collect();
    if lead {
        parts.pop();
    }
    let after = match parts.last() {
        Some(Part::Field(f)) => Some(f.name.clone()),
        _ => None,
    };
    let run = Run {
        sep,
        lead,
        fields,
        after,
    };
    (parts, Some(run))
}

fn is_plain(part: Option<&Part>) -> bool {
    matches!(part, Some(Part::Field(f)) if !matches!(f.kind, Kind::Datetime(_)))
}

// ---- matching --------------------------------------------------------------

fn expect_literal<'s>(rest: &'s str, lit: &str, prev: Option<&str>) -> Result<&'s str, String> {
    rest.strip_prefix(lit).ok_or_else(|| match prev {
        Some(name) => format!("expected '{lit}' after the {name}"),
        None => format!("the name must start with '{lit}'"),
    })
}

/// A plain head field runs up to the first occurrence of the literal after it.
fn match_bounded<'s>(
    f: &Field,
    rest: &'s str,
    stop: Option<&str>,
    out: &mut BTreeMap<String, String>,
) -> Result<&'s str, String> {
    let end = match stop {
        Some(stop) => rest
            .find(stop)
            .ok_or_else(|| format!("expected '{stop}' after the {}", f.name))?,
        None => rest.len(),
    };
    check_value(f, &rest[..end])?;
    out.insert(f.name.clone(), rest[..end].to_string());
    Ok(&rest[end..])
}

fn match_run(run: &Run, rest: &str, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    let values: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        let body = match (&run.sep, run.lead) {
            (Some(sep), true) => expect_literal(rest, sep, run.after.as_deref())?,
            _ => rest,
        };
        match &run.sep {
            Some(sep) => body.split(sep.as_str()).collect(),
            None => vec![body],
        }
    };
    if values.len() != run.fields.len() {
        return Err(count_error(run, values.len()));
    }
    for (f, v) in run.fields.iter().zip(values) {
        check_value(f, v)?;
        out.insert(f.name.clone(), v.to_string());
    }
    Ok(())
}

fn count_error(run: &Run, found: usize) -> String {
    let expected = run.fields.len();
    if let ([only], 0) = (&run.fields[..], found) {
        return format!("{} is empty", only.name);
    }
    let noun = if expected == 1 { "field" } else { "fields" };
    match (&run.after, &run.sep) {
        (Some(after), _) => format!("expected {expected} {noun} after the {after}, found {found}"),
        (None, Some(sep)) => {
            format!("expected {expected} {noun} separated by '{sep}', found {found}")
        }
        (None, None) => format!("expected {expected} {noun}, found {found}"),
    }
}

fn check_value(f: &Field, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{} is empty", f.name));
    }
    if f.kind == Kind::Digits && !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{}: '{}' is not digits", f.name, shown(value)));
    }
    Ok(())
}

fn match_datetime<'s>(
    name: &str,
    fmt: &DateFormat,
    rest: &'s str,
    tz: Tz,
) -> Result<(DateTime<FixedOffset>, Option<Clock>, &'s str), String> {
    let text = rest.get(..fmt.width).unwrap_or(rest);
    let values = read_numbers(fmt, text).ok_or_else(|| {
        format!(
            "{name}: '{}' does not match format {}",
            shown(text),
            fmt.source
        )
    })?;
    let naive = values.to_naive().ok_or_else(|| {
        format!(
            "{name}: '{}' is not a valid date/time for format {}",
            shown(text),
            fmt.source
        )
    })?;
    let (dt, change) = localise(naive, tz);
    Ok((dt, change.map(|c| (c, naive)), &rest[text.len()..]))
}

/// Reads `text` against the format's items; `None` when the shape differs.
fn read_numbers(fmt: &DateFormat, text: &str) -> Option<Numbers> {
    if text.len() != fmt.width {
        return None;
    }
    let mut numbers = Numbers::default();
    let mut pos = 0;
    for item in &fmt.items {
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

/// Wall-clock time in the account's zone; never fails, so that no call is
/// lost to the clock. In a fold the earlier instant wins (re-parsing the
/// same name always gives the same timestamp). In a gap the time is read
/// with the offset in force just before the change, which moves it forward
/// by the gap's length (02:30 on a spring-forward night in Paris is 03:30
/// summer time).
pub fn localise(naive: NaiveDateTime, tz: Tz) -> (DateTime<FixedOffset>, Option<ClockChange>) {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => (dt.fixed_offset(), None),
        LocalResult::Ambiguous(a, b) => (a.min(b).fixed_offset(), Some(ClockChange::Ambiguous)),
        LocalResult::None => {
            // Gaps last hours at most; a day earlier is safely before it.
            let before = naive - chrono::Duration::days(1);
            let offset = tz.offset_from_utc_datetime(&before).fix();
            let utc = naive - chrono::Duration::seconds(i64::from(offset.local_minus_utc()));
            let dt = tz.from_utc_datetime(&utc).fixed_offset();
            (dt, Some(ClockChange::Gap))
        }
    }
}

/// Customer-supplied text echoed in a reason: bounded, no control characters.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Paris;
    use proptest::prelude::*;

    const SEED: &str = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension:digits}_{called_line:digits}_{contact_reason}";

    fn seed() -> Template {
        Template::compile(SEED).unwrap()
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn dt(rfc3339: &str) -> Option<DateTime<FixedOffset>> {
        Some(DateTime::parse_from_rfc3339(rfc3339).unwrap())
    }

    #[test]
    fn seed_example() {
        let got = seed()
            .parse(
                "2026_02_11_15_20_33_Jean-Pierre_Dupont_Entrant_478_0682316817_163",
                Paris,
            )
            .unwrap();
        let want = Parsed {
            fields: fields(&[
                ("advisor_firstname", "Jean-Pierre"),
                ("advisor_lastname", "Dupont"),
                ("channel", "Entrant"),
                ("advisor_extension", "478"),
                ("called_line", "0682316817"),
                ("contact_reason", "163"),
            ]),
            datetime: dt("2026-02-11T15:20:33+01:00"),
            clock: None,
        };
        assert_eq!(got, want);
        // The untyped variant gives the same result for this name.
        let untyped = SEED.replace(":digits", "");
        let stem = "2026_02_11_15_20_33_Jean-Pierre_Dupont_Entrant_478_0682316817_163";
        assert_eq!(
            Template::compile(&untyped).unwrap().parse(stem, Paris),
            Ok(want)
        );
    }

    #[test]
    fn seed_rejections() {
        let cases = [
            ("2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817", "expected 6 fields after the datetime, found 5"),
            ("2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163_x", "expected 6 fields after the datetime, found 7"),
            ("2026_02_11_15_20_33", "expected 6 fields after the datetime, found 0"),
            ("2026_02_11_15_20_33xJean_Dupont_Entrant_478_0682316817_163", "expected '_' after the datetime"),
            ("2026_02_11_15_20_33_Jean_Dupont_Entrant_A12_0682316817_163", "advisor_extension: 'A12' is not digits"),
            ("2026_02_11_15_20_33_Jean__Entrant_478_0682316817_163", "advisor_lastname is empty"),
            ("2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_", "contact_reason is empty"),
            ("2026_02_30_10_00_00_Jean_Dupont_Entrant_478_0682316817_163", "datetime: '2026_02_30_10_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S"),
            ("2026_02_11_25_00_00_Jean_Dupont_Entrant_478_0682316817_163", "datetime: '2026_02_11_25_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S"),
            ("2026-02-11-15-20-33_Jean_Dupont_Entrant_478_0682316817_163", "datetime: '2026-02-11-15-20-33' does not match format %Y_%m_%d_%H_%M_%S"),
            ("2026_2_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163", "datetime: '2026_2_11_15_20_33_' does not match format %Y_%m_%d_%H_%M_%S"),
            ("2026_02", "datetime: '2026_02' does not match format %Y_%m_%d_%H_%M_%S"),
            ("", "datetime: '' does not match format %Y_%m_%d_%H_%M_%S"),
            ("2026_02_29_10_00_00_Jean_Dupont_Entrant_478_0682316817_163", "datetime: '2026_02_29_10_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S"),
        ];
        for (stem, want) in cases {
            assert_eq!(
                seed().parse(stem, Paris),
                Err(want.to_string()),
                "stem {stem:?}"
            );
        }
    }

    #[test]
    fn dst_gap_and_fold_in_paris() {
        let t = Template::compile("{datetime:%Y%m%d_%H%M%S}_{id}").unwrap();
        let cases = [
            // 02:30 does not exist on 29 March: read with winter time's
            // offset, i.e. one hour later in summer time.
            (
                "20260329_023000_x",
                "2026-03-29T03:30:00+02:00",
                Some(ClockChange::Gap),
            ),
            (
                "20260329_020000_x",
                "2026-03-29T03:00:00+02:00",
                Some(ClockChange::Gap),
            ),
            (
                "20260329_025959_x",
                "2026-03-29T03:59:59+02:00",
                Some(ClockChange::Gap),
            ),
            ("20260329_015959_x", "2026-03-29T01:59:59+01:00", None),
            ("20260329_030000_x", "2026-03-29T03:00:00+02:00", None),
            // 02:30 happens twice on 25 October: the earlier (summer time) wins.
            (
                "20261025_023000_x",
                "2026-10-25T02:30:00+02:00",
                Some(ClockChange::Ambiguous),
            ),
            ("20261025_033000_x", "2026-10-25T03:30:00+01:00", None),
        ];
        for (stem, want, change) in cases {
            let got = t.parse(stem, Paris).unwrap();
            assert_eq!(got.datetime, dt(want), "stem {stem:?}");
            assert_eq!(got.clock.map(|c| c.0), change, "stem {stem:?}");
        }
        let gap = t.parse("20260329_023000_x", Paris).unwrap();
        let naive = gap.clock.unwrap().1;
        assert_eq!(naive.to_string(), "2026-03-29 02:30:00");
    }

    #[test]
    fn other_templates() {
        type Case = (
            &'static str,
            &'static str,
            Result<
                (
                    &'static [(&'static str, &'static str)],
                    Option<&'static str>,
                ),
                &'static str,
            >,
        );
        let cases: &[Case] = &[
            (
                "rec-{id}-{agent}",
                "rec-42-bob",
                Ok((&[("id", "42"), ("agent", "bob")], None)),
            ),
            (
                "rec-{id}-{agent}",
                "rec-42-jean-pierre",
                Err("expected 2 fields separated by '-', found 3"),
            ),
            (
                "rec-{id}-{agent}",
                "rac-42-bob",
                Err("the name must start with 'rec-'"),
            ),
            ("rec-{id}-{agent}", "rec--bob", Err("id is empty")),
            (
                "rec-{id}-{agent}.final",
                "rec-42-bob.final",
                Ok((&[("id", "42"), ("agent", "bob")], None)),
            ),
            (
                "rec-{id}-{agent}.final",
                "rec-42-bob.final.x",
                Err("unexpected '.x' at the end of the name"),
            ),
            (
                "rec-{id}-{agent}.final",
                "rec-42-bob",
                Err("expected '.final' after the agent"),
            ),
            (
                "{a}_{b}_{c}",
                "x_y",
                Err("expected 3 fields separated by '_', found 2"),
            ),
            (
                "{a}_{b}_{c}",
                "x_y_z",
                Ok((&[("a", "x"), ("b", "y"), ("c", "z")], None)),
            ),
            (
                "{id}",
                "anything_goes here",
                Ok((&[("id", "anything_goes here")], None)),
            ),
            ("{id}", "", Err("id is empty")),
            ("{id:digits}", "12a", Err("id: '12a' is not digits")),
            (
                "{a}-{b}_{c}",
                "x-y-z_w",
                Ok((&[("a", "x"), ("b", "y-z"), ("c", "w")], None)),
            ),
            ("{a}-{b}_{c}", "xy_z", Err("expected '-' after the a")),
            (
                "{datetime:%Y%m%d}{id}",
                "20260211abc",
                Ok((&[("id", "abc")], Some("2026-02-11T00:00:00+01:00"))),
            ),
            ("{datetime:%Y%m%d}{id}", "20260211", Err("id is empty")),
            (
                "{datetime:%y%j}_{id}",
                "26042_x",
                Ok((&[("id", "x")], Some("2026-02-11T00:00:00+01:00"))),
            ),
            (
                "{datetime:%y%j}_{id}",
                "26042_x_y",
                Err("expected 1 field after the datetime, found 2"),
            ),
            (
                "{id}_{datetime:%Y-%m-%dT%H%M}",
                "abc_2026-02-11T1520",
                Ok((&[("id", "abc")], Some("2026-02-11T15:20:00+01:00"))),
            ),
            (
                "{id}_{datetime:%Y-%m-%dT%H%M}",
                "abc_2026-02-11T1520x",
                Err("unexpected 'x' at the end of the name"),
            ),
            (
                "{id}_{when:%Y%m%d}_{x}_{y}",
                "a_b_20260211_c_d",
                Err("when: 'b_202602' does not match format %Y%m%d"),
            ),
            (
                "{id}_{when:%Y%m%d}_{x}_{y}",
                "a_20260211_c_d",
                Ok((
                    &[("id", "a"), ("x", "c"), ("y", "d")],
                    Some("2026-02-11T00:00:00+01:00"),
                )),
            ),
            (
                "{datetime:%Y%m%d}é{id}",
                "20260211éx",
                Ok((&[("id", "x")], Some("2026-02-11T00:00:00+01:00"))),
            ),
        ];
        for (src, stem, want) in cases {
            let got = Template::compile(src).unwrap().parse(stem, Paris);
            let want = want
                .map(|(f, d)| Parsed {
                    fields: fields(f),
                    datetime: d.and_then(dt),
                    clock: None,
                })
                .map_err(str::to_string);
            assert_eq!(got, want, "template {src:?} stem {stem:?}");
        }
    }

    #[test]
    fn compile_errors() {
        let cases = [
            ("", "template is empty"),
            ("plain", "template has no {field}"),
            ("{a", "unclosed '{' at column 1"),
            ("x_{a_{b}", "unclosed '{' at column 3"),
            ("{a}}", "unmatched '}' at column 4 (braces are not allowed in literal text)"),
            ("{}", "empty field name at column 1"),
            ("{:digits}", "empty field name at column 1"),
            ("{Name}", "invalid field name 'Name': use lowercase letters, digits and '_'"),
            ("{a}_{a}", "field 'a' appears twice"),
            ("{a}/{b}", "'/' cannot appear in a file name template"),
            ("{a:text}", "field 'a': unknown type 'text' (expected 'digits' or a strftime format containing '%')"),
            ("{d:%Y%m%e}", "field 'd': unknown strftime specifier '%e' (supported: %Y %y %m %d %j %H %M %S %%)"),
            ("{d:%Y%m%-d}", "field 'd': unknown strftime specifier '%-' (supported: %Y %y %m %d %j %H %M %S %%)"),
            ("{d:%Y%m%d%}", "field 'd': unknown strftime specifier '%' (supported: %Y %y %m %d %j %H %M %S %%)"),
            ("{d:%Y%m%d%Y}", "field 'd': format '%Y%m%d%Y' uses a specifier twice"),
            ("{d:%Y%y%m%d}", "field 'd': format '%Y%y%m%d' uses both %Y and %y"),
            ("{d:%m%d}", "field 'd': format '%m%d' needs a year (%Y or %y)"),
            ("{d:%Y%m}", "field 'd': format '%Y%m' needs a month and a day (%m and %d) or a day of the year (%j)"),
            ("{d:%Y%j%d}", "field 'd': format '%Y%j%d' cannot combine %j with %m or %d"),
            ("{d:%Y%m%d%M}", "field 'd': format '%Y%m%d%M' has %M without %H"),
            ("{d:%Y%m%d%H%S}", "field 'd': format '%Y%m%d%H%S' has %S without %M"),
            ("{datetime}_{a}", "field 'datetime' needs a strftime format, e.g. {datetime:%Y%m%d_%H%M%S}"),
            ("{datetime:digits}", "field 'datetime' needs a strftime format, e.g. {datetime:%Y%m%d_%H%M%S}"),
            ("{a:%Y%m%d}_{b:%Y%m%d}", "only one field may have a strftime format ('a' and 'b')"),
            ("{a}{b}", "fields 'a' and 'b' need literal text between them (only a datetime field has a fixed width)"),
            ("{a:digits}{datetime:%Y%m%d}", "fields 'a' and 'datetime' need literal text between them (only a datetime field has a fixed width)"),
        ];
        for (src, want) in cases {
            let got = Template::compile(src).map_err(|e| e.to_string());
            assert_eq!(got.err().as_deref(), Some(want), "template {src:?}");
        }
    }

    #[test]
    fn lists_fields_in_order() {
        let cases: [(&str, &[&str]); 3] = [
            (
                SEED,
                &[
                    "datetime",
                    "advisor_firstname",
                    "advisor_lastname",
                    "channel",
                    "advisor_extension",
                    "called_line",
                    "contact_reason",
                ],
            ),
            ("rec-{id}-{agent}", &["id", "agent"]),
            ("{id}_{when:%Y%m%d}_{x}", &["id", "when", "x"]),
        ];
        for (src, want) in cases {
            assert_eq!(
                Template::compile(src).unwrap().fields(),
                want,
                "template {src:?}"
            );
        }
    }

    #[test]
    fn splits_stem_and_extension() {
        let cases = [
            ("call.mp3", ("call", Some("mp3"))),
            ("a.b.WAV", ("a.b", Some("WAV"))),
            ("noext", ("noext", None)),
            (".hidden", (".hidden", None)),
            (".hidden.mp3", (".hidden", Some("mp3"))),
            ("trailing.", ("trailing.", None)),
            ("", ("", None)),
        ];
        for (name, want) in cases {
            assert_eq!(stem_and_extension(name), want, "name {name:?}");
        }
    }

    #[test]
    fn long_values_are_cut_in_reasons() {
        let stem = format!("2026_02_11_15_20_33_a_b_c_{}_1_2", "x".repeat(100));
        let want = format!("advisor_extension: '{}…' is not digits", "x".repeat(64));
        assert_eq!(seed().parse(&stem, Paris), Err(want));
    }

    proptest! {
        #[test]
        fn any_stem_through_seed_never_panics(stem in "[0-9_a-zA-Zé€\\-\\. ]{0,80}|\\PC{0,80}|.{0,80}") {
            let _ = seed().parse(&stem, Paris);
        }

        #[test]
        fn any_source_compiles_or_refuses_without_panic(src in "[{}:%a-zA-Z0-9_\\-é/]{0,40}|.{0,40}") {
            if let Ok(t) = Template::compile(&src) {
                let _ = t.parse(&src, Paris);
                let _ = t.parse("2026_02_11_x_y", Paris);
            }
        }

        #[test]
        fn well_formed_seed_names_parse(first in "[A-Za-zé-]{1,12}", ext in "[0-9]{1,6}", reason in "[0-9A-Z]{1,5}") {
            let stem = format!("2026_02_11_15_20_33_{first}_Dupont_Entrant_{ext}_0682316817_{reason}");
            let p = seed().parse(&stem, Paris).unwrap();
            prop_assert_eq!(&p.fields["advisor_firstname"], &first);
            prop_assert_eq!(&p.fields["advisor_extension"], &ext);
            prop_assert_eq!(&p.fields["contact_reason"], &reason);
        }
    }
}
