//! `depot import` and `depot reprocess --rejected`, run as the binary (not
//! on a terminal), with and without the server running.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn importing_200_recordings_twice_gives_200_conversations() -> TestResult {
    let mut depot = TestServer::prepare(TestConfig::files(&[("fresh", account_toml("")?)]))?;
    // The server runs meanwhile: both write the same database.
    depot.boot().await?;
    let src = recordings(&depot.local("backfill"), 200, "163")?;
    let src = src.to_string_lossy().into_owned();
    let out = depot
        .cli_ok(&["import", "--account", "fresh", &src])
        .await?;
    assert_eq!(depot.live_conversations("fresh")?, 200, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // Line-based without a terminal: one line per file, then the summary.
    assert_eq!(lines.len(), 201, "{out}");
    assert!(lines[..200]
        .iter()
        .all(|l| l.starts_with("conversation ") && l.contains("\t/audio/20260211/")));
    assert_eq!(
        lines[200],
        "imported 200 file(s): 200 conversation(s), 0 rejection(s), 0 skipped"
    );
    let (name, _) = recording(7, "163");
    assert!(depot
        .jail("fresh")
        .join("audio/20260211")
        .join(name)
        .is_file());

    // Again, with the server stopped: nothing changes.
    depot.stop().await?;
    let out = depot
        .cli_ok(&["import", "--account", "fresh", &src])
        .await?;
    assert!(
        out.ends_with("imported 200 file(s): 0 conversation(s), 0 rejection(s), 200 skipped\n"),
        "{out}"
    );
    assert_eq!(depot.live_conversations("fresh")?, 200);
    assert_eq!(depot.journal_rows("fresh")?, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reprocess_rejected_after_fixing_the_mapping_gives_conversations() -> TestResult {
    let strict = |map: &str| {
        account_toml(&format!(
            "[contact_reasons]\nmap = {{ {map} }}\non_unknown = \"reject\"\n"
        ))
    };
    let depot = TestServer::prepare(TestConfig::files(&[(
        "acme",
        strict("\"163\" = \"Résiliation\"")?,
    )]))?;
    let ok = recordings(&depot.local("ok"), 2, "163")?;
    let unknown = recordings(&depot.local("unknown"), 3, "999")?;
    let out = depot
        .cli_ok(&[
            "import",
            "--account",
            "acme",
            &ok.to_string_lossy(),
            &unknown.to_string_lossy(),
        ])
        .await?;
    assert!(out.contains("2 conversation(s), 3 rejection(s)"), "{out}");
    assert_eq!(depot.open_rejections("acme")?, 3);

    std::fs::write(
        depot.account_file("acme"),
        strict("\"163\" = \"Résiliation\", \"999\" = \"Autre\"")?,
    )?;
    let out = depot.cli_ok(&["reprocess", "--rejected"]).await?;
    assert!(
        out.ends_with("reprocessed 3 file(s): 3 conversation(s), 0 rejection(s), 0 skipped\n"),
        "{out}"
    );
    assert_eq!(depot.live_conversations("acme")?, 5);
    assert_eq!(depot.open_rejections("acme")?, 0);
    // Nothing left to do.
    let out = depot.cli_ok(&["reprocess", "--rejected"]).await?;
    assert!(out.contains("reprocessed 0 file(s)"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_waiting_for_their_csv_row_are_not_reported_as_conversations() -> TestResult {
    let extra = "[metadata_csv]\ndir = \"/audio\"\nwait = \"1h\"\n";
    let depot = TestServer::prepare(TestConfig::files(&[("acme", account_toml(extra)?)]))?;
    let src = recordings(&depot.local("waiting"), 2, "163")?;
    let src = src.to_string_lossy().into_owned();
    let out = depot.cli_ok(&["import", "--account", "acme", &src]).await?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[..2]
            .iter()
            .all(|l| l.starts_with("waiting for its metadata CSV row (conversation ")),
        "{out}"
    );
    assert_eq!(
        lines[2],
        "imported 2 file(s): 0 conversation(s), 0 rejection(s), 0 skipped, 2 waiting for their metadata CSV row"
    );
    Ok(())
}
