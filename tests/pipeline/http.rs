//! The HTTP API driven by `curl`: conversations listed page by page,
//! archived audio fetched whole, by range and conditionally, and what one
//! account's token may not see. Uploads go through real `sftp`; answers
//! are checked against the bytes uploaded and the rows in SQLite.

use crate::harness::*;

use depot::http::tokens::{generate, Scope};
use serde_json::Value as Json;
use std::path::Path;

/// One `curl` exchange: status, response headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> TestResult<Json> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
            .into()
        })
    }

    /// The error code of a JSON error answer.
    fn error_code(&self) -> TestResult<String> {
        let j = self.json()?;
        Ok(j["error"]["code"]
            .as_str()
            .ok_or(format!("not an error document: {j}"))?
            .to_string())
    }
}

async fn curl(
    server: &TestServer,
    token: Option<&str>,
    path: &str,
    extra: &[&str],
) -> TestResult<Reply> {
    let dir = tempfile::tempdir_in(server.tmp.path())?;
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    cmd.args(extra).arg(format!("{}{path}", server.http_url()));
    let out = cmd.output().await?;
    if !out.status.success() {
        return Err(format!("curl {path}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let status = String::from_utf8(out.stdout)?.trim().parse()?;
    Ok(Reply {
        status,
        headers: parse_headers(&head)?,
        body: std::fs::read(&body).unwrap_or_default(),
    })
}

fn parse_headers(path: &Path) -> TestResult<Vec<(String, String)>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect())
}

/// Tokens written to the server's tokens file: (admin, acme's, beta's).
fn tokens(server: &TestServer) -> TestResult<(String, String, String)> {
    let (admin, a) = generate("ops", Scope::Admin, None);
    let (acme, b) = generate("acme-it", Scope::Read, Some("acme"));
    let (beta, c) = generate("beta-it", Scope::Read, Some("beta"));
    std::fs::write(server.tokens_file(), format!("{a}\n{b}\n{c}"))?;
    Ok((admin, acme, beta))
}

const SECOND: &str = "2026_02_11_16_05_10_Jean-Pierre_Dupont_Entrant_478_0682316817_163.mp3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_audio_and_account_isolation_over_curl() -> TestResult {
    let server = start(vec![customer("acme", ""), customer("beta", "")]).await?;
    let mp3 = tone_mp3();
    upload(
        &server,
        "acme",
        &[
            ("a.mp3", &mp3, &format!("/audio/20260211/{SEED}")),
            ("b.mp3", &mp3, &format!("/audio/20260211/{SECOND}")),
        ],
    )
    .await?;
    upload(
        &server,
        "beta",
        &[("c.mp3", &mp3, &format!("/audio/20260211/{SEED}"))],
    )
    .await?;
    settled(&server, "acme").await?;
    settled(&server, "beta").await?;
    let (admin, acme, beta) = tokens(&server)?;

    // No token, or a wrong one: 401 and a JSON error, nothing more.
    for t in [None, Some("depot_not-a-token")] {
        let r = curl(&server, t, "/v1/conversations", &[]).await?;
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code()?, "unauthorized");
    }
    assert_eq!(curl(&server, None, "/healthz", &[]).await?.status, 200);
    let r = curl(&server, None, "/no/such/route", &[]).await?;
    assert_eq!((r.status, r.error_code()?.as_str()), (404, "not_found"));

    // The admin pages through all three, newest first, one at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/conversations?limit=1&cursor={c}"),
            None => "/v1/conversations?limit=1".to_string(),
        };
        let page = curl(&server, Some(&admin), &path, &[]).await?;
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let page = page.json()?;
        let items = page["items"].as_array().ok_or("items")?;
        assert!(items.len() <= 1);
        seen.extend(items.iter().map(|c| c["id"].as_i64().unwrap_or(-1)));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut all: Vec<i64> = conversations(&server, "acme")?
        .iter()
        .chain(conversations(&server, "beta")?.iter())
        .filter_map(|c| c["id"].as_i64())
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, all, "every conversation once, newest first");

    // acme's token lists acme only, and may not ask for beta.
    let listed = curl(&server, Some(&acme), "/v1/conversations", &[])
        .await?
        .json()?;
    let items = listed["items"].as_array().ok_or("items")?;
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|c| c["account"] == "acme"), "{listed:#}");
    let r = curl(&server, Some(&acme), "/v1/conversations?account=beta", &[]).await?;
    assert_eq!((r.status, r.error_code()?.as_str()), (403, "forbidden"));
    let r = curl(&server, Some(&acme), "/v1/rejections?account=beta", &[]).await?;
    assert_eq!(r.status, 403);
    let r = curl(&server, Some(&admin), "/v1/conversations?limit=abc", &[]).await?;
    assert_eq!((r.status, r.error_code()?.as_str()), (400, "bad_request"));

    // One conversation, whole, with its (empty) history.
    let conv = conversations(&server, "acme")?
        .into_iter()
        .find(|c| c["path"] == format!("/audio/20260211/{SEED}").as_str())
        .ok_or("acme's seed conversation")?;
    let id = conv["id"].as_i64().ok_or("id")?;
    let one = curl(
        &server,
        Some(&acme),
        &format!("/v1/conversations/{id}"),
        &[],
    )
    .await?;
    assert_eq!(one.status, 200);
    let one = one.json()?;
    assert_eq!(
        one["metadata"]["contact_reason_label"], "Résiliation",
        "{one:#}"
    );
    assert_eq!(one["sha256"], sha256_hex(&mp3));
    assert_eq!(one["history"], serde_json::json!([]));
    // beta's token: as if it did not exist.
    for p in [
        format!("/v1/conversations/{id}"),
        format!("/v1/conversations/{id}/audio"),
    ] {
        let r = curl(&server, Some(&beta), &p, &[]).await?;
        assert_eq!(
            (r.status, r.error_code()?.as_str()),
            (404, "not_found"),
            "{p}"
        );
    }
    let r = curl(&server, Some(&acme), "/v1/conversations/999999", &[]).await?;
    assert_eq!(r.status, 404);

    // The audio: whole, ranged, conditional, HEAD.
    let audio = format!("/v1/conversations/{id}/audio");
    let etag = format!("\"{}\"", sha256_hex(&mp3));
    let whole = curl(&server, Some(&acme), &audio, &[]).await?;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, mp3, "the archived bytes are the uploaded ones");
    assert_eq!(whole.header("etag"), Some(etag.as_str()));
    assert_eq!(whole.header("content-type"), Some("audio/mpeg"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let part = curl(&server, Some(&acme), &audio, &["-r", "10-99"]).await?;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-99/{}", mp3.len()).as_str())
    );
    assert_eq!(part.body, &mp3[10..100]);
    let tail = curl(&server, Some(&acme), &audio, &["-r", "-5"]).await?;
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, &mp3[mp3.len() - 5..])
    );
    let inm = format!("If-None-Match: {etag}");
    let cached = curl(&server, Some(&acme), &audio, &["-H", &inm]).await?;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let other = curl(
        &server,
        Some(&acme),
        &audio,
        &["-H", "If-None-Match: \"other\""],
    )
    .await?;
    assert_eq!(other.status, 200);
    let head = curl(&server, Some(&acme), &audio, &["-I"]).await?;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(mp3.len().to_string().as_str())
    );
    // With -I curl writes the head where the body would go: nothing else.
    let printed = String::from_utf8(head.body.clone())?;
    assert!(
        printed.starts_with("HTTP/") && printed.ends_with("\r\n\r\n"),
        "{printed}"
    );

    // Advisors and accounts: acme's own only.
    let adv = curl(&server, Some(&acme), "/v1/advisors", &[])
        .await?
        .json()?;
    let adv = adv.as_array().ok_or("advisors")?;
    assert!(!adv.is_empty() && adv.iter().all(|a| a["account"] == "acme"));
    let acc = curl(&server, Some(&acme), "/v1/accounts", &[])
        .await?
        .json()?;
    assert_eq!(acc.as_array().map(Vec::len), Some(1), "{acc:#}");
    assert_eq!(acc[0]["name"], "acme");
    assert_eq!(acc[0]["conversations"], 2);
    let acc = curl(&server, Some(&admin), "/v1/accounts", &[])
        .await?
        .json()?;
    assert_eq!(acc.as_array().map(Vec::len), Some(2), "{acc:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reload_and_failures_ban_the_address() -> TestResult {
    let server = TestServer::start_with(TestConfig {
        accounts: vec![customer("acme", "")],
        ban_after_failures: 3,
        ..Default::default()
    })
    .await?;
    let (_, acme, _) = tokens(&server)?;
    let r = curl(&server, Some(&acme), "/v1/rejections", &[]).await?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()?, serde_json::json!([]));

    // Revoked by editing the file: refused at once, no restart.
    let (other, entry) = generate("other", Scope::Read, None);
    std::fs::write(server.tokens_file(), entry)?;
    let r = curl(&server, Some(&acme), "/v1/rejections", &[]).await?;
    assert_eq!(r.status, 401);
    let r = curl(&server, Some(&other), "/v1/rejections", &[]).await?;
    assert_eq!(r.status, 200);

    // That was failure one; two more and the address is banned, even for
    // a valid token.
    for _ in 0..2 {
        let r = curl(&server, Some("depot_guess"), "/v1/rejections", &[]).await?;
        assert_eq!(r.status, 401);
    }
    let r = curl(&server, Some(&other), "/v1/rejections", &[]).await?;
    assert_eq!((r.status, r.error_code()?.as_str()), (403, "banned"));
    let bans = server
        .running()
        .shared
        .metrics
        .bans
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(bans, 1);
    Ok(())
}

