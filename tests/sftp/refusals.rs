//! Uploads that could never be ingested are refused at OPEN with
//! permission denied: nothing is created, nothing journaled.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_extension_in_audio_is_refused_at_open() -> TestResult {
    let mut server = TestServer::start().await?;
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
            assert!(st.error_message.contains("allowed extensions"), "{st:?}");
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
        .rename(&tmp, format!("{dir}/setup.exe"))
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
    server.stop().await
}
