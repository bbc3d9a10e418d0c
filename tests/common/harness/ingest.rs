//! Customers with ingestion settings, uploads of local files through
//! OpenSSH `sftp`, and the outcomes read back the way an operator reads
//! them: SQLite through `depot::store::queries`, the `depot` binary's JSON,
//! files on disk. Every wait is a poll under a deadline, never a sleep.

use super::config::{AccountSpec, TestConfig};
use super::fixtures::{fixture, TEMPLATE};
use super::server::TestServer;
use super::wait::until;
use super::TestResult;
use depot::store::queries::{self, ConversationFilter};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long ingestion of a handful of files may take.
pub const INGEST: Duration = Duration::from_secs(30);

/// A customer shaped like the seed: Europe/Paris, date directories under
/// `/audio`, the seed's file-name template, the reason mapping file
/// (163 → Résiliation), advisors created as
/// `%firstname%.%lastname%@acme.com` in team Support via Recorder. `more`
/// appends further sections (`[picking]`, `[metadata_csv]`, `[crm]`).
pub fn customer(name: &str, more: &str) -> AccountSpec {
    let mut extra = String::new();
    writeln!(extra, "timezone = \"Europe/Paris\"").unwrap();
    writeln!(
        extra,
        "[audio]\ndir = \"/audio\"\ndate_dirs = [\"%Y%m%d\", \"%Y_%m_%d\"]\nextensions = [\"mp3\", \"wav\"]\nfilename = {TEMPLATE:?}"
    )
    .unwrap();
    writeln!(
        extra,
        "[contact_reasons]\nfile = {:?}\n",
        fixture("acme-reasons.csv").display().to_string()
    )
    .unwrap();
    writeln!(
        extra,
        "[advisors]\ncreate = true\ndefault_team = \"Support\"\nconnector = \"Recorder\"\nemail = \"%firstname%.%lastname%@%domain%.com\"\ndomain = \"acme\""
    )
    .unwrap();
    extra.push_str(more);
    AccountSpec {
        extra,
        ..AccountSpec::audio(name)
    }
}

/// An in-process server with these accounts and otherwise the defaults.
pub async fn start(accounts: Vec<AccountSpec>) -> TestResult<TestServer> {
    TestServer::start_with(TestConfig {
        accounts,
        ..Default::default()
    })
    .await
}

/// Writes `bytes` to a local scratch file for the client to `put`.
pub fn local_file(server: &TestServer, name: &str, bytes: &[u8]) -> TestResult<PathBuf> {
    let p = server.local(name);
    std::fs::write(&p, bytes)?;
    Ok(p)
}

/// Uploads `(local name, bytes, remote path)` files in one `sftp -b`
/// session, creating the remote directories first.
pub async fn upload(
    server: &TestServer,
    account: &str,
    files: &[(&str, &[u8], &str)],
) -> TestResult {
    let mut batch = String::new();
    let mut dirs: Vec<&str> = Vec::new();
    for (_, _, remote) in files {
        let dir = &remote[..remote.rfind('/').unwrap_or(0)];
        if !dir.is_empty() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for d in dirs {
        // `-`: an existing directory is not an error.
        writeln!(batch, "-mkdir {d}")?;
    }
    for (name, bytes, remote) in files {
        let local = local_file(server, &format!("{account}-{name}"), bytes)?;
        writeln!(batch, "put {} {remote}", local.display())?;
    }
    server.sftp_ok(account, &batch).await?;
    Ok(())
}

/// A connection to the database at `path`, for reading what was committed.
pub fn open_db(path: &Path) -> TestResult<rusqlite::Connection> {
    Ok(depot::store::open(path)?)
}

fn db(server: &TestServer) -> TestResult<rusqlite::Connection> {
    open_db(&server.db_path())
}

/// Every conversation of `account` (superseded ones too), by id.
pub fn conversations(server: &TestServer, account: &str) -> TestResult<Vec<Json>> {
    let filter = ConversationFilter {
        account: Some(account.into()),
        ..Default::default()
    };
    Ok(queries::conversations(&db(server)?, &filter)?)
}

pub fn rejections(server: &TestServer, account: &str) -> TestResult<Vec<Json>> {
    Ok(queries::rejections(&db(server)?, Some(account), None)?)
}

pub fn advisors(server: &TestServer, account: &str) -> TestResult<Vec<Json>> {
    Ok(queries::advisors(&db(server)?, Some(account))?)
}

/// Waits until every journal row of `account` is done (each upload has
/// become a conversation, a rejection or was ignored).
pub async fn settled(server: &TestServer, account: &str) -> TestResult {
    until(INGEST, "every journal row done", || {
        let rows = server.journal(account)?;
        Ok((!rows.is_empty() && rows.iter().all(|r| r.state == "done")).then_some(()))
    })
    .await
}

/// Waits for the conversation of `path` whose status is `status`.
pub async fn conversation_with_status(
    server: &TestServer,
    account: &str,
    path: &str,
    status: &str,
) -> TestResult<Json> {
    until(INGEST, &format!("{path} {status}"), || {
        Ok(conversations(server, account)?
            .into_iter()
            .find(|c| c["path"] == path && c["status"] == status))
    })
    .await
}

/// Waits for an open rejection of `path`.
pub async fn rejection_of(
    server: &TestServer,
    account: &str,
    path: &str,
    limit: Duration,
) -> TestResult<Json> {
    until(limit, &format!("a rejection of {path}"), || {
        Ok(rejections(server, account)?
            .into_iter()
            .find(|r| r["path"] == path))
    })
    .await
}

/// Runs the real `depot` binary on the server's config (relative paths
/// resolve against the temp dir, as for an operator in the install dir)
/// and parses its `--json` output.
pub async fn cli_json(server: &TestServer, args: &[&str]) -> TestResult<Json> {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = server.cli(&with_json).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "depot {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_str(&stdout)
        .map_err(|e| format!("depot {args:?} printed no JSON ({e}): {stdout}"))?)
}

/// The account's `(arrivals, picked)` in one picking window.
pub fn window_counts(server: &TestServer, account: &str, window: &str) -> TestResult<(i64, i64)> {
    Ok(db(server)?.query_row(
        "SELECT arrivals, picked FROM picking_windows WHERE account = ?1 AND window = ?2",
        [account, window],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Today in Europe/Paris (the day naming the customer's rejection report).
pub fn paris_today() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive()
        .to_string()
}

/// Waits until the customer's report for today (`/rejected/<day>.csv` in
/// the jail) mentions `needle` (it is rewritten just after the rejection
/// is committed), and returns it. A report is rewritten whole from the
/// database, so once it mentions the latest rejection it holds every
/// earlier one too.
pub async fn report_mentioning(
    server: &TestServer,
    account: &str,
    needle: &str,
) -> TestResult<String> {
    let file = server
        .jail(account)
        .join(format!("rejected/{}.csv", paris_today()));
    until(
        INGEST,
        &format!("{} mentioning {needle}", file.display()),
        || {
            Ok(std::fs::read_to_string(&file)
                .ok()
                .filter(|t| t.contains(needle)))
        },
    )
    .await
}
