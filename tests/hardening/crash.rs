//! Crash recovery: clients upload while depot is killed with
//! SIGKILL at seeded random moments. After restart every acknowledged
//! upload is exactly one conversation, nothing partial was ingested, no
//! advisor is duplicated, picking counters equal the picked conversations,
//! and SQLite passes its integrity check. Re-uploading what was never
//! acknowledged then gives the same end state as a run without crashes.

use crate::harness::{connect, raw_upload, Depot, TestResult};
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
            let data = crate::harness::sine_wav(1.0 + i as f64 * 0.001, 8000);
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
        match raw_upload(&s, &item.path, &item.data).await {
            Ok(true) => {
                acked.lock().unwrap().insert(i);
            }
            _ => return,
        }
    }
}

fn check_invariants(depot: &Depot, items: &[Item], acked: &HashSet<usize>) -> TestResult<usize> {
    let c = crate::harness::open_db(&depot.db())?;
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
    let _timing = crate::harness::timing_shared().await;
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
    let c = crate::harness::open_db(&depot.db())?;
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

/// One client's turbulent pass: uploads through temporary names and
/// renames, re-uploads changed bytes, chmods and touches what it uploaded,
/// renames ingested files, and keeps a handle open across renames, until
/// the server is killed. Every acknowledged sha256 goes into `acked`.
async fn turbulent_client(
    port: u16,
    key: std::path::PathBuf,
    acked: Arc<Mutex<Vec<String>>>,
    c: usize,
    seed: u64,
) {
    use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
    let Ok(s) = connect(port, "acme", &key).await else {
        return;
    };
    let dir = format!("/audio/2026021{c}");
    let _ = s.sftp.mkdir(&dir, Default::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..40usize {
        let name = format!(
            "{dir}/2026_02_11_11_{c:02}_{:02}_Agent{c}_Smith_Entrant_1_2_163.wav",
            i % 60
        );
        let data =
            crate::harness::sine_wav(0.5 + (seed % 97) as f64 * 0.001 + i as f64 * 0.0001, 8000);
        let sha = crate::harness::sha256_hex(&data);
        let ok = match rng.gen_range(0..3) {
            0 => raw_upload(&s, &name, &data).await.unwrap_or(false),
            _ => {
                let part = format!("{name}.part");
                if !raw_upload(&s, &part, &data).await.unwrap_or(false) {
                    return;
                }
                // A handle left open on the temporary name across the rename.
                let stale = s
                    .sftp
                    .open(&part, OpenFlags::WRITE, FileAttributes::empty())
                    .await
                    .ok()
                    .map(|h| h.handle);
                let renamed = s
                    .sftp
                    .extended("posix-rename@openssh.com", {
                        let mut b = Vec::new();
                        for p in [&part, &name] {
                            b.extend_from_slice(&(p.len() as u32).to_be_bytes());
                            b.extend_from_slice(p.as_bytes());
                        }
                        b
                    })
                    .await;
                if let Some(h) = stale {
                    let _ = s.sftp.write(&h, 0, b"late write".to_vec()).await;
                    let truncate = FileAttributes {
                        size: Some(0),
                        ..FileAttributes::empty()
                    };
                    let _ = s.sftp.fsetstat(&h, truncate).await;
                    let _ = s.sftp.close(h).await;
                }
                match renamed {
                    Ok(russh_sftp::protocol::Packet::Status(st)) => {
                        st.status_code == StatusCode::Ok
                    }
                    _ => false,
                }
            }
        };
        if !ok {
            return;
        }
        acked.lock().unwrap().push(sha);
        let mode = FileAttributes {
            permissions: Some(0o777),
            mtime: Some(1),
            atime: Some(1),
            ..FileAttributes::empty()
        };
        let _ = s.sftp.setstat(&name, mode).await;
        if rng.gen_bool(0.3) {
            let _ = s.sftp.rename(&name, format!("{name}.moved.wav")).await;
        }
    }
}

/// Kill -9 while files are being renamed, re-uploaded and SETSTAT'd, with
/// handles left open across renames: after each restart every journal row
/// has exactly one outcome (none dropped as stale), every acknowledged
/// sha256 is a conversation or a row superseded by a newer completion,
/// and every archived recording is intact, read-only and shares no inode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_reuploads_and_setstats_survive_sigkill() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let _timing = crate::harness::timing_shared().await;
    let mut depot = Depot::new("acme", ACCOUNT)?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0ffee);
    for round in 0..4u64 {
        depot.start()?;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(turbulent_client(
                    depot.port,
                    depot.key(),
                    acked.clone(),
                    c,
                    round * 10 + c as u64,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
        depot.kill();
        // A request in flight when the server died would wait for its
        // timeout: nothing unacknowledged matters, so stop the clients.
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        depot.start()?;
        depot.wait_ingested(Duration::from_secs(60), |_| true)?;
        let c = crate::harness::open_db(&depot.db())?;
        let integrity: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(integrity, "ok");
        let rows: Vec<(i64, String, String)> = c
            .prepare("SELECT id, sha256, coalesce(outcome, '') FROM journal")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (id, _, outcome) in &rows {
            assert!(!outcome.is_empty(), "journal row {id} has no outcome");
            assert!(
                !outcome.starts_with("stale"),
                "journal row {id} dropped: {outcome}"
            );
        }
        let convs: Vec<(String, String, String, Option<String>)> = c
            .prepare("SELECT path, sha256, status, archive_path FROM conversations")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut current = HashSet::new();
        for (path, sha, status, archive) in &convs {
            if status == "superseded" {
                continue;
            }
            assert!(
                current.insert(path.clone()),
                "{path} has two current conversations"
            );
            let archive = archive.as_ref().ok_or(format!("{path} has no archive"))?;
            let bytes = std::fs::read(archive)?;
            assert_eq!(
                &crate::harness::sha256_hex(&bytes),
                sha,
                "{archive} changed"
            );
            let m = std::fs::metadata(archive)?;
            assert_eq!((m.mode() & 0o7777, m.nlink()), (0o440, 1), "{archive}");
        }
        let snapshot = acked.lock().unwrap().clone();
        for sha in &snapshot {
            let became_conversation = convs.iter().any(|c| &c.1 == sha);
            let covered = rows.iter().any(|r| {
                &r.1 == sha && (r.2.starts_with("superseded") || r.2.starts_with("unchanged"))
            });
            assert!(
                became_conversation || covered,
                "acknowledged {sha} was lost"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged, {} journal rows",
            snapshot.len(),
            rows.len()
        );
        depot.kill();
    }
    Ok(())
}
