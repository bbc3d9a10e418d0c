//! Figures for the HTTP API's reads at scale, straight on the store
//! functions the handlers call (no HTTP in the way):
//!
//! - a page of 100 conversations at 1,000,000 stored: first page, a page
//!   deep in the listing (cursor), and filtered by account (p50/p99);
//! - the event feed for a consumer catching up on 1,000,000 events, read
//!   in pages of 1,000 (events/s).
//!
//! `cargo run --example http_figures [-- ROWS]` (default 1,000,000). The
//! database is made in a temporary directory and removed afterwards.

use std::time::{Duration, Instant};

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: i64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let conn = depot::store::open(&dir.path().join("depot.db"))?;
    let t = Instant::now();
    conn.execute_batch(&format!(
        "BEGIN;
         INSERT INTO journal (id, account, path, size, sha256, completed_at, source, state)
            VALUES (1, 'acme', '/audio/x.mp3', 1, 'x', '2026-01-01T00:00:00Z', 'import', 'done');
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO conversations (account, path, journal_id, size, sha256, received_at, status,
            started_at, window, metadata, picked, created_at)
         SELECT 'acct' || (i % 20), '/audio/20260211/call_' || i || '.mp3', 1, 48213,
            printf('%064d', i), strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', '+' || (i / 10) || ' seconds'),
            'ingested', NULL, '2026-01-01', '{{\"contact_reason\":\"163\"}}', i % 2, '2026-01-01T00:00:00Z'
         FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO events (id, type, at, account, data)
         SELECT 'evt_' || i, 'conversation.created', '2026-01-01T00:00:00.000Z', 'acct' || (i % 20),
            '{{\"id\":' || i || '}}' FROM n;
         COMMIT;"
    ))?;
    println!(
        "made {rows} conversations and {rows} events in {:.1?}",
        t.elapsed()
    );

    let runs = 200;
    let measure =
        |name: &str, f: &dyn Fn() -> depot::store::Result<usize>| -> depot::store::Result<()> {
            let mut times = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let n = f()?;
                times.push(t.elapsed());
                assert_eq!(n, 100);
            }
            println!(
                "{name:<42} p50 {:>8.2?}  p99 {:>8.2?}",
                percentile(times.clone(), 0.5),
                percentile(times, 0.99)
            );
            Ok(())
        };
    use depot::store::api::{conversation_page, PageFilter};
    let page = |f: PageFilter| conversation_page(&conn, &f).map(|(items, _)| items.len());
    measure("page of 100, newest", &|| {
        page(PageFilter {
            limit: 100,
            ..Default::default()
        })
    })?;
    measure("page of 100, cursor half-way", &|| {
        page(PageFilter {
            limit: 100,
            before_id: Some(rows / 2),
            ..Default::default()
        })
    })?;
    measure("page of 100, one account of 20", &|| {
        page(PageFilter {
            limit: 100,
            account: Some("acct7".into()),
            ..Default::default()
        })
    })?;
    measure("page of 100, account + cursor half-way", &|| {
        page(PageFilter {
            limit: 100,
            account: Some("acct7".into()),
            before_id: Some(rows / 2),
            ..Default::default()
        })
    })?;

    let t = Instant::now();
    let (mut after, mut read) = (0i64, 0usize);
    loop {
        let batch = depot::store::events::after(&conn, after, None, 1000)?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        read += batch.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "feed catch-up: {read} events in {secs:.2} s = {:.0} events/s",
        read as f64 / secs
    );
    Ok(())
}
