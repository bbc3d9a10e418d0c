//! Settings of the pipeline stages: the contact-reason file read by its
//! header, `advisors.on_invalid`, and what the `[audio]` and `[crm]` keys
//! default to.

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdX6T6yYPkDoX0r4IfQzWnLkTmqqA1N0C+J0fv6fpr ops@acme";

fn load(toml: &str, files: &[(&str, &str)]) -> Result<Account, Vec<ConfigError>> {
    let d = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap();
    }
    let file = d.path().join("acme.toml");
    std::fs::write(&file, format!("authorized_keys = [{KEY:?}]\n{toml}")).unwrap();
    load_account(&file, d.path(), false).map(|(a, _)| a)
}

fn messages(errs: &[ConfigError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{}: {}", e.key, e.message))
        .collect()
}

fn cols(id: &str, label: &str) -> [String; 2] {
    [id.to_string(), label.to_string()]
}

#[test]
fn reason_file_by_header_in_every_dialect() {
    let default = cols("id", "label");
    let cases = [
        "id,label\n163,Résiliation\n164,Facturation\n",
        "\u{feff}id;label\r\n163;Résiliation\r\n164;Facturation\r\n",
        "ID | Label\n163 | Résiliation\n164 | Facturation\n\n",
        "label\tid\nRésiliation\t163\nFacturation\t164\n",
        "\n  \nid,comment,label\n163,old,Résiliation\n164,,Facturation\n",
    ];
    for text in cases {
        let map = parse_reasons(text.trim_start_matches('\u{feff}'), &default, None)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(map.len(), 2, "{text:?}: {map:?}");
        assert_eq!(map["163"], "Résiliation", "{text:?}");
        assert_eq!(map["164"], "Facturation", "{text:?}");
    }
    let custom = cols("reason_id", "reason_label");
    let map = parse_reasons("reason_id;reason_label\n163;Résiliation\n", &custom, None).unwrap();
    assert_eq!(map["163"], "Résiliation");
    let map = parse_reasons(
        "reason_id;reason_label\n163;Résiliation\n",
        &custom,
        Some(b';'),
    )
    .unwrap();
    assert_eq!(map["163"], "Résiliation");
}

#[test]
fn reason_file_without_its_header_is_refused() {
    let default = cols("id", "label");
    // The file the default settings used to read with its header as a
    // reason and its lines unsplit.
    let e = parse_reasons("reason_id;reason_label\n163;Résiliation\n", &default, None).unwrap_err();
    assert!(
        e.contains("does not name both columns 'id' and 'label'"),
        "{e}"
    );
    assert!(e.contains("contact_reasons.columns"), "{e}");
    // Headerless, or a given delimiter that does not split the header.
    assert!(parse_reasons("163,Résiliation\n", &default, None).is_err());
    let e = parse_reasons("id,label\n163,Résiliation\n", &default, Some(b';')).unwrap_err();
    assert!(e.contains("split by ';'"), "{e}");
    let e = parse_reasons("id,label\n163\n", &default, None).unwrap_err();
    assert_eq!(
        e,
        "line 2: expected the 'id' and 'label' columns separated by ','"
    );
    let e = parse_reasons("id,label\n,Vide\n", &default, None).unwrap_err();
    assert_eq!(e, "line 2: the 'id' column is empty");
}

#[test]
fn reason_settings_are_checked_at_load_naming_file_and_key() {
    let reasons = [("r.csv", "reason_id;reason_label\n163;Résiliation\n")];
    let acc = load(
        "[contact_reasons]\nfile = \"r.csv\"\ncolumns = [\"reason_id\", \"reason_label\"]\ndelimiter = \";\"\n",
        &reasons,
    )
    .unwrap();
    assert_eq!(acc.contact_reasons.unwrap().labels["163"], "Résiliation");

    let errs = load("[contact_reasons]\nfile = \"r.csv\"\n", &reasons).unwrap_err();
    assert_eq!(errs.len(), 1, "{:?}", messages(&errs));
    assert_eq!(errs[0].key, "contact_reasons.file");
    assert!(
        errs[0]
            .message
            .contains("r.csv: the header row 'reason_id;reason_label'"),
        "{}",
        errs[0].message
    );

    let errs = load(
        "[contact_reasons]\nfile = \"r.csv\"\ncolumns = [\"only\"]\n",
        &reasons,
    )
    .unwrap_err();
    assert_eq!(
        errs[0].key,
        "contact_reasons.columns",
        "{:?}",
        messages(&errs)
    );
}

#[test]
fn advisors_on_invalid() {
    let base = "[advisors]\ncreate = true\nemail = \"%firstname%.%lastname%@%domain%.com\"\ndomain = \"acme\"\n";
    let acc = load(base, &[]).unwrap();
    assert_eq!(acc.advisors.unwrap().on_invalid, OnInvalid::Unassigned);
    let acc = load(&format!("{base}on_invalid = \"reject\"\n"), &[]).unwrap();
    assert_eq!(acc.advisors.unwrap().on_invalid, OnInvalid::Reject);
    let errs = load(&format!("{base}on_invalid = \"drop\"\n"), &[]).unwrap_err();
    assert_eq!(errs[0].key, "advisors.on_invalid");
}

#[test]
fn crm_column_defaults_to_the_key() {
    let acc = load("[crm]\nkey = \"agent_id\"\n", &[]).unwrap();
    let crm = acc.crm.unwrap();
    assert_eq!(
        (crm.key.as_str(), crm.column.as_str()),
        ("agent_id", "agent_id")
    );
    let acc = load(
        "[crm]\nkey = \"advisor_firstname\"\ncolumn = \"agent_id\"\n",
        &[],
    )
    .unwrap();
    let crm = acc.crm.unwrap();
    assert_eq!(
        (crm.key.as_str(), crm.column.as_str()),
        ("advisor_firstname", "agent_id")
    );
    let errs = load("[crm]\nkey = \"agent_id\"\ncolumn = \" \"\n", &[]).unwrap_err();
    assert_eq!(errs[0].key, "crm.column");
}

#[test]
fn audio_keys_and_their_defaults() {
    let acc = load("[audio]\nextensions = [\"MP3\", \".wav\"]\n", &[]).unwrap();
    let a = acc.audio.unwrap();
    assert_eq!(a.extensions_case, ExtensionsCase::Insensitive);
    assert_eq!(a.normalize, Normalize::Nfc);
    assert!(a.fields.is_empty());
    assert!(a.accepts("x.mp3") && a.accepts("x.Mp3") && a.accepts("x.WAV"));
    assert!(!a.accepts("x.ogg") && !a.accepts("mp3") && !a.accepts(".mp3"));

    let acc = load(
        "[audio]\nextensions = [\"mp3\", \"WAV\"]\nextensions_case = \"sensitive\"\nnormalize = \"none\"\n\
         [audio.fields]\nchannel = { values = [\"Entrant\", \"Sortant\"], ignore_case = true }\n\
         advisor_extension = { digits = true, max_len = 8 }\n",
        &[],
    )
    .unwrap();
    let a = acc.audio.unwrap();
    assert_eq!(a.normalize, Normalize::None);
    assert!(a.accepts("x.mp3") && a.accepts("x.WAV"));
    assert!(!a.accepts("x.MP3") && !a.accepts("x.wav"));
    assert!(a.fields["channel"].ignore_case);
    assert_eq!(a.fields["advisor_extension"].max_len, Some(8));

    let errs = load(
        "[audio]\nextensions_case = \"upper\"\nnormalize = \"nfkd\"\n[audio.fields]\n\
         a = { values = [] }\nb = { max_len = 0 }\nc = { digits = true, values = [\"1\"] }\n",
        &[],
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "audio.extensions_case",
            "audio.normalize",
            "audio.fields.a",
            "audio.fields.b",
            "audio.fields.c"
        ],
        "{:?}",
        messages(&errs)
    );
    let errs = load("[audio.fields]\nchannel = { allowed = [\"x\"] }\n", &[]).unwrap_err();
    assert!(errs[0].message.contains("allowed"), "{:?}", messages(&errs));
}

