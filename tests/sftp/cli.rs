//! `depot check-config` as an operator runs it: the real binary, in a temp
//! dir, reading relative paths against its working directory.

use crate::harness::*;
use std::path::Path;
use std::process::Output;

async fn check_config(cwd: &Path, config: &Path) -> TestResult<Output> {
    depot_cli(cwd, config, &["check-config"]).await
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_unknown_keys_and_prints_fingerprints() -> TestResult {
    // A config the server has run with: its host key exists.
    let mut server = TestServer::start().await?;
    let expected_fp = server.running().fingerprints[0].clone();
    server.stop().await?;
    let cwd = server.tmp.path().to_path_buf();

    let out = check_config(&cwd, &server.config_path).await?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("SHA256:"), "{}", text(&out));
    assert!(text(&out).contains(&expected_fp), "{}", text(&out));

    // An unknown key in depot.toml: exit 1, naming the file and the key.
    let bad = cwd.join("bad.toml");
    let good = std::fs::read_to_string(&server.config_path)?;
    std::fs::write(
        &bad,
        good.replace("[server]\n", "[server]\nlisten_typo = 1\n"),
    )?;
    let out = check_config(&cwd, &bad).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad.toml"), "{}", text(&out));
    assert!(text(&out).contains("listen_typo"), "{}", text(&out));

    // An unknown key in an account file: the account file and key are named.
    let account = server.accounts_dir.join("acme.toml");
    let acc_text = std::fs::read_to_string(&account)?;
    std::fs::write(
        &account,
        acc_text.replace("[audio]\n", "[audio]\ndirr = \"/x\"\n"),
    )?;
    let out = check_config(&cwd, &server.config_path).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("acme.toml"), "{}", text(&out));
    assert!(text(&out).contains("dirr"), "{}", text(&out));
    Ok(())
}
