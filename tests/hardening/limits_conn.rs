//! Connection limits and the server's own hygiene, against a depot child
//! process: unauthenticated floods and the login grace time, SIGTERM with
//! clients connected, one server per data directory, escaped text logs,
//! private data files, symlinked account files reloaded.

use crate::harness::{
    connect, eventually, raw_upload, ssh_from, timing_shared, until_blocking, until_every, Depot,
    Options, TestResult,
};
use crate::russh_client;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A TCP connection from `from` that never sends a byte.
async fn silent(port: u16, from: IpAddr) -> TestResult<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await?)
}

/// True once the server's banner arrives (admitted), false on end of file
/// first (dropped at accept).
async fn admitted(s: &mut TcpStream) -> TestResult<bool> {
    let mut seen = Vec::new();
    loop {
        let mut b = [0u8; 256];
        let n = match tokio::time::timeout(WAIT, s.read(&mut b)).await? {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        if n == 0 {
            return Ok(false);
        }
        seen.extend_from_slice(&b[..n]);
        if seen.starts_with(b"SSH-2.0-") && seen.contains(&b'\n') {
            return Ok(true);
        }
    }
}

/// Waits until the server closes `s` (end of file or reset).
async fn closed_by_server(s: &mut TcpStream) -> TestResult {
    let mut b = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return Err("the server kept the connection open".into()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection from `from` that finishes key exchange, never logs in,
/// and sends a keep-alive every 100 ms while it is open.
async fn chattering(port: u16, from: IpAddr) -> TestResult<russh_client::Handle> {
    let handle = ssh_from(port, from).await?;
    Ok(handle)
}

/// One SSH binary packet in the clear (before keys are exchanged): block
/// size 8, at least 4 bytes of padding.
fn clear_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut p = ((1 + payload.len() + pad) as u32).to_be_bytes().to_vec();
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0u8, pad));
    p
}

fn name_list(names: &str) -> Vec<u8> {
    let mut v = (names.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(names.as_bytes());
    v
}

/// A raw client from `from`: sends its version and a KEXINIT (without
/// strict key exchange, so SSH_MSG_IGNORE is legal meanwhile), then never
/// goes on with the key exchange but sends SSH_MSG_IGNORE every 100 ms
/// until the server closes the connection; the task ends then.
async fn ignore_sender(port: u16, from: IpAddr) -> TestResult<tokio::task::JoinHandle<()>> {
    use tokio::io::AsyncWriteExt;
    let mut s = silent(port, from).await?;
    s.write_all(b"SSH-2.0-ignore_sender\r\n").await?;
    let mut kexinit = vec![20u8];
    kexinit.extend_from_slice(&[7u8; 16]);
    for names in [
        "curve25519-sha256",
        "ssh-ed25519",
        "aes128-ctr",
        "aes128-ctr",
        "hmac-sha2-256",
        "hmac-sha2-256",
        "none",
        "none",
        "",
        "",
    ] {
        kexinit.extend(name_list(names));
    }
    kexinit.push(0);
    kexinit.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&clear_packet(&kexinit)).await?;
    let mut ignore = vec![2u8];
    ignore.extend(name_list("nothing to see"));
    let ignore = clear_packet(&ignore);
    Ok(tokio::spawn(async move {
        let (mut rd, mut wr) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 4096];
            while matches!(rd.read(&mut b).await, Ok(n) if n > 0) {}
        });
        while !reader.is_finished() && wr.write_all(&ignore).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = reader.await;
    }))
}

