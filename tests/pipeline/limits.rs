//! What one deposit may cost the customer's records: a CSV of thousands of
//! bad rows stores a thousand rejections and one summary; the day's report
//! grows only by appending (its earlier bytes never change); the same
//! rejected bytes uploaded again change nothing.

use crate::harness::*;
use std::fmt::Write as _;

const CSV_PATH: &str = "/audio/bad-rows.csv";

fn account() -> crate::harness::AccountSpec {
    customer(
        "acme",
        "[metadata_csv]\ndir = \"/audio\"\ndelimiter = \";\"\nwait = \"1h\"\n\
         columns = { \"Filename\" = \"filename\" }\n",
    )
}

/// Waits until the journal row of the latest completion of `path` is done
/// and returns its outcome.
async fn processed(server: &TestServer, path: &str) -> TestResult<String> {
    until(INGEST, &format!("{path} processed"), || {
        let rows = server.journal("acme")?;
        let last = rows.iter().rev().find(|r| r.path == path);
        Ok(last
            .filter(|r| r.state == "done")
            .map(|r| r.outcome.clone().unwrap_or_default()))
    })
    .await
}

fn report(server: &TestServer) -> Vec<u8> {
    let file = server
        .jail("acme")
        .join(format!("rejected/{}.csv", paris_today()));
    std::fs::read(file).unwrap_or_default()
}

/// Report lines naming `path` (the header never does).
fn report_lines(report: &[u8], path: &str) -> usize {
    String::from_utf8_lossy(report)
        .lines()
        .filter(|l| l.contains(&format!(";{path};")))
        .count()
}

fn open_rejections_of(server: &TestServer, path: &str) -> TestResult<Vec<serde_json::Value>> {
    Ok(rejections(server, "acme")?
        .into_iter()
        .filter(|r| r["path"] == path)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_bad_rows_store_a_thousand_and_a_summary() -> TestResult {
    let server = start(vec![account()]).await?;
    let mut csv = String::from("Filename;Advisor;Channel\n");
    for i in 0..5000 {
        writeln!(csv, "call-{i}.mp3;Ana")?;
    }
    upload(&server, "acme", &[("bad.csv", csv.as_bytes(), CSV_PATH)]).await?;
    let outcome = processed(&server, CSV_PATH).await?;
    assert_eq!(outcome, "metadata_csv: 0 rows, 5000 refused");

    let stored = open_rejections_of(&server, CSV_PATH)?;
    assert_eq!(stored.len(), 1001);
    assert_eq!(stored[0]["reason"], "expected 3 columns, found 2");
    assert_eq!(stored[0]["line"], 2);
    assert_eq!(stored[999]["line"], 1001);
    assert_eq!(stored[1000]["reason"], "… and 4000 more rows rejected");
    assert!(stored[1000]["line"].is_null());
    // The report is appended after the commit: wait for its last line.
    report_mentioning(&server, "acme", "4000 more rows rejected").await?;
    let first = report(&server);
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(
        text.starts_with("\u{feff}time;file;checked;reason\n"),
        "{text:.200}"
    );
    assert_eq!(text.matches("time;file;checked").count(), 1);
    assert_eq!(report_lines(&first, CSV_PATH), 1001);

    // The same bytes again: nothing new, in SQLite or in the report.
    let run = server
        .sftp_ok(
            "acme",
            &format!(
                "put {} {CSV_PATH}\n",
                server.local("acme-bad.csv").display()
            ),
        )
        .await?;
    assert!(run.success);
    let again = processed(&server, CSV_PATH).await?;
    assert!(again.contains("unchanged"), "{again}");
    assert_eq!(open_rejections_of(&server, CSV_PATH)?.len(), 1001);
    assert_eq!(report(&server), first);

    // A later rejection appends: the earlier bytes stay as they were.
    let bad_name = "/audio/20260211/not-a-call.mp3";
    upload(&server, "acme", &[("n.mp3", &tone_mp3(), bad_name)]).await?;
    report_mentioning(&server, "acme", bad_name).await?;
    let second = report(&server);
    assert!(second.len() > first.len());
    assert!(
        second.starts_with(&first),
        "earlier bytes of the report changed"
    );
    assert_eq!(report_lines(&second, bad_name), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_rejected_bytes_twice_change_nothing() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let path = "/audio/20260211/not-a-call.mp3";
    let mp3 = tone_mp3();
    let local = local_file(&server, "same.mp3", &mp3)?;
    let put = format!("-mkdir /audio/20260211\nput {} {path}\n", local.display());
    server.sftp_ok("acme", &put).await?;
    let first = processed(&server, path).await?;
    assert_eq!(first, "rejected");
    report_mentioning(&server, "acme", path).await?;
    let before = report(&server);

    // A batch client uploads the same file again the next night.
    server.sftp_ok("acme", &put).await?;
    let again = processed(&server, path).await?;
    assert!(again.starts_with("unchanged"), "{again}");
    assert_eq!(server.journal("acme")?.len(), 2);
    assert_eq!(open_rejections_of(&server, path)?.len(), 1);
    assert_eq!(report(&server), before);

    // Different bytes under the same bad name: a rejection of its own.
    let other = local_file(&server, "other.mp3", &[mp3.as_slice(), b"x"].concat())?;
    server
        .sftp_ok("acme", &format!("put {} {path}\n", other.display()))
        .await?;
    assert_eq!(processed(&server, path).await?, "rejected");
    until(INGEST, "the second rejection in the report", || {
        Ok((report_lines(&report(&server), path) == 2).then_some(()))
    })
    .await?;
    assert_eq!(open_rejections_of(&server, path)?.len(), 2);
    assert!(report(&server).starts_with(&before));
    Ok(())
}
