//! Webhook delivery (Standard Webhooks 1.0): one task per `[[webhooks]]`
//! endpoint follows the event feed from its stored cursor and POSTs each
//! wanted event, signed, in `seq` order, one at a time. A non-2xx answer or
//! a timeout is retried after the endpoint's backoff (with ±20 % jitter);
//! an event still failing `give_up_after` after its first failure is parked
//! (dead letter) and delivery goes on. Progress is committed after each
//! answer, so a restart (even after kill -9) resumes where it was: at
//! worst the event in flight is delivered again, with the same
//! `webhook-id`.

pub(crate) mod sign;

use crate::config::WebhookConfig;
use crate::store::events::{self, Event};
use crate::store::{webhooks as state, Writer};
use rand::Rng;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events read from the feed at once.
const BATCH: u32 = 100;

/// Starts one delivery task per endpoint; each ends when `shutdown` turns true.
pub(crate) fn spawn(
    hooks: &[WebhookConfig],
    writer: &Writer,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for hook in hooks {
        let client = reqwest::Client::builder()
            .timeout(hook.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (hook, writer, shutdown) = (hook.clone(), writer.clone(), shutdown.clone());
        tracing::info!(webhook = %hook.name, url = %hook.url, "webhook delivery started");
        tasks.push(tokio::spawn(run(hook, client, writer, shutdown)));
    }
    Ok(tasks)
}

/// The wait before attempt `attempts + 1`, with jitter.
fn backoff(hook: &WebhookConfig, attempts: u32) -> Duration {
    let i = (attempts as usize).min(hook.backoff.len().saturating_sub(1));
    let base = hook
        .backoff
        .get(i)
        .copied()
        .unwrap_or(Duration::from_secs(5));
    base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

enum Next {
    Deliver(Event, Option<i64>),
    /// Nothing to do until the next commit.
    Idle,
}

async fn run(
    hook: WebhookConfig,
    client: reqwest::Client,
    writer: Writer,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut commits = writer.commits();
    loop {
        if *shutdown.borrow() {
            return;
        }
        commits.borrow_and_update();
        let name = hook.name.clone();
        let filter = hook.clone();
        // Parked events marked for retry go first, then the feed.
        let found = writer
            .run(move |c| {
                let cur = state::cursor(c, &name)?;
                if let Some(seq) = state::next_retry(c, &name)? {
                    if let Some(e) = events::by_seq(c, seq)? {
                        return Ok((cur, Next::Deliver(e, Some(seq))));
                    }
                    state::drop_parked(c, &name, seq)?;
                }
                let batch = events::after(c, cur.delivered_seq, None, BATCH)?;
                match batch.iter().position(|e| filter.wants(&e.kind, &e.account)) {
                    Some(i) => {
                        if i > 0 {
                            state::delivered(c, &name, batch[i - 1].seq, false)?;
                        }
                        Ok((cur, Next::Deliver(batch[i].clone(), None)))
                    }
                    None => {
                        if let Some(last) = batch.last() {
                            state::delivered(c, &name, last.seq, false)?;
                        }
                        Ok((cur, Next::Idle))
                    }
                }
            })
            .await;
        let (cur, next) = match found {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "cannot read the event feed; retrying");
                if pause(&mut shutdown, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        let (event, retry_of) = match next {
            Next::Idle => {
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                continue;
            }
            Next::Deliver(e, r) => (e, r),
        };
        // A retry already scheduled waits its turn (also after a restart).
        if retry_of.is_none() {
            if let Some(at) = cur
                .next_attempt_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                let wait = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                if !wait.is_zero() && pause(&mut shutdown, wait).await {
                    return;
                }
            }
        }
        let outcome = tokio::select! {
            r = deliver(&hook, &client, &event) => r,
            // Not acknowledged: delivered again after the restart.
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let name = hook.name.clone();
        let seq = event.seq;
        let recorded = match (retry_of, outcome) {
            (Some(_), r) => {
                let (ok, err) = match r {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                writer
                    .run(move |c| state::retried(c, &name, seq, ok, &err))
                    .await
            }
            (None, Ok(())) => {
                writer
                    .run(move |c| state::delivered(c, &name, seq, true))
                    .await
            }
            (None, Err(err)) => {
                let since = cur
                    .failing_since
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_else(chrono::Utc::now);
                let failing_for = (chrono::Utc::now() - since).to_std().unwrap_or_default();
                if failing_for >= hook.give_up_after {
                    tracing::warn!(webhook = %hook.name, seq, error = %err, "webhook event parked after failing too long; delivery goes on");
                    writer.run(move |c| state::park(c, &name, seq, &err)).await
                } else {
                    let wait = backoff(&hook, cur.attempts);
                    let at = chrono::Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    tracing::info!(webhook = %hook.name, seq, attempt = cur.attempts + 1, retry_in = ?wait, error = %err, "webhook delivery failed");
                    writer
                        .run(move |c| state::failed(c, &name, &at, &err))
                        .await
                }
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(webhook = %hook.name, error = %e, "cannot record webhook progress; the event will be delivered again");
            if pause(&mut shutdown, Duration::from_secs(5)).await {
                return;
            }
        }
    }
}

/// Sleeps `d`; true when shutdown came first.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// One signed POST of `event`; `Err` with why when it was not a 2xx.
async fn deliver(
    hook: &WebhookConfig,
    client: &reqwest::Client,
    event: &Event,
) -> Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign::signature(&hook.secret, &event.id, timestamp, &body);
    let sent = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", hook.timeout)),
        Err(e) => Err(format!("cannot deliver: {e}")),
    }
}
