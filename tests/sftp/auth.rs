//! Authentication: password logins through a russh client, refusals that
//! say nothing, and the per-IP ban (refused at connect, lifted after
//! `ban_duration`).

use crate::harness::*;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const PASSWORD: &str = "correct horse battery staple";

fn password_account() -> AccountSpec {
    AccountSpec::audio("acme").with_password(PASSWORD)
}

/// One password attempt on a fresh connection: Ok(true) logged in,
/// Ok(false) refused, Err the connection itself failed.
async fn try_password(server: &TestServer, user: &str, pw: &str) -> Result<bool, russh::Error> {
    let mut h = server.connect().await?;
    let ok = h.authenticate_password(user, pw).await?.success();
    let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
    Ok(ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_works_and_bad_credentials_are_refused() -> TestResult {
    let mut server = TestServer::start_with(TestConfig {
        accounts: vec![password_account()],
        ..Default::default()
    })
    .await?;

    // A password session can do real work.
    let client = server.password_sftp("acme", PASSWORD).await?;
    let name = client.sftp.realpath(".").await?;
    assert_eq!(name.files[0].filename, "/");
    client.cut().await;

    assert!(!try_password(&server, "acme", "wrong").await?);
    assert!(!try_password(&server, "nobody", PASSWORD).await?);
    // The account has a key too; a password is not a key.
    assert!(!try_password(&server, "acme", "").await?);
    assert!(try_password(&server, "acme", PASSWORD).await?);
    server.stop().await
}

/// Reads what the server sends first on a raw TCP connection: an SSH
/// banner when served, nothing (EOF or reset) when refused at connect.
async fn first_bytes(server: &TestServer) -> TestResult<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port())).await?;
    let mut buf = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await?;
    match read {
        Ok(n) => Ok(buf[..n].to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_after_failures_refuses_at_connect_then_expires() -> TestResult {
    let mut server = TestServer::start_with(TestConfig {
        accounts: vec![password_account()],
        ban_after_failures: 3,
        ban_window: "1m".into(),
        ban_duration: "2s".into(),
        ..Default::default()
    })
    .await?;
    assert!(first_bytes(&server).await?.starts_with(b"SSH-2.0-"));

    // Three failures on one connection (an unknown user counts too).
    let mut h = server.connect().await?;
    for (user, pw) in [("acme", "nope"), ("nobody", "nope"), ("acme", "again")] {
        assert!(!h.authenticate_password(user, pw).await?.success());
    }
    drop(h);

    // Banned: the connection is closed before the SSH banner, so even the
    // right password cannot be tried.
    assert!(
        first_bytes(&server).await?.is_empty(),
        "a banned address got an SSH banner"
    );
    assert!(
        !matches!(try_password(&server, "acme", PASSWORD).await, Ok(true)),
        "a banned address logged in"
    );
    let bans = server
        .running()
        .shared
        .metrics
        .bans
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(bans, 1);

    // After ban_duration the right password works again.
    eventually_async(Duration::from_secs(10), "the ban to expire", || async {
        matches!(try_password(&server, "acme", PASSWORD).await, Ok(true))
    })
    .await?;
    server.stop().await
}