fn keep_alive(handle: &std::sync::Arc<russh_client::Handle>) -> tokio::task::JoinHandle<()> {
    let h = handle.clone();
    tokio::spawn(async move {
        while h.send_keepalive(false).await.is_ok() && !h.is_closed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Silent sockets from three addresses, key-exchanged keep-alive senders
/// from a fourth and an SSH_MSG_IGNORE sender from a fifth fill every
/// unauthenticated place (and, counted the old way, every session): the
/// per-address cap drops the excess at accept, a full server sheds the
/// heaviest address's oldest connection, and a legitimate login still
/// succeeds and uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_flood_does_not_stop_a_login() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::with_options(
        "acme",
        "",
        Options {
            server: "max_sessions = 8".into(),
            auth: "max_unauthenticated_per_ip = 3\nmax_unauthenticated = 8\n".into(),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let port = depot.port;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = silent(port, local(2)).await?;
        assert!(admitted(&mut s).await?, "the first three are served");
        held.push(s);
    }
    let mut fourth = silent(port, local(2)).await?;
    assert!(
        !admitted(&mut fourth).await?,
        "a fourth unauthenticated connection from one address is dropped at accept"
    );
    for ip in [3, 4] {
        for _ in 0..3 {
            let mut s = silent(port, local(ip)).await?;
            assert!(admitted(&mut s).await?);
            held.push(s);
        }
    }
    // Nine for eight places: 127.0.0.2's oldest made room.
    closed_by_server(&mut held[0]).await?;
    // Each evicts the oldest of the heaviest address (a third would find
    // its own address among the heaviest and be refused).
    let mut chatter = Vec::new();
    for _ in 0..2 {
        let h = std::sync::Arc::new(chattering(port, local(5)).await?);
        chatter.push((keep_alive(&h), h));
    }
    // And one that sends SSH_MSG_IGNORE in the middle of key exchange.
    let ignoring = ignore_sender(port, local(6)).await?;
    let s = connect(port, "acme", &depot.key()).await?;
    assert!(raw_upload(&s, "/after-the-flood.bin", b"still served").await?);
    let stored = std::fs::read(depot.jail("acme").join("after-the-flood.bin"))?;
    assert_eq!(stored, b"still served");
    // Keep-alives before login are legal: the chattering connections were
    // kept (the login evicted a silent one), so the grace time is what
    // ends them.
    assert!(
        chatter.iter().all(|(_, h)| !h.is_closed()),
        "a keep-alive sender was closed"
    );
    assert!(!ignoring.is_finished(), "the IGNORE sender was closed");
    ignoring.abort();
    for (task, _) in &chatter {
        task.abort();
    }
    Ok(())
}

/// A silent socket, a key-exchanged client sending keep-alives and a raw
/// client sending SSH_MSG_IGNORE are all closed at the login grace time; a
/// session that logged in is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_closed_at_the_login_grace_time() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::with_options(
        "acme",
        "",
        Options {
            auth: "login_grace_time = \"2s\"\n".into(),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let mut s = silent(depot.port, local(2)).await?;
    assert!(admitted(&mut s).await?);
    let talker = std::sync::Arc::new(chattering(depot.port, local(3)).await?);
    let pinging = keep_alive(&talker);
    let ignoring = ignore_sender(depot.port, local(4)).await?;
    let session = connect(depot.port, "acme", &depot.key()).await?;
    closed_by_server(&mut s).await?;
    eventually(WAIT, "the keep-alive sender to be closed", || {
        talker.is_closed()
    })
    .await?;
    pinging.abort();
    tokio::time::timeout(WAIT, ignoring)
        .await
        .map_err(|_| "the SSH_MSG_IGNORE sender was kept open")??;
    assert!(raw_upload(&session, "/logged-in.bin", b"kept").await?);
    Ok(())
}

/// SIGTERM with an idle session, one with a write handle open mid-upload
/// and one sending keep-alives: depot disconnects them and exits 0 well
/// within `server.shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connected_clients_and_exits() -> TestResult {
    use russh_sftp::protocol::{FileAttributes, OpenFlags};
    let _t = timing_shared().await;
    let timeout = Duration::from_secs(10);
    let mut depot = Depot::with_options(
        "acme",
        "",
        Options {
            server: format!("shutdown_timeout = \"{}s\"\n", timeout.as_secs()),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let idle = connect(depot.port, "acme", &depot.key()).await?;
    let uploading = connect(depot.port, "acme", &depot.key()).await?;
    let h = uploading
        .sftp
        .open(
            "/half.bin",
            OpenFlags::CREATE | OpenFlags::WRITE,
            FileAttributes::empty(),
        )
        .await?
        .handle;
    uploading
        .sftp
        .write(h.as_str(), 0, vec![7u8; 64 * 1024])
        .await?;
    let mut pinger = russh_client::connect(depot.port, russh_client::config(WAIT)).await?;
    russh_client::key_login(&mut pinger, "acme", &depot.key()).await?;
    let pinger = std::sync::Arc::new(pinger);
    let pinging = keep_alive(&pinger);

    // Generous: a hang would fail, a slow machine would not.
    let (status, took) =
        tokio::task::block_in_place(|| depot.terminate(timeout + Duration::from_secs(20)))?;
    println!("SIGTERM to exit with three connected clients: {took:?}");
    assert!(status.success(), "exit status {status}: {}", depot.log());
    assert!(
        took < timeout + Duration::from_secs(5),
        "took {took:?} (shutdown_timeout {timeout:?})"
    );
    assert!(
        idle.sftp.realpath(".").await.is_err(),
        "the idle session was disconnected"
    );
    eventually(WAIT, "the keep-alive session to be closed", || {
        pinger.is_closed()
    })
    .await?;
    pinging.abort();
    Ok(())
}

/// Runs `depot serve` on `config` and waits (bounded) for it to exit.
fn serve_and_wait(config: &Path, limit: Duration) -> TestResult<(bool, String)> {
    let mut child = std::process::Command::new(crate::harness::depot_bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let exited = until_blocking(
        limit,
        Duration::from_millis(20),
        "the second depot serve to exit",
        || Ok(child.try_wait()?),
    );
    let Ok(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("a second depot serve on the same data directory kept running".into());
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err)?;
    }
    Ok((status.success(), err))
}

/// A second `depot serve` on the same data directory (another port) exits
/// non-zero naming the first one's PID; once the first stops, the data
/// directory is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_per_data_directory() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::new("acme", "")?;
    depot.start()?;
    let pid = depot.pid().ok_or("no pid")?;
    let first = std::fs::read_to_string(depot.dir.path().join("depot.toml"))?;
    let other_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let second = depot.dir.path().join("second.toml");
    std::fs::write(
        &second,
        first.replace(
            &format!("127.0.0.1:{}", depot.port),
            &format!("127.0.0.1:{other_port}"),
        ),
    )?;
    let (ok, err) = tokio::task::block_in_place(|| serve_and_wait(&second, WAIT))?;
    assert!(!ok, "the second server must not run");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    depot.stop()?;
    depot.start()?;
    depot.stop()?;
    Ok(())
}

/// A file name with a newline, logged in the text format, stays on one
/// line: no log line starts with the text after the newline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_cannot_forge_a_log_line() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::with_options(
        "acme",
        "[audio]\ndir = \"/audio\"\n",
        Options {
            log_level: Some("info".into()),
            ..Default::default()
        },
    )?;
    depot.start()?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    let name = "/audio/x\nFORGED ERROR depot: intruder.mp3";
    assert!(raw_upload(&s, name, b"not really audio").await?);
    eventually(WAIT, "the deposit to be logged", || {
        depot.log().contains("FORGED ERROR")
    })
    .await?;
    let log = depot.log();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a forged line:\n{log}"
    );
    assert!(log.contains("x\\nFORGED ERROR"), "{log}");
    Ok(())
}

