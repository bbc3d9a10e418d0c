//! A night's upload with stray files in the middle, pushed by the batch
//! clients customers script (OpenSSH `sftp -b`, lftp with `cmd:fail-exit`,
//! rclone): those clients stop at the first refused file, so depot stores
//! what it will not ingest and reports it in `/rejected/` instead. Every
//! batch completes, every recording after the stray files is ingested, and
//! system files are stored without a word.
//!
//! The clients must be installed (`.ci/run` installs them): a missing
//! client fails these tests rather than skipping them.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The night's files, in upload order: recordings with stray files
/// between them.
const NIGHT: [&str; 7] = [
    "a.mp3",
    "notes.txt",
    "Thumbs.db",
    "b.wav",
    "README",
    "desktop.ini",
    "c.wav",
];
const RECORDINGS: [&str; 3] = ["a.mp3", "b.wav", "c.wav"];
const STRAY: [&str; 2] = ["notes.txt", "README"];

/// Writes the night's files into a fresh local directory.
fn night(server: &TestServer, dir: &str) -> TestResult<PathBuf> {
    let local = server.local(dir);
    std::fs::create_dir_all(&local)?;
    for (i, name) in NIGHT.iter().enumerate() {
        let bytes = match name.rsplit('.').next() {
            Some("mp3") => std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tone.mp3"),
            )?,
            Some("wav") => wav(i as u64),
            _ => content(2000 + i * 100, i as u64),
        };
        std::fs::write(local.join(name), bytes)?;
    }
    Ok(local)
}

/// A short 8 kHz mono 16-bit PCM WAV, its samples drawn from `seed`.
fn wav(seed: u64) -> Vec<u8> {
    let data = content(1600, seed);
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// Runs a client to its end, bounded in time; `Err` if it cannot start
/// (not installed: the test fails).
async fn run(cmd: &mut tokio::process::Command) -> TestResult<SftpRun> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?} (is it installed? .ci/run installs it): {e}"))?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .map_err(|_| format!("{cmd:?} did not finish within 120 s"))??;
    Ok(SftpRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn ssh_options() -> &'static str {
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
     -o IdentitiesOnly=yes -o LogLevel=ERROR -F /dev/null"
}

/// Every line of every report in the account's `/rejected/`.
fn report_lines(server: &TestServer) -> TestResult<Vec<String>> {
    let dir = server.jail("acme").join("rejected");
    let mut lines = Vec::new();
    if dir.exists() {
        for e in std::fs::read_dir(dir)? {
            let text = String::from_utf8(std::fs::read(e?.path())?)?;
            lines.extend(text.lines().map(str::to_owned));
        }
    }
    Ok(lines)
}

