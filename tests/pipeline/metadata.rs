//! Metadata CSVs through SFTP: rows joined to audio in
//! either order, the wait for a missing row (also across a restart), bad
//! rows reported with their line, dialects that must parse the same, and
//! opaque file names whose metadata comes only from the CSV.

use crate::harness::*;
use serde_json::Value as Json;
use std::time::{Duration, Instant};

const HEADER: &str =
    "Filename;Advisor Firstname;Advisor Lastname;Channel;Line;Outgoing;Reason;Comment";

/// `[metadata_csv]` as an account file has it, with the given extra keys.
fn metadata_section(more: &str) -> String {
    format!(
        "[metadata_csv]\n\
         dir = \"/audio\"\n\
         filename_column = \"filename\"\n\
         delimiter = \";\"\n\
         quote = '\"'\n\
         columns = {{ \"Filename\" = \"filename\", \"Advisor Firstname\" = \"advisor_firstname\", \"Advisor Lastname\" = \"advisor_lastname\", \"Channel\" = \"channel\", \"Line\" = \"advisor_extension\", \"Outgoing\" = \"called_line\", \"Reason\" = \"contact_reason\" }}\n\
         {more}\n"
    )
}

fn account(name: &str, more: &str) -> AccountSpec {
    customer(name, &metadata_section(more))
}

fn audio_path(name: &str) -> String {
    format!("/audio/20260211/{name}")
}

