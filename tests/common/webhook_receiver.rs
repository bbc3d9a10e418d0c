//! The webhook receiver shared by the test binaries (part of the common
//! module): Python's `standardwebhooks` package verifying every
//! delivery (tests/fixtures/webhook_receiver.py), failing the first
//! deliveries it is told to, logging what it accepted.

use std::path::Path;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running receiver; it is killed when dropped.
pub struct Receiver {
    _child: tokio::process::Child,
    /// The 127.0.0.1 port it listens on.
    pub port: u16,
}

/// Starts the receiver with `secret`, answering the first `fail_first`
/// deliveries with an error and appending accepted ones to `log`; waits
/// up to `limit` for it to say its port.
pub async fn start(
    secret: &str,
    fail_first: u32,
    log: &Path,
    limit: Duration,
) -> Result<Receiver, Error> {
    use tokio::io::AsyncBufReadExt;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhook_receiver.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(secret)
        .arg(fail_first.to_string())
        .arg(log)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = tokio::io::BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
    let port: u16 = tokio::time::timeout(limit, out.next_line())
        .await
        .map_err(|_| "the receiver did not start")??
        .ok_or("no port")?
        .trim()
        .parse()?;
    Ok(Receiver {
        _child: child,
        port,
    })
}
