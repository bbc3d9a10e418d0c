//! Matching a stem against a compiled template: literals, bounded fields,
//! the trailing run, and the datetime read in the account's timezone.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::fields::Part;
use super::fields::{Field, Kind, Run};
use super::strftime::{Format, Parse};
use super::{shown, Clock, ClockChange, Parsed, Template};
impl Template {
    pub(super) fn match_head<'s>(
        &self,
        stem: &'s str,
        tz: Tz,
        out: &mut Parsed,
    ) -> Result<&'s str, String> {
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

pub(super) fn expect_literal<'s>(
    rest: &'s str,
    lit: &str,
    prev: Option<&str>,
) -> Result<&'s str, String> {
    rest.strip_prefix(lit).ok_or_else(|| match prev {
        Some(name) => format!("expected '{lit}' after the {name}"),
        None => format!("the name must start with '{lit}'"),
    })
}

/// A plain head field runs up to the first occurrence of the literal after it.
pub(super) fn match_bounded<'s>(
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

pub(super) fn match_run(
    run: &Run,
    rest: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
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

pub(super) fn match_datetime<'s>(
    name: &str,
    fmt: &Format,
    rest: &'s str,
    tz: Tz,
) -> Result<(DateTime<FixedOffset>, Option<Clock>, &'s str), String> {
    let text = rest.get(..fmt.width()).unwrap_or(rest);
    let naive = fmt.parse(text).map_err(|e| {
        let problem = match e {
            Parse::Shape => "does not match format",
            Parse::Invalid => "is not a valid date/time for format",
        };
        format!("{name}: '{}' {problem} {}", shown(text), fmt.source())
    })?;
    let (dt, change) = localise(naive, tz);
    Ok((dt, change.map(|c| (c, naive)), &rest[text.len()..]))
}

/// Wall-clock time in the account's zone; never fails, so that no call is
/// lost to the clock. In a fold the earlier instant wins (re-parsing the
/// same name always gives the same timestamp). In a gap the time is read
/// with the offset in force just before the change, which moves it forward
/// by the gap's length (02:30 on a spring-forward night in Paris is 03:30
/// summer time).
fn localise(naive: NaiveDateTime, tz: Tz) -> (DateTime<FixedOffset>, Option<ClockChange>) {
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
