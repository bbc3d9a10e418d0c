//! Disk full: the data dir on a 4 MiB tmpfs. Uploads
//! that do not fit fail with SSH_FX_FAILURE and a logged cause; listings
//! and downloads keep working; no journal row or conversation points at a
//! truncated file; once files are deleted, a new upload is ingested.
//! Needs the right to mount a tmpfs (root); skipped with a message where
//! it cannot.

use crate::harness::{connect, download, sha256_hex, Depot, Options, Session, TestResult};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ACCOUNT: &str = "[audio]\ndir = \"/audio\"\nfilename = \"{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}\"\n";
const DATE: &str = "/audio/20260211";

/// Unmounts on drop, also when the test fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

fn recording(i: usize, seconds: f64) -> (String, Vec<u8>) {
    (
        format!("{DATE}/2026_02_11_10_00_{i:02}_Jean_Dupont_Entrant_1_2_163.wav"),
        crate::harness::sine_wav(seconds + i as f64 * 0.01, 16000),
    )
}

/// Uploads like a client does (and closes the handle after a failed
/// write, as clients do); the first failure's step and status code.
async fn try_upload(
    s: &Session,
    path: &str,
    data: &[u8],
) -> TestResult<Result<(), (&'static str, StatusCode)>> {
    let status = |e: SftpError| match e {
        SftpError::Status(st) => Ok(st.status_code),
        other => Err(other),
    };
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let handle = match s.sftp.open(path, flags, FileAttributes::empty()).await {
        Ok(h) => h.handle,
        Err(e) => return Ok(Err(("open", status(e)?))),
    };
    let mut failed = None;
    for (i, chunk) in data.chunks(32 * 1024).enumerate() {
        if let Err(e) = s
            .sftp
            .write(handle.as_str(), (i * 32 * 1024) as u64, chunk.to_vec())
            .await
        {
            failed = Some(("write", status(e)?));
            break;
        }
    }
    let closed = s.sftp.close(handle).await;
    match (failed, closed) {
        (Some(f), _) => Ok(Err(f)),
        (None, Err(e)) => Ok(Err(("close", status(e)?))),
        (None, Ok(_)) => Ok(Ok(())),
    }
}

