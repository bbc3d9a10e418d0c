//! The archive is immutable and every acknowledged completion ends in
//! exactly one outcome, whatever the client does with handles it kept
//! open, SETSTATs, renames — and when ingestion fails for a while.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

const DIR: &str = "/audio/20260211";

/// A conversation as stored.
#[derive(Debug)]
struct Conv {
    path: String,
    sha256: String,
    archive: Option<String>,
    status: String,
}

/// Every conversation, oldest first.
fn conversations(server: &TestServer) -> TestResult<Vec<Conv>> {
    let conn = open_db(&server.db_path())?;
    let mut st =
        conn.prepare("SELECT path, sha256, archive_path, status FROM conversations ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(Conv {
            path: r.get(0)?,
            sha256: r.get(1)?,
            archive: r.get(2)?,
            status: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn current(server: &TestServer) -> TestResult<Vec<Conv>> {
    Ok(conversations(server)?
        .into_iter()
        .filter(|c| c.status != "superseded")
        .collect())
}

/// Waits until no journal row is pending and returns every row's outcome.
async fn settled(server: &TestServer) -> TestResult<Vec<(i64, String)>> {
    eventually(
        Duration::from_secs(30),
        "every journal row to be done",
        || server.pending().is_ok_and(|p| p.is_empty()),
    )
    .await?;
    Ok(server
        .journal("acme")?
        .into_iter()
        .map(|e| (e.id, e.outcome.unwrap_or_default()))
        .collect())
}

fn archived(c: &Conv) -> TestResult<PathBuf> {
    Ok(PathBuf::from(c.archive.clone().ok_or("no archive path")?))
}

fn write_flags() -> OpenFlags {
    OpenFlags::WRITE | OpenFlags::CREATE
}

/// Handles left open on the temporary name across the completing RENAME:
/// FSETSTAT truncate, chmod 000, utime and WRITEs through them never reach
/// the archived recording, and the completion becomes one conversation
/// with the acknowledged bytes (never "stale").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_kept_open_across_the_rename_never_reach_the_archive() -> TestResult {
    let mut server = TestServer::start().await?;
    let client = server.raw_sftp("acme").await?;
    client.sftp.mkdir(DIR, FileAttributes::default()).await?;
    let wav = sine_wav(0.2, 8000);
    let (part, fin) = (format!("{DIR}/kept.wav.part"), format!("{DIR}/kept.wav"));
    let h1 = client
        .sftp
        .open(&part, write_flags(), FileAttributes::default())
        .await?
        .handle;
    let h2 = client
        .sftp
        .open(&part, write_flags(), FileAttributes::default())
        .await?
        .handle;
    client.sftp.write(&h1, 0, wav.clone()).await?;
    client.sftp.rename(&part, &fin).await?;
    // Whatever the server answers, none of this may change the archive.
    let _ = client
        .sftp
        .fsetstat(
            &h1,
            FileAttributes {
                size: Some(0),
                ..Default::default()
            },
        )
        .await;
    let _ = client
        .sftp
        .fsetstat(
            &h1,
            FileAttributes {
                permissions: Some(0),
                atime: Some(1),
                mtime: Some(1),
                ..Default::default()
            },
        )
        .await;
    let _ = client.sftp.write(&h2, 0, b"overwritten".to_vec()).await;
    let _ = client.sftp.close(&h1).await;
    let _ = client.sftp.close(&h2).await;
    let outcomes = settled(&server).await?;
    assert!(
        outcomes.iter().all(|(_, o)| !o.starts_with("stale")),
        "a row was dropped as stale: {outcomes:?}"
    );
    let convs = conversations(&server)?;
    let first = convs
        .iter()
        .find(|c| c.path == fin && c.sha256 == sha256_hex(&wav))
        .ok_or_else(|| format!("no conversation of the acknowledged bytes: {convs:?}"))?;
    let obj = archived(first)?;
    assert_eq!(std::fs::read(&obj)?, wav, "the archived bytes changed");
    let m = std::fs::metadata(&obj)?;
    assert_eq!(m.mode() & 0o7777, 0o440, "archive mode");
    assert_eq!(m.nlink(), 1, "the archive shares its inode");
    assert_ne!(m.mtime(), 1, "the archive's times changed");
    client.cut().await;
    server.stop().await
}

/// A chmod 0777 on the temporary file before its rename gives the
/// customer's file that mode, never the archive (OpenSSH sftp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chmod_before_the_rename_does_not_reach_the_archive() -> TestResult {
    let mut server = TestServer::start().await?;
    let wav = sine_wav(0.1, 8000);
    let local = server.local("m.wav");
    std::fs::write(&local, &wav)?;
    server
        .sftp_ok(
            "acme",
            &format!(
                "mkdir {DIR}\nput {} {DIR}/m.wav.part\nchmod 777 {DIR}/m.wav.part\nrename {DIR}/m.wav.part {DIR}/m.wav\n",
                local.display()
            ),
        )
        .await?;
    settled(&server).await?;
    let convs = current(&server)?;
    assert_eq!(convs.len(), 1, "{convs:?}");
    let obj = archived(&convs[0])?;
    let m = std::fs::metadata(&obj)?;
    assert_eq!(m.mode() & 0o7777, 0o440);
    assert_eq!(m.nlink(), 1);
    let dir_mode = std::fs::metadata(obj.parent().ok_or("no parent")?)?.mode() & 0o777;
    assert_eq!(
        dir_mode & 0o027,
        0,
        "archive directory open to others: {dir_mode:o}"
    );
    assert_eq!(std::fs::read(&obj)?, wav);
    server.stop().await
}

