//! The records both the pipeline and the store speak of: what the stages
//! work out (a rejection, the audio probe, the advisor, the CRM join, the
//! picking rule and counters) and the store persists. Plain data, no rules:
//! neither side has to import the other to name them.

use serde::{Deserialize, Serialize};

/// A deposit that cannot become a conversation, with the reason the
/// customer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stage that refused it (`classify`, `date_directory`, `file_name`,
    /// `audio`, `contact_reason`, `advisor`, ...).
    pub stage: &'static str,
    pub reason: String,
    /// CSV line number, for CSV rows.
    pub line: Option<u64>,
}

impl Rejection {
    pub fn new(stage: &'static str, reason: impl Into<String>) -> Self {
        Rejection {
            stage,
            reason: reason.into(),
            line: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    pub format: String,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmStatus {
    Matched,
    NoKey,
    NoMatch,
    NoSnapshot,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrmOutcome {
    pub status: CrmStatus,
    /// The snapshot consulted (absent with `no_snapshot`).
    pub snapshot: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdvisor {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub team: Option<String>,
    pub connector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisorRef {
    Unknown,
    /// Recorded on the conversation by name only.
    Named(String),
    /// Found by e-mail, or created with these details.
    ByEmail(NewAdvisor),
}

impl AdvisorRef {
    /// The name recorded on a conversation whose advisor is known by name
    /// only.
    pub fn name(&self) -> Option<&str> {
        match self {
            AdvisorRef::Named(n) => Some(n),
            _ => None,
        }
    }

    /// The key picking caps are counted under.
    pub(crate) fn picking_key(&self) -> Option<String> {
        match self {
            AdvisorRef::Unknown => None,
            AdvisorRef::Named(n) => Some(n.to_lowercase()),
            AdvisorRef::ByEmail(a) => Some(a.email.clone()),
        }
    }
}

/// A window's counters as they stand before this conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Conversations already in the window, picked or not.
    pub arrivals_before: u64,
    /// Conversations already picked in the window.
    pub picked: u64,
    /// Conversations of this conversation's advisor already picked in the window.
    pub advisor_picked: u64,
}

/// The account's `[picking]` settings; `None` switches a test off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PickingRule {
    pub percent: Option<u32>,
    pub max_per_advisor: Option<u32>,
}
