//! Compiling a template source: tokenizing `{field}` parts, checking the
//! fields against the template's invariants, and cutting off the trailing
//! run of fields that is matched by splitting.

use std::collections::BTreeSet;

use super::fields::{Field, Kind, Part, Run};
use super::strftime::{Format, FormatError, Use};
use super::TemplateError;

pub(super) fn tokenize(src: &str) -> Result<Vec<Part>, TemplateError> {
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

pub(super) fn check_fields(parts: &[Part]) -> Result<(), TemplateError> {
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
pub(super) fn split_run(mut parts: Vec<Part>) -> (Vec<Part>, Option<Run>) {
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

/// Compiles a datetime field's format, worded for the template's operator.
fn compile_format(field: &str, src: &str) -> Result<Format, TemplateError> {
    Format::compile(src, Use::Datetime).map_err(|e| match e {
        FormatError::Slash => TemplateError::Slash,
        FormatError::Unknown(c) => unknown(field, format!("%{c}")),
        FormatError::Lone => unknown(field, "%".to_string()),
        FormatError::Twice(_) => bad_format(field, src, "uses a specifier twice"),
        FormatError::Incomplete(missing) => bad_format(field, src, missing.problem()),
    })
}

fn unknown(field: &str, spec: String) -> TemplateError {
    TemplateError::UnknownSpecifier {
        field: field.to_string(),
        spec,
    }
}

fn bad_format(field: &str, format: &str, problem: &str) -> TemplateError {
    TemplateError::BadFormat {
        field: field.to_string(),
        format: format.to_string(),
        problem: problem.to_string(),
    }
}