/// A failure lasting longer than the old five retries (~3 s) is retried
/// until it passes: the row is counted as retrying meanwhile, then becomes
/// its conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_until_it_passes() -> TestResult {
    let mut server = TestServer::start().await?;
    // The archive's staging directory cannot be created: every attempt
    // fails until the obstacle goes.
    let obstacle = server.data_dir.join("archive/acme/.incoming");
    std::fs::create_dir_all(obstacle.parent().ok_or("no parent")?)?;
    std::fs::write(&obstacle, b"not a directory")?;
    let wav = sine_wav(0.1, 8000);
    let local = server.local("r.wav");
    std::fs::write(&local, &wav)?;
    server
        .sftp_ok(
            "acme",
            &format!("mkdir {DIR}\nput {} {DIR}/r.wav\n", local.display()),
        )
        .await?;
    let db = server.db_path();
    let attempts = move || -> i64 {
        open_db(&db)
            .and_then(|c| {
                Ok(c.query_row(
                    "SELECT max(attempts) FROM journal WHERE state = 'pending'",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )?)
            })
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    // 1 s + 2 s + 4 s of backoff: more than the old give-up point.
    eventually(Duration::from_secs(60), "three failed attempts", || {
        attempts() >= 3
    })
    .await?;
    let stats = depot::cli::stats::collect(&open_db(&server.db_path())?)?;
    assert_eq!((stats.pending, stats.retrying), (1, 1));
    assert!(stats
        .oldest_retrying
        .is_some_and(|r| !r.last_error.is_empty()));
    std::fs::remove_file(&obstacle)?;
    settled(&server).await?;
    let convs = current(&server)?;
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(std::fs::read(archived(&convs[0])?)?, wav);
    let stats = depot::cli::stats::collect(&open_db(&server.db_path())?)?;
    assert_eq!((stats.pending, stats.retrying), (0, 0));
    server.stop().await
}

/// Renaming an ingested file, then its date directory, moves the
/// conversation; nothing is ingested twice, also after a restart (whose
/// start-up scan sees the file under its new name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_move_the_conversation_and_never_ingest_twice() -> TestResult {
    let mut server = TestServer::start().await?;
    let wav = sine_wav(0.1, 8000);
    let local = server.local("a.wav");
    std::fs::write(&local, &wav)?;
    server
        .sftp_ok(
            "acme",
            &format!("mkdir {DIR}\nput {} {DIR}/a.wav\n", local.display()),
        )
        .await?;
    settled(&server).await?;
    server
        .sftp_ok(
            "acme",
            &format!("rename {DIR}/a.wav {DIR}/b.wav\nrename {DIR} /audio/20260212\n"),
        )
        .await?;
    let convs = current(&server)?;
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(convs[0].path, "/audio/20260212/b.wav");
    server.restart().await?;
    settled(&server).await?;
    let all = conversations(&server)?;
    assert_eq!(all.len(), 1, "ingested again after the restart: {all:?}");
    assert_eq!(all[0].path, "/audio/20260212/b.wav");
    server.stop().await
}

/// Renaming an ingested file onto another ingested name moves the first
/// conversation there and supersedes the one whose file was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_onto_an_ingested_name_supersedes_it() -> TestResult {
    let mut server = TestServer::start().await?;
    let (a, b) = (sine_wav(0.1, 8000), sine_wav(0.15, 8000));
    let (la, lb) = (server.local("a.wav"), server.local("b.wav"));
    std::fs::write(&la, &a)?;
    std::fs::write(&lb, &b)?;
    server
        .sftp_ok(
            "acme",
            &format!(
                "mkdir {DIR}\nput {} {DIR}/a.wav\nput {} {DIR}/b.wav\n",
                la.display(),
                lb.display()
            ),
        )
        .await?;
    settled(&server).await?;
    assert_eq!(current(&server)?.len(), 2);
    // posix-rename (OpenSSH's default) replaces b.wav.
    server
        .sftp_ok("acme", &format!("rename {DIR}/a.wav {DIR}/b.wav\n"))
        .await?;
    let convs = current(&server)?;
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(
        (convs[0].path.as_str(), convs[0].sha256.as_str()),
        (format!("{DIR}/b.wav").as_str(), sha256_hex(&a).as_str())
    );
    server.stop().await
}
