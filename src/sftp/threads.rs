//! The threads SSH connections run on.
//!
//! A connection — its SSH session, the pump and the SFTP loop — lives on
//! one thread, a single-threaded runtime of its own, the way OpenSSH gives
//! each connection a process: a request is read, decrypted, answered and
//! sent without a hand-off between threads. On the shared multi-threaded
//! runtime every task one of them woke also woke an idle worker to look for
//! work: one session uploading small files made the two workers trade
//! about six wake-ups per file, each a context switch.
//!
//! Connections are spread over as many threads as the machine has cores,
//! each new one to the thread serving the fewest. Blocking work a
//! connection starts (hashing a file from disk, flushes on a disk, listings)
//! runs on its thread's blocking pool; the pipeline, the HTTP server and
//! the database writer stay where they were.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping thread waits for its connections' blocking work.
const STOP_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct Threads {
    threads: Vec<Thread>,
}

struct Thread {
    handle: Handle,
    /// Connections served here now.
    load: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    joined: std::thread::JoinHandle<()>,
}

/// Counts a connection on its thread until dropped.
pub(crate) struct Served(Arc<AtomicUsize>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Threads {
    /// Starts `n` connection threads (at least one).
    pub(crate) fn start(n: usize) -> std::io::Result<Threads> {
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("depot-sftp-{i}"))
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let joined = std::thread::Builder::new()
                .name(format!("depot-sftp-{i}"))
                .spawn(move || {
                    // Drives every task of the thread's connections until
                    // told to stop (or the owner is gone).
                    rt.block_on(async move {
                        let _ = stopped.await;
                    });
                    rt.shutdown_timeout(STOP_WAIT);
                })?;
            threads.push(Thread {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                stop,
                joined,
            });
        }
        Ok(Threads { threads })
    }

    /// The thread serving the fewest connections, with the new one counted.
    pub(crate) fn pick(&self) -> Option<(Handle, Served)> {
        let t = self
            .threads
            .iter()
            .min_by_key(|t| t.load.load(Ordering::Relaxed))?;
        t.load.fetch_add(1, Ordering::Relaxed);
        Some((t.handle.clone(), Served(t.load.clone())))
    }

    /// Stops every thread once its tasks are done or abandoned; call after
    /// the connections have been drained.
    pub(crate) async fn stop(self) {
        let joins: Vec<_> = self
            .threads
            .into_iter()
            .map(|t| {
                let _ = t.stop.send(());
                t.joined
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for j in joins {
                let _ = j.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_thread_and_run_there() {
        let threads = Threads::start(2).unwrap();
        let (h1, s1) = threads.pick().unwrap();
        let (h2, s2) = threads.pick().unwrap();
        let name =
            |h: &Handle| h.spawn(async { std::thread::current().name().map(str::to_string) });
        let (n1, n2) = (name(&h1).await.unwrap(), name(&h2).await.unwrap());
        assert_ne!(n1, n2, "two connections, two threads");
        assert!(n1.unwrap().starts_with("depot-sftp-"));
        drop(s1);
        let (h3, _s3) = threads.pick().unwrap();
        assert_eq!(
            name(&h3).await.unwrap(),
            name(&h1).await.unwrap(),
            "the thread whose connection ended is the least busy"
        );
        drop(s2);
        threads.stop().await;
    }
}
