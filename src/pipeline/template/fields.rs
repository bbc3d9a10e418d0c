//! What a compiled template is made of: literal parts, fields with their
//! kind, and the trailing run of fields that share one separator.

use super::strftime::Format;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Digits,
    Datetime(Format),
}

/// The trailing run `{f1}SEP{f2}SEP...{fk}`, optionally led by SEP itself.
/// Splitting the rest of the stem on SEP lets a rejection say how many
/// fields were found instead of blaming whichever field happened to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) sep: Option<String>,
    pub(super) lead: bool,
    pub(super) fields: Vec<Field>,
    /// The field just before the run, for "expected 6 fields after the datetime".
    pub(super) after: Option<String>,
}