/// Waits until the journal row of the latest completion of `path` is done.
async fn processed(server: &TestServer, account: &str, path: &str) -> TestResult {
    until(INGEST, &format!("{path} processed"), || {
        let rows = server.journal(account)?;
        let last = rows.iter().rev().find(|r| r.path == path);
        Ok(last.filter(|r| r.state == "done").map(|_| ()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_before_and_after_its_audio_and_a_short_row() -> TestResult {
    let server = start(vec![account("acme", "wait = \"1h\"\n")]).await?;
    let mp3 = tone_mp3();

    // 1. The CSV first: quoted `;`, an embedded newline, `""` inside a
    // field, and a channel that overrides the file name's (merge).
    let csv1 = format!(
        "{HEADER}\n{SEED};Jean-Pierre;Dupont;Sortant;478;0682316817;163;\"said \"\"hello\"\"; then\nhung up\"\n"
    );
    upload(
        &server,
        "acme",
        &[("m1.csv", csv1.as_bytes(), "/audio/meta-1.csv")],
    )
    .await?;
    processed(&server, "acme", "/audio/meta-1.csv").await?;
    let seed = audio_path(SEED);
    upload(&server, "acme", &[("seed.mp3", &mp3, &seed)]).await?;
    let c = conversation_with_status(&server, "acme", &seed, "ingested").await?;
    let m = &c["metadata"];
    assert_eq!(m["Comment"], "said \"hello\"; then\nhung up", "{c:#}");
    assert_eq!(m["channel"], "Sortant", "the CSV overrides the name: {c:#}");
    assert_eq!(m["contact_reason_label"], "Résiliation");
    assert_eq!(c["started_at"], "2026-02-11T15:20:33+01:00");
    assert_eq!(c["advisor"]["email"], "jean-pierre.dupont@acme.com");

    // 2. The audio first: it waits, then completes when its row arrives.
    let late = "2026_02_11_16_00_00_Ana_Lima_Entrant_479_0682316817_164.mp3";
    let late_path = audio_path(late);
    upload(&server, "acme", &[("late.mp3", &mp3, &late_path)]).await?;
    let waiting =
        conversation_with_status(&server, "acme", &late_path, "awaiting_metadata").await?;
    assert!(waiting["advisor"].is_null(), "{waiting:#}");
    assert_eq!(waiting["picked"], false);
    let listed = cli_json(&server, &["conversations", "--status", "awaiting_metadata"]).await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");

    // Its CSV also has a short row (line 4, after a quoted newline) and a
    // row for audio still to come.
    let other = "2026_02_11_17_00_00_Zoé_Martin_Entrant_480_0682316817_163.mp3";
    let csv2 = format!(
        "{HEADER}\r\n\
         {late};Ana;Lima;Entrant;479;0682316817;164;\"two\r\nlines\"\r\n\
         short.mp3;Ana;Lima\r\n\
         {other};Zoé;Martin;Sortant;480;0682316817;163;\r\n"
    );
    upload(
        &server,
        "acme",
        &[("m2.csv", csv2.as_bytes(), "/audio/meta-2.csv")],
    )
    .await?;
    let done = conversation_with_status(&server, "acme", &late_path, "ingested").await?;
    assert_eq!(done["id"], waiting["id"], "completed in place");
    assert_eq!(done["metadata"]["contact_reason_label"], "Facturation");
    assert_eq!(done["metadata"]["Comment"], "two\r\nlines");
    assert_eq!(done["advisor"]["email"], "ana.lima@acme.com", "{done:#}");
    assert_eq!(done["picked"], true);
    assert_eq!(done["started_at"], "2026-02-11T16:00:00+01:00");

    let r = rejection_of(&server, "acme", "/audio/meta-2.csv", INGEST).await?;
    assert_eq!(r["stage"], "metadata_csv", "{r:#}");
    assert_eq!(r["line"], 4, "{r:#}");
    report_mentioning(&server, "acme", "/audio/meta-2.csv;metadata CSV line 4;").await?;

    // The CSV's other row waits for its audio and is used when it comes.
    let other_path = audio_path(other);
    upload(&server, "acme", &[("other.mp3", &mp3, &other_path)]).await?;
    let c = conversation_with_status(&server, "acme", &other_path, "ingested").await?;
    assert_eq!(c["metadata"]["channel"], "Sortant", "{c:#}");
    assert_eq!(c["advisor"]["email"], "zoe.martin@acme.com");
    Ok(())
}

fn timeout_accounts(wait: &str) -> Vec<AccountSpec> {
    vec![
        account(
            "strict",
            &format!("wait = \"{wait}\"\non_timeout = \"reject\"\n"),
        ),
        account(
            "lenient",
            &format!("wait = \"{wait}\"\non_timeout = \"filename_only\"\n"),
        ),
    ]
}

/// Both accounts' audio, uploaded and seen waiting.
async fn upload_waiting(server: &TestServer) -> TestResult<String> {
    let path = audio_path(SEED);
    for acc in ["strict", "lenient"] {
        upload(server, acc, &[("seed.mp3", &tone_mp3(), &path)]).await?;
        conversation_with_status(server, acc, &path, "awaiting_metadata").await?;
    }
    Ok(path)
}

/// After the wait: `strict` rejected the audio, `lenient` ingested it with
/// its file-name metadata.
async fn check_timed_out(server: &TestServer, path: &str) -> TestResult {
    let r = rejection_of(server, "strict", path, Duration::from_secs(20)).await?;
    assert_eq!(r["stage"], "metadata_csv", "{r:#}");
    assert!(conversations(server, "strict")?.is_empty());
    report_mentioning(server, "strict", path).await?;

    let c = conversation_with_status(server, "lenient", path, "ingested").await?;
    assert_eq!(c["metadata"]["advisor_lastname"], "Dupont", "{c:#}");
    assert_eq!(c["metadata"]["contact_reason_label"], "Résiliation");
    assert_eq!(c["advisor"]["email"], "jean-pierre.dupont@acme.com");
    assert_eq!(c["started_at"], "2026-02-11T15:20:33+01:00");
    assert!(
        c["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "metadata_csv_timeout")),
        "{c:#}"
    );
    assert!(rejections(server, "lenient")?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_never_comes_times_out() -> TestResult {
    let server = start(timeout_accounts("2s")).await?;
    let started = Instant::now();
    let path = upload_waiting(&server).await?;
    check_timed_out(&server, &path).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "on_timeout applied before the wait ran out ({:?})",
        started.elapsed()
    );
    // Counters count outcomes: the call that waited and was rejected is
    // a rejection only, the one completed at timeout one conversation.
    let m = &server.running().shared.metrics;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&m.conversations), 1, "conversations counted");
    assert_eq!(get(&m.rejections), 1, "rejections counted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_survives_a_restart() -> TestResult {
    let mut server = start(timeout_accounts("5s")).await?;
    let path = upload_waiting(&server).await?;
    server.stop().await?;
    for acc in ["strict", "lenient"] {
        let c = conversations(&server, acc)?;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["status"], "awaiting_metadata", "{c:#?}");
    }
    server.restart().await?;
    check_timed_out(&server, &path).await?;
    Ok(())
}

/// The same rows in three dialects: Windows-1252 with CRLF, UTF-8 with a
/// BOM (accepted whatever the configured encoding), and two rows to skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_and_line_endings_parse_the_same() -> TestResult {
    let server = start(vec![
        account("legacy", "encoding = \"windows-1252\"\n"),
        account("exported", "skip_rows = 2\n"),
    ])
    .await?;
    let name = |n: u32| format!("2026_02_11_11_00_{n:02}_X_Y_Entrant_1_2_163.mp3");
    let row = |n: u32| {
        format!(
            "{};Éloïse;Lefèvre;Sortant;478;0682316817;164;\"coût 12€; payé \"\"ok\"\"\"",
            name(n)
        )
    };
    let cp1252 = format!("{HEADER}\r\n{}\r\n\r\n", row(1));
    let (cp1252, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&cp1252);
    assert!(!unmappable);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(format!("{HEADER}\n{}\n", row(2)).as_bytes());
    let skipped = format!("Export of 2026-02-11;;;\n{HEADER}\n{}\n", row(3));

    let mp3 = tone_mp3();
    let (p1, p2, p3) = (
        audio_path(&name(1)),
        audio_path(&name(2)),
        audio_path(&name(3)),
    );
    upload(
        &server,
        "legacy",
        &[
            ("cp1252.csv", &cp1252, "/audio/cp1252.csv"),
            ("bom.csv", &bom, "/audio/bom.csv"),
        ],
    )
    .await?;
    upload(
        &server,
        "exported",
        &[("skip.csv", skipped.as_bytes(), "/audio/skip.csv")],
    )
    .await?;
    upload(
        &server,
        "legacy",
        &[("1.mp3", &mp3, &p1), ("2.mp3", &mp3, &p2)],
    )
    .await?;
    upload(&server, "exported", &[("3.mp3", &mp3, &p3)]).await?;

    let mut seen: Vec<Json> = Vec::new();
    for (acc, p) in [("legacy", &p1), ("legacy", &p2), ("exported", &p3)] {
        let c = conversation_with_status(&server, acc, p, "ingested").await?;
        let mut m = c["metadata"].clone();
        m.as_object_mut().ok_or("metadata")?.remove("filename");
        assert_eq!(m["Comment"], "coût 12€; payé \"ok\"", "{acc}: {c:#}");
        assert_eq!(m["advisor_firstname"], "Éloïse", "{acc}: {c:#}");
        assert_eq!(c["advisor"]["email"], "eloise.lefevre@acme.com");
        seen.push(m);
    }
    assert_eq!(seen[0], seen[1], "Windows-1252 + CRLF vs UTF-8 + BOM");
    assert_eq!(seen[0], seen[2], "two rows skipped");
    assert!(rejections(&server, "legacy")?.is_empty());
    assert!(rejections(&server, "exported")?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_names_take_their_metadata_only_from_the_csv() -> TestResult {
    let server = start(vec![account("opaque", "use = \"only\"\nwait = \"1h\"\n")]).await?;
    let opaque = "88fds22fq3zf44fds82s.mp3";
    let csv = format!("{HEADER}\n{opaque};Jean-Pierre;Dupont;Entrant;478;0682316817;163;\n");
    let path = audio_path(opaque);
    // Audio first this time: it waits for the row.
    upload(&server, "opaque", &[("o.mp3", &tone_mp3(), &path)]).await?;
    conversation_with_status(&server, "opaque", &path, "awaiting_metadata").await?;
    upload(
        &server,
        "opaque",
        &[("o.csv", csv.as_bytes(), "/audio/calls.csv")],
    )
    .await?;
    let c = conversation_with_status(&server, "opaque", &path, "ingested").await?;
    let m = &c["metadata"];
    assert_eq!(m["advisor_firstname"], "Jean-Pierre", "{c:#}");
    assert_eq!(m["advisor_lastname"], "Dupont");
    assert_eq!(m["channel"], "Entrant");
    assert_eq!(m["advisor_extension"], "478");
    assert_eq!(m["called_line"], "0682316817");
    assert_eq!(m["contact_reason"], "163");
    assert_eq!(m["contact_reason_label"], "Résiliation");
    assert_eq!(c["advisor"]["email"], "jean-pierre.dupont@acme.com");
    assert_eq!(c["advisor"]["first_name"], "Jean-Pierre");
    assert_eq!(c["advisor"]["last_name"], "Dupont");
    assert!(rejections(&server, "opaque")?.is_empty());
    Ok(())
}

/// Regression: replacing an audio that was still waiting for its row took
/// an arrival out of the picking window although a waiting call was never
/// counted, so later calls were picked against too small a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_waiting_audio_does_not_uncount_the_window() -> TestResult {
    let server = start(vec![customer(
        "acme",
        &format!(
            "{}[picking]\npercent = 50\n",
            metadata_section("wait = \"1h\"\n")
        ),
    )])
    .await?;
    let first = audio_path(SEED);
    let csv = format!("{HEADER}\n{SEED};Jean-Pierre;Dupont;Entrant;478;0682316817;163;\n");
    upload(
        &server,
        "acme",
        &[("m1.csv", csv.as_bytes(), "/audio/m1.csv")],
    )
    .await?;
    processed(&server, "acme", "/audio/m1.csv").await?;
    upload(&server, "acme", &[("a.wav", &small_wav(1), &first)]).await?;
    conversation_with_status(&server, "acme", &first, "ingested").await?;
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (1, 0));

    // A second call waits for its row, and is replaced while it waits.
    let name = "2026_02_11_16_00_00_Ana_Lima_Entrant_479_0682316817_164.wav";
    let second = audio_path(name);
    upload(&server, "acme", &[("b1.wav", &small_wav(2), &second)]).await?;
    conversation_with_status(&server, "acme", &second, "awaiting_metadata").await?;
    upload(&server, "acme", &[("b2.wav", &small_wav(3), &second)]).await?;
    until(INGEST, "the first version superseded", || {
        let c = conversations(&server, "acme")?;
        Ok((c.iter().filter(|c| c["path"] == second.as_str()).count() == 2).then_some(()))
    })
    .await?;
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (1, 0));

    let csv = format!("{HEADER}\n{name};Ana;Lima;Entrant;479;0682316817;164;\n");
    upload(
        &server,
        "acme",
        &[("m2.csv", csv.as_bytes(), "/audio/m2.csv")],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", &second, "ingested").await?;
    assert_eq!(c["sha256"], sha256_hex(&small_wav(3)));
    assert_eq!(c["picked"], true, "2nd of 2 at 50%: {c:#}");
    assert_eq!(window_counts(&server, "acme", "2026-02-11")?, (2, 1));
    Ok(())
}

/// Regression: a CSV re-uploaded without the bad row kept its old
/// rejection open in `depot rejections` (a rejected deposit re-uploaded
/// successfully clears it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_csv_clears_its_rejection() -> TestResult {
    let server = start(vec![account("acme", "wait = \"1h\"\n")]).await?;
    let bad = format!("{HEADER}\nshort.mp3;Ana\n");
    upload(
        &server,
        "acme",
        &[("bad.csv", bad.as_bytes(), "/audio/m.csv")],
    )
    .await?;
    let r = rejection_of(&server, "acme", "/audio/m.csv", INGEST).await?;
    assert_eq!(r["line"], 2, "{r:#}");
    let good = format!("{HEADER}\nshort.mp3;Ana;Lima;Entrant;479;0682316817;164;\n");
    upload(
        &server,
        "acme",
        &[("good.csv", good.as_bytes(), "/audio/m.csv")],
    )
    .await?;
    processed(&server, "acme", "/audio/m.csv").await?;
    let open = rejections(&server, "acme")?;
    assert!(open.is_empty(), "{open:#?}");
    let listed = cli_json(&server, &["rejections", "--account", "acme"]).await?;
    assert_eq!(listed, serde_json::json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_row_rejects_its_audio_at_once_and_a_fixed_csv_releases_it() -> TestResult {
    // The default wait (24 h): a rejection within the test's time can only
    // come from the broken row itself.
    let server = start(vec![account("acme", "")]).await?;
    let mp3 = tone_mp3();
    let late = "2026_02_11_16_00_00_Ana_Lima_Entrant_479_0682316817_164.mp3";
    let (seed, late_path) = (audio_path(SEED), audio_path(late));

    // The audio waits; then its CSV row arrives one column short.
    upload(&server, "acme", &[("seed.mp3", &mp3, &seed)]).await?;
    conversation_with_status(&server, "acme", &seed, "awaiting_metadata").await?;
    let broken = format!(
        "{HEADER}\n{SEED};Jean-Pierre;Dupont;Sortant;478;0682316817;163\n{late};Ana;Lima;Entrant;479;0682316817\n"
    );
    upload(
        &server,
        "acme",
        &[("b.csv", broken.as_bytes(), "/audio/meta.csv")],
    )
    .await?;
    let r = rejection_of(&server, "acme", &seed, INGEST).await?;
    assert_eq!(
        r["reason"], "metadata CSV /audio/meta.csv line 2: expected 8 columns, found 7",
        "{r:#}"
    );
    // Audio arriving after its broken row is rejected at once too.
    upload(&server, "acme", &[("late.mp3", &mp3, &late_path)]).await?;
    let r = rejection_of(&server, "acme", &late_path, INGEST).await?;
    assert_eq!(
        r["reason"], "metadata CSV /audio/meta.csv line 3: expected 8 columns, found 6",
        "{r:#}"
    );

    // The customer fixes the CSV: both calls are ingested, nobody else acts.
    let fixed = format!(
        "{HEADER}\n{SEED};Jean-Pierre;Dupont;Sortant;478;0682316817;163;\n{late};Ana;Lima;Entrant;479;0682316817;164;\n"
    );
    upload(
        &server,
        "acme",
        &[("f.csv", fixed.as_bytes(), "/audio/meta.csv")],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", &seed, "ingested").await?;
    assert_eq!(c["metadata"]["channel"], "Sortant", "{c:#}");
    conversation_with_status(&server, "acme", &late_path, "ingested").await?;
    until(INGEST, "the audio rejections closed", || {
        let open = rejections(&server, "acme")?;
        Ok((!open
            .iter()
            .any(|r| r["path"] == seed || r["path"] == late_path))
        .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nfc_row_completes_audio_waiting_under_its_nfd_name() -> TestResult {
    let server = start(vec![account("acme", "")]).await?;
    let nfc = "2026_02_11_16_00_00_Zo\u{e9}_Lima_Entrant_479_0682316817_164.mp3";
    let nfd = "2026_02_11_16_00_00_Zoe\u{301}_Lima_Entrant_479_0682316817_164.mp3";
    let path = audio_path(nfd);
    upload(&server, "acme", &[("nfd.mp3", &tone_mp3(), &path)]).await?;
    conversation_with_status(&server, "acme", &path, "awaiting_metadata").await?;
    let csv = format!("{HEADER}\n{nfc};Zo\u{e9};Lima;Entrant;479;0682316817;164;from the CSV\n");
    upload(
        &server,
        "acme",
        &[("m.csv", csv.as_bytes(), "/audio/meta.csv")],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", &path, "ingested").await?;
    assert_eq!(c["metadata"]["Comment"], "from the CSV", "{c:#}");
    Ok(())
}
