//! What one client may take: writes far past the end of a file, SETSTAT
//! sizes, the quota against truncates from other handles, handle budgets
//! across channels and connections, masked permissions, long paths. Each
//! test checks what is on disk and what the client was told.

use crate::harness::*;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const WRITE_NEW: OpenFlags = OpenFlags::WRITE
    .union(OpenFlags::CREATE)
    .union(OpenFlags::TRUNCATE);

/// The status a refused request got; panics on success or a transport error.
fn refused<T: std::fmt::Debug>(r: Result<T, SftpError>) -> (StatusCode, String) {
    match r {
        Err(SftpError::Status(st)) => (st.status_code, st.error_message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn size(n: u64) -> FileAttributes {
    FileAttributes {
        size: Some(n),
        ..FileAttributes::empty()
    }
}

fn account(name: &str, top: &str) -> AccountSpec {
    let mut a = AccountSpec::audio(name);
    a.extra = format!("{top}\n{}", a.extra);
    a
}

async fn start(accounts: Vec<AccountSpec>, server: &str) -> TestResult<TestServer> {
    TestServer::start_with(TestConfig {
        accounts,
        server: server.into(),
        ..TestConfig::default()
    })
    .await
}

/// Regression: a 1-byte WRITE at offset 2^40 was accepted and CLOSE then
/// hashed a 1 TiB sparse file (never answered in 60 s, and SIGTERM waited
/// for it). Now the WRITE itself is refused at once and nothing grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_far_past_the_end_is_refused_at_once() -> TestResult {
    let mut server = start(vec![unlimited("acme")], "").await?;
    let c = server.raw_sftp("acme").await?;
    let h = c
        .sftp
        .open("/far.bin", WRITE_NEW, FileAttributes::empty())
        .await?
        .handle;
    c.sftp.write(&h, 0, b"start".to_vec()).await?;
    for offset in [1u64 << 32, 1 << 40] {
        let t = Instant::now();
        let (code, msg) = refused(c.sftp.write(&h, offset, vec![1]).await);
        eprintln!(
            "1-byte WRITE at offset {offset}: refused in {:?}",
            t.elapsed()
        );
        assert_eq!(code, StatusCode::Failure);
        assert!(msg.contains("never written"), "{msg}");
    }
    // Within the allowance, out of order, is fine (parallel-chunk clients).
    c.sftp.write(&h, 4 << 20, vec![2; 10]).await?;
    // CLOSE answers at once, and a file with a refused write is no deposit.
    let t = Instant::now();
    assert!(c.sftp.close(&h).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let on_disk = std::fs::metadata(server.jail("acme").join("far.bin"))?;
    assert_eq!(on_disk.len(), (4 << 20) + 10);
    c.cut().await;
    server.stop().await
}

/// Regression: SETSTAT/FSETSTAT sizes ignored max_file_size and the quota
/// (a 4 GiB size was accepted with max_file_size = 1 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setstat_sizes_obey_max_file_size_quota_and_holes() -> TestResult {
    let acc = account("acme", "max_file_size = 1_000_000\nquota_bytes = 1_500_000");
    let mut server = start(vec![acc], "").await?;
    let c = server.raw_sftp("acme").await?;
    let h = c
        .sftp
        .open("/sized.bin", WRITE_NEW, FileAttributes::empty())
        .await?
        .handle;
    c.sftp.write(&h, 0, vec![7; 1000]).await?;
    let (code, msg) = refused(c.sftp.fsetstat(&h, size(4 << 30)).await);
    assert_eq!(code, StatusCode::Failure);
    assert!(msg.contains("Files over 1000000"), "{msg}");
    let (_, msg) = refused(c.sftp.setstat("/sized.bin", size(4 << 30)).await);
    assert!(msg.contains("Files over 1000000"), "{msg}");
    // Inside every limit, a size change works both ways.
    c.sftp.fsetstat(&h, size(900_000)).await?;
    c.sftp.setstat("/sized.bin", size(10)).await?;
    c.sftp.close(&h).await?;
    assert_eq!(
        std::fs::metadata(server.jail("acme").join("sized.bin"))?.len(),
        10
    );

    // Past the quota with two files of allowed sizes.
    let h2 = c
        .sftp
        .open("/other.bin", WRITE_NEW, FileAttributes::empty())
        .await?
        .handle;
    c.sftp.fsetstat(&h2, size(900_000)).await?;
    let (_, msg) = refused(c.sftp.setstat("/sized.bin", size(900_000)).await);
    assert!(msg.contains("Quota"), "{msg}");
    c.sftp.close(&h2).await?;
    c.cut().await;

    // A hole larger than the allowance, with no file or quota limit.
    let mut big = server_without_limits().await?;
    let c = big.raw_sftp("acme").await?;
    let h = c
        .sftp
        .open("/holey.bin", WRITE_NEW, FileAttributes::empty())
        .await?
        .handle;
    let (_, msg) = refused(c.sftp.fsetstat(&h, size(1 << 40)).await);
    assert!(msg.contains("never written"), "{msg}");
    assert_eq!(
        std::fs::metadata(big.jail("acme").join("holey.bin"))?.len(),
        0
    );
    c.cut().await;
    big.stop().await?;
    server.stop().await
}

async fn server_without_limits() -> TestResult<TestServer> {
    start(vec![unlimited("acme")], "max_hole = \"1MiB\"").await
}

/// An audio account whose files may be far larger than the 16 GiB default,
/// so that only the hole allowance refuses a write far past the end.
fn unlimited(name: &str) -> AccountSpec {
    let mut a = AccountSpec::audio(name);
    a.extra = format!("max_file_size = {}\n{}", 1u64 << 50, a.extra);
    a
}

/// Bytes stored under the jail (apparent sizes of regular files).
fn stored(dir: &std::path::Path) -> u64 {
    snapshot(dir)
        .iter()
        .filter(|(_, _, h)| h != "dir")
        .map(|(_, n, _)| n)
        .sum()
}

/// Regression: truncate-up then writes inside the size, or TRUNC from a
/// second handle (the count went negative), stored 68.8 MB in a 1 MB
/// quota. The count now follows the disk through every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_holds_against_truncate_up_and_a_second_handles_trunc() -> TestResult {
    const QUOTA: u64 = 1_000_000;
    let acc = account("acme", &format!("quota_bytes = {QUOTA}"));
    let mut server = start(vec![acc], "").await?;
    let jail = server.jail("acme");
    let c = server.raw_sftp("acme").await?;
    let chunk = vec![5u8; 100_000];

    // 1. Truncate-up then write inside the size, over and over.
    for i in 0..20 {
        let path = format!("/up-{i}.bin");
        let Ok(h) = c.sftp.open(&path, WRITE_NEW, FileAttributes::empty()).await else {
            continue;
        };
        let _ = c.sftp.fsetstat(&h.handle, size(900_000)).await;
        for k in 0..9u64 {
            let _ = c.sftp.write(&h.handle, k * 100_000, chunk.clone()).await;
        }
        let _ = c.sftp.close(&h.handle).await;
    }
    assert!(stored(&jail) <= QUOTA, "{} bytes stored", stored(&jail));
    for i in 0..20 {
        let _ = c.sftp.remove(format!("/up-{i}.bin")).await;
    }
    assert_eq!(stored(&jail), 0);

    // 2. One handle writes, a second one truncates, the first goes on.
    for i in 0..20 {
        let path = format!("/trunc-{i}.bin");
        let Ok(a) = c.sftp.open(&path, WRITE_NEW, FileAttributes::empty()).await else {
            continue;
        };
        let mut off = 0u64;
        for _ in 0..12 {
            if c.sftp.write(&a.handle, off, chunk.clone()).await.is_ok() {
                off += chunk.len() as u64;
            }
            if off % 500_000 == 0 {
                let b = c.sftp.open(&path, WRITE_NEW, FileAttributes::empty()).await;
                if let Ok(b) = b {
                    let _ = c.sftp.close(&b.handle).await;
                }
            }
        }
        let _ = c.sftp.close(&a.handle).await;
    }
    let after_trunc = stored(&jail);
    assert!(after_trunc <= QUOTA, "{after_trunc} bytes stored");

    // The count is neither below nor above the disk: with everything
    // removed, exactly the quota fits, and one byte more does not.
    for i in 0..20 {
        let _ = c.sftp.remove(format!("/trunc-{i}.bin")).await;
    }
    assert_eq!(stored(&jail), 0);
    for (name, chunks) in [("/old.bin", 5u64), ("/full.bin", 5)] {
        let h = c
            .sftp
            .open(name, WRITE_NEW, FileAttributes::empty())
            .await?
            .handle;
        for k in 0..chunks {
            c.sftp.write(&h, k * 100_000, chunk.clone()).await?;
        }
        if name == "/full.bin" {
            let (_, msg) = refused(c.sftp.write(&h, 500_000, vec![1]).await);
            assert!(msg.contains("Quota"), "{msg}");
        }
        let _ = c.sftp.close(&h).await;
    }
    // RENAME over a file frees the file it replaces (OpenSSH uses
    // posix-rename): half the quota is free again, and no more.
    server
        .sftp_ok(
            "acme",
            "rename /full.bin /old.bin
",
        )
        .await?;
    assert_eq!(stored(&jail), 500_000);
    let h = c
        .sftp
        .open("/again.bin", WRITE_NEW, FileAttributes::empty())
        .await?
        .handle;
    for k in 0..5u64 {
        c.sftp.write(&h, k * 100_000, chunk.clone()).await?;
    }
    let (_, msg) = refused(c.sftp.write(&h, 500_000, vec![1]).await);
    assert!(msg.contains("Quota"), "{msg}");
    let _ = c.sftp.close(&h).await;
    c.cut().await;
    server.stop().await
}

/// Regression: one connection with 4 SFTP channels took every handle of
/// the server, and another account got "too many open files". Handles
/// (files and directories) are budgeted per connection and per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_hits_its_handle_budget_and_another_still_works() -> TestResult {
    let server = start(
        vec![AccountSpec::audio("acme"), AccountSpec::audio("hog")],
        "max_handles_per_session = 20\nmax_handles_per_account = 50",
    )
    .await?;
    std::fs::create_dir_all(server.jail("hog"))?;
    std::fs::write(server.jail("hog").join("f.txt"), b"x")?;

    // Three connections of four channels each, opening without end.
    let mut conns = Vec::new();
    let mut granted = 0;
    let mut messages = Vec::new();
    for _ in 0..3 {
        let c = server.raw_sftp("hog").await?;
        let mut channels = vec![];
        for _ in 0..3 {
            channels.push(crate::russh_client::open_sftp(&c.handle, 30).await?);
        }
        let mut per_conn = 0;
        for ch in std::iter::once(&c.sftp).chain(channels.iter()) {
            for i in 0..15 {
                let r = match i % 2 {
                    0 => ch.opendir("/").await.map(|h| h.handle),
                    _ => ch
                        .open("/f.txt", OpenFlags::READ, FileAttributes::empty())
                        .await
                        .map(|h| h.handle),
                };
                match r {
                    Ok(_) => per_conn += 1,
                    Err(e) => messages.push(refused::<()>(Err(e)).1),
                }
            }
        }
        assert!(per_conn <= 20, "{per_conn} handles on one connection");
        granted += per_conn;
        conns.push((c, channels));
    }
    assert_eq!(granted, 50, "handles granted to the account");
    assert!(messages.iter().any(|m| m.contains("on this connection")));
    assert!(messages.iter().any(|m| m.contains("for this account")));

    // Meanwhile another account uploads and reads back.
    let body = content(200_000, 3);
    let local = server.local("ok.bin");
    std::fs::write(&local, &body)?;
    let back = server.local("ok-back.bin");
    server
        .sftp_ok(
            "acme",
            &format!(
                "put {} /ok.bin\nls /\nget /ok.bin {}\n",
                local.display(),
                back.display()
            ),
        )
        .await?;
    assert_eq!(std::fs::read(&back)?, body);

    // Disconnecting gives the handles back.
    for (c, channels) in conns {
        drop(channels);
        c.cut().await;
    }
    let again = server.raw_sftp("hog").await?;
    let mut reopened = 0;
    eventually_async(Duration::from_secs(10), "hog's handles given back", || {
        let s = &again.sftp;
        async move {
            let ok = s.opendir("/").await.is_ok();
            ok
        }
    })
    .await?;
    for _ in 0..19 {
        if again.sftp.opendir("/").await.is_ok() {
            reopened += 1;
        }
    }
    assert_eq!(reopened, 19, "a fresh connection gets its whole budget");
    again.cut().await;
    Ok(())
}

