//! In-process counters, printed at shutdown (and, later, served over HTTP).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Metrics {
    pub sessions: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub completions: AtomicU64,
    pub conversations: AtomicU64,
    pub rejections: AtomicU64,
    pub auth_failures: AtomicU64,
    pub bans: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `name value` pairs, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("sessions", g(&self.sessions)),
            ("bytes_in", g(&self.bytes_in)),
            ("bytes_out", g(&self.bytes_out)),
            ("completions", g(&self.completions)),
            ("conversations", g(&self.conversations)),
            ("rejections", g(&self.rejections)),
            ("auth_failures", g(&self.auth_failures)),
            ("bans", g(&self.bans)),
        ]
    }
}
