//! The one task that runs the pipeline: it receives journal entries (from
//! upload completions, and pending rows re-read at start), runs the stages
//! and stores the outcome.

use crate::store::journal::{self, Entry};
use crate::store::Writer;
use tokio::sync::mpsc;

/// Runs until every sender is dropped and the queue is empty.
pub async fn run(mut inbox: mpsc::UnboundedReceiver<Entry>, writer: Writer) {
    while let Some(entry) = inbox.recv().await {
        let id = entry.id;
        if let Err(e) = writer
            .run(move |c| journal::mark_done(c, id, "received"))
            .await
        {
            tracing::error!(journal_id = id, error = %e, "cannot record the deposit as received; it will be retried at the next start");
        }
    }
}
