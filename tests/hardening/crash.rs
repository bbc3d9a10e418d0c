//! Crash recovery (issue 7 §1): clients upload while depot is killed with
//! SIGKILL at seeded random moments. After restart every acknowledged
//! upload is exactly one conversation, nothing partial was ingested, no
//! advisor is duplicated, picking counters equal the picked conversations,
//! and SQLite passes its integrity check. Re-uploading what was never
//! acknowledged then gives the same end state as a run without crashes.

use crate::process::{connect, upload, Depot, TestResult};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCOUNT: &str = r#"timezone = "Europe/Paris"
[audio]
dir = "/audio"
filename = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}"
[advisors]
create = true
email = "%firstname%.%lastname%@%domain%.com"
domain = "acme"
[picking]
percent = 50
"#;

const FILES: usize = 240;
const CLIENTS: usize = 4;
const CRASHES: usize = 6;

struct Item {
    path: String,
    data: Vec<u8>,
    sha: String,
}

fn items() -> Vec<Item> {
    (0..FILES)
        .map(|i| {
            let data = depot::pipeline::audio::sine_wav(1.0 + i as f64 * 0.001, 8000);
            let sha = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&data))
            };
            Item {
                path: format!(
                    "/audio/20260211/2026_02_11_10_{:02}_{:02}_Agent{}_Smith_Entrant_1_2_163.wav",
                    i / 60,
                    i % 60,
                    i % 5
                ),
                data,
                sha,
            }
        })
        .collect()
}

/// One client's pass: uploads its share of what is not acknowledged yet,
/// until the server goes away.
async fn client(
    port: u16,
    key: std::path::PathBuf,
    items: Arc<Vec<Item>>,
    acked: Arc<Mutex<HashSet<usize>>>,
    c: usize,
) {
    let Ok(s) = connect(port, "acme", &key).await else {
        return;
    };
    let _ = s.sftp.mkdir("/audio/20260211", Default::default()).await;
    for (i, item) in items.iter().enumerate().filter(|(i, _)| i % CLIENTS == c) {
        if acked.lock().unwrap().contains(&i) {
            continue;
        }
        match upload(&s, &item.path, &item.data).await {
            Ok(true) => {
                acked.lock().unwrap().insert(i);
            }
            _ => return,
        }
    }
}

fn check_invariants(depot: &Depot, items: &[Item], acked: &HashSet<usize>) -> TestResult<usize> {
    let c = depot::store::open_read(&depot.db())?;
    let integrity: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(integrity, "ok");
    let by_path: HashMap<&str, &Item> = items.iter().map(|i| (i.path.as_str(), i)).collect();
    let mut st = c.prepare(
        "SELECT path, sha256, picked, advisor_id FROM conversations WHERE status != 'superseded'",
    )?;
    let rows: Vec<(String, String, bool, Option<i64>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut seen = HashSet::new();
    for (path, sha, _, _) in &rows {
        let item = by_path
            .get(path.as_str())
            .ok_or(format!("unexpected conversation {path}"))?;
        assert_eq!(sha, &item.sha, "{path}: a partial upload was ingested");
        assert!(
            seen.insert(path.clone()),
            "{path} has two current conversations"
        );
    }
    for i in acked {
        assert!(
            seen.contains(&items[*i].path),
            "acknowledged {} was lost",
            items[*i].path
        );
    }
    let rejections: Vec<String> = c
        .prepare("SELECT path || ': ' || stage || ': ' || reason FROM rejections")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let journal: Vec<String> = c
        .prepare(
            "SELECT j.path || ' ' || j.source || ' ' || j.size || ' ' || coalesce(j.outcome, '')
             FROM journal j JOIN rejections r ON r.path = j.path ORDER BY j.id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert!(
        rejections.is_empty(),
        "valid uploads were rejected: {rejections:?}; their journal rows: {journal:?}\n{}",
        depot
            .log()
            .lines()
            .filter(|l| journal
                .iter()
                .any(|j| j.split(' ').next().is_some_and(|p| l.contains(p))))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let advisors: i64 = c.query_row("SELECT count(*) FROM advisors", [], |r| r.get(0))?;
    let used: HashSet<i64> = rows.iter().filter_map(|r| r.3).collect();
    assert_eq!(
        advisors as usize,
        used.len(),
        "an advisor was duplicated or orphaned"
    );
    let (arrivals, picked): (i64, i64) = c.query_row(
        "SELECT coalesce(sum(arrivals), 0), coalesce(sum(picked), 0) FROM picking_windows",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!(arrivals as usize, rows.len(), "picking arrivals");
    assert_eq!(
        picked as usize,
        rows.iter().filter(|r| r.2).count(),
        "picking counters"
    );
    Ok(rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_uploads_survive_sigkill_exactly_once() -> TestResult {
    let _timing = crate::process::timing_shared().await;
    let mut depot = Depot::new("acme", ACCOUNT)?;
    let items = Arc::new(items());
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..CRASHES {
        depot.start()?;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(client(
                    depot.port,
                    depot.key(),
                    items.clone(),
                    acked.clone(),
                    c,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..300))).await;
        depot.kill();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        depot.start()?;
        depot.wait_ingested(Duration::from_secs(60), |_| true)?;
        let snapshot = acked.lock().unwrap().clone();
        let n = check_invariants(&depot, &items, &snapshot)?;
        eprintln!(
            "round {round}: {} acknowledged, {n} conversations after restart",
            snapshot.len()
        );
        depot.kill();
    }
    // Re-upload what never got an OK: the end state of a run without crashes.
    depot.start()?;
    for c in 0..CLIENTS {
        client(depot.port, depot.key(), items.clone(), acked.clone(), c).await;
    }
    depot.wait_ingested(Duration::from_secs(60), |n| n == FILES as i64)?;
    let all: HashSet<usize> = (0..FILES).collect();
    assert_eq!(check_invariants(&depot, &items, &all)?, FILES);
    let c = depot::store::open_read(&depot.db())?;
    let picked: i64 = c.query_row(
        "SELECT count(*) FROM conversations WHERE picked AND status != 'superseded'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(
        picked as usize,
        FILES / 2,
        "50% of {FILES} calls of one day"
    );
    let advisors: i64 = c.query_row("SELECT count(*) FROM advisors", [], |r| r.get(0))?;
    assert_eq!(advisors, 5);
    depot.stop()?;
    Ok(())
}
