//! The jail: `..` chains, absolute paths, symlinks planted by another
//! process, NUL bytes and over-long names. Every case checks the file
//! system outside the jail afterwards: a canary directory beside it must be
//! unchanged, and nothing new may appear anywhere outside the jail.

use crate::harness::*;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::path::{Path, PathBuf};

/// A server whose `acme` jail holds symlinks to `/etc` and to a canary
/// directory outside the jail (as if another process had planted them).
struct Planted {
    server: TestServer,
    canary: PathBuf,
}

async fn planted() -> TestResult<Planted> {
    let server = TestServer::start().await?;
    let canary = server.tmp.path().join("canary");
    std::fs::create_dir_all(canary.join("sub"))?;
    std::fs::write(canary.join("secret.txt"), b"top secret")?;
    std::fs::write(canary.join("sub/inner.mp3"), b"inner")?;
    let audio = server.jail("acme").join("audio");
    std::fs::create_dir_all(audio.join("20260211"))?;
    std::os::unix::fs::symlink("/etc", audio.join("etc"))?;
    std::os::unix::fs::symlink(&canary, audio.join("out"))?;
    std::os::unix::fs::symlink(canary.join("secret.txt"), audio.join("20260211/secret.mp3"))?;
    // A relative link climbing out of the jail.
    std::os::unix::fs::symlink("../../../../canary", audio.join("up"))?;
    Ok(Planted { server, canary })
}

/// Everything under the server's temp dir except the jail itself, the
/// database, the client's local scratch files and batch files.
fn outside_jail(server: &TestServer) -> Vec<(PathBuf, u64, String)> {
    let jail = server.jail("acme");
    let local = server.local("x");
    let local_dir = local.parent().map(Path::to_path_buf).unwrap_or_default();
    snapshot(server.tmp.path())
        .into_iter()
        .filter(|(p, _, _)| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !p.starts_with(&jail)
                && !p.starts_with(&local_dir)
                && !name.starts_with("depot.db")
                && !name.starts_with("batch-")
        })
        .collect()
}

/// Runs one `sftp -b` command that must fail; returns the client's output.
async fn refused(server: &TestServer, cmd: &str) -> TestResult<String> {
    let run = server.sftp("acme", &format!("{cmd}\n")).await?;
    let out = run.output();
    assert!(!run.success, "`{cmd}` succeeded:\n{out}");
    assert!(
        !out.contains("top secret"),
        "`{cmd}` revealed the canary:\n{out}"
    );
    Ok(out)
}

