//! Hot reload: an account file added, broken and removed while the server
//! runs takes effect without a restart. The watcher's promise is 2 s; the
//! tests allow 10 s (a busy machine), still well short of the 30 s rescan,
//! so only the watcher can pass them.

use crate::harness::*;
use std::time::{Duration, Instant};

/// How long a change may take to apply here (see the module comment).
const REACT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_appear_survive_a_bad_edit_and_disappear_without_restart() -> TestResult {
    let mut depot = TestServer::prepare(TestConfig::files(&[("acme", account_toml("")?)]))?;
    depot.boot().await?;
    assert!(
        depot.password_sftp("newco", PASSWORD).await.is_err(),
        "no such account yet"
    );

    // Added: a login succeeds soon.
    let body = account_toml("")?;
    std::fs::write(depot.account_file("newco"), &body)?;
    let added = Instant::now();
    let mut first = None;
    while added.elapsed() < REACT {
        if let Ok(s) = depot.password_sftp("newco", PASSWORD).await {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = first.ok_or("the new account could not log in")?;
    session.sftp.stat("/").await?;

    // Broken: the previous version stays; check-config names the key.
    std::fs::write(
        depot.account_file("newco"),
        format!("{body}\n[picking]\npercent = 250\n"),
    )?;
    // Written after the broken edit: once it logs in, a reload pass has
    // read the broken file too.
    std::fs::write(depot.account_file("probe"), &body)?;
    let probe = Instant::now();
    while depot.password_sftp("probe", PASSWORD).await.is_err() {
        if probe.elapsed() > REACT {
            return Err("the probe account never appeared".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = depot.password_sftp("newco", PASSWORD).await?;
    drop(again);
    let check = depot.cli(&["check-config"]).await?;
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(
        text.contains("newco.toml") && text.contains("picking.percent"),
        "{text}"
    );

    // Removed: the open session is closed and new logins fail.
    std::fs::remove_file(depot.account_file("newco"))?;
    eventually_async(REACT, "the open session to be closed", || {
        let closed = session.handle.is_closed();
        async move { closed }
    })
    .await?;
    assert!(session.sftp.stat("/").await.is_err());
    assert!(
        depot.password_sftp("newco", PASSWORD).await.is_err(),
        "removed account still logs in"
    );
    // The other account was never touched.
    depot
        .password_sftp("acme", PASSWORD)
        .await?
        .sftp
        .stat("/")
        .await?;
    depot.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_read_the_live_server_counters() -> TestResult {
    let mut depot = TestServer::prepare(TestConfig::files(&[("acme", account_toml("")?)]))?;
    depot.boot().await?;
    let s = depot.password_sftp("acme", PASSWORD).await?;
    s.sftp.stat("/").await?;
    // The server saves its counters every 5 s: `depot stats` (another
    // process) sees the session while the server runs.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let out = depot.cli_ok(&["stats", "--json"]).await?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let running = v["server"]["running"].as_bool() == Some(true);
        if running && v["server"]["counters"]["sessions"].as_u64() >= Some(1) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("stats never showed the session: {out}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    depot.stop().await?;
    let out = depot.cli_ok(&["stats", "--json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["server"]["running"], false, "{out}");
    Ok(())
}