/// Reads an SSE stream with `curl -N` until `want` events arrived; returns
/// (id, event type, data) of each. The child is killed once done.
async fn sse(
    server: &TestServer,
    token: &str,
    path: &str,
    last_event_id: Option<i64>,
    want: usize,
) -> TestResult<Vec<(i64, String, Json)>> {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-N", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {token}"));
    if let Some(id) = last_event_id {
        cmd.arg("-H").arg(format!("Last-Event-ID: {id}"));
    }
    let mut child = cmd
        .arg(format!("{}{path}", server.http_url()))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("curl stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut out = Vec::new();
    let (mut id, mut kind) = (None, String::new());
    let read = async {
        while out.len() < want {
            let Some(line) = lines.next_line().await? else {
                return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                    format!("stream ended after {} events", out.len()).into(),
                );
            };
            if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                id = Some(v.trim().parse::<i64>()?);
            } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                kind = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                out.push((
                    id.take().ok_or("data before id")?,
                    kind.clone(),
                    serde_json::from_str(v)?,
                ));
            }
        }
        Ok(())
    };
    tokio::time::timeout(INGEST, read)
        .await
        .map_err(|_| format!("waited {INGEST:?} for {want} SSE events"))??;
    child.kill().await?;
    Ok(out)
}

fn kinds(items: &Json) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_feed_long_poll_wakes_on_commit_and_sse_resumes() -> TestResult {
    let server = start(vec![customer("acme", ""), customer("beta", "")]).await?;
    let (admin, acme, beta) = tokens(&server)?;
    let empty = curl(&server, Some(&admin), "/v1/events?after=0", &[])
        .await?
        .json()?;
    assert_eq!(empty, serde_json::json!({"items": [], "next_after": 0}));

    // A long-poll waiting before anything happened returns with the first
    // outcome, long before its wait runs out.
    let waiting = {
        let (url, t) = (server.http_url(), acme.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "120", "-H"])
                .arg(format!("Authorization: Bearer {t}"))
                .arg(format!("{url}/v1/events?after=0&wait=55s"))
                .output()
                .await;
            (out, started.elapsed())
        })
    };
    let path = format!("/audio/20260211/{SECOND}");
    upload(&server, "acme", &[("bad.mp3", b"not audio at all", &path)]).await?;
    let (out, took) = waiting.await?;
    let polled: Json = serde_json::from_slice(&out?.stdout)?;
    assert_eq!(kinds(&polled["items"]), ["rejection.created"], "{polled:#}");
    assert!(
        took < std::time::Duration::from_secs(50),
        "the poll waited {took:?}"
    );
    let first = polled["items"][0].clone();
    assert_eq!(first["account"], "acme");
    assert_eq!(first["data"]["path"], path.as_str());
    assert_eq!(polled["next_after"], first["seq"]);

    // The fixed file at the same path closes the rejection and creates the
    // conversation: both in the feed, in commit order.
    upload(&server, "acme", &[("good.mp3", &tone_mp3(), &path)]).await?;
    let conv = conversation_with_status(&server, "acme", &path, "ingested").await?;
    upload(
        &server,
        "beta",
        &[("b.mp3", &tone_mp3(), &format!("/audio/20260211/{SEED}"))],
    )
    .await?;
    settled(&server, "beta").await?;

    let all = curl(&server, Some(&admin), "/v1/events?after=0&limit=1000", &[])
        .await?
        .json()?;
    let items = all["items"].as_array().ok_or("items")?;
    assert_eq!(
        kinds(&all["items"]),
        [
            "rejection.created",
            "rejection.closed",
            "conversation.created",
            "conversation.created"
        ],
        "{all:#}"
    );
    let seqs: Vec<i64> = items.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        items[1]["data"]["id"], first["data"]["id"],
        "closes that rejection"
    );
    assert_eq!(items[2]["data"]["id"], conv["id"]);
    assert_eq!(items[2]["data"]["sha256"], sha256_hex(&tone_mp3()));

    // beta sees its own event only; naming acme is refused.
    let theirs = curl(&server, Some(&beta), "/v1/events", &[])
        .await?
        .json()?;
    assert_eq!(kinds(&theirs["items"]), ["conversation.created"]);
    assert_eq!(theirs["items"][0]["account"], "beta");
    let r = curl(&server, Some(&beta), "/v1/events?account=acme", &[]).await?;
    assert_eq!(r.status, 403);
    let r = curl(&server, Some(&beta), "/v1/events/stream?account=acme", &[]).await?;
    assert_eq!(r.status, 403);
    let r = curl(&server, Some(&admin), "/v1/events?wait=1h", &[]).await?;
    assert_eq!(r.status, 400, "past http.max_wait");

    // SSE from the start, then resumed after the second event.
    let streamed = sse(&server, &admin, "/v1/events/stream", None, 4).await?;
    let ids: Vec<i64> = streamed.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, seqs);
    assert_eq!(streamed[0].1, "rejection.created");
    assert_eq!(streamed[3].2["account"], "beta");
    let resumed = sse(
        &server,
        &admin,
        "/v1/events/stream?after=0",
        Some(seqs[1]),
        2,
    )
    .await?;
    let ids: Vec<i64> = resumed.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, &seqs[2..], "Last-Event-ID wins over after");

    // A stream open before an outcome delivers it when it commits.
    let live_path = format!("/v1/events/stream?after={}", seqs[3]);
    let live = sse(&server, &acme, &live_path, None, 1);
    let p = format!("/audio/20260211/{SEED}");
    let mp3 = tone_mp3();
    let files: [(&str, &[u8], &str); 1] = [("c.mp3", &mp3, &p)];
    let (live, uploaded) = tokio::join!(live, upload(&server, "acme", &files));
    uploaded?;
    let live = live?;
    assert_eq!(live[0].1, "conversation.created");
    assert!(live[0].0 > seqs[3]);
    Ok(())
}

