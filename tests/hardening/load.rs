//! Load: 200 concurrent sessions each upload 5 small valid
//! recordings. Every upload is acknowledged, every one becomes a
//! conversation, and the server's peak RSS stays under 256 MiB.

use crate::harness::{connect, raw_upload, Depot, Options, TestResult};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 200;
const FILES_PER_SESSION: usize = 5;
const RSS_LIMIT_KIB: u64 = 256 * 1024;

const ACCOUNT: &str = r#"timezone = "Europe/Paris"
[audio]
dir = "/audio"
filename = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}"
[advisors]
create = true
email = "%firstname%.%lastname%@%domain%.com"
domain = "acme"
[picking]
percent = 20
"#;

/// The i-th recording's name: a distinct second of 2026-02-11, 10 advisors.
fn name(i: usize) -> String {
    format!(
        "/audio/20260211/2026_02_11_{:02}_{:02}_{:02}_Agent{}_Smith_Entrant_1_2_163.wav",
        10 + i / 3600,
        (i / 60) % 60,
        i % 60,
        i % 10
    )
}

async fn session(
    depot: Arc<(u16, std::path::PathBuf)>,
    s: usize,
    audio: Arc<Vec<u8>>,
) -> TestResult {
    let (port, key) = (&depot.0, &depot.1);
    let mut tries = 0;
    let sess = loop {
        // 200 key exchanges at once on two cores: allow a retry on timeout.
        match connect(*port, "acme", key).await {
            Ok(s) => break s,
            Err(e) if tries < 2 => {
                tries += 1;
                eprintln!("session {s}: connect retry after {e}");
            }
            Err(e) => return Err(e),
        }
    };
    let _ = sess.sftp.mkdir("/audio/20260211", Default::default()).await;
    for f in 0..FILES_PER_SESSION {
        let path = name(s * FILES_PER_SESSION + f);
        if !raw_upload(&sess, &path, &audio).await? {
            return Err(format!("{path}: upload not acknowledged").into());
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_upload_and_everything_is_ingested() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let mut depot = Depot::with_options(
        "acme",
        ACCOUNT,
        Options {
            server: format!("max_sessions_per_account = {}\n", SESSIONS + 16),
            // All 200 log in at once from 127.0.0.1: room for every
            // handshake from that one address.
            auth: format!(
                "max_unauthenticated_per_ip = {0}\nmax_unauthenticated = {0}\n",
                SESSIONS + 16
            ),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let audio = Arc::new(crate::harness::sine_wav(0.1, 8000));
    let target = Arc::new((depot.port, depot.key()));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|s| tokio::spawn(session(target.clone(), s, audio.clone())))
        .collect();
    let mut failed = Vec::new();
    for (s, t) in tasks.into_iter().enumerate() {
        if let Err(e) = t.await? {
            failed.push(format!("session {s}: {e}"));
        }
    }
    let uploaded = t0.elapsed();
    assert!(
        failed.is_empty(),
        "{} sessions failed: {failed:?}\n{}",
        failed.len(),
        depot.log()
    );
    let total = (SESSIONS * FILES_PER_SESSION) as i64;
    let convs = depot.wait_ingested(Duration::from_secs(120), |n| n >= total)?;
    let ingested = t0.elapsed();
    let c = crate::harness::open_db(&depot.db())?;
    let rejections: i64 = c.query_row("SELECT count(*) FROM rejections", [], |r| r.get(0))?;
    let paths: i64 = c.query_row(
        "SELECT count(DISTINCT path) FROM conversations WHERE status != 'superseded'",
        [],
        |r| r.get(0),
    )?;
    let peak = depot.peak_rss_kib()?;
    eprintln!(
        "load: {SESSIONS} sessions x {FILES_PER_SESSION} files uploaded in {uploaded:?}, \
         {convs} conversations after {ingested:?}; peak RSS {} MiB",
        peak / 1024
    );
    assert_eq!(rejections, 0, "valid uploads were rejected");
    assert_eq!((convs, paths), (total, total));
    assert!(peak < RSS_LIMIT_KIB, "peak RSS {peak} KiB");
    Ok(())
}
