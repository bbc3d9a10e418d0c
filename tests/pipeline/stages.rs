//! Calls that must never be lost to a cosmetic problem, through real `sftp`
//! uploads: a wall-clock time in a DST change, an advisor whose e-mail
//! cannot be built, audio bytes that disagree with their extension.

use crate::harness::*;

fn flags(c: &serde_json::Value) -> Vec<String> {
    c["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_in_the_spring_forward_gap_is_ingested_and_flagged() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let mp3 = tone_mp3();
    let gap = "/audio/20260329/2026_03_29_02_30_00_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    let fold = "/audio/20261025/2026_10_25_02_30_00_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    upload(
        &server,
        "acme",
        &[("g.mp3", &mp3, gap), ("f.mp3", &mp3, fold)],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", gap, "ingested").await?;
    // 02:30 does not exist that night: read with the winter offset, it is
    // 03:30 summer time, and the name's time stays in the metadata.
    assert_eq!(c["started_at"], "2026-03-29T03:30:00+02:00", "{c:#}");
    assert!(flags(&c).contains(&"dst_gap".to_string()), "{c:#}");
    assert_eq!(
        c["metadata"]["datetime_local"], "2026-03-29 02:30:00",
        "{c:#}"
    );
    let c = conversation_with_status(&server, "acme", fold, "ingested").await?;
    assert_eq!(c["started_at"], "2026-10-25T02:30:00+02:00", "{c:#}");
    assert!(flags(&c).contains(&"dst_ambiguous".to_string()), "{c:#}");
    assert!(rejections(&server, "acme")?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_whose_advisor_email_cannot_be_built_is_kept_unassigned() -> TestResult {
    let server = start(vec![
        customer("acme", ""),
        customer("strict", "on_invalid = \"reject\"\n"),
    ])
    .await?;
    let mp3 = tone_mp3();
    let long = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft";
    let too_long =
        format!("/audio/20260211/2026_02_11_15_20_33_Jean_{long}_Entrant_478_0682316817_163.mp3");
    let stray = "/audio/20260211/2026_02_11_16_20_33_Jean;_Du|pont,_Entrant_478_0682316817_163.mp3";
    upload(
        &server,
        "acme",
        &[("l.mp3", &mp3, &too_long), ("s.mp3", &mp3, stray)],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", &too_long, "ingested").await?;
    assert_eq!(c["advisor"]["id"], serde_json::Value::Null, "{c:#}");
    assert_eq!(c["advisor"]["name"], format!("Jean {long}"), "{c:#}");
    let f = flags(&c);
    assert!(
        f.iter().any(|f| f.starts_with("advisor_unresolved (")
            && f.contains("more than 64 characters before '@'")),
        "{c:#}"
    );
    // Separators and quotes in a name are dropped from the address only.
    let c = conversation_with_status(&server, "acme", stray, "ingested").await?;
    assert_eq!(c["advisor"]["email"], "jean.dupont@acme.com", "{c:#}");
    assert_eq!(c["advisor"]["last_name"], "Du|pont,", "{c:#}");
    assert!(rejections(&server, "acme")?.is_empty());
    assert_eq!(advisors(&server, "acme")?.len(), 1);

    // An account that asks for it still rejects, with the reason.
    upload(&server, "strict", &[("l.mp3", &mp3, &too_long)]).await?;
    let r = rejection_of(&server, "strict", &too_long, INGEST).await?;
    assert_eq!(r["stage"], "advisor", "{r:#}");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|s| s.contains("more than 64 characters before '@'")),
        "{r:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_format_is_read_from_the_bytes() -> TestResult {
    let server = start(vec![customer("acme", "")]).await?;
    let wav = small_wav(3);
    let named_mp3 =
        "/audio/20260211/2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    let honest = "/audio/20260211/2026_02_11_15_21_33_Jean_Dupont_Entrant_478_0682316817_163.WAV";
    upload(
        &server,
        "acme",
        &[("w.mp3", &wav, named_mp3), ("h.wav", &small_wav(4), honest)],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", named_mp3, "ingested").await?;
    assert_eq!(c["audio"]["format"], "wav", "{c:#}");
    assert!(
        flags(&c).contains(&"extension_mismatch (.mp3 holds wav)".to_string()),
        "{c:#}"
    );
    let archived = c["archive_path"].as_str().ok_or("no archive_path")?;
    assert!(archived.ends_with(&format!("/{}.wav", c["id"])), "{c:#}");
    assert_eq!(std::fs::read(archived)?, wav);
    let c = conversation_with_status(&server, "acme", honest, "ingested").await?;
    assert_eq!(c["audio"]["format"], "wav", "{c:#}");
    assert!(
        !flags(&c)
            .iter()
            .any(|f| f.starts_with("extension_mismatch")),
        "{c:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_joins_a_column_named_unlike_the_metadata_key() -> TestResult {
    let server = start(vec![customer(
        "acme",
        "[crm]\ndir = \"/crm\"\nkey = \"advisor_firstname\"\ncolumn = \"agent_id\"\n",
    )])
    .await?;
    let crm = "agent_id,team_name,city\nCindy,diamond,Helsinki\nBob,ruby,Lyon\n";
    upload(
        &server,
        "acme",
        &[("crm.csv", crm.as_bytes(), "/crm/agents.csv")],
    )
    .await?;
    settled(&server, "acme").await?;
    let path = "/audio/20260211/2026_02_11_12_00_01_Cindy_Lauper_Entrant_478_0682316817_163.mp3";
    upload(&server, "acme", &[("c.mp3", &tone_mp3(), path)]).await?;
    let c = conversation_with_status(&server, "acme", path, "ingested").await?;
    assert_eq!(c["crm"]["status"], "matched", "{c:#}");
    let extra = &c["additional_metadata"];
    assert_eq!(extra["team_name"], "diamond", "{c:#}");
    assert_eq!(extra["city"], "Helsinki", "{c:#}");
    assert!(extra.get("agent_id").is_none(), "{c:#}");
    Ok(())
}

const FIELD_RULES: &str = "[audio.fields]\n\
    channel = { values = [\"Entrant\", \"Sortant\"], ignore_case = true }\n\
    advisor_extension = { digits = true, max_len = 4 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_rules_and_unicode_form_apply_to_names_and_csv_rows() -> TestResult {
    let csv_section = "[metadata_csv]\ndir = \"/audio\"\ndelimiter = \";\"\nwait = \"1h\"\n\
        columns = { \"Filename\" = \"filename\", \"Channel\" = \"channel\" }\n";
    let server = start(vec![
        customer("acme", FIELD_RULES),
        customer("withcsv", &format!("{FIELD_RULES}{csv_section}")),
    ])
    .await?;
    let mp3 = tone_mp3();
    let day = "/audio/20260211";
    let lower = format!("{day}/2026_02_11_10_00_00_Jean_Dupont_entrant_478_0682316817_163.mp3");
    let bad = format!("{day}/2026_02_11_10_01_00_Jean_Dupont_Inbound_478_0682316817_163.mp3");
    let long_ext =
        format!("{day}/2026_02_11_10_02_00_Jean_Dupont_Entrant_47801_0682316817_163.mp3");
    // "Éloïse" as a Mac sends it: decomposed (NFD).
    let nfd = format!("{day}/2026_02_11_10_03_00_E\u{301}loi\u{308}se_Lefe\u{300}vre_Sortant_478_0682316817_163.mp3");
    upload(
        &server,
        "acme",
        &[
            ("1.mp3", &mp3, &lower),
            ("2.mp3", &mp3, &bad),
            ("3.mp3", &mp3, &long_ext),
            ("4.mp3", &mp3, &nfd),
        ],
    )
    .await?;
    let c = conversation_with_status(&server, "acme", &lower, "ingested").await?;
    assert_eq!(c["metadata"]["channel"], "Entrant", "{c:#}");
    let r = rejection_of(&server, "acme", &bad, INGEST).await?;
    assert_eq!(r["stage"], "file_name", "{r:#}");
    assert_eq!(
        r["reason"],
        "channel: 'Inbound' is not one of Entrant, Sortant (case ignored)"
    );
    let r = rejection_of(&server, "acme", &long_ext, INGEST).await?;
    assert_eq!(
        r["reason"],
        "advisor_extension: '47801' is longer than 4 characters (5)"
    );
    let c = conversation_with_status(&server, "acme", &nfd, "ingested").await?;
    assert_eq!(c["metadata"]["advisor_firstname"], "Éloïse", "{c:#}");
    assert_eq!(c["metadata"]["advisor_lastname"], "Lefèvre", "{c:#}");
    assert_eq!(c["advisor"]["email"], "eloise.lefevre@acme.com", "{c:#}");

    // The same rule holds for a value that came from a CSV row.
    let name = "2026_02_11_11_00_00_Jean_Dupont_Entrant_478_0682316817_163.mp3";
    let csv = format!("Filename;Channel\n{name};Inbound\n");
    upload(
        &server,
        "withcsv",
        &[("m.csv", csv.as_bytes(), "/audio/m.csv")],
    )
    .await?;
    settled(&server, "withcsv").await?;
    let path = format!("{day}/{name}");
    upload(&server, "withcsv", &[("5.mp3", &mp3, &path)]).await?;
    let r = rejection_of(&server, "withcsv", &path, INGEST).await?;
    assert_eq!(r["stage"], "metadata_csv", "{r:#}");
    assert_eq!(
        r["reason"],
        "metadata CSV row: channel: 'Inbound' is not one of Entrant, Sortant (case ignored)"
    );
    Ok(())
}
