//! A journal row's state and outcome, typed. The text each one is stored
//! as is fixed: databases written by earlier versions read back as the
//! same values, and every value writes the text those versions wrote.
//! A text no version wrote (edited by hand) reads as [`Outcome::Other`]
//! and writes back unchanged.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use std::fmt;

/// Where a journal row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the pipeline (again after a restart).
    Pending,
    /// Has its outcome.
    Done,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for State {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for State {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "pending" => Ok(State::Pending),
            "done" => Ok(State::Done),
            other => Err(FromSqlError::Other(
                format!("journal state '{other}' is neither 'pending' nor 'done'").into(),
            )),
        }
    }
}

/// What became of a journaled deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as this conversation (complete, or awaiting its CSV row).
    Conversation(i64),
    /// The same bytes as this current conversation: nothing changed.
    Unchanged(i64),
    /// Rejected whole (its rejection rows name it by journal id).
    Rejected,
    /// Rejected as this rejection.
    RejectedAs(i64),
    /// The same bytes as this still-open rejection of the path.
    SameRejection(i64),
    /// Not ingested, for this reason (system file, account gone...).
    Ignored(String),
    /// A newer completion of the same path replaced these bytes.
    Superseded,
    /// A CSV whose bytes changed after this completion.
    StaleUpload,
    /// A reprocess of a conversation that is no longer the current one.
    StaleRedo(i64),
    /// A metadata CSV stored; `unchanged`: its refused rows are those of
    /// this still-open rejection of the same content.
    MetadataCsv {
        rows: usize,
        refused: usize,
        unchanged: Option<i64>,
    },
    /// A CRM file that became this snapshot.
    CrmSnapshot(i64),
    /// A text no version of depot writes.
    Other(String),
}

const SUPERSEDED: &str = "superseded: a newer completion of the same path replaced these bytes";
const STALE_UPLOAD: &str = "stale: changed after this upload";

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Conversation(id) => write!(f, "conversation:{id}"),
            Outcome::Unchanged(id) => write!(f, "unchanged:{id}"),
            Outcome::Rejected => f.write_str("rejected"),
            Outcome::RejectedAs(id) => write!(f, "rejected:{id}"),
            Outcome::SameRejection(id) => write!(f, "unchanged: rejected:{id}"),
            Outcome::Ignored(why) => write!(f, "ignored: {why}"),
            Outcome::Superseded => f.write_str(SUPERSEDED),
            Outcome::StaleUpload => f.write_str(STALE_UPLOAD),
            Outcome::StaleRedo(id) => write!(
                f,
                "stale: conversation {id} is no longer the deposit's current one"
            ),
            Outcome::MetadataCsv {
                rows,
                refused,
                unchanged,
            } => {
                write!(f, "metadata_csv: {rows} rows, {refused} refused")?;
                match unchanged {
                    Some(r) => write!(f, " (unchanged: rejected:{r})"),
                    None => Ok(()),
                }
            }
            Outcome::CrmSnapshot(id) => write!(f, "crm_snapshot:{id}"),
            Outcome::Other(text) => f.write_str(text),
        }
    }
}

impl Outcome {
    /// Reads the stored text; never fails (see [`Outcome::Other`]).
    pub fn parse(text: &str) -> Outcome {
        Self::known(text)
            // Only a text that writes back exactly is taken as known.
            .filter(|o| o.to_string() == text)
            .unwrap_or_else(|| Outcome::Other(text.to_string()))
    }

    fn known(text: &str) -> Option<Outcome> {
        let id = |s: &str| s.parse::<i64>().ok();
        if text == SUPERSEDED {
            return Some(Outcome::Superseded);
        }
        if text == STALE_UPLOAD {
            return Some(Outcome::StaleUpload);
        }
        if text == "rejected" {
            return Some(Outcome::Rejected);
        }
        if let Some(rest) = text.strip_prefix("unchanged: rejected:") {
            return id(rest).map(Outcome::SameRejection);
        }
        if let Some(why) = text.strip_prefix("ignored: ") {
            return Some(Outcome::Ignored(why.to_string()));
        }
        if let Some(rest) = text.strip_prefix("stale: conversation ") {
            let n = rest.strip_suffix(" is no longer the deposit's current one")?;
            return id(n).map(Outcome::StaleRedo);
        }
        if let Some(rest) = text.strip_prefix("metadata_csv: ") {
            let (counts, unchanged) = match rest.split_once(" (unchanged: rejected:") {
                Some((c, r)) => (c, Some(id(r.strip_suffix(')')?)?)),
                None => (rest, None),
            };
            let (rows, refused) = counts.split_once(" rows, ")?;
            return Some(Outcome::MetadataCsv {
                rows: rows.parse().ok()?,
                refused: refused.strip_suffix(" refused")?.parse().ok()?,
                unchanged,
            });
        }
        let (kind, n) = text.split_once(':')?;
        let n = id(n)?;
        match kind {
            "conversation" => Some(Outcome::Conversation(n)),
            "unchanged" => Some(Outcome::Unchanged(n)),
            "rejected" => Some(Outcome::RejectedAs(n)),
            "crm_snapshot" => Some(Outcome::CrmSnapshot(n)),
            _ => None,
        }
    }
}

impl ToSql for Outcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Ok(Outcome::parse(value.as_str()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text earlier versions wrote reads as its value and writes back
    /// byte for byte.
    #[test]
    fn stored_texts_round_trip_exactly() {
        let cases = [
            ("conversation:12", Outcome::Conversation(12)),
            ("unchanged:7", Outcome::Unchanged(7)),
            ("rejected", Outcome::Rejected),
            ("rejected:3", Outcome::RejectedAs(3)),
            ("unchanged: rejected:4", Outcome::SameRejection(4)),
            (
                "ignored: account no longer configured",
                Outcome::Ignored("account no longer configured".into()),
            ),
            (SUPERSEDED, Outcome::Superseded),
            ("stale: changed after this upload", Outcome::StaleUpload),
            (
                "stale: conversation 9 is no longer the deposit's current one",
                Outcome::StaleRedo(9),
            ),
            (
                "metadata_csv: 10 rows, 2 refused",
                Outcome::MetadataCsv {
                    rows: 10,
                    refused: 2,
                    unchanged: None,
                },
            ),
            (
                "metadata_csv: 10 rows, 2 refused (unchanged: rejected:5)",
                Outcome::MetadataCsv {
                    rows: 10,
                    refused: 2,
                    unchanged: Some(5),
                },
            ),
            ("crm_snapshot:2", Outcome::CrmSnapshot(2)),
        ];
        for (text, value) in cases {
            assert_eq!(Outcome::parse(text), value, "{text}");
            assert_eq!(value.to_string(), text);
        }
    }

    #[test]
    fn unknown_texts_are_kept_as_they_are() {
        for text in [
            "conversation:x",
            "done",
            "",
            "unchanged:07",
            "metadata_csv: 1 rows",
        ] {
            assert_eq!(Outcome::parse(text), Outcome::Other(text.into()));
            assert_eq!(Outcome::parse(text).to_string(), text);
        }
    }

    #[test]
    fn states_read_and_write_their_column_text() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for s in [State::Pending, State::Done] {
            let back: State = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, s);
            let text: String = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(text, s.as_str());
        }
        let o = Outcome::Conversation(3);
        let text: String = c.query_row("SELECT ?1", [&o], |r| r.get(0)).unwrap();
        assert_eq!(text, "conversation:3");
        let bad: rusqlite::Result<State> = c.query_row("SELECT 'later'", [], |r| r.get(0));
        assert!(bad.is_err());
    }
}