/// Every journal row and current conversation carries the sha256 of a
/// complete, acknowledged upload, and the file it names, if still there,
/// has that content.
fn check_nothing_truncated(depot: &Depot, acked: &HashSet<String>) -> TestResult<usize> {
    let c = crate::harness::open_db(&depot.db())?;
    let rows: Vec<(String, String)> = c
        .prepare(
            "SELECT path, sha256 FROM journal UNION ALL SELECT path, sha256 FROM conversations",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (path, sha) in &rows {
        assert!(
            acked.contains(sha),
            "{path}: a row for content never acknowledged (truncated?)"
        );
        let on_disk = depot.jail("acme").join(&path[1..]);
        if let Ok(bytes) = std::fs::read(&on_disk) {
            assert_eq!(
                &sha256_hex(&bytes),
                sha,
                "{path}: the file differs from its row"
            );
        }
    }
    Ok(rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_writes_and_keeps_serving() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let tmp = tempfile::tempdir()?;
    let mount_at = tmp.path().join("full");
    let _mount = match Mount::tmpfs(&mount_at, "4m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED disk-full test: cannot mount a 4 MiB tmpfs here ({e}); run as root to include it");
            return Ok(());
        }
    };
    // Declared after the mount: dropped (killed) before the unmount.
    let mut depot = Depot::with_options(
        "acme",
        ACCOUNT,
        Options {
            data_dir: Some(mount_at.join("data")),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    s.sftp.mkdir(DATE, FileAttributes::empty()).await?;
    s.sftp.mkdir("/scratch", FileAttributes::empty()).await?;
    let mut acked = HashSet::new();

    // Two recordings fit and are ingested.
    let mut kept = Vec::new();
    for i in 0..2 {
        let (path, data) = recording(i, 5.0);
        assert_eq!(try_upload(&s, &path, &data).await?, Ok(()));
        acked.insert(sha256_hex(&data));
        kept.push((path, data));
    }
    depot.wait_ingested(Duration::from_secs(30), |n| n == 2)?;

    // Fill the rest with files that are never ingested, until one fails.
    let filler = vec![0x5a; 512 * 1024];
    let mut fillers = Vec::new();
    let filled = loop {
        let path = format!("/scratch/filler-{}.bin", fillers.len());
        let r = try_upload(&s, &path, &filler).await?;
        fillers.push(path);
        if let Err(f) = r {
            break f;
        }
        assert!(fillers.len() < 16, "4 MiB never filled up");
    };
    assert_eq!(
        filled,
        ("write", StatusCode::Failure),
        "a write past the end of the disk"
    );
    let filled_with = fillers.len() - 1;

    // A recording that does not fit: its WRITE fails with SSH_FX_FAILURE.
    // Space comes back (another file deleted) before the client's CLOSE:
    // the CLOSE must still not journal the truncated file (regression).
    let (big_path, big) = recording(10, 20.0);
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let h = s
        .sftp
        .open(&big_path, flags, FileAttributes::empty())
        .await?
        .handle;
    let mut write_failed = None;
    for (i, chunk) in big.chunks(32 * 1024).enumerate() {
        if let Err(e) = s
            .sftp
            .write(h.as_str(), (i * 32 * 1024) as u64, chunk.to_vec())
            .await
        {
            write_failed = Some(e);
            break;
        }
    }
    match write_failed {
        Some(SftpError::Status(st)) => assert_eq!(st.status_code, StatusCode::Failure),
        other => panic!("a write past the end of the disk: {other:?}"),
    }
    s.sftp.remove(fillers.pop().ok_or("no filler")?).await?;
    s.sftp.remove(fillers.pop().ok_or("no filler")?).await?;
    match s.sftp.close(h).await {
        Err(SftpError::Status(st)) => assert_eq!(st.status_code, StatusCode::Failure),
        other => panic!("CLOSE after a failed write must fail: {other:?}"),
    }

    // Listings, stat and downloads keep working.
    let h = s.sftp.opendir(DATE).await?.handle;
    let names = s.sftp.readdir(h.as_str()).await?;
    s.sftp.close(h).await?;
    assert!(names.files.len() >= 2);
    for (path, data) in &kept {
        assert_eq!(
            &download(&s, path).await?,
            data,
            "{path} after the disk filled"
        );
        s.sftp.stat(path).await?;
    }
    let rows = check_nothing_truncated(&depot, &acked)?;

    // Free space by deleting files: a new upload goes through and is ingested.
    for f in &fillers {
        s.sftp.remove(f).await?;
    }
    let _ = s.sftp.remove(&big_path).await;
    let (path, data) = recording(20, 5.0);
    assert_eq!(
        try_upload(&s, &path, &data).await?,
        Ok(()),
        "upload after space was freed"
    );
    acked.insert(sha256_hex(&data));
    depot.wait_ingested(Duration::from_secs(30), |n| n == 3)?;
    let c = crate::harness::open_db(&depot.db())?;
    let ingested: i64 = c.query_row(
        "SELECT count(*) FROM conversations WHERE path = ?1 AND status != 'superseded'",
        [&path],
        |r| r.get(0),
    )?;
    assert_eq!(ingested, 1, "{path} ingested after space was freed");
    let rows_after = check_nothing_truncated(&depot, &acked)?;
    let log = depot.log();
    assert!(log.contains("disk full"), "the cause is logged:\n{log}");
    eprintln!(
        "disk full: {} fillers of 512 KiB before the first failure; {rows} journal/conversation rows \
         checked while full, {rows_after} after freeing space",
        filled_with
    );
    drop(s);
    depot.stop()?;
    Ok(())
}
