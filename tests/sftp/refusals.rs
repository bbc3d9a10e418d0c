//! With `audio.on_unwanted = "refuse"`, uploads that could never be
//! ingested are refused at OPEN (and RENAME) with permission denied and
//! the reason: nothing is created, nothing journaled — and the refusal is
//! recorded and listed in the customer's `/rejected/` report.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_extension_in_audio_is_refused_at_open() -> TestResult {
    let mut acme = AccountSpec::audio("acme");
    acme.extra += "on_unwanted = \"refuse\"\n";
    let mut server = TestServer::start_with(TestConfig {
        accounts: vec![acme],
        ..TestConfig::default()
    })
    .await?;
    let local = server.local("setup.exe");
    std::fs::write(&local, b"MZ not a recording")?;
    let dir = "/audio/20260211";
    server.sftp_ok("acme", &format!("mkdir {dir}\n")).await?;

    for remote in [
        format!("{dir}/setup.exe"),
        format!("{dir}/notes.csv"),
        format!("{dir}/noext"),
    ] {
        let run = server
            .sftp("acme", &format!("put {} {remote}\n", local.display()))
            .await?;
        assert!(!run.success, "{remote} was accepted:\n{}", run.output());
        assert!(
            run.output().contains("Permission denied"),
            "{}",
            run.output()
        );
    }

    // The raw client also sees the reason the server gives.
    let client = server.raw_sftp("acme").await?;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    match client
        .sftp
        .open(format!("{dir}/x.EXE"), flags, FileAttributes::default())
        .await
    {
        Err(russh_sftp::client::error::Error::Status(st)) => {
            assert_eq!(st.status_code, StatusCode::PermissionDenied);
            assert_eq!(
                st.error_message,
                "file type: '.EXE' is not ingested in /audio; allowed: mp3, wav"
            );
        }
        other => panic!("expected permission denied, got {other:?}"),
    }
    // A temporary name is accepted, but renaming it to a refused name is not.
    let tmp = format!("{dir}/setup.exe.part");
    let h = client
        .sftp
        .open(&tmp, flags, FileAttributes::default())
        .await?
        .handle;
    client.sftp.write(&h, 0, b"MZ".to_vec()).await?;
    client.sftp.close(&h).await?;
    assert!(client
        .sftp
        .rename(&tmp, format!("{dir}/other.exe"))
        .await
        .is_err());
    client.cut().await;

    let jail_dir = server.jail("acme").join("audio/20260211");
    let names: Vec<String> = std::fs::read_dir(&jail_dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["setup.exe.part".to_string()]);
    assert!(server.journal("acme")?.is_empty());

    // Each refused name is one open rejection (a client retrying it adds
    // none), and one line in today's report.
    let conn = open_db(&server.db_path())?;
    let mut st = conn.prepare(
        "SELECT path, stage, reason FROM rejections WHERE journal_id IS NULL ORDER BY id",
    )?;
    let rows: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let paths: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{dir}/setup.exe"),
            format!("{dir}/notes.csv"),
            format!("{dir}/noext"),
            format!("{dir}/x.EXE"),
            format!("{dir}/other.exe"),
        ],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.1 == "file_type"), "{rows:?}");
    assert_eq!(
        rows[0].2,
        "'.exe' is not ingested in /audio; allowed: mp3, wav"
    );
    let mut report = String::new();
    for e in std::fs::read_dir(server.jail("acme").join("rejected"))? {
        report += &String::from_utf8(std::fs::read(e?.path())?)?;
    }
    for p in &paths {
        assert_eq!(
            report
                .matches(&format!("{p};"))
                .count()
                .max(report.matches(&format!("{p},")).count()),
            1,
            "{p} in:\n{report}"
        );
    }
    server.stop().await
}
