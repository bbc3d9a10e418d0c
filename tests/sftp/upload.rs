//! The everyday path: OpenSSH `sftp` with a key puts a recording, gets it
//! back, and the completion is journaled once with the right digest.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_is_byte_identical_and_journaled_once() -> TestResult {
    let mut server = TestServer::start().await?;
    let body = content(3 * 1024 * 1024 + 17, 1);
    let local = server.local("call.mp3");
    std::fs::write(&local, &body)?;
    let back = server.local("back.mp3");
    let remote = "/audio/20260211/2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    server
        .sftp_ok(
            "acme",
            &format!(
                "mkdir /audio/20260211\nput {} {remote}\nget {remote} {}\n",
                local.display(),
                back.display()
            ),
        )
        .await?;

    assert_eq!(std::fs::read(&back)?, body, "downloaded bytes differ");
    let on_disk = server.jail("acme").join(remote.trim_start_matches('/'));
    assert_eq!(std::fs::read(&on_disk)?, body, "stored bytes differ");

    let rows = server.journal("acme")?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].path, remote);
    assert_eq!(rows[0].size, body.len() as u64);
    assert_eq!(rows[0].sha256, sha256_hex(&body));
    assert_eq!(rows[0].source, "sftp");
    server.stop().await
}
