//! CRM additional metadata through SFTP, the uh!ive
//! seed end to end: a CRM file becomes the latest snapshot, calls are
//! joined on `agent_id`, a newer file replaces it for later calls only, a
//! file without the key column is rejected and the old snapshot stays.

use crate::harness::*;
use serde_json::{json, Value as Json};

const CRM_V1: &str = "agent_id,team_name,expertise,city\n\
    alice,emerald,support,Paris\n\
    bob,ruby,billing,Lyon\n\
    cindy,diamond,sales,Helsinki\n\
    dylan,sapphire,retention,Berlin\n";

const CRM_V2: &str = "agent_id,team_name,expertise,city\n\
    alice,emerald,support,Paris\n\
    cindy,diamond,sales,Oslo\n";

const HEADER: &str = "Filename;Advisor Firstname;Advisor Lastname;agent_id";

fn uhive() -> AccountSpec {
    customer(
        "uhive",
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
}

fn call(n: u32) -> String {
    format!("2026_02_11_12_00_{n:02}_Cindy_Lauper_Entrant_478_0682316817_163.wav")
}

/// `depot crm --json` once its latest snapshot is not `not`.
async fn latest_snapshot(server: &TestServer, not: Option<&Json>) -> TestResult<Json> {
    // Each look runs the binary: ten times a second is often enough.
    let last = std::cell::RefCell::new(Json::Null);
    let seen = &last;
    until_every(
        INGEST,
        std::time::Duration::from_millis(100),
        "a new latest CRM snapshot",
        || async move {
            let all = cli_json(server, &["crm", "--account", "uhive"]).await?;
            let latest = all
                .as_array()
                .and_then(|a| a.iter().find(|s| s["latest"] == true))
                .cloned();
            seen.replace(all);
            Ok(latest.filter(|l| Some(&l["id"]) != not))
        },
    )
    .await
    .map_err(|e| format!("{e}; no new latest CRM snapshot: {:#}", last.borrow()).into())
}

/// Uploads metadata rows `(call number, agent_id)`, then their audio, and
/// returns the ingested conversations in the same order.
async fn calls(server: &TestServer, csv_name: &str, rows: &[(u32, &str)]) -> TestResult<Vec<Json>> {
    let mut csv = format!("{HEADER}\n");
    for (n, agent) in rows {
        csv += &format!("{};Cindy;Lauper;{agent}\n", call(*n));
    }
    let csv_path = format!("/audio/{csv_name}");
    upload(server, "uhive", &[(csv_name, csv.as_bytes(), &csv_path)]).await?;
    let mut out = Vec::new();
    for (n, _) in rows {
        let path = format!("/audio/20260211/{}", call(*n));
        upload(
            server,
            "uhive",
            &[(&format!("{n}.wav"), &small_wav(*n), &path)],
        )
        .await?;
        out.push(conversation_with_status(server, "uhive", &path, "ingested").await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uhive_seed_snapshots_and_joins() -> TestResult {
    let server = start(vec![uhive()]).await?;
    upload(
        &server,
        "uhive",
        &[("v1.csv", CRM_V1.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    let v1 = latest_snapshot(&server, None).await?;
    assert_eq!(v1["rows"], 4, "{v1:#}");
    assert_eq!(v1["duplicate_keys"], 0);
    assert_eq!(v1["path"], "/crm/agents.csv");

    let before = calls(
        &server,
        "calls-1.csv",
        &[(1, "cindy"), (2, "erwan"), (3, "")],
    )
    .await?;
    let (cindy, erwan, nokey) = (&before[0], &before[1], &before[2]);
    assert_eq!(
        cindy["additional_metadata"],
        json!({"team_name": "diamond", "expertise": "sales", "city": "Helsinki"}),
        "{cindy:#}"
    );
    assert_eq!(
        cindy["crm"],
        json!({"status": "matched", "snapshot": v1["id"]})
    );
    assert_eq!(cindy["metadata"]["agent_id"], "cindy");
    assert_eq!(erwan["crm"]["status"], "no_match", "{erwan:#}");
    assert_eq!(erwan["additional_metadata"], json!({}));
    assert_eq!(nokey["crm"]["status"], "no_key", "{nokey:#}");
    assert_eq!(nokey["additional_metadata"], json!({}));

    // A newer file (same path) replaces it for calls from now on only.
    upload(
        &server,
        "uhive",
        &[("v2.csv", CRM_V2.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    let v2 = latest_snapshot(&server, Some(&v1["id"])).await?;
    assert_eq!(v2["rows"], 2, "{v2:#}");
    let after = calls(&server, "calls-2.csv", &[(4, "cindy"), (5, "bob")]).await?;
    assert_eq!(
        after[0]["additional_metadata"]["city"], "Oslo",
        "{:#}",
        after[0]
    );
    assert_eq!(
        after[0]["crm"],
        json!({"status": "matched", "snapshot": v2["id"]})
    );
    assert_eq!(after[1]["crm"]["status"], "no_match", "bob left the CRM");
    let again = conversations(&server, "uhive")?;
    let first = again
        .iter()
        .find(|c| c["id"] == cindy["id"])
        .ok_or("gone")?;
    assert_eq!(first["crm"]["snapshot"], v1["id"], "{first:#}");
    assert_eq!(first["additional_metadata"]["city"], "Helsinki");

    // A CRM file without the key column: rejected whole, v2 stays latest.
    let broken = "id,team_name\ncindy,onyx\n";
    upload(
        &server,
        "uhive",
        &[("broken.csv", broken.as_bytes(), "/crm/broken.csv")],
    )
    .await?;
    let r = rejection_of(&server, "uhive", "/crm/broken.csv", INGEST).await?;
    assert_eq!(r["stage"], "crm", "{r:#}");
    assert!(
        r["reason"].as_str().is_some_and(|s| s.contains("agent_id")),
        "{r:#}"
    );
    let all = cli_json(&server, &["crm", "--account", "uhive"]).await?;
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all:#}");
    let latest: Vec<&Json> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["latest"] == true)
        .collect();
    assert_eq!(latest, [&v2], "{all:#}");
    let last = calls(&server, "calls-3.csv", &[(6, "cindy")]).await?;
    assert_eq!(last[0]["crm"]["snapshot"], v2["id"], "{:#}", last[0]);
    assert_eq!(last[0]["additional_metadata"]["team_name"], "diamond");
    Ok(())
}

/// Regression: a CRM file fixed and re-uploaded under the same name became
/// the latest snapshot but its earlier rejection stayed open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_crm_file_clears_its_rejection() -> TestResult {
    let server = start(vec![uhive()]).await?;
    let broken = "id,team_name\ncindy,onyx\n";
    upload(
        &server,
        "uhive",
        &[("b.csv", broken.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    rejection_of(&server, "uhive", "/crm/agents.csv", INGEST).await?;
    upload(
        &server,
        "uhive",
        &[("v1.csv", CRM_V1.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    let v1 = latest_snapshot(&server, None).await?;
    assert_eq!(v1["rows"], 4);
    let open = rejections(&server, "uhive")?;
    assert!(open.is_empty(), "{open:#?}");
    Ok(())
}

/// The latest snapshot is found again after a restart (it lives in the
/// archive, not only in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_snapshot_survives_a_restart() -> TestResult {
    let mut server = start(vec![uhive()]).await?;
    upload(
        &server,
        "uhive",
        &[("v1.csv", CRM_V1.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    let v1 = latest_snapshot(&server, None).await?;
    server.restart().await?;
    let c = calls(&server, "calls.csv", &[(1, "cindy")]).await?;
    assert_eq!(
        c[0]["crm"],
        json!({"status": "matched", "snapshot": v1["id"]})
    );
    assert_eq!(c[0]["additional_metadata"]["city"], "Helsinki");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_crm_keys_are_reported_to_the_customer() -> TestResult {
    let server = start(vec![uhive()]).await?;
    let crm = format!("{CRM_V1}cindy,gold,sales,Oslo\nbob,ruby,billing,Nice\n");
    upload(
        &server,
        "uhive",
        &[("dup.csv", crm.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    let snap = latest_snapshot(&server, None).await?;
    assert_eq!(snap["duplicate_keys"], 2, "{snap:#}");
    let report = report_mentioning(&server, "uhive", "/crm/agents.csv").await?;
    let line = report
        .lines()
        .find(|l| l.contains("/crm/agents.csv"))
        .ok_or("no report line")?;
    assert!(
        line.ends_with(";/crm/agents.csv;CRM file;2 rows repeat a value of column 'agent_id' already seen: the last row of each wins"),
        "{report}"
    );
    Ok(())
}