#[test]
fn every_unknown_key_is_reported_with_the_other_errors() {
    let errs = load(
        "timezone = \"Mars/Base\"\ncolour = \"red\"\n[audio]\ndirr = \"/a\"\nextension_case = \"sensitive\"\n\
         [audio.fields]\nchannel = { values = [\"Entrant\"], allowed = [\"x\"] }\n\
         [metadata_csv]\ncolumns = { \"A\" = \"a\" }\n[picking]\npercent = 120\n[bogus]\nx = 1\n",
        &[],
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for want in [
        "colour",
        "bogus",
        "audio.dirr",
        "audio.extension_case",
        "audio.fields.channel.allowed",
        "timezone",
        "picking.percent",
    ] {
        assert!(
            keys.contains(&want),
            "{want} missing from {:?}",
            messages(&errs)
        );
    }
    assert_eq!(keys.len(), 7, "{:?}", messages(&errs));
    let dirr = errs.iter().find(|e| e.key == "audio.dirr").unwrap();
    assert!(
        dirr.message
            .starts_with("line 5: unknown key `dirr` in [audio] (known: dir, date_dirs"),
        "{}",
        dirr.message
    );
    let colour = errs.iter().find(|e| e.key == "colour").unwrap();
    assert!(
        colour.message.contains("at the top level"),
        "{}",
        colour.message
    );

    // A type error alone keeps the parser's line.
    let errs = load("[picking]\npercent = \"twenty\"\n", &[]).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.starts_with("line 3"),
        "{:?}",
        messages(&errs)
    );
}
