//! The JSON the API answers, described for the OpenAPI document. Handlers
//! build their JSON with the store's own serialisers (the same the CLI
//! prints); these types only describe that JSON, for the handlers'
//! annotations and the document alike, and the integration tests validate
//! every endpoint's real answer against them (`additionalProperties:
//! false`, so a field added without being described fails the tests).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `banned`,
    /// `not_found`, `bad_request`, `timeout`, `internal`, …
    code: String,
    /// For people.
    message: String,
}

/// A conversation's advisor: the advisor record, or only the name the
/// file gave when no record was made.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationAdvisor {
    id: Option<i64>,
    email: Option<String>,
    team: Option<String>,
    connector: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    name: Option<String>,
}

// Describes the JSON the store writes; never built here.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Ingested,
    AwaitingMetadata,
    Superseded,
}

/// One conversation.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conversation {
    id: i64,
    account: String,
    /// The deposit's path in the account's jail.
    path: String,
    size: i64,
    sha256: String,
    received_at: String,
    status: Status,
    started_at: Option<String>,
    /// Fields from the file name and the metadata CSV.
    #[schema(value_type = Object)]
    metadata: Value,
    /// Fields joined from the account's CRM snapshot.
    #[schema(value_type = Object)]
    additional_metadata: Value,
    /// How the CRM join went (`status`, `snapshot`), when the account has one.
    #[schema(value_type = Option<Object>)]
    crm: Option<Value>,
    advisor: Option<ConversationAdvisor>,
    picked: bool,
    picking_reason: Option<String>,
    /// Probed format, duration, sample rate, channels.
    #[schema(value_type = Option<Object>)]
    audio: Option<Value>,
    flags: Option<Vec<Value>>,
    deposit_date: Option<String>,
    archive_path: Option<String>,
    /// Only on `/v1/conversations/{id}`: the deposit's other versions.
    #[schema(no_recursion)]
    history: Option<Vec<Conversation>>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationPage {
    items: Vec<Conversation>,
    /// Pass back as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Advisor {
    id: i64,
    account: String,
    email: String,
    first_name: String,
    last_name: String,
    team: Option<String>,
    connector: Option<String>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rejection {
    id: i64,
    account: String,
    path: String,
    stage: String,
    reason: String,
    /// The CSV line, for rejections of CSV rows.
    line: Option<i64>,
    at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CrmSnapshot {
    id: i64,
    account: String,
    path: String,
    file: String,
    rows: i64,
    duplicate_keys: i64,
    loaded_at: String,
    /// The snapshot calls are joined with now.
    latest: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountSummary {
    name: String,
    conversations: i64,
    open_rejections: i64,
    /// Deposits the pipeline has not finished.
    pending: i64,
    last_received_at: Option<String>,
}

/// One event of the feed.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    /// Strictly increasing.
    seq: i64,
    id: String,
    /// `conversation.created`, `conversation.superseded`, `rejection.created`,
    /// `rejection.closed`, `crm.snapshot.created`.
    #[serde(rename = "type")]
    kind: String,
    at: String,
    account: String,
    #[schema(value_type = Object)]
    data: Value,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventPage {
    items: Vec<Event>,
    /// Pass back as `after`.
    next_after: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    status: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Readiness {
    ready: bool,
    database: bool,
    accepting: bool,
    pending: Option<i64>,
    /// Free space for depot in the data directory's file system.
    disk_free_bytes: Option<u64>,
    /// At least `server.min_free_disk` is free.
    disk: bool,
}