/// Paged listings: every entry exactly once through OpenSSH's `ls`, over
/// many READDIR pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_directory_lists_completely_in_pages() -> TestResult {
    let server = start(vec![AccountSpec::audio("acme")], "").await?;
    let dir = server.jail("acme").join("many");
    std::fs::create_dir_all(&dir)?;
    for i in 0..1000 {
        std::fs::write(dir.join(format!("n{i:04}.txt")), b"")?;
    }
    let run = server.sftp_ok("acme", "ls -1 /many\n").await?;
    let mut names: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next())
        .filter(|n| n.starts_with('n') && n.ends_with(".txt"))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 1000, "{}", run.output());
    Ok(())
}

/// Permissions a client asks for are masked: no group/other write, no
/// setuid/setgid/sticky; the owner keeps read and write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chmod_through_sftp_is_masked() -> TestResult {
    let server = start(vec![AccountSpec::audio("acme")], "").await?;
    let local = server.local("mode.bin");
    std::fs::write(&local, b"mode")?;
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o777))?;
    server
        .sftp_ok(
            "acme",
            &format!(
                "put {0} /a.bin\nput -p {0} /p.bin\nchmod 777 /a.bin\nput {0} /b.bin\n\
                 chmod 4777 /b.bin\nchmod 000 /p.bin\nmkdir /d\nchmod 777 /d\nmkdir /e\nchmod 3777 /e\n",
                local.display()
            ),
        )
        .await?;
    let mode = |p: &str| -> TestResult<u32> {
        Ok(std::fs::metadata(server.jail("acme").join(p))?
            .permissions()
            .mode()
            & 0o7777)
    };
    assert_eq!(mode("a.bin")?, 0o644);
    assert_eq!(mode("b.bin")?, 0o644);
    assert_eq!(mode("p.bin")?, 0o600);
    assert_eq!(mode("d")?, 0o755);
    assert_eq!(mode("e")?, 0o755);
    Ok(())
}

/// Client paths over 4,096 bytes are refused with a status that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_over_4096_bytes_are_refused() -> TestResult {
    let server = start(vec![AccountSpec::audio("acme")], "").await?;
    let c = server.raw_sftp("acme").await?;
    let long = format!("/{}", "d/".repeat(2100));
    let (code, msg) = refused(c.sftp.open(&long, WRITE_NEW, FileAttributes::empty()).await);
    assert_eq!(code, StatusCode::PermissionDenied);
    assert!(msg.contains("4096"), "{msg}");
    let (_, msg) = refused(c.sftp.stat(&long).await);
    assert!(msg.contains("4096"), "{msg}");
    let (_, msg) = refused(c.sftp.mkdir(&long, FileAttributes::empty()).await);
    assert!(msg.contains("4096"), "{msg}");
    c.cut().await;
    Ok(())
}
