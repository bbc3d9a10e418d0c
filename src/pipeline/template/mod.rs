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

//!
//! The code is split by what it holds: [`strftime`] the format subset (shared
//! with date directories), `fields` the parts a template is made of,
//! `compile` the source → template step, `matcher` the stem → fields step.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use chrono_tz::Tz;

mod compile;
mod fields;
mod matcher;
pub(crate) mod strftime;
#[cfg(test)]
mod tests;

use compile::{check_fields, split_run, tokenize};
use fields::{Part, Run};
use matcher::match_run;

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
pub(crate) type Clock = (ClockChange, NaiveDateTime);

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
    pub(crate) fn flag(self) -> &'static str {
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

/// Splits a file name at its last dot. A hidden name (`.profile`) and a name
/// ending in a dot have no extension.
pub(crate) fn stem_and_extension(file_name: &str) -> (&str, Option<&str>) {
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