/// The data directory is made 0700 (it was 0755); after an upload, the
/// database, its WAL and the lock file are the server user's alone, and
/// nothing inside is writable by the group or readable by others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directory_and_files_are_private() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::new("acme", "[audio]\ndir = \"/audio\"\n")?;
    std::fs::create_dir_all(&depot.data_dir)?;
    std::fs::set_permissions(&depot.data_dir, std::fs::Permissions::from_mode(0o755))?;
    depot.start()?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    assert!(raw_upload(&s, "/audio/call.mp3", b"bytes").await?);
    assert!(raw_upload(&s, "/notes.txt", b"private").await?);
    tokio::task::block_in_place(|| depot.wait_ingested(WAIT, |_| true))?;
    let mode = |p: &Path| -> TestResult<u32> {
        Ok(std::fs::symlink_metadata(p)?.permissions().mode() & 0o7777)
    };
    assert_eq!(mode(&depot.data_dir)?, 0o700);
    for name in ["depot.db", "depot.db-wal", "depot.lock"] {
        let m = mode(&depot.data_dir.join(name))?;
        assert_eq!(m & 0o077, 0, "{name} is {m:o}");
    }
    let mut dirs = vec![depot.data_dir.clone()];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let m = mode(&p)?;
            assert_eq!(m & 0o027, 0, "{} is {m:o}", p.display());
            seen += 1;
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    assert!(seen >= 5, "only {seen} entries under the data directory");
    assert!(depot.log().contains("made it 0700"), "{}", depot.log());
    Ok(())
}

