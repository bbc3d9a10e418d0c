//! A metadata CSV far too wide, or holding one huge record, is refused
//! with a reason the customer reads, and reading it costs the server a
//! bounded amount of memory: CSVs are parsed one bounded record at a time,
//! never held whole (a 5.7 MB file of 100,000 columns once took 1.2 GB).

use crate::process::{connect, upload, Depot, TestResult};
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
    let deadline = Instant::now() + limit;
    loop {
        let c = depot::store::open_read(&depot.db())?;
        let reason: Option<String> = c
            .query_row(
                "SELECT reason FROM rejections WHERE path = ?1 AND cleared_at IS NULL",
                [path],
                |r| r.get(0),
            )
            .ok();
        if let Some(reason) = reason {
            return Ok(reason);
        }
        if Instant::now() > deadline {
            return Err(format!("no rejection of {path} after {limit:?}: {}", depot.log()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
        assert!(upload(&s, path, bytes).await?, "{path} not acknowledged");
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
    let c = depot::store::open_read(&depot.db())?;
    let rows: i64 = c.query_row("SELECT count(*) FROM metadata_rows", [], |r| r.get(0))?;
    assert_eq!(rows, 0);
    Ok(())
}
