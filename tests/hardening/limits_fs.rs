//! Resource limits seen from outside the process: the memory directory
//! handles hold, and a CLOSE hashing a huge sparse file not holding back
//! SIGTERM. A child process, so its RSS and exit are its own.

use crate::harness::{connect, eventually, Depot, Options, TestResult};
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "[audio]\ndir = \"/audio\"\nrequire_date_dir = false\n";
const ENTRIES: usize = 10_000;
const HANDLES: usize = 200;

/// Resident set size (VmRSS) of `pid` now, in KiB.
fn rss_kib(pid: u32) -> TestResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Regression: each OPENDIR held the whole listing, stat'ed (7.1 MB per
/// handle on a 10,000-entry directory; 200 handles added 1.39 GB). Now a
/// directory handle holds one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_directory_handles_do_not_grow_with_the_directory() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let mut depot = Depot::new("acme", ACCOUNT)?;
    let big = depot.jail("acme").join("big");
    std::fs::create_dir_all(&big)?;
    for i in 0..ENTRIES {
        std::fs::write(big.join(format!("recording-{i:05}-of-a-long-day.wav")), b"")?;
    }
    depot.start()?;
    let pid = depot.pid().ok_or("not running")?;
    let s = connect(depot.port, "acme", &depot.key()).await?;

    // Every entry exactly once, page by page.
    let h = s.sftp.opendir("/big").await?.handle;
    let mut names = std::collections::HashSet::new();
    let mut pages = 0;
    while let Ok(page) = s.sftp.readdir(&h).await {
        pages += 1;
        for f in page.files {
            assert!(names.insert(f.filename.clone()), "{} twice", f.filename);
        }
    }
    s.sftp.close(&h).await?;
    assert_eq!(names.len(), ENTRIES);
    assert!(pages > 1, "one page for {ENTRIES} entries");

    let before = rss_kib(pid)?;
    let mut handles = Vec::new();
    for _ in 0..HANDLES {
        let h = s.sftp.opendir("/big").await?.handle;
        s.sftp.readdir(&h).await?;
        handles.push(h);
    }
    let after = rss_kib(pid)?;
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS: {before} KiB before, {after} KiB after {HANDLES} OPENDIR+READDIR of a \
         {ENTRIES}-entry directory (+{growth} KiB, {} KiB per handle)",
        growth / HANDLES as u64
    );
    // 1.39 GB before the fix; one page each is a few MiB in all.
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
    for h in handles {
        s.sftp.close(h).await?;
    }
    drop(s);
    depot.stop()
}

/// Regression: a CLOSE hashing a 1 TiB sparse file (about an hour of one
/// core) held SIGTERM back for as long. Hashing from disk stops when the
/// server shuts down; the client's CLOSE is answered with an error (no
/// acknowledgement for a file never hashed). The hole allowance and the
/// account's largest file are raised here so that the write that makes
/// such a file is accepted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_a_close_hashing_a_huge_file() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let opts = Options {
        server: "max_hole = \"2TiB\"\n".into(),
        ..Default::default()
    };
    let account = format!("max_file_size = {}\n{ACCOUNT}", 4u64 << 40);
    let mut depot = Depot::with_options("acme", &account, opts)?;
    depot.start()?;
    let pid = depot.pid().ok_or("not running")?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let h = s
        .sftp
        .open("/audio/huge.wav", flags, FileAttributes::empty())
        .await?
        .handle;
    s.sftp.write(&h, 0, b"RIFF".to_vec()).await?;
    s.sftp.write(&h, 1 << 40, vec![1]).await?;
    let close = tokio::spawn(async move {
        let r = s.sftp.close(h).await;
        drop(s);
        r
    });
    // Hashing has started once the server has read 256 MiB of zeros.
    let read_bytes = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("rchar: ").map(|n| n.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(60),
        "the CLOSE to start hashing",
        || read_bytes() >= 256 << 20,
    )
    .await
    .map_err(|e| format!("the CLOSE never started hashing ({e})"))?;
    let t = Instant::now();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    // Generous: the whole hash would take about an hour.
    let exited = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
            .unwrap_or(true)
    };
    while !exited(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "depot still running {:?} after SIGTERM",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("SIGTERM to exit during a 1 TiB hash: {:?}", t.elapsed());
    depot.stop()?;
    let answered = close.await?;
    assert!(
        answered.is_err(),
        "a cancelled hash acknowledged: {answered:?}"
    );
    Ok(())
}
