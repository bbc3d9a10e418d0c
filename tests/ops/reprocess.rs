//! `depot reprocess ID...` after fixing a contact-reason mapping: the old
//! conversation is superseded, the new one has the label and keeps its
//! picking decision (counters unchanged) unless `--repick`.

use crate::harness::*;

/// An account whose reasons come from `reasons.csv`, unknown ids kept.
fn account(percent: u32) -> TestResult<String> {
    account_toml(&format!(
        "[contact_reasons]\nfile = \"reasons.csv\"\non_unknown = \"keep\"\n\n[picking]\npercent = {percent}\n"
    ))
}

/// One conversation as stored: status, contact-reason label, picked, why not.
type Row = (String, Option<String>, bool, Option<String>);

fn row(depot: &TestServer, id: i64) -> TestResult<Row> {
    let db = open_db(&depot.data_dir.join("depot.db"))?;
    Ok(db.query_row(
        "SELECT status, json_extract(metadata, '$.contact_reason_label'), picked, picking_reason
         FROM conversations WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?)
}

/// The current conversation of the call with reason 999.
fn current_999(depot: &TestServer) -> TestResult<i64> {
    let db = open_db(&depot.data_dir.join("depot.db"))?;
    Ok(db.query_row(
        "SELECT id FROM conversations WHERE path LIKE '%\\_999.wav' ESCAPE '\\' AND status != 'superseded'",
        [],
        |r| r.get(0),
    )?)
}

fn received_at(depot: &TestServer, id: i64) -> TestResult<String> {
    let db = open_db(&depot.data_dir.join("depot.db"))?;
    Ok(db.query_row(
        "SELECT received_at FROM conversations WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// Picked in the counters, and picked among current conversations.
fn picked_counts(depot: &TestServer) -> TestResult<(i64, i64)> {
    let db = open_db(&depot.data_dir.join("depot.db"))?;
    let counted = db.query_row(
        "SELECT coalesce(sum(picked), 0) FROM picking_windows",
        [],
        |r| r.get(0),
    )?;
    let current = db.query_row(
        "SELECT count(*) FROM conversations WHERE status = 'ingested' AND picked",
        [],
        |r| r.get(0),
    )?;
    Ok((counted, current))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reprocess_ids_keeps_the_pick_unless_repick() -> TestResult {
    let depot = TestServer::prepare(TestConfig::files(&[("acme", account(100)?)]))?;
    let reasons = depot.accounts_dir.join("reasons.csv");
    std::fs::write(&reasons, "id,label\n163,Résiliation\n")?;
    let dir = depot.local("recs").join("20260211");
    std::fs::create_dir_all(&dir)?;
    for (i, reason) in [(0, "163"), (1, "999")] {
        let (name, bytes) = recording(i, reason);
        std::fs::write(dir.join(name), bytes)?;
    }
    let src = depot.local("recs").to_string_lossy().into_owned();
    let out = depot.cli_ok(&["import", "--account", "acme", &src]).await?;
    assert!(out.contains("2 conversation(s), 0 rejection(s)"), "{out}");
    let old = current_999(&depot)?;
    assert_eq!(row(&depot, old)?, ("ingested".into(), None, true, None));
    assert_eq!(picked_counts(&depot)?, (2, 2));

    // The mapping is fixed: the call gets its label, keeps its pick.
    std::fs::write(&reasons, "id,label\n163,Résiliation\n999,Autre\n")?;
    let id = old.to_string();
    let out = depot.cli_ok(&["reprocess", &id]).await?;
    assert!(
        out.ends_with("reprocessed 1 file(s): 1 conversation(s), 0 rejection(s), 0 skipped\n"),
        "{out}"
    );
    let new = current_999(&depot)?;
    assert_ne!(new, old);
    assert_eq!(row(&depot, old)?.0, "superseded");
    assert_eq!(
        row(&depot, new)?,
        ("ingested".into(), Some("Autre".into()), true, None)
    );
    assert_eq!(picked_counts(&depot)?, (2, 2));
    assert_eq!(depot.live_conversations("acme")?, 2);
    assert_eq!(received_at(&depot, new)?, received_at(&depot, old)?);

    // A superseded conversation is not run again.
    let out = depot.cli(&["reprocess", &id]).await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("superseded"));

    // --repick at 0%, with the customer's copy gone: read from the archive,
    // a fresh decision, counters still consistent.
    std::fs::write(depot.account_file("acme"), account(0)?)?;
    let (name, _) = recording(1, "999");
    std::fs::remove_file(depot.jail("acme").join("audio/20260211").join(name))?;
    let out = depot
        .cli_ok(&["reprocess", "--repick", &new.to_string()])
        .await?;
    assert!(out.contains("1 conversation(s)"), "{out}");
    let newer = current_999(&depot)?;
    assert_eq!(
        row(&depot, newer)?,
        (
            "ingested".into(),
            Some("Autre".into()),
            false,
            Some("over_percent".into())
        )
    );
    assert_eq!(picked_counts(&depot)?, (1, 1));
    assert_eq!(depot.live_conversations("acme")?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reprocess_of_an_unknown_id_exits_1() -> TestResult {
    let depot = TestServer::prepare(TestConfig::files(&[("acme", account_toml("")?)]))?;
    let src = recordings(&depot.local("recs"), 1, "163")?;
    depot
        .cli_ok(&["import", "--account", "acme", &src.to_string_lossy()])
        .await?;
    let out = depot.cli(&["reprocess", "4242"]).await?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no conversation 4242"), "{err}");
    assert_eq!(depot.journal_rows("acme")?, 1);
    Ok(())
}
