//! Completion semantics: what produces a journal row and what
//! does not. A row is written only when a deposit's bytes are final: a
//! write handle closed after writing on a final name, or a rename from a
//! temporary name to a final one.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::sync::atomic::Ordering;
use std::time::Duration;

const DIR: &str = "/audio/20260211";

fn times(t: u32) -> FileAttributes {
    FileAttributes {
        atime: Some(t),
        mtime: Some(t),
        ..Default::default()
    }
}

fn bytes_in(server: &TestServer) -> u64 {
    server
        .running()
        .shared
        .metrics
        .bytes_in
        .load(Ordering::Relaxed)
}

/// Waits until the server has torn down every upload handle (after a
/// client vanished), so "no row" is checked after the fact, not before.
async fn uploads_settled(server: &TestServer) -> TestResult {
    let shared = server.running().shared.clone();
    eventually(Duration::from_secs(10), "open uploads to drop to 0", || {
        shared.open_uploads.load(Ordering::SeqCst) == 0
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filepart_then_rename_journals_the_final_name_once() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(700_000, 2);
    let local = server.local("a.mp3");
    std::fs::write(&local, &body)?;
    let temp = format!("{DIR}/a.mp3.filepart");
    let fin = format!("{DIR}/a.mp3");
    server
        .sftp_ok(
            "acme",
            &format!(
                "mkdir {DIR}\nput {} {temp}\nrename {temp} {fin}\n",
                local.display()
            ),
        )
        .await?;
    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].path, fin);
    assert_eq!(
        (rows[0].size, rows[0].sha256.as_str()),
        (body.len() as u64, sha256_hex(&body).as_str())
    );
    assert_eq!(std::fs::read(server.jail("acme").join(&fin[1..]))?, body);
    assert!(!server.jail("acme").join(&temp[1..]).exists());

    // The same through the raw protocol with posix-rename onto an existing
    // final name (WinSCP/rclone overwrite an earlier upload this way).
    let body2 = content(123_456, 3);
    let client = server.raw_sftp("acme").await?;
    let h = client
        .sftp
        .open(
            &temp,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            FileAttributes::default(),
        )
        .await?
        .handle;
    for (i, chunk) in body2.chunks(32 * 1024).enumerate() {
        client
            .sftp
            .write(&h, (i * 32 * 1024) as u64, chunk.to_vec())
            .await?;
    }
    client.sftp.close(&h).await?;
    assert_eq!(
        server.journal("acme")?.len(),
        1,
        "the temp name was journaled"
    );
    let req = russh_sftp::ser::to_bytes(&russh_sftp::extensions::HardlinkExtension {
        oldpath: temp.clone(),
        newpath: fin.clone(),
    })?;
    // Renaming onto a deposit the pipeline is still ingesting is refused:
    // wait until it is done with the first upload.
    let in_flight = server.running().shared.in_flight.clone();
    eventually(
        Duration::from_secs(10),
        "the first upload to leave ingestion",
        || in_flight.lock().map(|s| s.is_empty()).unwrap_or(false),
    )
    .await?;
    let reply = client
        .sftp
        .extended("posix-rename@openssh.com", req.to_vec())
        .await?;
    match reply {
        russh_sftp::protocol::Packet::Status(st)
            if st.status_code == russh_sftp::protocol::StatusCode::Ok => {}
        other => return Err(format!("posix-rename refused: {other:?}").into()),
    }
    client.cut().await;
    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[1].path, fin);
    assert_eq!(rows[1].sha256, sha256_hex(&body2));
    assert_eq!(rows[1].size, body2.len() as u64);
    assert!(rows.iter().all(|r| !r.path.ends_with(".filepart")));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upload_is_not_journaled_and_reput_completes_it() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(2 * 1024 * 1024 + 333, 4);
    let half = body.len() / 2;
    let path = format!("{DIR}/resumed.mp3");
    let client = server.raw_sftp("acme").await?;
    client.sftp.mkdir(DIR, FileAttributes::default()).await?;
    let h = client
        .sftp
        .open(
            &path,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            FileAttributes::default(),
        )
        .await?
        .handle;
    for (i, chunk) in body[..half].chunks(32 * 1024).enumerate() {
        client
            .sftp
            .write(&h, (i * 32 * 1024) as u64, chunk.to_vec())
            .await?;
    }
    // The connection drops mid-upload: no CLOSE ever arrives.
    client.cut().await;
    uploads_settled(&server).await?;
    assert!(
        server.journal("acme")?.is_empty(),
        "a dropped upload was journaled"
    );
    let on_disk = server.jail("acme").join(&path[1..]);
    assert_eq!(
        std::fs::read(&on_disk)?,
        &body[..half],
        "the partial file is kept for resuming"
    );

    let local = server.local("resumed.mp3");
    std::fs::write(&local, &body)?;
    server
        .sftp_ok("acme", &format!("reput {} {path}\n", local.display()))
        .await?;
    // Only the missing half crossed the wire: reput resumed, not restarted.
    assert_eq!(bytes_in(&server), body.len() as u64);
    assert_eq!(std::fs::read(&on_disk)?, body);
    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].path, path);
    assert_eq!(rows[0].size, body.len() as u64);
    assert_eq!(rows[0].sha256, sha256_hex(&body));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reput_after_a_half_file_placed_by_hand() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(1_000_001, 5);
    let path = format!("{DIR}/byhand.wav");
    let on_disk = server.jail("acme").join(&path[1..]);
    std::fs::create_dir_all(on_disk.parent().ok_or("no parent")?)?;
    std::fs::write(&on_disk, &body[..400_000])?;
    let local = server.local("byhand.wav");
    std::fs::write(&local, &body)?;
    server
        .sftp_ok("acme", &format!("reput {} {path}\n", local.display()))
        .await?;
    assert_eq!(
        bytes_in(&server),
        body.len() as u64 - 400_000,
        "reput restarted"
    );
    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0].sha256,
        sha256_hex(&body),
        "the digest must cover the resumed prefix"
    );
    assert_eq!(rows[0].size, body.len() as u64);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_only_setstat_or_read_is_not_a_completion() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(50_000, 6);
    let path = format!("{DIR}/existing.mp3");
    let on_disk = server.jail("acme").join(&path[1..]);
    std::fs::create_dir_all(on_disk.parent().ok_or("no parent")?)?;
    std::fs::write(&on_disk, &body)?;

    let client = server.raw_sftp("acme").await?;
    let sftp = &client.sftp;
    // Opened for writing, only fsetstat, closed.
    let h = sftp
        .open(&path, OpenFlags::WRITE, FileAttributes::default())
        .await?
        .handle;
    sftp.fsetstat(&h, times(1_700_000_000)).await?;
    sftp.fsetstat(
        &h,
        FileAttributes {
            permissions: Some(0o640),
            ..Default::default()
        },
    )
    .await?;
    sftp.close(&h).await?;
    // Opened read-write, only read, closed.
    let h = sftp
        .open(
            &path,
            OpenFlags::READ | OpenFlags::WRITE,
            FileAttributes::default(),
        )
        .await?
        .handle;
    let data = sftp.read(&h, 0, 1000).await?;
    assert_eq!(data.data, &body[..1000]);
    sftp.close(&h).await?;
    // Opened for writing with a path setstat in between.
    let h = sftp
        .open(&path, OpenFlags::WRITE, FileAttributes::default())
        .await?
        .handle;
    sftp.setstat(&path, times(1_600_000_000)).await?;
    sftp.close(&h).await?;
    // No handle at all: setstat on the path.
    sftp.setstat(
        &path,
        FileAttributes {
            permissions: Some(0o600),
            ..Default::default()
        },
    )
    .await?;
    client.cut().await;
    // OpenSSH's chmod and a plain get are not completions either.
    let back = server.local("existing.mp3");
    server
        .sftp_ok(
            "acme",
            &format!("chmod 644 {path}\nget {path} {}\n", back.display()),
        )
        .await?;

    assert!(
        server.journal("acme")?.is_empty(),
        "{:#?}",
        server.journal("acme")?
    );
    assert_eq!(std::fs::read(&on_disk)?, body, "the content changed");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&on_disk)?.mtime(), 1_600_000_000);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_created_then_closed_is_a_completion() -> TestResult {
    let mut server = TestServer::start().await?;
    let client = server.raw_sftp("acme").await?;
    client.sftp.mkdir(DIR, FileAttributes::default()).await?;
    let path = format!("{DIR}/empty.mp3");
    let h = client
        .sftp
        .open(
            &path,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            FileAttributes::default(),
        )
        .await?
        .handle;
    client.sftp.close(&h).await?;
    client.cut().await;
    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows[0].size, rows[0].sha256.as_str()),
        (0, sha256_hex(b"").as_str())
    );
    server.stop().await
}