/// Runs `ls` on a path; it may fail or list the symlink entry itself (an
/// lstat answer), but must not list what the link points to.
async fn lists_nothing_outside(server: &TestServer, path: &str) -> TestResult {
    let run = server.sftp("acme", &format!("ls -la {path}\n")).await?;
    let out = run.output();
    let listed = out.lines().filter(|l| !l.starts_with("sftp>")).any(|l| {
        ["secret.txt", "inner.mp3", "hostname", "passwd", "sub"]
            .iter()
            .any(|n| !path.contains(n) && l.contains(n))
    });
    assert!(
        !listed,
        "`ls {path}` listed a directory outside the jail:\n{out}"
    );
    if run.success {
        // Only the link itself, shown as a link, may be listed.
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("sftp>") && !l.trim().is_empty())
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with('l'),
            "`ls {path}` listed more than the link itself:\n{out}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_and_absolute_paths_stay_inside() -> TestResult {
    let mut p = planted().await?;
    let s = &p.server;
    let before = outside_jail(s);
    let got = s.local("got");

    let out = refused(
        s,
        &format!("get ../../../../etc/hostname {}", got.display()),
    )
    .await?;
    assert!(
        out.contains("not found") || out.contains("No such file"),
        "{out}"
    );
    let out = refused(s, &format!("get /etc/passwd {}", got.display())).await?;
    assert!(
        out.contains("not found") || out.contains("No such file"),
        "{out}"
    );
    let out = refused(
        s,
        &format!("get /audio/../../../etc/passwd {}", got.display()),
    )
    .await?;
    assert!(
        out.contains("not found") || out.contains("No such file"),
        "{out}"
    );
    assert!(!got.exists(), "something was downloaded");

    // `..` clamps at the jail root: this lands in the jail, not above it.
    let local = s.local("escape.mp3");
    std::fs::write(&local, b"payload")?;
    s.sftp_ok(
        "acme",
        &format!("put {} ../../../../escape.mp3\n", local.display()),
    )
    .await?;
    assert_eq!(
        std::fs::read(s.jail("acme").join("escape.mp3"))?,
        b"payload"
    );

    assert_eq!(
        outside_jail(s),
        before,
        "something changed outside the jail"
    );
    p.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_symlinks_lead_nowhere() -> TestResult {
    let mut p = planted().await?;
    let s = &p.server;
    let before = outside_jail(s);
    let canary_before = snapshot(&p.canary);
    let got = s.local("got");
    let local = s.local("new.mp3");
    std::fs::write(&local, b"new bytes")?;
    let (l, g) = (local.display(), got.display());

    for cmd in [
        format!("get /audio/etc/hostname {g}"),
        format!("get /audio/etc/passwd {g}"),
        format!("get /audio/out/secret.txt {g}"),
        format!("get /audio/up/secret.txt {g}"),
        format!("get /audio/out/sub/inner.mp3 {g}"),
        format!("get /audio/20260211/secret.mp3 {g}"),
        format!("put {l} /audio/out/new.mp3"),
        format!("put {l} /audio/out/sub/new.mp3"),
        format!("put {l} /audio/up/new.mp3"),
        // The link itself as the target: must not overwrite what it points to.
        format!("put {l} /audio/20260211/secret.mp3"),
        "mkdir /audio/out/made".to_string(),
        "mkdir /audio/etc/made".to_string(),
        "rm /audio/out/secret.txt".to_string(),
        "rm /audio/out/sub/inner.mp3".to_string(),
        "rmdir /audio/out/sub".to_string(),
        "rename /audio/out/secret.txt /audio/20260211/stolen.mp3".to_string(),
        "rename /audio/out/sub /audio/stolen".to_string(),
        "chmod 777 /audio/out/secret.txt".to_string(),
        "chmod 777 /audio/20260211/secret.mp3".to_string(),
        "ln -s /etc /audio/etc2".to_string(),
        "ln /audio/out/secret.txt /audio/20260211/hard.mp3".to_string(),
    ] {
        refused(s, &cmd).await?;
    }
    for dir in [
        "/audio/out",
        "/audio/out/sub",
        "/audio/up",
        "/audio/etc",
        "/audio/out/",
    ] {
        lists_nothing_outside(s, dir).await?;
    }
    assert!(!got.exists(), "something was downloaded through a symlink");
    assert_eq!(snapshot(&p.canary), canary_before, "the canary changed");
    assert_eq!(
        outside_jail(s),
        before,
        "something changed outside the jail"
    );
    let jail_audio = s.jail("acme").join("audio");
    assert!(!jail_audio.join("etc2").exists() && !jail_audio.join("stolen").exists());
    assert!(!jail_audio.join("20260211/stolen.mp3").exists());
    assert!(s.journal("acme")?.is_empty());
    p.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_overlong_names_are_refused() -> TestResult {
    let mut server = TestServer::start().await?;
    let before = outside_jail(&server);
    let client = server.raw_sftp("acme").await?;
    let sftp = &client.sftp;
    sftp.mkdir("/audio/20260211", FileAttributes::default())
        .await?;
    let write_create = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;

    // The russh-sftp client sends the NUL byte as is (a string is
    // length-prefixed on the wire).
    for name in ["/audio/20260211/a\0b.mp3", "/audio/20260211/a.mp3\0.exe"] {
        match sftp
            .open(name, write_create, FileAttributes::default())
            .await
        {
            Err(russh_sftp::client::error::Error::Status(st)) => {
                assert_eq!(
                    st.status_code,
                    StatusCode::PermissionDenied,
                    "{name:?}: {st:?}"
                )
            }
            other => panic!("open {name:?}: expected permission denied, got {other:?}"),
        }
    }
    match sftp.mkdir("/audio/x\0y", FileAttributes::default()).await {
        Err(russh_sftp::client::error::Error::Status(st)) => {
            assert_eq!(st.status_code, StatusCode::PermissionDenied)
        }
        other => panic!("mkdir with NUL: expected permission denied, got {other:?}"),
    }

    let long = format!("/audio/20260211/{}.mp3", "a".repeat(296));
    assert_eq!(long.rsplit('/').next().map(str::len), Some(300));
    assert!(sftp
        .open(&long, write_create, FileAttributes::default())
        .await
        .is_err());
    assert!(sftp
        .mkdir(
            format!("/audio/{}", "d".repeat(300)),
            FileAttributes::default()
        )
        .await
        .is_err());
    assert!(sftp.stat(&long).await.is_err());
    client.cut().await;

    // Through OpenSSH too.
    let local = server.local("x.mp3");
    std::fs::write(&local, b"x")?;
    let run = server
        .sftp("acme", &format!("put {} {long}\n", local.display()))
        .await?;
    assert!(!run.success, "{}", run.output());

    let dir = server.jail("acme").join("audio/20260211");
    let names: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "files were created: {names:?}");
    assert_eq!(outside_jail(&server), before);
    assert!(server.journal("acme")?.is_empty());
    server.stop().await
}
