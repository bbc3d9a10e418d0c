//! A metadata CSV far too wide, or holding one huge record, is refused
//! with a reason the customer reads, and reading it costs the server a
//! bounded amount of memory: CSVs are parsed one bounded record at a time,
//! never held whole (a 5.7 MB file of 100,000 columns once took 1.2 GB).

use crate::harness::{connect, raw_upload, until_blocking, Depot, TestResult};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const ACCOUNT: &str = r#"timezone = "Europe/Paris"
[audio]
dir = "/audio"
filename = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}"
[metadata_csv]
dir = "/audio"
delimiter = ";"
"#;

/// Growth of the server's peak RSS the two files may cause: a few bounded
/// records and buffers. Parsing them whole took hundreds of MiB.
const GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// 100,000 columns: a header and a dozen rows, about 3 MB.
fn wide_csv() -> Vec<u8> {
    const COLUMNS: usize = 100_000;
    let mut csv = String::from("filename");
    for c in 1..COLUMNS {
        write!(csv, ";c{c}").unwrap();
    }
    csv.push('\n');
    for r in 0..12 {
        write!(csv, "a{r}.mp3").unwrap();
        csv.push_str(&";x".repeat(COLUMNS - 1));
        csv.push('\n');
    }
    csv.into_bytes()
}

/// One 3 MB quoted cell: a single record larger than the file a real
/// metadata CSV ever is.
fn huge_record_csv() -> Vec<u8> {
    let mut csv = String::from("filename;comment\nb.mp3;\"");
    csv.push_str(&"y".repeat(3 << 20));
    csv.push_str("\"\n");
    csv.into_bytes()
}