/// The value of the sample `name` (with its labels, as printed) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_agree_with_depot_stats() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let (admin, acme, _) = tokens(&server)?;
    let path = format!("/audio/20260211/{SEED}");
    upload(&server, "acme", &[("a.mp3", &tone_mp3(), &path)]).await?;
    upload(
        &server,
        "acme",
        &[("b.mp3", b"no audio", &format!("/audio/20260211/{SECOND}"))],
    )
    .await?;
    settled(&server, "acme").await?;

    assert_eq!(curl(&server, None, "/metrics", &[]).await?.status, 401);
    let r = curl(&server, Some(&acme), "/metrics", &[]).await?;
    assert_eq!((r.status, r.error_code()?.as_str()), (403, "forbidden"));
    let r = curl(&server, Some(&admin), "/metrics", &[]).await?;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body)?;

    // A parser nobody here wrote accepts it.
    let mut check = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = check.stdin.take().ok_or("promtool stdin")?;
        stdin.write_all(text.as_bytes()).await?;
    }
    let out = check.wait_with_output().await?;
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same numbers as `depot stats`.
    let stats = cli_json(&server, &["stats"]).await?;
    assert_eq!(stats["conversations"]["ingested"], 1, "{stats:#}");
    assert_eq!(
        sample(&text, "depot_conversations{status=\"ingested\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "depot_rejections{stage=\"audio\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "depot_pending_deposits"), Some(0.0));
    let completions = server
        .running()
        .shared
        .metrics
        .completions
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        sample(&text, "depot_completions_total"),
        Some(completions as f64)
    );
    assert_eq!(completions, 2);
    assert!(
        sample(&text, "depot_events_last_seq").is_some_and(|s| s >= 2.0),
        "{text}"
    );
    assert!(text.contains("depot_build_info{version=\""), "{text}");

    // A scraper asking for OpenMetrics gets it, with its end marker.
    let om = curl(
        &server,
        Some(&admin),
        "/metrics",
        &["-H", "Accept: application/openmetrics-text; version=1.0.0"],
    )
    .await?;
    assert!(om
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/openmetrics-text")));
    let om = String::from_utf8(om.body)?;
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(sample(&om, "depot_completions_total"), Some(2.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_token_works_and_shutdown_ends_open_streams() -> TestResult {
    let mut server = start(vec![customer("acme", "")]).await?;
    // `depot token new` as an operator runs it: the printed entry admits
    // the printed token.
    let made = cli_json(
        &server,
        &["token", "new", "--name", "it", "--account", "acme"],
    )
    .await?;
    let token = made["token"].as_str().ok_or("token")?.to_string();
    let entry = made["toml"].as_str().ok_or("toml")?;
    assert!(
        entry.contains("account = \"acme\"") && !entry.contains(&token),
        "{entry}"
    );
    std::fs::write(server.tokens_file(), entry)?;
    let r = curl(&server, Some(&token), "/v1/conversations", &[]).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()?["items"], serde_json::json!([]));

    // An SSE client and a long-poll are connected; shutdown still ends
    // promptly and both see their connection end.
    let url = server.http_url();
    let spawn = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "-N", "--max-time", "120", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd.spawn()
    };
    let mut stream = spawn(vec![format!("{url}/v1/events/stream")])?;
    let mut poll = spawn(vec![format!("{url}/v1/events?wait=60s")])?;
    // The stream's headers arrive once the server is serving it.
    {
        use tokio::io::AsyncReadExt;
        let mut out = stream.stdout.take().ok_or("stdout")?;
        let mut one = [0u8; 1];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), out.read(&mut one)).await;
        stream.stdout = Some(out);
    }
    let limit = std::time::Duration::from_secs(30);
    tokio::time::timeout(limit, server.stop())
        .await
        .map_err(|_| "shutdown hung with HTTP clients connected")??;
    let ended = tokio::time::timeout(limit, async { (stream.wait().await, poll.wait().await) })
        .await
        .map_err(|_| "clients still connected after shutdown")?;
    assert!(ended.0.is_ok() && ended.1.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_and_answers_match_it() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let (admin, _, _) = tokens(&server)?;
    let path = format!("/audio/20260211/{SEED}");
    let mp3 = tone_mp3();
    let mut fixed = mp3.clone();
    fixed.extend_from_slice(&[0u8; 64]);
    upload(&server, "acme", &[("a.mp3", &mp3, &path)]).await?;
    settled(&server, "acme").await?;
    // The same path again with other bytes: the first becomes history.
    upload(&server, "acme", &[("a2.mp3", &fixed, &path)]).await?;
    let current = conversation_with_status(&server, "acme", &path, "ingested").await?;
    upload(
        &server,
        "acme",
        &[("bad.mp3", b"noise", &format!("/audio/20260211/{SECOND}"))],
    )
    .await?;
    rejection_of(
        &server,
        "acme",
        &format!("/audio/20260211/{SECOND}"),
        INGEST,
    )
    .await?;

    let dir = tempfile::tempdir_in(server.tmp.path())?;
    let doc = curl(&server, None, "/v1/openapi.json", &[]).await?;
    assert_eq!(doc.status, 200);
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, &doc.body)?;
    let id = current["id"].as_i64().ok_or("id")?;
    let checks: Vec<(&str, Option<&str>, String)> = vec![
        ("ConversationPage", Some(&admin), "/v1/conversations".into()),
        (
            "ConversationPage",
            Some(&admin),
            "/v1/conversations?status=superseded&limit=1".into(),
        ),
        (
            "Conversation",
            Some(&admin),
            format!("/v1/conversations/{id}"),
        ),
        ("[Advisor]", Some(&admin), "/v1/advisors".into()),
        ("[Rejection]", Some(&admin), "/v1/rejections".into()),
        ("[CrmSnapshot]", Some(&admin), "/v1/crm/snapshots".into()),
        ("[AccountSummary]", Some(&admin), "/v1/accounts".into()),
        ("EventPage", Some(&admin), "/v1/events?after=0".into()),
        ("Health", None, "/healthz".into()),
        ("Readiness", None, "/readyz".into()),
        ("ErrorBody", None, "/v1/conversations".into()),
        ("ErrorBody", Some(&admin), "/v1/conversations/0".into()),
    ];
    let mut args = vec![doc_path.display().to_string()];
    for (i, (schema, token, p)) in checks.iter().enumerate() {
        let r = curl(&server, *token, p, &[]).await?;
        let body = r.json()?;
        if *schema == "Conversation" {
            assert_eq!(
                body["history"].as_array().map(Vec::len),
                Some(1),
                "{body:#}"
            );
        }
        if *schema == "[Rejection]" || *schema == "[Advisor]" {
            assert!(
                body.as_array().is_some_and(|a| !a.is_empty()),
                "{p}: {body}"
            );
        }
        let f = dir.path().join(format!("{i}.json"));
        std::fs::write(&f, &r.body)?;
        args.push(schema.to_string());
        args.push(f.display().to_string());
    }
    let out = tokio::process::Command::new("python3")
        .arg(fixture("check_openapi.py"))
        .args(&args)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every route the server answers is described.
    let doc: Json = serde_json::from_slice(&doc.body)?;
    for p in [
        "/v1/conversations",
        "/v1/conversations/{id}",
        "/v1/conversations/{id}/audio",
        "/v1/advisors",
        "/v1/rejections",
        "/v1/crm/snapshots",
        "/v1/accounts",
        "/v1/events",
        "/v1/events/stream",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the document"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_configured_certificate() -> TestResult {
    let mut server = start(vec![customer("acme", "")]).await?;
    let (admin, _, _) = tokens(&server)?;
    let (cert, key) = (
        server.tmp.path().join("http.crt"),
        server.tmp.path().join("http.key"),
    );
    let made = tokio::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=depot-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .await?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let toml = std::fs::read_to_string(&server.config_path)?.replace(
        "tokens_file = \"tokens.toml\"\n",
        "tokens_file = \"tokens.toml\"\ntls_cert = \"http.crt\"\ntls_key = \"http.key\"\n",
    );
    std::fs::write(&server.config_path, toml)?;
    server.restart().await?;

    let https = server.http_url().replacen("http://", "https://", 1);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&cert)
        .arg("-H")
        .arg(format!("Authorization: Bearer {admin}"))
        .arg(format!("{https}/v1/accounts"))
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accounts: Json = serde_json::from_slice(&out.stdout)?;
    assert_eq!(accounts[0]["name"], "acme", "{accounts}");
    // Plain HTTP on the HTTPS port gets no API answer.
    let plain = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{}/healthz", server.http_url()))
        .output()
        .await?;
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "200");
    // The console's cookies are Secure when depot itself serves HTTPS.
    let login = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
        ])
        .arg(&cert)
        .arg(format!("{https}/login"))
        .output()
        .await?;
    let head = String::from_utf8_lossy(&login.stdout).to_string();
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .ok_or(format!("no cookie: {head}"))?;
    assert!(cookie.contains("; Secure"), "{cookie}");
    tokio::time::timeout(std::time::Duration::from_secs(30), server.stop())
        .await
        .map_err(|_| "HTTPS shutdown hung")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_signed_in_order_at_least_once_across_a_restart() -> TestResult {
    let mut server = start(vec![customer("acme", "")]).await?;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let log = server.tmp.path().join("received.jsonl");
    let receiver = crate::webhook_receiver::start(secret, 3, &log, INGEST).await?;
    let port = receiver.port;
    let mut toml = std::fs::read_to_string(&server.config_path)?;
    toml += &format!(
        "\n[[webhooks]]\nname = \"analysis\"\nurl = \"http://127.0.0.1:{port}/hooks\"\nsecret = \"{secret}\"\n\
         events = [\"conversation.created\", \"rejection.created\"]\nbackoff = [\"50ms\", \"200ms\"]\ntimeout = \"10s\"\n"
    );
    std::fs::write(&server.config_path, toml)?;
    server.restart().await?;

    let mp3 = tone_mp3();
    upload(
        &server,
        "acme",
        &[
            ("a.mp3", &mp3, &format!("/audio/20260211/{SEED}")),
            ("b.mp3", b"not audio", &format!("/audio/20260211/{SECOND}")),
        ],
    )
    .await?;
    settled(&server, "acme").await?;
    let read_log = |log: &std::path::Path| -> TestResult<Vec<Json>> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Ok(text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    // Restarted while the receiver is still failing: the retry state
    // and the position in the feed are in SQLite.
    until(INGEST, "a first failed attempt", || {
        Ok((!read_log(&log)?.is_empty()).then_some(()))
    })
    .await?;
    server.restart().await?;
    let (admin, _, _) = tokens(&server)?;
    let feed = curl(&server, Some(&admin), "/v1/events?after=0", &[])
        .await?
        .json()?;
    let wanted: Vec<Json> = feed["items"]
        .as_array()
        .ok_or("items")?
        .iter()
        .filter(|e| e["type"] == "conversation.created" || e["type"] == "rejection.created")
        .cloned()
        .collect();
    assert_eq!(wanted.len(), 2, "{feed:#}");
    let delivered = until(INGEST, "every event delivered", || {
        let ok: Vec<Json> = read_log(&log)?
            .into_iter()
            .filter(|l| l["status"] == 204)
            .collect();
        Ok((ok.len() >= wanted.len()).then_some(ok))
    })
    .await?;
    let all = read_log(&log)?;
    assert!(
        all.iter().all(|l| l["verified"] == true),
        "every delivery signed: {all:#?}"
    );
    assert_eq!(
        all.iter().filter(|l| l["status"] == 500).count(),
        3,
        "{all:#?}"
    );
    // Each event delivered, in seq order, under its event id (the same on
    // every attempt); at least once means a repeat is allowed, a gap is not.
    let mut firsts: Vec<&Json> = Vec::new();
    for d in &delivered {
        if !firsts.iter().any(|f| f["id"] == d["id"]) {
            firsts.push(d);
        }
    }
    let got: Vec<(&Json, &Json)> = firsts.iter().map(|d| (&d["id"], &d["seq"])).collect();
    let want: Vec<(&Json, &Json)> = wanted.iter().map(|e| (&e["id"], &e["seq"])).collect();
    assert_eq!(got, want, "{all:#?}");
    for a in &all {
        assert!(
            wanted.iter().any(|e| e["id"] == a["id"]),
            "only wanted types: {a}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_webhook_events_are_listed_and_retried() -> TestResult {
    let mut server = start(vec![customer("acme", "")]).await?;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let log = server.tmp.path().join("received.jsonl");
    let receiver = crate::webhook_receiver::start(secret, 1, &log, INGEST).await?;
    let port = receiver.port;
    let mut toml = std::fs::read_to_string(&server.config_path)?;
    // give_up_after = 0s: the first failure parks the event.
    toml += &format!(
        "\n[[webhooks]]\nname = \"analysis\"\nurl = \"http://127.0.0.1:{port}/\"\nsecret = \"{secret}\"\n\
         events = [\"conversation.created\"]\nbackoff = [\"50ms\"]\ngive_up_after = \"0s\"\n"
    );
    std::fs::write(&server.config_path, toml)?;
    server.restart().await?;
    let read_log = |log: &std::path::Path| -> TestResult<Vec<Json>> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Ok(text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    let mp3 = tone_mp3();
    upload(
        &server,
        "acme",
        &[("a.mp3", &mp3, &format!("/audio/20260211/{SEED}"))],
    )
    .await?;
    until(INGEST, "the first attempt", || {
        Ok((!read_log(&log)?.is_empty()).then_some(()))
    })
    .await?;
    upload(
        &server,
        "acme",
        &[("b.mp3", &mp3, &format!("/audio/20260211/{SECOND}"))],
    )
    .await?;
    // Delivery went on past the parked event.
    until(INGEST, "the second event delivered", || {
        Ok(read_log(&log)?
            .iter()
            .any(|l| l["status"] == 204)
            .then_some(()))
    })
    .await?;
    let first = read_log(&log)?[0].clone();
    assert_eq!(first["status"], 500);
    // The receiver logs its answer before depot commits the delivery.
    let s = &server;
    let listed = until_async(INGEST, "the delivery committed", move || async move {
        let listed = cli_json(s, &["webhooks"]).await?;
        Ok((listed[0]["delivered"] == 1).then_some(listed))
    })
    .await?;
    assert_eq!(listed[0]["name"], "analysis", "{listed:#}");
    assert_eq!(listed[0]["parked"], 1, "{listed:#}");
    assert_eq!(listed[0]["delivered"], 1, "{listed:#}");

    let retried = server.cli(&["webhooks", "retry", "analysis"]).await?;
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    // The worker looks for retries at least every 30 s.
    until(
        std::time::Duration::from_secs(90),
        "the parked event delivered again",
        || {
            Ok(read_log(&log)?
                .iter()
                .any(|l| l["status"] == 204 && l["id"] == first["id"])
                .then_some(()))
        },
    )
    .await?;
    let s = &server;
    let listed = until_async(INGEST, "the redelivery committed", move || async move {
        let listed = cli_json(s, &["webhooks"]).await?;
        Ok((listed[0]["parked"] == 0).then_some(listed))
    })
    .await?;
    assert_eq!(listed[0]["parked"], 0, "{listed:#}");
    // /metrics shows the same state.
    let (admin, _, _) = tokens(&server)?;
    let text = String::from_utf8(curl(&server, Some(&admin), "/metrics", &[]).await?.body)?;
    assert_eq!(
        sample(&text, "depot_webhook_parked{endpoint=\"analysis\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "depot_webhook_failures_total{endpoint=\"analysis\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "depot_webhook_deliveries_total{endpoint=\"analysis\"}"
        )
        .is_some(),
        "{text}"
    );
    let bad = server.cli(&["webhooks", "retry", "nobody"]).await?;
    assert_eq!(bad.status.code(), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_long_polls_do_not_starve_other_requests() -> TestResult {
    let mut server = start(vec![customer("acme", "")]).await?;
    let toml = std::fs::read_to_string(&server.config_path)?.replace(
        "tokens_file = \"tokens.toml\"\n",
        "tokens_file = \"tokens.toml\"\nmax_concurrent_requests = 1\n",
    );
    std::fs::write(&server.config_path, toml)?;
    server.restart().await?;
    let (admin, _, _) = tokens(&server)?;
    let mut polls = Vec::new();
    for _ in 0..3 {
        polls.push(
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "120", "-o", "/dev/null", "-H"])
                .arg(format!("Authorization: Bearer {admin}"))
                .arg(format!("{}/v1/events?wait=55s", server.http_url()))
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    // The three polls are connected (server side of each connection).
    let port = server.running().http_addr.ok_or("http")?.port();
    let established = move || -> TestResult<usize> {
        let want = format!("0100007F:{port:04X}");
        Ok(std::fs::read_to_string("/proc/net/tcp")?
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == want && f[3] == "01"
            })
            .count())
    };
    eventually(INGEST, "three long-polls connected", || {
        established().is_ok_and(|n| n >= 3)
    })
    .await?;
    // Answered while all three polls still wait: they hold no request slot.
    for _ in 0..3 {
        let r = curl(&server, Some(&admin), "/v1/accounts", &[]).await?;
        assert_eq!(r.status, 200);
    }
    for p in &mut polls {
        assert!(p.try_wait()?.is_none(), "a long-poll ended early");
    }
    Ok(())
}

/// `/readyz` says not ready when the data directory's file system has less
/// free space than `server.min_free_disk` (uploads would soon fail), and
/// ready otherwise; `/healthz` stays up either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_below_min_free_disk() -> TestResult {
    let mut roomy = start(vec![customer("acme", "")]).await?;
    let r = curl(&roomy, None, "/readyz", &[]).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()?["disk"], true);
    roomy.stop().await?;
    let mut full = TestServer::start_with(TestConfig {
        accounts: vec![customer("acme", "")],
        server: "min_free_disk = \"1000000TiB\"\n".into(),
        ..Default::default()
    })
    .await?;
    let r = curl(&full, None, "/readyz", &[]).await?;
    assert_eq!(r.status, 503, "{:?}", r.json());
    let j = r.json()?;
    assert_eq!(
        (j["ready"].as_bool(), j["disk"].as_bool()),
        (Some(false), Some(false)),
        "{j}"
    );
    assert!(j["disk_free_bytes"].as_u64().is_some(), "{j}");
    assert_eq!(curl(&full, None, "/healthz", &[]).await?.status, 200);
    full.stop().await
}