/// An account file that is a symlink: an edit to its target (the account
/// now allows only 10.0.0.0/8) applies to new logins without waiting for
/// the periodic rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_account_file_reloads_when_its_target_changes() -> TestResult {
    let _t = timing_shared().await;
    let mut depot = Depot::new("acme", "")?;
    let link = depot.dir.path().join("accounts/acme.toml");
    let real_dir = depot.dir.path().join("managed");
    std::fs::create_dir_all(&real_dir)?;
    let target = real_dir.join("acme.toml");
    std::fs::rename(&link, &target)?;
    std::os::unix::fs::symlink(&target, &link)?;
    depot.start()?;
    let login = |port: u16, key: std::path::PathBuf| async move {
        let mut h = russh_client::connect(port, russh_client::config(WAIT)).await?;
        let r = russh_client::key_login(&mut h, "acme", &key).await;
        let _ = h.disconnect(russh::Disconnect::ByApplication, "", "").await;
        r
    };
    login(depot.port, depot.key()).await?;
    let text = std::fs::read_to_string(&target)?;
    std::fs::write(&target, format!("{text}allowed_ips = [\"10.0.0.0/8\"]\n"))?;
    // The rescan comes every 30 s; watching the target takes well under
    // 2 s. 10 s is generous for a busy machine and short of the rescan.
    until_every(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the edit to the symlink's target to be applied",
        || async { Ok(login(depot.port, depot.key()).await.is_err().then_some(())) },
    )
    .await
}

/// Measurement, not a check: a legitimate login's time (connect, key
/// login, SFTP session) idle, then while 500 silent sockets (127.0.0.2–51,
/// ten each) and 100 clients sending SSH_MSG_IGNORE (127.0.0.52–61, ten
/// each) hold or try to hold the unauthenticated places, with the default
/// limits. `cargo test --locked --test hardening -- --ignored
/// limits_conn::login_time_under_an_unauthenticated_flood --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints figures"]
async fn login_time_under_an_unauthenticated_flood() -> TestResult {
    let _t = crate::harness::timing_exclusive().await;
    let mut depot = Depot::new("acme", "")?;
    depot.start()?;
    let port = depot.port;
    let key = depot.key();
    let time_logins = |n: usize| {
        let key = key.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..n {
                let t0 = Instant::now();
                let s = connect(port, "acme", &key).await?;
                s.sftp.realpath(".").await?;
                times.push(t0.elapsed());
            }
            times.sort();
            TestResult::Ok(times)
        }
    };
    let idle = time_logins(9).await?;
    let mut silent_held = Vec::new();
    for ip in 2..=51u8 {
        for _ in 0..10 {
            silent_held.push(silent(port, local(ip)).await?);
        }
    }
    let (mut senders, mut refused) = (Vec::new(), 0);
    for ip in 52..=61u8 {
        for _ in 0..10 {
            match ignore_sender(port, local(ip)).await {
                Ok(t) => senders.push(t),
                Err(_) => refused += 1,
            }
        }
    }
    let flooded = time_logins(9).await?;
    let senders_open = senders.iter().filter(|t| !t.is_finished()).count();
    println!(
        "login idle: median {:?} max {:?}; under the flood (500 silent, 100 SSH_MSG_IGNORE senders, \
         {refused} of them dropped at once, {senders_open} still open): median {:?} max {:?}",
        idle[idle.len() / 2],
        idle[idle.len() - 1],
        flooded[flooded.len() / 2],
        flooded[flooded.len() - 1],
    );
    for t in senders {
        t.abort();
    }
    Ok(())
}