/// Waits for the open rejection of `path` and returns its reason.
fn rejection_reason(depot: &Depot, path: &str, limit: Duration) -> TestResult<String> {
    until_blocking(
        limit,
        Duration::from_millis(50),
        &format!("a rejection of {path}"),
        || {
            let c = crate::harness::open_db(&depot.db())?;
            Ok(c.query_row(
                "SELECT reason FROM rejections WHERE path = ?1 AND cleared_at IS NULL",
                [path],
                |r| r.get(0),
            )
            .ok())
        },
    )
    .map_err(|e| format!("{e}: {}", depot.log()).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_or_huge_record_csv_is_refused_in_bounded_memory() -> TestResult {
    let mut depot = Depot::new("acme", ACCOUNT)?;
    depot.start()?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    let before = depot.peak_rss_kib()?;
    let files = [
        ("/audio/wide.csv", wide_csv()),
        ("/audio/huge.csv", huge_record_csv()),
    ];
    for (path, bytes) in &files {
        assert!(
            raw_upload(&s, path, bytes).await?,
            "{path} not acknowledged"
        );
    }
    let wide = rejection_reason(&depot, "/audio/wide.csv", Duration::from_secs(60))?;
    let huge = rejection_reason(&depot, "/audio/huge.csv", Duration::from_secs(60))?;
    let after = depot.peak_rss_kib()?;
    eprintln!(
        "wide ({} bytes): {wide}; huge ({} bytes): {huge}; peak RSS {before} -> {after} KiB",
        files[0].1.len(),
        files[1].1.len()
    );
    assert_eq!(
        wide,
        "the header has 100000 columns; at most 1000 are accepted"
    );
    assert_eq!(
        huge,
        "a row of more than 1048576 bytes; is the delimiter or a quote wrong?"
    );
    assert!(
        after.saturating_sub(before) < GROWTH_LIMIT_KIB,
        "peak RSS grew from {before} to {after} KiB"
    );
    // Nothing of either file was stored.
    let c = crate::harness::open_db(&depot.db())?;
    let rows: i64 = c.query_row("SELECT count(*) FROM metadata_rows", [], |r| r.get(0))?;
    assert_eq!(rows, 0);
    Ok(())
}

/// Counts (metadata rows, open rejections of `path`, done journal rows of
/// `path`).
fn csv_state(depot: &Depot, path: &str) -> TestResult<(i64, i64, i64)> {
    let c = crate::harness::open_db(&depot.db())?;
    Ok(c.query_row(
        "SELECT (SELECT count(*) FROM metadata_rows),
                (SELECT count(*) FROM rejections WHERE path = ?1 AND cleared_at IS NULL),
                (SELECT count(*) FROM journal WHERE path = ?1 AND state = 'done')",
        [path],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// Killed while a big CSV's rows are being stored (some transactions
/// committed, not the last), the server stores it again after a restart:
/// every row once, each bad row's rejection once, the journal row done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_halfway_through_a_big_csv_still_stores_it_once() -> TestResult {
    const ROWS: usize = 100_000;
    const BAD: usize = 50;
    let path = "/audio/big.csv";
    let mut depot = Depot::new("acme", ACCOUNT)?;
    depot.start()?;
    let mut csv = String::from("filename;advisor\n");
    for i in 0..ROWS {
        writeln!(csv, "call-{i:06}.mp3;Advisor{}", i % 10).unwrap();
        if i % (ROWS / BAD) == 0 {
            csv.push_str("no-advisor.mp3\n");
        }
    }
    let s = connect(depot.port, "acme", &depot.key()).await?;
    assert!(raw_upload(&s, path, csv.as_bytes()).await?);
    // Looked at often: the kill must land while the rows are being stored.
    until_blocking(
        Duration::from_secs(60),
        Duration::from_millis(5),
        "a first row stored",
        || {
            let (rows, _, done) = csv_state(&depot, path)?;
            if done > 0 {
                return Err(format!("stored before the kill ({rows} rows seen)").into());
            }
            Ok((rows > 0).then_some(()))
        },
    )
    .map_err(|e| format!("{e}: {}", depot.log()))?;
    depot.kill();
    let (rows, rejected, done) = csv_state(&depot, path)?;
    assert!(
        rows < ROWS as i64 && (rejected, done) == (0, 0),
        "{rows} {rejected} {done}"
    );
    depot.start()?;
    until_blocking(
        Duration::from_secs(60),
        Duration::from_millis(50),
        "the CSV stored after the restart",
        || Ok((csv_state(&depot, path)?.2 > 0).then_some(())),
    )
    .map_err(|e| format!("{e}: {}", depot.log()))?;
    assert_eq!(csv_state(&depot, path)?, (ROWS as i64, BAD as i64, 1));
    let c = crate::harness::open_db(&depot.db())?;
    let outcome: String =
        c.query_row("SELECT outcome FROM journal WHERE path = ?1", [path], |r| {
            r.get(0)
        })?;
    assert_eq!(outcome, format!("metadata_csv: {ROWS} rows, {BAD} refused"));
    Ok(())
}

/// Uploads 1 KiB as `/f<n>.dat` and returns how long its CLOSE took.
async fn timed_close(s: &crate::harness::Session, n: usize) -> TestResult<Duration> {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let handle = s
        .sftp
        .open(
            format!("/f{n}.dat"),
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await?
        .handle;
    s.sftp.write(handle.as_str(), 0, vec![7; 1024]).await?;
    let t = Instant::now();
    s.sftp.close(handle).await?;
    Ok(t.elapsed())
}

fn percentiles(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |p: usize| d[(d.len() * p / 100).min(d.len() - 1)];
    format!(
        "{} closes, p50 {:?}, p99 {:?}, max {:?}",
        d.len(),
        at(50),
        at(99),
        d[d.len() - 1]
    )
}

/// A 32 MB, 1,000,000-row metadata CSV: the server's peak RSS while it is
/// stored, and how long another account's CLOSE waits meanwhile (each
/// CLOSE commits a journal row through the same single database writer).
/// Prints the figures; ignored in the normal suite (it takes a while):
/// `cargo test --release --test hardening -- --ignored million_row_csv --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn million_row_csv_memory_and_other_accounts_close() -> TestResult {
    let _timing = crate::harness::timing_exclusive().await;
    let mut depot = crate::harness::Depot::with_options(
        "acme",
        ACCOUNT,
        crate::harness::Options {
            accounts: vec![("other".into(), String::new())],
            ..Default::default()
        },
    )?;
    depot.start()?;
    let mut csv = String::from("filename;advisor;channel;reason\n");
    let mut i = 0;
    while csv.len() < 32 << 20 || i < 1_000_000 {
        writeln!(csv, "call-{i:07}.mp3;Advisor{};Entrant;163", i % 100).unwrap();
        i += 1;
    }
    let acme = connect(depot.port, "acme", &depot.key()).await?;
    let other = connect(depot.port, "other", &depot.key()).await?;
    // The same CLOSEs with nothing else going on, for comparison.
    let mut idle = Vec::new();
    for n in 0..500 {
        idle.push(timed_close(&other, 1_000_000 + n).await?);
    }
    let before = depot.peak_rss_kib()?;
    assert!(raw_upload(&acme, "/audio/million.csv", csv.as_bytes()).await?);
    let uploaded = Instant::now();
    let done = || -> TestResult<bool> {
        let c = crate::harness::open_db(&depot.db())?;
        Ok(c.query_row(
            "SELECT count(*) FROM journal WHERE path = '/audio/million.csv' AND state = 'done'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0)
    };
    let mut closes = Vec::new();
    while !done()? {
        if uploaded.elapsed() > Duration::from_secs(600) {
            return Err(format!("the CSV was not stored in 10 minutes: {}", depot.log()).into());
        }
        closes.push(timed_close(&other, closes.len()).await?);
    }
    let stored = uploaded.elapsed();
    let after = depot.peak_rss_kib()?;
    let c = crate::harness::open_db(&depot.db())?;
    let rows: i64 = c.query_row("SELECT count(*) FROM metadata_rows", [], |r| r.get(0))?;
    eprintln!(
        "metadata CSV: {} bytes, {i} rows, {rows} stored in {stored:?}; peak RSS {} MiB before, \
         {} MiB after; other account's CLOSE meanwhile: {}; with nothing else going on: {}",
        csv.len(),
        before / 1024,
        after / 1024,
        percentiles(closes),
        percentiles(idle),
    );
    assert_eq!(rows, i as i64);
    Ok(())
}
