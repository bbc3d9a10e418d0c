//! The web console in a real browser: a depot in-process on free ports,
//! calls uploaded through OpenSSH `sftp` (one with a CRM join, one with an
//! accented advisor, one rejected, one in another account), then headless
//! Chromium driven by Selenium (tests/browser/console.py) logs in as the
//! customer and as an operator, checks each page against the database, plays
//! and seeks the recording, logs out, and gets its address banned by wrong
//! passwords — after which SSH refuses the address too, since both fronts
//! share one ban list. axe-core checks every page the browser visits.
//!
//! Needs `python3` with `selenium`, `chromium` and `chromium-driver`, and
//! `npm install` in tests/browser (CI installs them); missing, the test
//! fails with what to install.

#[path = "../common/mod.rs"]
mod common;

use common::harness::*;
use serde_json::json;
use std::path::PathBuf;

const CRM: &str = "agent_id,team_name,expertise,city\n\
    cindy,diamond,sales,Helsinki\n\
    helene,emerald,support,Besançon\n";

const HEADER: &str = "Filename;Advisor Firstname;Advisor Lastname;agent_id";
const CINDY: &str = "2026_02_11_12_00_01_Cindy_Lauper_Entrant_478_0682316817_163.mp3";
const HELENE: &str = "2026_02_11_12_05_02_Hélène_Lefèvre-Dupré_Sortant_478_0682316817_163.wav";
const BAN_AFTER: u32 = 6;

fn acme() -> AccountSpec {
    customer(
        "acme",
        "[metadata_csv]\n\
         dir = \"/audio\"\n\
         delimiter = \";\"\n\
         columns = { \"Filename\" = \"filename\", \"Advisor Firstname\" = \"advisor_firstname\", \"Advisor Lastname\" = \"advisor_lastname\" }\n\
         wait = \"1h\"\n\
         [crm]\n\
         dir = \"/crm\"\n\
         key = \"agent_id\"\n\
         delimiter = \",\"\n",
    )
    .with_password("acme-pass")
}

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// How many rows a query counts.
fn count(server: &TestServer, sql: &str) -> TestResult<i64> {
    let c = open_db(&server.db_path())?;
    Ok(c.query_row(sql, [], |r| r.get(0))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() -> TestResult {
    let admin_hash = hash_password("ops-pass")?;
    let server = TestServer::start_with(TestConfig {
        accounts: vec![acme(), customer("beta", "")],
        ban_after_failures: BAN_AFTER,
        // The operator: an `[[http.admins]]` table (placed before `[auth]`).
        server: format!("[[http.admins]]\nname = \"ops\"\npassword_hash = {admin_hash:?}\n"),
        ..Default::default()
    })
    .await?;

    upload(
        &server,
        "acme",
        &[("crm.csv", CRM.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    until(INGEST, "the CRM snapshot", || {
        Ok((count(&server, "SELECT count(*) FROM crm_snapshots")? > 0).then_some(()))
    })
    .await?;
    let csv =
        format!("{HEADER}\n{CINDY};Cindy;Lauper;cindy\n{HELENE};Hélène;Lefèvre-Dupré;helene\n");
    let mp3 = tone_mp3();
    let wav = small_wav(7);
    upload(
        &server,
        "acme",
        &[
            ("calls.csv", csv.as_bytes(), "/audio/calls.csv"),
            ("cindy.mp3", &mp3, &format!("/audio/20260211/{CINDY}")),
            ("helene.wav", &wav, &format!("/audio/20260211/{HELENE}")),
            (
                "junk.mp3",
                b"not audio at all",
                "/audio/20260211/not-a-call.mp3",
            ),
        ],
    )
    .await?;
    upload(
        &server,
        "beta",
        &[("b.mp3", &mp3, &format!("/audio/20260211/{SEED}"))],
    )
    .await?;
    let cindy = conversation_with_status(
        &server,
        "acme",
        &format!("/audio/20260211/{CINDY}"),
        "ingested",
    )
    .await?;
    conversation_with_status(
        &server,
        "acme",
        &format!("/audio/20260211/{HELENE}"),
        "ingested",
    )
    .await?;
    let rejected = rejection_of(&server, "acme", "/audio/20260211/not-a-call.mp3", INGEST).await?;
    let other = conversation_with_status(
        &server,
        "beta",
        &format!("/audio/20260211/{SEED}"),
        "ingested",
    )
    .await?;
    settled(&server, "acme").await?;
    assert_eq!(
        cindy["additional_metadata"]["team_name"], "diamond",
        "{cindy:#}"
    );

    // What the pages must show, from the database.
    let ids: Vec<i64> = conversations(&server, "acme")?
        .iter()
        .filter(|c| c["status"] != "superseded")
        .filter_map(|c| c["id"].as_i64())
        .collect();
    let picked = count(&server, "SELECT count(*) FROM conversations WHERE account = 'acme' AND picked = 1 AND status != 'superseded'")?;
    let deposits = count(
        &server,
        "SELECT count(*) FROM journal WHERE account = 'acme'",
    )?;
    let rejections = count(
        &server,
        "SELECT count(DISTINCT journal_id) FROM rejections WHERE account = 'acme'",
    )?;
    let snapshots = count(
        &server,
        "SELECT count(*) FROM crm_snapshots WHERE account = 'acme'",
    )?;
    let mut metadata = serde_json::Map::new();
    for (k, v) in cindy["metadata"]
        .as_object()
        .ok_or("metadata is an object")?
    {
        metadata.insert(
            k.clone(),
            json!(v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())),
        );
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let axe = repo("tests/browser/node_modules/axe-core/axe.min.js");
    if !axe.exists() {
        return Err(format!(
            "{} is missing: run `npm install` in tests/browser (axe-core checks every page)",
            axe.display()
        )
        .into());
    }
    let cfg = json!({
        "url": server.http_url(),
        "screenshots": shots,
        "axe": axe,
        "customer": {"name": "acme", "password": "acme-pass"},
        "operator": {"name": "ops", "password": "ops-pass", "accounts": ["acme", "beta"]},
        "key_only": "beta",
        "ban_after": BAN_AFTER,
        "expect": {
            "deposits": deposits,
            "conversations": ids.len(),
            "picked": picked,
            "rejections": rejections,
            "conversation_ids": ids,
            "other_ids": [other["id"]],
            "other_account": "beta",
            "crm_conversation": cindy["id"],
            "metadata": metadata,
            "sha256": cindy["sha256"],
            "accented": "Hélène Lefèvre-Dupré",
            "rejection_reason": rejected["reason"],
            "rejection_path": rejected["path"],
            "snapshots": snapshots,
        },
    });
    let cfg_path = server.tmp.path().join("browser.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new("python3")
            .arg(repo("tests/browser/console.py"))
            .arg(&cfg_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "the browser script ran past 300 s")?
    .map_err(|e| format!("cannot run python3 ({e}); install python3 with selenium"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser checks failed (screenshots in {}; needs chromium, chromium-driver and PyPI selenium):\n{stdout}\n{stderr}",
        shots.display()
    );
    println!("{stdout}");

    // The console's failures banned the address for SSH as well.
    let refused = server.password_sftp("acme", "acme-pass").await;
    assert!(refused.is_err(), "SSH from the banned address is refused");
    Ok(())
}
