//! Large downloads complete (regression for a stall: russh's bounded
//! channel queue filling while the SFTP loop waits for window, so the
//! client's WINDOW_ADJUST is never seen).

use crate::harness::*;
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
