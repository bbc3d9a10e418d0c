//! The start-up scan: a file put into a jail while depot is
//! stopped is ingested at the next start, once.

use crate::harness::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_placed_while_stopped_is_ingested_once() -> TestResult {
    let mut depot = TestServer::prepare(TestConfig::files(&[("acme", account_toml("")?)]))?;
    depot.boot().await?;
    depot.stop().await?;

    let day = depot.jail("acme").join("audio/20260211");
    std::fs::create_dir_all(&day)?;
    let (name, bytes) = recording(1, "163");
    std::fs::write(day.join(&name), bytes)?;
    // Never ingested: a temporary name, and a symlink out of the jail.
    std::fs::write(day.join(format!("{name}.part")), b"partial")?;
    let outside = depot.local("outside.wav");
    std::fs::create_dir_all(outside.parent().ok_or("parent")?)?;
    std::fs::write(&outside, recording(2, "163").1)?;
    std::os::unix::fs::symlink(&outside, day.join(recording(2, "163").0))?;

    depot.boot().await?;
    eventually_async(
        Duration::from_secs(30),
        "the placed file to be ingested",
        || {
            let n = depot.live_conversations("acme").unwrap_or(0);
            async move { n == 1 }
        },
    )
    .await?;
    depot.stop().await?;
    depot.boot().await?;
    depot.stop().await?;
    assert_eq!(depot.live_conversations("acme")?, 1);
    assert_eq!(depot.journal_rows("acme")?, 1);
    Ok(())
}