/// The paths of the ingested conversations.
fn ingested(server: &TestServer) -> TestResult<Vec<String>> {
    let conn = open_db(&server.db_path())?;
    let mut st =
        conn.prepare("SELECT path FROM conversations WHERE status = 'ingested' ORDER BY path")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// After a batch uploaded the night into `remote`: every file is stored
/// byte for byte, the recordings are ingested, the stray files are in the
/// report with the reason, the system files are not.
async fn night_landed(server: &TestServer, local: &Path, remote: &str) -> TestResult {
    let jail_dir = server.jail("acme").join(remote.trim_start_matches('/'));
    for name in NIGHT {
        let stored = std::fs::read(jail_dir.join(name))
            .map_err(|e| format!("{remote}/{name} was not stored: {e}"))?;
        assert_eq!(stored, std::fs::read(local.join(name))?, "{name}");
    }
    let want: Vec<String> = {
        let mut v: Vec<String> = RECORDINGS.iter().map(|n| format!("{remote}/{n}")).collect();
        v.sort();
        v
    };
    let waited = eventually(
        Duration::from_secs(30),
        "the recordings to be ingested",
        || ingested(server).is_ok_and(|got| got == want),
    )
    .await;
    if waited.is_err() {
        let conn = open_db(&server.db_path())?;
        let mut st = conn.prepare("SELECT path, stage, reason FROM rejections")?;
        let rows: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        return Err(format!(
            "ingested {:?}, want {want:?}; rejections {rows:?}",
            ingested(server)?
        )
        .into());
    }
    eventually(
        Duration::from_secs(30),
        "the stray files to be reported",
        || {
            report_lines(server).is_ok_and(|lines| {
                STRAY
                    .iter()
                    .all(|s| lines.iter().any(|l| l.contains(&format!("{remote}/{s}"))))
            })
        },
    )
    .await?;
    let lines = report_lines(server)?;
    let txt = lines
        .iter()
        .find(|l| l.contains("notes.txt"))
        .ok_or("no report line for notes.txt")?;
    // The customer's spreadsheet reads: local time with its offset, the
    // file, what was checked in words, the reason.
    assert!(
        txt.ends_with(&format!(
            "+00:00;{remote}/notes.txt;file type;'.txt' is not ingested in /audio; allowed: mp3, wav"
        )) || txt.ends_with(&format!(
            "+00:00;{remote}/notes.txt;file type;\"'.txt' is not ingested in /audio; allowed: mp3, wav\""
        )),
        "{txt}"
    );
    for quiet in ["Thumbs.db", "desktop.ini", "a.mp3", "b.wav", "c.wav"] {
        assert!(
            !lines.iter().any(|l| l.contains(quiet)),
            "{quiet} reported:\n{}",
            lines.join("\n")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_batch_with_stray_files_completes() -> TestResult {
    let mut server = TestServer::start().await?;
    let local = night(&server, "night-sftp")?;
    let remote = "/audio/20260211";
    let mut batch = format!("mkdir {remote}\n");
    for name in NIGHT {
        batch += &format!("put {} {remote}/{name}\n", local.join(name).display());
    }
    let run = server.sftp("acme", &batch).await?;
    assert!(run.success, "sftp -b stopped:\n{}", run.output());
    night_landed(&server, &local, remote).await?;
    // Thumbs.db and desktop.ini: ignored, but counted.
    let ignored = &server.running().shared.metrics.system_files_ignored;
    eventually(Duration::from_secs(30), "two system files counted", || {
        ignored.load(std::sync::atomic::Ordering::Relaxed) == 2
    })
    .await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_with_fail_exit_and_stray_files_completes() -> TestResult {
    let mut server = TestServer::start().await?;
    let local = night(&server, "night-lftp")?;
    let remote = "/audio/20260212";
    let mut script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set sftp:auto-confirm yes; \
         set sftp:connect-program \"ssh -a -x -i {} {}\"; \
         open -u acme, -p {} sftp://127.0.0.1; mkdir {remote}; cd {remote}; lcd {}; ",
        server.key_path("acme").display(),
        ssh_options(),
        server.port(),
        local.display()
    );
    for name in NIGHT {
        script += &format!("put {name}; ");
    }
    script += "bye";
    let run = run(tokio::process::Command::new("lftp").arg("-c").arg(&script)).await?;
    assert!(run.success, "lftp stopped:\n{}", run.output());
    night_landed(&server, &local, remote).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_with_stray_files_completes() -> TestResult {
    let mut server = TestServer::start().await?;
    let local = night(&server, "night-rclone")?;
    let remote = "/audio/20260213";
    // A throwaway config: no user rclone.conf is read or written.
    let conf = server.tmp.path().join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[depot]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = acme\nkey_file = {}\n\
             shell_type = none\ndisable_hashcheck = true\n",
            server.port(),
            server.key_path("acme").display()
        ),
    )?;
    let run = run(tokio::process::Command::new("rclone")
        .arg("--config")
        .arg(&conf)
        .args(["copy", "--retries", "1", "--low-level-retries", "1"])
        .arg(&local)
        .arg(format!("depot:{remote}")))
    .await?;
    assert!(run.success, "rclone failed:\n{}", run.output());
    night_landed(&server, &local, remote).await?;
    server.stop().await
}
