//! Hostile SFTP: raw bytes on the `sftp` subsystem —
//! a truncated packet then EOF, a length over the maximum, unknown packet
//! types, requests on handles never issued, 10,000 OPENs without CLOSE.
//! Each may close or error its own session only: a normal session running
//! at the same time keeps uploading and downloading byte-identical files,
//! and once the hostile sessions end the server holds no more file
//! descriptors than before them.

use crate::harness::{
    connect, download, eventually, raw_upload, sha256_hex, until, Client, Depot, TestResult,
};
use crate::russh_client;
use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ACCOUNT: &str = "[audio]\ndir = \"/audio\"\nrequire_date_dir = false\n";
/// Handles one connection may hold (`server.max_handles_per_session`).
const MAX_HANDLES: usize = 256;
/// The hostile sessions log in to an account of their own: an account's
/// handle budget is shared by its sessions, and the normal session shows
/// that another account keeps working.
const HOSTILE: &str = "mallory";
const OPENS: usize = 10_000;
const WAIT: Duration = Duration::from_secs(10);

// SFTP packet types and status codes (draft-ietf-secsh-filexfer-02).
const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const FSTAT: u8 = 8;
const READDIR: u8 = 12;
const REALPATH: u8 = 16;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const NAME: u8 = 104;
const FX_FAILURE: u32 = 4;

