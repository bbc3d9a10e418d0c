//! check-name gives the answer ingestion gives: the same date directories,
//! the same source of metadata.

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdX6T6yYPkDoX0r4IfQzWnLkTmqqA1N0C+J0fv6fpr ops@acme";

const TEMPLATE: &str = "{datetime:%Y%m%d_%H%M%S}_{advisor_firstname}_{advisor_lastname}";

fn account(toml: &str) -> Account {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("acme.toml");
    std::fs::write(
        &file,
        format!("authorized_keys = [{KEY:?}]\ntimezone = \"Europe/Paris\"\n{toml}"),
    )
    .unwrap();
    load_account(&file, d.path(), false).unwrap().0
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 2, 11).unwrap()
}

/// What the worker's stages make of the same path.
fn worker(acc: &Account, path: &str) -> std::result::Result<Evaluation, Rejection> {
    let p = JailPath::parse(path).unwrap();
    let Kind::Audio { deposit_date } = classify(acc, &p)? else {
        panic!("{path} is not audio");
    };
    let metadata = match &acc.metadata_csv {
        None => Metadata::NotUsed,
        Some(_) => Metadata::Csv {
            row: None,
            broken: None,
        },
    };
    Ok(evaluate(&Deposit {
        account: acc,
        file_name: p.file_name().unwrap(),
        deposit_date,
        metadata,
        crm: None,
        today: day(),
    }))
}

#[test]
fn a_bare_name_goes_into_a_date_directory_of_the_accounts_format() {
    let acc = account(&format!(
        "[audio]\ndir = \"/audio\"\ndate_dirs = [\"%Y_%m_%d\"]\nrequire_date_dir = true\n\
         filename = \"{TEMPLATE}\"\n"
    ));
    let path = deposit_path(&acc, "20260211_093000_Jean_Dupont.mp3", day());
    assert_eq!(path, "/audio/2026_02_11/20260211_093000_Jean_Dupont.mp3");
    let doc = check(&acc, &path, day()).unwrap();
    assert_eq!(doc["deposit_date"], "2026-02-11", "{doc:#}");
    assert_eq!(doc["metadata"]["advisor_firstname"], "Jean", "{doc:#}");
    let Evaluation::Complete(call) = worker(&acc, &path).unwrap() else {
        panic!("the worker does not complete {path}");
    };
    assert_eq!(doc["metadata"], json!(call.metadata));
    assert_eq!(doc["flags"], json!(call.flags));
    assert_eq!(
        doc["started_at"],
        json!(call.started_at.map(|d| d.to_rfc3339()))
    );
}

#[test]
fn with_metadata_only_from_csv_the_name_is_not_parsed() {
    let acc = account(&format!(
        "[audio]\ndir = \"/audio\"\nfilename = \"{TEMPLATE}\"\n\
         [metadata_csv]\ndir = \"/meta\"\nuse = \"only\"\n"
    ));
    // Not what the template describes: only a CSV row says who called.
    let path = deposit_path(&acc, "recording-17.mp3", day());
    let doc = check(&acc, &path, day()).unwrap();
    assert_eq!(doc["awaiting"], "metadata_csv", "{doc:#}");
    assert_eq!(doc["metadata"], json!({}), "{doc:#}");
    assert!(doc.get("rejected").is_none(), "{doc:#}");
    let Evaluation::Awaiting(call) = worker(&acc, &path).unwrap() else {
        panic!("the worker does not wait for the row of {path}");
    };
    assert_eq!(doc["metadata"], json!(call.metadata));
    assert_eq!(doc["flags"], json!(call.flags));
}

#[test]
fn a_name_the_worker_rejects_is_rejected_with_the_same_reason() {
    let acc = account(&format!(
        "[audio]\ndir = \"/audio\"\nfilename = \"{TEMPLATE}\"\n"
    ));
    let path = deposit_path(&acc, "recording-17.mp3", day());
    let refused = check(&acc, &path, day()).unwrap_err();
    let Evaluation::Rejected(by_worker) = worker(&acc, &path).unwrap() else {
        panic!("the worker accepts {path}");
    };
    assert_eq!(refused, by_worker);
}
