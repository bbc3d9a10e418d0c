//! Hot reload: an account file added, broken and removed while the server
//! runs takes effect without a restart. The watcher's promise is 2 s; the
//! tests allow 10 s (a busy machine), still well short of the 30 s rescan,
//! so only the watcher can pass them.

use crate::harness::*;
use std::time::Duration;

/// How long a change may take to apply here (see the module comment).
const REACT: Duration = Duration::from_secs(10);

/// How often a login is retried while waiting for a change.
const LOGIN_POLL: Duration = Duration::from_millis(50);

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
    // Every attempt is a password check: looked at every 50 ms, not more.
    let session = until_every(REACT, LOGIN_POLL, "the new account to log in", || async {
        Ok(depot.password_sftp("newco", PASSWORD).await.ok())
    })
    .await?;
    session.sftp.stat("/").await?;

    // Broken: the previous version stays; check-config names the key.
    std::fs::write(
        depot.account_file("newco"),
        format!("{body}\n[picking]\npercent = 250\n"),
    )?;
    // Written after the broken edit: once it logs in, a reload pass has
    // read the broken file too.
    std::fs::write(depot.account_file("probe"), &body)?;
    until_every(REACT, LOGIN_POLL, "the probe account to appear", || async {
        Ok(depot.password_sftp("probe", PASSWORD).await.ok().map(drop))
    })
    .await?;
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
    // Each look runs the binary: twice a second is often enough.
    let last = std::cell::RefCell::new(String::new());
    let (server, seen) = (&depot, &last);
    until_every(
        Duration::from_secs(12),
        Duration::from_millis(500),
        "stats to show the session",
        || async move {
            let out = server.cli_ok(&["stats", "--json"]).await?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let running = v["server"]["running"].as_bool() == Some(true);
            let shown = running && v["server"]["counters"]["sessions"].as_u64() >= Some(1);
            seen.replace(out);
            Ok(shown.then_some(()))
        },
    )
    .await
    .map_err(|e| format!("{e}; stats never showed the session: {}", last.borrow()))?;
    depot.stop().await?;
    let out = depot.cli_ok(&["stats", "--json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["server"]["running"], false, "{out}");
    Ok(())
}
