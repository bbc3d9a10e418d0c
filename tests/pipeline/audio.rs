//! Audio deposits through real `sftp` uploads: the seed example
//! becomes the conversation `depot conversation` prints, archived byte for byte; bad audio
//! becomes a rejection the customer reads in `/rejected/`.

use crate::harness::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_in_both_date_directory_styles() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let mp3 = tone_mp3();
    let paths = [
        format!("/audio/20260211/{SEED}"),
        format!("/audio/2026_02_11/{SEED}"),
    ];
    upload(
        &server,
        "acme",
        &[("a.mp3", &mp3, &paths[0]), ("b.mp3", &mp3, &paths[1])],
    )
    .await?;
    settled(&server, "acme").await?;

    // What the operator sees: the real binary's JSON.
    let listed = cli_json(&server, &["conversations", "--account", "acme"]).await?;
    let listed = listed
        .as_array()
        .ok_or("conversations --json: not an array")?;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let sha = sha256_hex(&mp3);
    // Both uploads are ingested concurrently: ids follow commit order.
    let mut listed = listed.clone();
    listed.sort_by_key(|c| c["path"] != paths[0].as_str());
    for (c, path) in listed.iter().zip(&paths) {
        assert_eq!(c["path"], path.as_str(), "{c:#}");
        assert_eq!(c["account"], "acme");
        assert_eq!(c["status"], "ingested", "{c:#}");
        assert_eq!(c["size"], mp3.len() as u64);
        assert_eq!(c["sha256"], sha);
        assert_eq!(c["started_at"], "2026-02-11T15:20:33+01:00", "{c:#}");
        let m = &c["metadata"];
        assert_eq!(m["advisor_firstname"], "Jean-Pierre", "{c:#}");
        assert_eq!(m["advisor_lastname"], "Dupont");
        assert_eq!(m["channel"], "Entrant");
        assert_eq!(m["advisor_extension"], "478");
        assert_eq!(m["called_line"], "0682316817");
        assert_eq!(m["contact_reason"], "163");
        assert_eq!(m["contact_reason_label"], "Résiliation", "{c:#}");
        let a = &c["advisor"];
        assert_eq!(a["email"], "jean-pierre.dupont@acme.com", "{c:#}");
        assert_eq!(a["team"], "Support");
        assert_eq!(a["connector"], "Recorder");
        assert_eq!(c["picked"], true, "no [picking]: everything is picked");
        assert!(c["picking_reason"].is_null());
        let audio = &c["audio"];
        assert_eq!(audio["format"], "mp3", "{c:#}");
        assert_eq!(audio["sample_rate"], 8000, "{c:#}");
        assert_eq!(audio["channels"], 1, "{c:#}");
        let secs = audio["duration_seconds"].as_f64().ok_or("no duration")?;
        assert!(secs > 0.5 && secs < 10.0, "{c:#}");
    }
    // `depot check-name` predicts what ingestion did.
    let predicted = cli_json(&server, &["check-name", "--account", "acme", &paths[0]]).await?;
    assert_eq!(
        predicted["metadata"], listed[0]["metadata"],
        "{predicted:#}"
    );
    assert_eq!(predicted["started_at"], listed[0]["started_at"]);
    assert_eq!(predicted["advisor"]["email"], listed[0]["advisor"]["email"]);

    // One advisor for both calls.
    assert_eq!(listed[0]["advisor"]["id"], listed[1]["advisor"]["id"]);
    let advisors = cli_json(&server, &["advisors", "--account", "acme"]).await?;
    assert_eq!(advisors.as_array().map(Vec::len), Some(1), "{advisors:#}");
    assert_eq!(advisors[0]["first_name"], "Jean-Pierre");
    assert_eq!(advisors[0]["last_name"], "Dupont");

    // The archive: <data>/archive/acme/2026/02/11/<id>.mp3, the same bytes.
    let mut archived = Vec::new();
    for c in &listed {
        let file = server
            .data_dir
            .join("archive/acme/2026/02/11")
            .join(format!("{}.mp3", c["id"]));
        assert_eq!(std::fs::read(&file)?, mp3, "{}", file.display());
        assert_eq!(c["archive_path"], file.display().to_string());
        archived.push(file);
    }

    // The customer deletes its copies: the archive keeps them.
    server
        .sftp_ok("acme", &format!("rm {}\nrm {}\n", paths[0], paths[1]))
        .await?;
    assert!(!server.jail("acme").join(&paths[0][1..]).exists());
    for file in &archived {
        assert_eq!(std::fs::read(file)?, mp3, "{}", file.display());
    }
    assert_eq!(conversations(&server, "acme")?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audio_is_rejected_and_reported_read_only() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let text_mp3 = "/audio/20260211/2026_02_11_09_00_00_Ana_Lima_Entrant_478_0682316817_163.mp3";
    let empty_wav = "/audio/20260211/2026_02_11_09_05_00_Ana_Lima_Entrant_478_0682316817_163.wav";
    upload(
        &server,
        "acme",
        &[
            ("text.mp3", b"this is a text file, not audio\n", text_mp3),
            ("empty.wav", b"", empty_wav),
        ],
    )
    .await?;
    settled(&server, "acme").await?;
    assert!(conversations(&server, "acme")?.is_empty());
    let rejected = rejections(&server, "acme")?;
    assert_eq!(rejected.len(), 2, "{rejected:#?}");
    // Both are ingested concurrently: ids follow commit order.
    let mut paths: Vec<&str> = rejected.iter().filter_map(|r| r["path"].as_str()).collect();
    paths.sort();
    assert_eq!(paths, [text_mp3, empty_wav]);
    for r in &rejected {
        assert_eq!(r["stage"], "audio", "{r:#}");
        assert!(r["line"].is_null());
    }
    // Nothing of a rejected deposit stays in the archive.
    let archive = server.data_dir.join("archive/acme");
    assert!(
        snapshot(&archive)
            .iter()
            .all(|(p, _, kind)| kind == "dir"
                || p.components().any(|c| c.as_os_str() == ".incoming")),
        "{:#?}",
        snapshot(&archive)
    );

    // The customer reads today's report over SFTP (rewritten just after
    // each rejection commits)...
    report_mentioning(&server, "acme", text_mp3).await?;
    report_mentioning(&server, "acme", empty_wav).await?;
    let day = paris_today();
    let report = format!("/rejected/{day}.csv");
    let got = server.local("report.csv");
    server
        .sftp_ok("acme", &format!("get {report} {}\n", got.display()))
        .await?;
    let text = std::fs::read_to_string(&got)?;
    let mut lines = text.lines();
    // UTF-8 with a BOM, `;`, words for what was checked, local time.
    assert_eq!(
        lines.next(),
        Some("\u{feff}time;file;checked;reason"),
        "{text}"
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 2, "{text}");
    let row_of = |path: &str| {
        body.iter()
            .find(|l| l.contains(&format!(";{path};audio content;")))
    };
    assert!(row_of(text_mp3).is_some(), "{text}");
    assert!(
        row_of(empty_wav).is_some_and(|l| l.contains("empty")),
        "{text}"
    );

    // ...and can neither overwrite nor delete it.
    let on_disk = server.jail("acme").join(&report[1..]);
    let before = std::fs::read(&on_disk)?;
    let forged = local_file(&server, "forged.csv", b"path,stage,reason,line,time\n")?;
    let run = server
        .sftp("acme", &format!("put {} {report}\n", forged.display()))
        .await?;
    assert!(!run.success, "{}", run.output());
    assert!(
        run.output().to_lowercase().contains("permission denied"),
        "{}",
        run.output()
    );
    let run = server.sftp("acme", &format!("rm {report}\n")).await?;
    assert!(!run.success, "{}", run.output());
    assert_eq!(std::fs::read(&on_disk)?, before);

    // Fixed and re-uploaded: the rejection leaves the operator's listing.
    upload(&server, "acme", &[("fixed.mp3", &tone_mp3(), text_mp3)]).await?;
    conversation_with_status(&server, "acme", text_mp3, "ingested").await?;
    let open = cli_json(&server, &["rejections", "--account", "acme"]).await?;
    assert_eq!(open.as_array().map(Vec::len), Some(1), "{open:#}");
    assert_eq!(open[0]["path"], empty_wav);
    assert_eq!(open[0]["checked"], "audio content", "{open:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_sessions_320_files_5_new_advisors() -> TestResult {
    const SESSIONS: usize = 8;
    const FILES: usize = 40;
    let server = start(vec![customer("acme", "")]).await?;
    let names = [
        ("Éloïse", "Lefèvre"),
        ("Jean-Pierre", "Dupont"),
        ("Awa", "N'Diaye"),
        ("Marc", "de la Fontaine"),
        ("Zoé", "Martin"),
    ];
    let wav = small_wav(7);
    let local = local_file(&server, "call.wav", &wav)?;
    let mut batches = Vec::new();
    for s in 0..SESSIONS {
        let mut batch = String::from("-mkdir /audio/20260211\n");
        for i in 0..FILES {
            let (first, last) = names[(s * FILES + i) % names.len()];
            // A space or an apostrophe would need quoting in the batch.
            let last = last.replace([' ', '\''], "");
            batch += &format!(
                "put {} /audio/20260211/2026_02_11_10_{s:02}_{i:02}_{first}_{last}_Entrant_{}_0682316817_163.wav\n",
                local.display(),
                100 + s
            );
        }
        batches.push(batch);
    }
    let started = std::time::Instant::now();
    let server = std::sync::Arc::new(server);
    let mut sessions = tokio::task::JoinSet::new();
    for batch in batches {
        let server = server.clone();
        sessions.spawn(async move {
            server
                .sftp_with_timeout("acme", &batch, Duration::from_secs(120))
                .await
        });
    }
    while let Some(run) = sessions.join_next().await {
        let run = run??;
        assert!(run.success, "{}", run.output());
    }
    until(Duration::from_secs(120), "320 conversations", || {
        let n = server
            .journal("acme")?
            .iter()
            .filter(|r| r.state == "done")
            .count();
        Ok((n == SESSIONS * FILES).then_some(()))
    })
    .await?;
    let convs = conversations(&server, "acme")?;
    assert_eq!(convs.len(), SESSIONS * FILES);
    assert!(convs.iter().all(|c| c["status"] == "ingested"));
    assert!(rejections(&server, "acme")?.is_empty());
    let advisors = advisors(&server, "acme")?;
    let mut emails: Vec<&str> = advisors
        .iter()
        .filter_map(|a| a["email"].as_str())
        .collect();
    emails.sort();
    assert_eq!(
        emails,
        [
            "awa.ndiaye@acme.com",
            "eloise.lefevre@acme.com",
            "jean-pierre.dupont@acme.com",
            "marc.delafontaine@acme.com",
            "zoe.martin@acme.com"
        ]
    );
    for a in &advisors {
        let n = convs
            .iter()
            .filter(|c| c["advisor"]["id"] == a["id"])
            .count();
        assert_eq!(n, SESSIONS * FILES / names.len(), "{a:#}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Regression: concurrent rejections each rewrote the customer's report
/// from what they had read, so an older snapshot could land last and a
/// rejection went missing from `/rejected/<day>.csv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_concurrent_rejection_reaches_the_report() -> TestResult {
    const SESSIONS: usize = 6;
    const FILES: usize = 20;
    let server = std::sync::Arc::new(start(vec![customer("acme", "")]).await?);
    let empty = local_file(&server, "empty.wav", b"")?;
    let mut paths = Vec::new();
    let mut sessions = tokio::task::JoinSet::new();
    for s in 0..SESSIONS {
        let mut batch = String::from("-mkdir /audio/20260211\n");
        for i in 0..FILES {
            let path = format!(
                "/audio/20260211/2026_02_11_09_{s:02}_{i:02}_Ana_Lima_Entrant_478_0682316817_163.wav"
            );
            batch += &format!("put {} {path}\n", empty.display());
            paths.push(path);
        }
        let server = server.clone();
        sessions.spawn(async move { server.sftp_ok("acme", &batch).await });
    }
    while let Some(run) = sessions.join_next().await {
        run??;
    }
    until(INGEST, "every rejection recorded", || {
        Ok((rejections(&server, "acme")?.len() == paths.len()).then_some(()))
    })
    .await?;
    let file = server
        .jail("acme")
        .join(format!("rejected/{}.csv", paris_today()));
    until(INGEST, "a report with every rejection", || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        Ok(paths
            .iter()
            .all(|p| text.contains(p.as_str()))
            .then_some(()))
    })
    .await?;
    Ok(())
}
