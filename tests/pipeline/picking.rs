//! Picking and re-uploads through SFTP: exact counts per
//! day window, and a re-upload either changes nothing (same bytes) or
//! supersedes the earlier version without counting twice.

use crate::harness::*;

fn call_path(i: usize) -> String {
    format!(
        "/audio/20260211/2026_02_11_10_00_{i:02}_Jean-Pierre_Dupont_Entrant_478_0682316817_163.wav"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_of_ten_then_reuploads() -> TestResult {
    let server = start(vec![customer("acme", "[picking]\npercent = 20\n")]).await?;
    let bodies: Vec<Vec<u8>> = (0..10).map(|i| small_wav(i as u32)).collect();
    let paths: Vec<String> = (0..10).map(call_path).collect();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}.wav")).collect();
    let files: Vec<(&str, &[u8], &str)> = (0..10)
        .map(|i| (names[i].as_str(), bodies[i].as_slice(), paths[i].as_str()))
        .collect();
    upload(&server, "acme", &files).await?;
    settled(&server, "acme").await?;

    let convs = conversations(&server, "acme")?;
    assert_eq!(convs.len(), 10);
    let picked: Vec<usize> = convs
        .iter()
        .enumerate()
        .filter(|(_, c)| c["picked"] == true)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(picked, [5, 10], "the 5th and 10th by id: {convs:#?}");
    for c in convs.iter().filter(|c| c["picked"] == false) {
        assert_eq!(c["picking_reason"], "over_percent", "{c:#}");
    }
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (10, 2));
    let by_cli = cli_json(&server, &["conversations", "--picked", "true"]).await?;
    assert_eq!(by_cli.as_array().map(Vec::len), Some(2), "{by_cli:#}");

    // The same bytes again: a completion, but nothing changes.
    let journal_before = server.journal("acme")?.len();
    upload(&server, "acme", &[("again.wav", &bodies[2], &paths[2])]).await?;
    let row = until(INGEST, "the re-upload's journal row done", || {
        let rows = server.journal("acme")?;
        Ok(rows
            .get(journal_before)
            .filter(|r| r.state == "done")
            .cloned())
    })
    .await?;
    assert!(
        row.outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("unchanged")),
        "{row:?}"
    );
    assert_eq!(conversations(&server, "acme")?, convs);
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (10, 2));

    // Different bytes: a new version; the old one is superseded and no
    // longer counted.
    let fixed = small_wav(33);
    upload(&server, "acme", &[("fixed.wav", &fixed, &paths[2])]).await?;
    let new = until(INGEST, "the new version", || {
        Ok(conversations(&server, "acme")?
            .into_iter()
            .find(|c| c["sha256"] == sha256_hex(&fixed)))
    })
    .await?;
    assert_eq!(new["status"], "ingested", "{new:#}");
    // By path: conversations of concurrent ingestions get their ids in
    // commit order, not upload order.
    let old = convs
        .iter()
        .find(|c| c["path"] == paths[2].as_str())
        .ok_or("no conversation of the re-uploaded path")?;
    assert_ne!(new["id"], old["id"]);
    let now = conversations(&server, "acme")?;
    assert_eq!(now.len(), 11);
    let old_now = now
        .iter()
        .find(|c| c["id"] == old["id"])
        .ok_or("old gone")?;
    assert_eq!(old_now["status"], "superseded", "{old_now:#}");
    let current: Vec<_> = now.iter().filter(|c| c["status"] != "superseded").collect();
    assert_eq!(current.len(), 10);
    assert_eq!(current.iter().filter(|c| c["picked"] == true).count(), 2);
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (10, 2));
    // Both versions stay archived.
    for c in [old_now, &new] {
        let file = c["archive_path"].as_str().ok_or("no archive path")?;
        assert!(std::path::Path::new(file).exists(), "{c:#}");
    }
    Ok(())
}