/// A second write handle on a file that another handle's CLOSE completed
/// (and the pipeline archived) must not change the archive: the archive is
/// a copy of its own, and while the deposit waits for it, the file is sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_a_stale_handle_never_changes_the_archive() -> TestResult {
    let mut server = TestServer::start().await?;
    let client = server.raw_sftp("acme").await?;
    client.sftp.mkdir(DIR, FileAttributes::default()).await?;
    let path = format!("{DIR}/twice.wav");
    let wav = sine_wav(0.2, 8000);
    let flags = OpenFlags::WRITE | OpenFlags::CREATE;
    let first = client
        .sftp
        .open(&path, flags, FileAttributes::default())
        .await?
        .handle;
    let second = client
        .sftp
        .open(&path, flags, FileAttributes::default())
        .await?
        .handle;
    client.sftp.write(&first, 0, wav.clone()).await?;
    client.sftp.close(&first).await?;
    // Straight after the OK the deposit is sealed and this write refused;
    // if the pipeline was quicker, it changes the customer's file only.
    let _ = client.sftp.write(&second, 0, b"overwrite".to_vec()).await;
    let db = server.db_path();
    let archive = move || -> Option<String> {
        let conn = open_db(&db).ok()?;
        conn.query_row(
            "SELECT archive_path FROM conversations WHERE status = 'ingested'",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    let probe = archive.clone();
    eventually(
        Duration::from_secs(20),
        "the deposit to be archived",
        || probe().is_some(),
    )
    .await?;
    let archived = archive().ok_or("no archive")?;
    // Archived: a write now changes the customer's file only.
    let _ = client.sftp.write(&second, 0, b"overwrite".to_vec()).await;
    assert_eq!(std::fs::read(&archived)?, wav, "the archived bytes changed");
    let _ = client.sftp.close(&second).await;
    assert_eq!(std::fs::read(&archived)?, wav, "the archived bytes changed");
    client.cut().await;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_read_by_its_path_cannot_be_overwritten_while_it_is_ingested() -> TestResult {
    let mut server = TestServer::start().await?;
    let path = format!("{DIR}/busy.mp3");
    std::fs::create_dir_all(server.jail("acme").join(&DIR[1..]))?;
    // The pipeline reads an unsealed deposit (one resumed after a restart)
    // by its path: while it does, an upload may not replace the bytes.
    let in_flight = server.running().shared.in_flight.clone();
    let key = depot::deposit::Deposit::new("acme", &path);
    in_flight
        .lock()
        .map_err(|_| "in-flight set poisoned")?
        .insert(key.clone());
    let client = server.raw_sftp("acme").await?;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let refused = client
        .sftp
        .open(&path, flags, FileAttributes::default())
        .await;
    let message = format!("{:?}", refused.err().ok_or("the upload was not refused")?);
    assert!(message.contains("being ingested"), "{message}");
    in_flight
        .lock()
        .map_err(|_| "in-flight set poisoned")?
        .remove(&key);
    let opened = client
        .sftp
        .open(&path, flags, FileAttributes::default())
        .await?;
    client.sftp.close(&opened.handle).await?;
    client.cut().await;
    server.stop().await
}

/// Every archived object holds exactly the bytes its conversation names.
fn archives_match_their_rows(db: &std::path::Path) -> TestResult {
    let conn = open_db(db)?;
    let mut stmt = conn
        .prepare("SELECT archive_path, sha256 FROM conversations WHERE archive_path IS NOT NULL")?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (path, sha) in rows {
        assert_eq!(sha256_hex(&std::fs::read(&path)?), sha, "{path}");
    }
    Ok(())
}

/// The archive copy of an upload is not hashed again only when its own
/// handle was the only one on the file. Here a second handle writes into
/// the same file while the first uploads: the first upload's digest (of
/// what it sent) is not what the file holds, and the archive must never
/// pair those bytes with that digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_an_uploading_file_never_mislabels_the_archive() -> TestResult {
    let mut server = TestServer::start().await?;
    let client = server.raw_sftp("acme").await?;
    client.sftp.mkdir(DIR, FileAttributes::default()).await?;
    let path = format!("{DIR}/shared.wav");
    let wav = sine_wav(0.2, 8000);
    let half = wav.len() / 2;
    let first = client
        .sftp
        .open(
            &path,
            OpenFlags::WRITE | OpenFlags::CREATE,
            FileAttributes::default(),
        )
        .await?
        .handle;
    client.sftp.write(&first, 0, wav[..half].to_vec()).await?;
    let second = client
        .sftp
        .open(&path, OpenFlags::WRITE, FileAttributes::default())
        .await?
        .handle;
    // Inside the WAV data, so the file stays a recording.
    client.sftp.write(&second, 100, vec![0x55; 64]).await?;
    client
        .sftp
        .write(&first, half as u64, wav[half..].to_vec())
        .await?;
    client.sftp.close(&first).await?;
    let _ = client.sftp.close(&second).await;
    settled(&server, "acme").await?;
    let db = server.db_path();
    archives_match_their_rows(&db)?;
    // The first upload's digest is of the bytes it sent: no conversation
    // may claim them, since the file never held them.
    let conn = open_db(&db)?;
    let claimed: i64 = conn.query_row(
        "SELECT count(*) FROM conversations WHERE sha256 = ?1 AND status = 'ingested'",
        [sha256_hex(&wav)],
        |r| r.get(0),
    )?;
    assert_eq!(claimed, 0);
    client.cut().await;
    server.stop().await
}
