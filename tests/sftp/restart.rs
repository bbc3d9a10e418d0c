//! Restart: journal rows survive a shutdown, and a row still `pending`
//! (the server stopped before the pipeline finished it) is handed to the
//! pipeline again at the next start.

use crate::harness::*;
use depot::store::journal::{self, NewEntry, Source};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_restart_and_pending_rows_are_resumed() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(40_000, 8);
    let local = server.local("a.mp3");
    std::fs::write(&local, &body)?;
    let path = "/audio/20260211/2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    server
        .sftp_ok(
            "acme",
            &format!("mkdir /audio/20260211\nput {} {path}\n", local.display()),
        )
        .await?;
    let before = server.journal("acme")?;
    assert_eq!(before.len(), 1);

    // Stopped: a deposit whose row was committed but never processed.
    server.stop().await?;
    let pending_path =
        "/audio/20260211/2026_02_11_16_00_00_Anne_Martin_Sortant_479_0600000000_164.mp3";
    let pending_body = content(30_000, 9);
    std::fs::write(server.jail("acme").join(&pending_path[1..]), &pending_body)?;
    let inserted = {
        let conn = depot::store::open(&server.db_path())?;
        journal::insert(
            &conn,
            &NewEntry {
                account: "acme".into(),
                path: pending_path.into(),
                size: pending_body.len() as u64,
                sha256: sha256_hex(&pending_body),
                source: Source::Sftp,
            },
        )?
    };
    assert_eq!(server.pending()?.len(), 1, "the inserted row is pending");

    server.restart().await?;
    eventually(
        Duration::from_secs(20),
        "no journal row left pending",
        || server.pending().map(|p| p.is_empty()).unwrap_or(false),
    )
    .await?;
    let after = server.journal("acme")?;
    assert_eq!(after.len(), 2, "{after:#?}");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].path, before[0].path);
    assert_eq!(after[0].sha256, before[0].sha256);
    assert_eq!(after[0].completed_at, before[0].completed_at);
    assert_eq!(after[1].id, inserted.id);
    assert_ne!(after[1].state, "pending");

    // And once more: nothing is re-added or re-opened by a second restart.
    server.restart().await?;
    assert_eq!(server.journal("acme")?.len(), 2);
    assert!(server.pending()?.is_empty());
    server.stop().await
}
