//! Webhook delivery survives SIGKILL: a receiver that verifies every
//! Standard Webhooks signature with the Python `standardwebhooks` package
//! and fails its first three attempts, while depot (a child process) is
//! killed with SIGKILL mid-retry and again mid-delivery. Every
//! `conversation.created` event ends delivered, in `seq` order, signed,
//! under its event id; repeats are allowed (at least once), gaps are not.

use crate::harness::{connect, eventually_try, raw_upload, Depot, TestResult};
use serde_json::Value as Json;
use std::path::Path;
use std::time::Duration;

const ACCOUNT: &str = r#"timezone = "Europe/Paris"
[audio]
dir = "/audio"
filename = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}"
"#;

const FILES: usize = 8;
const LIMIT: Duration = Duration::from_secs(60);

fn received(log: &Path) -> TestResult<Vec<Json>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// `(seq, id)` of every conversation.created event, by seq.
fn created_events(db: &Path) -> TestResult<Vec<(i64, String)>> {
    let c = crate::harness::open_db(db)?;
    let mut st =
        c.prepare("SELECT seq, id FROM events WHERE type = 'conversation.created' ORDER BY seq")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_delivered_in_order_across_sigkill() -> TestResult {
    let mut depot = Depot::new("acme", ACCOUNT)?;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let log = depot.dir.path().join("received.jsonl");
    let receiver = crate::webhook_receiver::start(secret, 3, &log, LIMIT).await?;
    let port = receiver.port;
    let config = depot.dir.path().join("depot.toml");
    let mut toml = std::fs::read_to_string(&config)?;
    toml += &format!(
        "\n[[webhooks]]\nname = \"analysis\"\nurl = \"http://127.0.0.1:{port}/\"\nsecret = \"{secret}\"\n\
         events = [\"conversation.created\"]\nbackoff = [\"300ms\", \"600ms\"]\ntimeout = \"5s\"\n"
    );
    std::fs::write(&config, toml)?;
    depot.start()?;

    let s = connect(depot.port, "acme", &depot.key()).await?;
    let _ = s.sftp.mkdir("/audio/20260211", Default::default()).await;
    for i in 0..FILES {
        let data = crate::harness::sine_wav(0.2 + i as f64 * 0.01, 8000);
        let path =
            format!("/audio/20260211/2026_02_11_10_00_{i:02}_Agent_Smith_Entrant_1_2_163.wav");
        assert!(
            raw_upload(&s, &path, &data).await?,
            "upload {i} acknowledged"
        );
    }
    drop(s);
    // Killed while the receiver still refuses (mid-retry).
    eventually_try(LIMIT, "a first refused attempt", || {
        Ok(!received(&log)?.is_empty())
    })
    .await?;
    depot.kill();
    depot.start()?;
    // Killed again once deliveries are under way.
    eventually_try(LIMIT, "a first delivery", || {
        Ok(received(&log)?.iter().any(|l| l["status"] == 204))
    })
    .await?;
    depot.kill();
    depot.start()?;

    eventually_try(LIMIT, "every conversation", || {
        Ok(created_events(&depot.db())?.len() == FILES)
    })
    .await?;
    let events = created_events(&depot.db())?;
    eventually_try(LIMIT, "every event delivered", || {
        let ok: Vec<Json> = received(&log)?
            .into_iter()
            .filter(|l| l["status"] == 204)
            .collect();
        Ok(events
            .iter()
            .all(|(_, id)| ok.iter().any(|l| l["id"] == id.as_str())))
    })
    .await?;
    // A SIGTERM right after the restart is still a clean stop.
    depot.stop()?;

    let all = received(&log)?;
    assert!(
        all.iter().all(|l| l["verified"] == true),
        "unsigned or forged delivery: {all:#?}"
    );
    assert_eq!(all.iter().filter(|l| l["status"] == 500).count(), 3);
    // First successful delivery of each event, in the order received.
    let mut order: Vec<i64> = Vec::new();
    for l in all.iter().filter(|l| l["status"] == 204) {
        let seq = l["seq"].as_i64().ok_or("seq")?;
        let id = l["id"].as_str().ok_or("id")?;
        assert!(
            events.iter().any(|(s, i)| *s == seq && i == id),
            "{l}: not an event of the feed"
        );
        if !order.contains(&seq) {
            order.push(seq);
        }
    }
    let want: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order, want,
        "delivered in seq order, none missing: {all:#?}"
    );
    Ok(())
}
