//! `depot serve`: run until Ctrl-C or SIGTERM, then shut down gracefully
//! within `server.shutdown_timeout`.
//!
//! Files and directories depot creates are its user's alone (umask 077):
//! the database, its WAL, jails and recordings hold customers' data.

use anyhow::Result;
use std::path::Path;

pub fn run(config: &Path) -> Result<()> {
    let settings = super::load_settings(config)?;
    super::init_logging(settings.log.format, &settings.log.level);
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        // Before the listeners open: a SIGTERM as soon as clients can
        // connect must be a graceful shutdown, not the default death.
        let stop = stop_signals()?;
        let running = crate::server::start(settings).await?;
        stop.await;
        tracing::info!("shutting down: no new sessions; closing sessions, finishing ingestion");
        let counters = running.shutdown().await?;
        let line: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(counters = %line.join(" "), "stopped");
        Ok(())
    });
    // Blocking work abandoned at the shutdown timeout must not hold the
    // exit: the journal resumes it at the next start.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// Resolves on SIGTERM or SIGINT; both are caught from the moment this
/// returns.
fn stop_signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