/// An `sftp` channel written to and read from as raw bytes.
struct Raw {
    handle: Handle<Client>,
    channel: Channel<Msg>,
    buf: Vec<u8>,
    closed: bool,
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A request body: id, then the given fields.
fn request(id: u32, fields: &[&[u8]]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    for f in fields {
        v.extend_from_slice(f);
    }
    v
}

impl Raw {
    async fn open(depot: &Depot) -> TestResult<Raw> {
        let config = russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(30)),
            // The flood reads its 10,000 replies only after sending every
            // request: with russh's default queue (100 messages) the
            // replies arriving meanwhile fill it, the client's session loop
            // blocks and the send never finishes (the test client, not the
            // server, deadlocks). Room for every reply keeps it reading.
            channel_buffer_size: 65_536,
            ..Default::default()
        };
        let mut handle = russh_client::connect(depot.port, config).await?;
        russh_client::key_login(&mut handle, HOSTILE, &depot.key()).await?;
        let channel = handle.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        Ok(Raw {
            handle,
            channel,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// Opens and completes the version exchange.
    async fn ready(depot: &Depot) -> TestResult<Raw> {
        let mut r = Raw::open(depot).await?;
        r.send(&packet(INIT, &3u32.to_be_bytes())).await?;
        let (kind, _) = r.recv().await?.ok_or("no VERSION")?;
        assert_eq!(kind, VERSION);
        Ok(r)
    }

    async fn send(&self, bytes: &[u8]) -> TestResult {
        for chunk in bytes.chunks(32 * 1024) {
            self.channel.data(chunk).await?;
        }
        Ok(())
    }

    /// The next whole packet (type, payload), or `None` once the server
    /// closed the channel.
    async fn recv(&mut self) -> TestResult<Option<(u8, Vec<u8>)>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[..4].try_into()?) as usize;
                if self.buf.len() >= 4 + len {
                    let p: Vec<u8> = self.buf.drain(..4 + len).collect();
                    return Ok(Some((p[4], p[5..].to_vec())));
                }
            }
            if self.closed {
                return Ok(None);
            }
            match tokio::time::timeout(WAIT, self.channel.wait()).await {
                Err(_) => return Err("the server neither answered nor closed".into()),
                Ok(Some(ChannelMsg::Data { data })) => self.buf.extend_from_slice(&data),
                Ok(Some(ChannelMsg::Eof | ChannelMsg::Close)) | Ok(None) => self.closed = true,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Waits for the server to end the session (EOF or close).
    async fn expect_closed(&mut self, what: &str) -> TestResult {
        while self.recv().await?.is_some() {}
        if !self.closed {
            return Err(format!("{what}: session not closed").into());
        }
        Ok(())
    }

    async fn status(&mut self) -> TestResult<(u32, u32)> {
        let (kind, body) = self.recv().await?.ok_or("closed instead of a STATUS")?;
        assert_eq!(kind, STATUS, "expected a STATUS reply");
        let id = u32::from_be_bytes(body[..4].try_into()?);
        let code = u32::from_be_bytes(body[4..8].try_into()?);
        Ok((id, code))
    }

    async fn end(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

/// A truncated packet, then EOF: the session ends, nothing else.
async fn truncated_then_eof(depot: &Depot) -> TestResult {
    let mut r = Raw::ready(depot).await?;
    let mut p = packet(OPEN, &request(1, &[&string(b"/audio/x.wav")]));
    p[..4].copy_from_slice(&200u32.to_be_bytes());
    r.send(&p).await?;
    r.channel.eof().await?;
    r.expect_closed("truncated packet").await?;
    r.end().await;
    Ok(())
}

/// A length field over the maximum packet size: the session is closed
/// rather than left out of sync.
async fn oversized_length(depot: &Depot) -> TestResult {
    let mut r = Raw::ready(depot).await?;
    let mut p = ((262_144u32 + 1024 + 1).to_be_bytes()).to_vec();
    p.push(WRITE);
    p.extend(vec![0x41; 64 * 1024]);
    r.send(&p).await?;
    r.expect_closed("oversized packet").await?;
    // Also before INIT, and a length of u32::MAX.
    let mut r2 = Raw::open(depot).await?;
    r2.send(&u32::MAX.to_be_bytes()).await?;
    r2.expect_closed("u32::MAX length").await?;
    r.end().await;
    r2.end().await;
    Ok(())
}

/// Unknown types, server-only types, empty and garbled bodies: an error
/// reply each, and the session still answers a valid request after them.
async fn unknown_types(depot: &Depot) -> TestResult {
    let mut r = Raw::ready(depot).await?;
    let mut junk = Vec::new();
    for kind in [0u8, 21, 99, 150, 199, 201, 255, STATUS, HANDLE, VERSION] {
        junk.extend(packet(kind, &request(7, &[b"garbage"])));
    }
    junk.extend(0u32.to_be_bytes()); // a packet with no type at all
    junk.extend(packet(OPEN, &request(8, &[&u32::MAX.to_be_bytes()]))); // string length lies
    junk.extend(packet(READ, &[1, 2])); // too short for its id
    r.send(&junk).await?;
    for _ in 0..13 {
        let (_, code) = r.status().await?;
        assert_ne!(code, 0, "garbage answered OK");
    }
    r.send(&packet(REALPATH, &request(42, &[&string(b"/audio/../x")])))
        .await?;
    let (kind, body) = r.recv().await?.ok_or("closed after junk")?;
    assert_eq!(kind, NAME);
    assert_eq!(u32::from_be_bytes(body[..4].try_into()?), 42);
    r.end().await;
    Ok(())
}

/// READ/WRITE/CLOSE/FSTAT/READDIR on handles the server never issued, or
/// issued and closed: SSH_FX_FAILURE each, the session goes on.
async fn forged_handles(depot: &Depot) -> TestResult {
    let mut r = Raw::ready(depot).await?;
    // (handle, whether it is a well-formed string: a non-UTF-8 one cannot
    // even be decoded, so its reply is a BAD_MESSAGE without the id).
    let forged: [(&[u8], bool); 5] = [
        (b"1", true),
        (b"ffff", true),
        (b"", true),
        (b"../../etc/passwd", true),
        (&[0xff; 300], false),
    ];
    let mut id = 100;
    for (h, well_formed) in forged {
        let h = string(h);
        let read = request(id, &[&h, &0u64.to_be_bytes(), &4096u32.to_be_bytes()]);
        let write = request(id + 1, &[&h, &0u64.to_be_bytes(), &string(b"data")]);
        r.send(&packet(READ, &read)).await?;
        r.send(&packet(WRITE, &write)).await?;
        r.send(&packet(CLOSE, &request(id + 2, &[&h]))).await?;
        r.send(&packet(FSTAT, &request(id + 3, &[&h]))).await?;
        r.send(&packet(READDIR, &request(id + 4, &[&h]))).await?;
        for expect in id..id + 5 {
            let (got_id, code) = r.status().await?;
            if well_formed {
                assert_eq!((got_id, code), (expect, FX_FAILURE));
            } else {
                assert_ne!(code, 0, "a garbled handle answered OK");
            }
        }
        id += 10;
    }
    // A real handle, closed, then used again.
    let open = request(
        1,
        &[
            &string(b"/hello.txt"),
            &1u32.to_be_bytes(),
            &0u32.to_be_bytes(),
        ],
    );
    r.send(&packet(OPEN, &open)).await?;
    let (kind, body) = r.recv().await?.ok_or("closed")?;
    assert_eq!(kind, HANDLE);
    let h = body[4..].to_vec();
    r.send(&packet(CLOSE, &request(2, &[&h]))).await?;
    assert_eq!(r.status().await?, (2, 0));
    let read = request(3, &[&h, &0u64.to_be_bytes(), &16u32.to_be_bytes()]);
    r.send(&packet(READ, &read)).await?;
    assert_eq!(r.status().await?, (3, FX_FAILURE));
    r.end().await;
    Ok(())
}

/// 10,000 OPENs pipelined without a CLOSE: 256 handles, then failures;
/// the session is then dropped without closing any of them.
async fn open_flood(
    depot: &Depot,
    flooded: &AtomicBool,
    expect: Option<usize>,
) -> TestResult<usize> {
    let mut r = Raw::ready(depot).await?;
    let mut batch = Vec::new();
    for id in 0..OPENS as u32 {
        let open = request(
            id,
            &[
                &string(b"/hello.txt"),
                &1u32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        batch.extend(packet(OPEN, &open));
    }
    r.send(&batch).await?;
    let (mut handles, mut failures) = (0, 0);
    for _ in 0..OPENS {
        match r.recv().await?.ok_or("closed during the flood")? {
            (HANDLE, _) => handles += 1,
            (STATUS, body) => {
                assert_eq!(u32::from_be_bytes(body[4..8].try_into()?), FX_FAILURE);
                failures += 1;
            }
            (kind, _) => return Err(format!("unexpected reply type {kind}").into()),
        }
    }
    match expect {
        Some(n) => assert_eq!(handles, n, "handles granted to one session"),
        None => assert!(
            handles > 0 && handles < 1024,
            "{handles} handles under a 1024 limit"
        ),
    }
    assert_eq!(failures, OPENS - handles);
    let held = depot.fd_count()?;
    // Hold the handles until the normal session has proved it still works:
    // it clears the flag after a round trip that began during the flood.
    flooded.store(true, Ordering::SeqCst);
    // Past the limit the handles are let go all the same: the caller's
    // count of round trips during the flood then says what went wrong.
    let _ = eventually(
        Duration::from_secs(60),
        "a round trip during the flood",
        || !flooded.load(Ordering::SeqCst),
    )
    .await;
    r.end().await;
    Ok(held)
}

/// The normal session: upload then download, byte-identical, until told to
/// stop; returns how many round trips it made.
async fn normal_session(
    depot: &Depot,
    stop: &AtomicBool,
    flooded: &AtomicBool,
) -> TestResult<(usize, usize)> {
    let s = connect(depot.port, "acme", &depot.key()).await?;
    let (mut rounds, mut during_flood) = (0, 0);
    while !stop.load(Ordering::SeqCst) || rounds == 0 {
        let flood = flooded.load(Ordering::SeqCst);
        let data = crate::harness::sine_wav(0.5 + rounds as f64 * 0.01, 8000);
        let path = format!("/scratch/normal-{rounds}.bin");
        assert!(
            raw_upload(&s, &path, &data).await?,
            "normal upload not acknowledged"
        );
        let back = download(&s, &path).await?;
        assert_eq!(sha256_hex(&back), sha256_hex(&data), "download differs");
        rounds += 1;
        if flood {
            during_flood += 1;
            flooded.store(false, Ordering::SeqCst);
        }
    }
    Ok((rounds, during_flood))
}

async fn wait_fds(depot: &Depot, baseline: usize) -> TestResult<usize> {
    let mut n = 0;
    let settled = until(
        Duration::from_secs(15),
        "the descriptor count back to the baseline",
        || {
            n = depot.fd_count()?;
            Ok((n <= baseline).then_some(n))
        },
    )
    .await;
    if settled.is_err() {
        let pid = depot.pid().unwrap_or(0);
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        return Err(format!("{n} fds open, baseline {baseline}: {fds:?}").into());
    }
    settled
}

/// Starts depot as a service manager would (soft fd limit 1024) with a
/// file to open and a scratch directory.
fn hostile_depot(ulimit: &str) -> TestResult<Depot> {
    let opts = crate::harness::Options {
        accounts: vec![(HOSTILE.into(), ACCOUNT.into())],
        ..Default::default()
    };
    let mut depot = Depot::with_options("acme", ACCOUNT, opts)?;
    for account in ["acme", HOSTILE] {
        let jail = depot.jail(account);
        std::fs::create_dir_all(jail.join("scratch"))?;
        std::fs::write(jail.join("hello.txt"), b"hello")?;
    }
    depot.ulimit_nofile = Some(ulimit.into());
    depot.start()?;
    Ok(depot)
}

/// The server's descriptor count after one ordinary session (with `stop`
/// set, a single round) has come and gone.
async fn fd_baseline(depot: &Depot, stop: &AtomicBool, flooded: &AtomicBool) -> TestResult<usize> {
    normal_session(depot, stop, flooded).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    depot.fd_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sessions_end_alone_and_leak_nothing() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    // A service manager's usual soft limit (1024), raised by depot to the hard one.
    let depot = hostile_depot("-S -n 1024")?;
    let (stop, flooded) = (AtomicBool::new(true), AtomicBool::new(false));
    let baseline = fd_baseline(&depot, &stop, &flooded).await?;

    stop.store(false, Ordering::SeqCst);
    let hostile = async {
        let res = tokio::try_join!(
            truncated_then_eof(&depot),
            oversized_length(&depot),
            unknown_types(&depot),
            forged_handles(&depot),
            open_flood(&depot, &flooded, Some(MAX_HANDLES)),
        );
        stop.store(true, Ordering::SeqCst);
        res
    };
    let (hostile, normal) = tokio::join!(hostile, normal_session(&depot, &stop, &flooded));
    let (_, _, _, _, held) = hostile?;
    let (rounds, during_flood) = normal?;
    assert!(
        during_flood > 0,
        "the normal session made no round trip while the flood held its handles"
    );
    let after = wait_fds(&depot, baseline).await?;
    eprintln!(
        "hostile: fd baseline {baseline}, {held} while the flood held its handles, {after} after; \
         normal session: {rounds} upload+download round trips ({during_flood} during the flood)"
    );
    let log = depot.log();
    assert!(!log.contains("panicked"), "depot panicked:\n{log}");
    Ok(())
}

/// Regression: with a hard limit of 1024 descriptors, one session's OPEN
/// flood used to take every descriptor (EMFILE for everyone). The server's
/// budget now leaves the other sessions theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_flood_under_a_tight_fd_limit_leaves_others_working() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let depot = hostile_depot("-n 1024")?;
    let (stop, flooded) = (AtomicBool::new(true), AtomicBool::new(false));
    let baseline = fd_baseline(&depot, &stop, &flooded).await?;
    stop.store(false, Ordering::SeqCst);
    let hostile = async {
        let r = open_flood(&depot, &flooded, None).await;
        stop.store(true, Ordering::SeqCst);
        r
    };
    let (held, normal) = tokio::join!(hostile, normal_session(&depot, &stop, &flooded));
    let (held, (_, during_flood)) = (held?, normal?);
    assert!(
        during_flood > 0,
        "the normal session made no round trip during the flood"
    );
    let after = wait_fds(&depot, baseline).await?;
    eprintln!("tight fd limit: baseline {baseline}, {held} during the flood, {after} after");
    Ok(())
}
