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
        let running = crate::server::start(settings).await?;
        wait_for_signal().await;
        tracing::info!(
            "shutting down: no new sessions; finishing uploads and ingestion in progress"
        );
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

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
