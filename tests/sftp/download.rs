//! Large downloads complete (regression for a stall: russh's bounded
//! channel queue filling while the SFTP loop waits for window, so the
//! client's WINDOW_ADJUST is never seen).

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_256_mib_completes() -> TestResult {
    let mut server = TestServer::start().await?;
    let dir = server.jail("acme").join("audio/20260211");
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("big.wav");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src)?);
        let chunk = content(1 << 20, 7);
        for i in 0..256u32 {
            // Vary each MiB so a misplaced chunk changes the digest.
            f.write_all(&i.to_le_bytes())?;
            f.write_all(&chunk[4..])?;
        }
        f.flush()?;
    }
    let want = sha256_file(&src)?;
    let back = server.local("big.wav");
    server
        .sftp_with_timeout(
            "acme",
            &format!("get /audio/20260211/big.wav {}\n", back.display()),
            Duration::from_secs(120),
        )
        .await
        .and_then(|run| match run.success {
            true => Ok(()),
            false => Err(format!("sftp get failed:\n{}", run.output()).into()),
        })?;
    assert_eq!(std::fs::metadata(&back)?.len(), 256 << 20);
    assert_eq!(sha256_file(&back)?, want);
    assert!(
        server.journal("acme")?.is_empty(),
        "a download is not a deposit"
    );
    server.stop().await
}

/// READ answers the bytes at the offset asked, a short block where the
/// file ends and EOF past it. The file was just written, so its bytes are
/// in memory and READ serves them on the session's task (with a tmpfs
/// TMPDIR by plain pread, on a disk through the page-cache-only read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_returns_exact_bytes_short_at_the_end_and_eof_past_it() -> TestResult {
    let mut server = TestServer::start().await?;
    let dir = server.jail("acme").join("audio");
    std::fs::create_dir_all(&dir)?;
    let body = content(300_001, 11);
    std::fs::write(dir.join("r.wav"), &body)?;
    let client = server.raw_sftp("acme").await?;
    let sftp = &client.sftp;
    let h = sftp
        .open("/audio/r.wav", OpenFlags::READ, FileAttributes::default())
        .await?
        .handle;
    let block = sftp.read(&h, 12_345, 200_000).await?;
    assert_eq!(block.data, &body[12_345..212_345]);
    let tail = sftp.read(&h, 299_990, 32_768).await?;
    assert_eq!(tail.data, &body[299_990..]);
    match sftp.read(&h, 300_001, 32_768).await {
        Err(russh_sftp::client::error::Error::Status(s)) => {
            assert_eq!(s.status_code, StatusCode::Eof)
        }
        other => return Err(format!("read past the end gave {other:?}, not EOF").into()),
    }
    sftp.close(&h).await?;
    client.cut().await;
    server.stop().await
}
