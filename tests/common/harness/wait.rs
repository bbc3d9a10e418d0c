//! The one way a test waits: poll a condition until it holds or a deadline
//! passes, then fail with what was awaited. Tests never sleep a fixed time
//! hoping the server is done; they say what "done" looks like.
//!
//! The probe answers `Ok(Some(value))` when the wait is over, `Ok(None)` to
//! look again, and an error to stop at once (a state that can never become
//! right). `until`, `eventually` and friends are that one loop for plain
//! closures and `bool` conditions; `until_blocking` is the loop for code
//! outside the runtime.

use super::TestResult;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again: often enough that a wait
/// ends soon after its condition holds, rarely enough that the looking
/// (a database query, a file read) does not load a busy machine.
pub const POLL: Duration = Duration::from_millis(50);

/// A deadline and what the test is waiting for, for the failure message.
struct Deadline<'a> {
    at: Instant,
    limit: Duration,
    what: &'a str,
}

impl<'a> Deadline<'a> {
    fn new(limit: Duration, what: &'a str) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
            what,
        }
    }

    /// The error to return once the deadline has passed.
    fn expired(&self) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        (Instant::now() >= self.at).then(|| {
            format!(
                "timed out after {:?} waiting for: {}",
                self.limit, self.what
            )
            .into()
        })
    }
}

/// Polls the async `probe` until it yields a value or `limit` passes.
pub async fn until_async<T, F, Fut>(limit: Duration, what: &str, probe: F) -> TestResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TestResult<Option<T>>>,
{
    until_every(limit, POLL, what, probe).await
}

/// [`until_async`] looking again every `every`: for probes that cost
/// something (running the `depot` binary, logging in), or a race that
/// must be caught early.
pub async fn until_every<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut probe: F,
) -> TestResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TestResult<Option<T>>>,
{
    let deadline = Deadline::new(limit, what);
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if let Some(e) = deadline.expired() {
            return Err(e);
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `probe` until it yields a value or `limit` passes.
pub async fn until<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> TestResult<Option<T>>,
) -> TestResult<T> {
    until_async(limit, what, || std::future::ready(probe())).await
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> TestResult {
    until(limit, what, || Ok(cond().then_some(()))).await
}

/// [`eventually`] for a condition that can fail to be read (a database
/// query, a log file): a read error stops the wait at once.
pub async fn eventually_try(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> TestResult<bool>,
) -> TestResult {
    until(limit, what, || Ok(cond()?.then_some(()))).await
}

/// Polls the async `cond` until it holds or `limit` passes.
pub async fn eventually_async<F, Fut>(limit: Duration, what: &str, mut cond: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_async(limit, what, || {
        let fut = cond();
        async move { Ok(fut.await.then_some(())) }
    })
    .await
}

/// [`until`] for synchronous code (a blocking thread, or a test that
/// holds the runtime on purpose), looking again every `every`.
pub fn until_blocking<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut probe: impl FnMut() -> TestResult<Option<T>>,
) -> TestResult<T> {
    let deadline = Deadline::new(limit, what);
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if let Some(e) = deadline.expired() {
            return Err(e);
        }
        std::thread::sleep(every);
    }
}
