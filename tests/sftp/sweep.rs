//! The sweep of stale uploads: temporary names and uploads cut off under a
//! final name that nobody touched for `audio.sweep_after` are removed —
//! never a file a client holds open, never a completed deposit, never a
//! system file.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temporary_and_partial_uploads_are_swept_but_not_open_ones() -> TestResult {
    let mut acme = AccountSpec::audio("acme");
    acme.extra += "sweep_after = \"1s\"\n";
    let mut server = TestServer::start_with(TestConfig {
        accounts: vec![acme],
        ..TestConfig::default()
    })
    .await?;
    let dir = "/audio/20260211";
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    server.sftp_ok("acme", &format!("mkdir {dir}\n")).await?;

    // First a temporary upload whose client keeps its handle open.
    let holder = server.raw_sftp("acme").await?;
    let held = format!("{dir}/held.mp3.filepart");
    let h = holder
        .sftp
        .open(&held, flags, FileAttributes::default())
        .await?
        .handle;
    holder
        .sftp
        .write(&h, 0, b"still uploading".to_vec())
        .await?;

    // Then: a finished temporary upload left behind, an upload cut off
    // under its final name, a system file and a completed recording.
    let local = server.local("tone.mp3");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tone.mp3"),
        &local,
    )?;
    let junk = server.local("junk.bin");
    std::fs::write(&junk, content(4000, 7))?;
    server
        .sftp_ok(
            "acme",
            &format!(
                "put {j} {dir}/left.mp3.part\nput {j} {dir}/.DS_Store\nput {t} {dir}/ok.mp3\n",
                j = junk.display(),
                t = local.display()
            ),
        )
        .await?;
    let cut = server.raw_sftp("acme").await?;
    let h2 = cut
        .sftp
        .open(format!("{dir}/cut.mp3"), flags, FileAttributes::default())
        .await?
        .handle;
    cut.sftp.write(&h2, 0, content(3000, 9)).await?;
    cut.cut().await;

    let jail_dir = server.jail("acme").join(dir.trim_start_matches('/'));
    let exists = |n: &str| jail_dir.join(n).exists();
    eventually(
        Duration::from_secs(30),
        "the stale uploads to be swept",
        || !exists("left.mp3.part") && !exists("cut.mp3"),
    )
    .await?;
    // The sweep that removed those ran after the held file was due too.
    assert!(exists("held.mp3.filepart"), "an open upload was swept");
    assert!(exists("ok.mp3"), "a completed deposit was swept");
    assert!(exists(".DS_Store"), "a system file was swept");

    // Closed and left alone, it goes as well.
    holder.sftp.close(&h).await?;
    eventually(
        Duration::from_secs(30),
        "the released upload to be swept",
        || !exists("held.mp3.filepart"),
    )
    .await?;
    assert!(exists("ok.mp3"));
    let swept = &server.running().shared.metrics.uploads_swept;
    eventually(Duration::from_secs(30), "three removals counted", || {
        swept.load(std::sync::atomic::Ordering::Relaxed) == 3
    })
    .await?;
    holder.cut().await;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swept_bytes_no_longer_count_against_the_quota() -> TestResult {
    let mut acme = AccountSpec::audio("acme");
    acme.extra = format!("quota_bytes = 10000\n{}sweep_after = \"1s\"\n", acme.extra);
    let mut server = TestServer::start_with(TestConfig {
        accounts: vec![acme],
        ..TestConfig::default()
    })
    .await?;
    let dir = "/audio/20260211";
    let big = server.local("big.bin");
    std::fs::write(&big, content(8000, 1))?;
    let half = server.local("half.bin");
    std::fs::write(&half, content(5000, 2))?;
    server
        .sftp_ok(
            "acme",
            &format!("mkdir {dir}\nput {} {dir}/big.mp3.part\n", big.display()),
        )
        .await?;
    let put_half = format!("put {} {dir}/half.mp3.part\n", half.display());
    let full = server.sftp("acme", &put_half).await?;
    assert!(
        !full.success,
        "the quota let 13000 bytes in:\n{}",
        full.output()
    );

    let stale = server.jail("acme").join("audio/20260211/big.mp3.part");
    eventually(
        Duration::from_secs(30),
        "the stale upload to be swept",
        || !stale.exists(),
    )
    .await?;
    server.sftp_ok("acme", &put_half).await?;
    server.stop().await
}
