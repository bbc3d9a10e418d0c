//! `depot serve`: run until Ctrl-C or SIGTERM, then shut down gracefully.

use anyhow::Result;
use std::path::Path;

pub fn run(config: &Path) -> Result<()> {
    let settings = super::load_settings(config)?;
    super::init_logging(settings.log.format, &settings.log.level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Registered before start: a SIGTERM that arrives while depot
        // starts becomes a graceful stop once it has started, not a kill.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let running = crate::server::start(settings).await?;
        wait_for_signal(term).await;
        tracing::info!(
            "shutting down: no new sessions; finishing uploads and ingestion in progress"
        );
        let counters = running.shutdown().await?;
        let line: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(counters = %line.join(" "), "stopped");
        Ok(())
    })
}

async fn wait_for_signal(term: Option<tokio::signal::unix::Signal>) {
    let term = async {
        match term {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
