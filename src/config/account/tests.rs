use super::*;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2m1EV0Ywb7zzJkcn+GXbXqXwYjAhOgG4bmAd3aTmXAo";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdX6T6yYPkDoX0r4IfQzWnLkTmqqA1N0C+J0fv6fpr ops@acme";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap();
    }
    d
}

#[test]
fn full_example_validates() {
    let acme = format!(
        r#"
password_hash = "{HASH}"
authorized_keys = ["{KEY}"]
allowed_ips = ["203.0.113.0/24", "127.0.0.1"]
quota_bytes = 50_000_000_000
max_file_size = 2_000_000_000
timezone = "Europe/Paris"
[audio]
dir = "/audio"
date_dirs = ["%Y%m%d", "%Y_%m_%d"]
require_date_dir = true
extensions = ["MP3", "wav"]
filename = "{{datetime:%Y_%m_%d_%H_%M_%S}}_{{advisor_firstname}}_{{advisor_lastname}}_{{channel}}_{{advisor_extension}}_{{called_line}}_{{contact_reason}}"
[metadata_csv]
dir = "/audio"
filename_column = "filename"
delimiter = ";"
quote = "\""
skip_rows = 1
header = true
columns = {{ "Filename" = "filename", "Reason" = "contact_reason" }}
encoding = "windows-1252"
use = "merge"
wait = "24h"
on_timeout = "filename_only"
[contact_reasons]
file = "acme-reasons.csv"
on_unknown = "keep"
[advisors]
create = true
default_team = "Support"
connector = "Recorder"
email = "%firstname%.%lastname%@%domain%.com"
domain = "acme"
[picking]
percent = 20
max_per_advisor = 5
window = "day"
[crm]
dir = "/crm"
key = "agent_id"
delimiter = ","
quote = "\""
encoding = "utf-8"
on_conflict = "keep_call"
"#
    );
    let d = dir_with(&[
        ("acme.toml", &acme),
        (
            "acme-reasons.csv",
            "\u{feff}id,label\n163,Résiliation\n164,Facturation\n",
        ),
    ]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let a = &loaded.accounts["acme"];
    assert_eq!(a.authorized_keys.len(), 1);
    assert_eq!(a.timezone, chrono_tz::Europe::Paris);
    assert_eq!(a.audio.as_ref().unwrap().extensions, vec!["mp3", "wav"]);
    assert_eq!(
        a.contact_reasons.as_ref().unwrap().labels["163"],
        "Résiliation"
    );
    assert_eq!(a.metadata_csv.as_ref().unwrap().dialect.delimiter, b';');
    assert_eq!(a.crm.as_ref().unwrap().dir.as_str(), "/crm");
    assert_eq!(a.allowed_ips.len(), 2);
}

#[test]
fn unknown_key_is_named() {
    let d = dir_with(&[(
        "acme.toml",
        &format!("password_hash = \"{HASH}\"\n[audio]\ndirr = \"/a\"\n"),
    )]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.accounts.is_empty());
    let msg = loaded.errors[0].to_string();
    assert!(
        msg.contains("acme.toml") && msg.contains("dirr") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn all_errors_of_a_file_are_reported_and_other_accounts_load() {
    let bad = "password_hash = \"plain\"\ntimezone = \"Mars/Base\"\n[picking]\npercent = 120\n";
    let good = format!("authorized_keys = [\"{KEY}\"]\n");
    let d = dir_with(&[
        ("bad.toml", bad),
        ("good.toml", &good),
        ("Bad Name.toml", &good),
    ]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.accounts.contains_key("good"));
    let keys: Vec<&str> = loaded.errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"password_hash"), "{keys:?}");
    assert!(keys.contains(&"timezone"), "{keys:?}");
    assert!(keys.contains(&"picking.percent"), "{keys:?}");
    assert!(loaded
        .errors
        .iter()
        .any(|e| e.message.contains("not a valid account name")));
}

#[test]
fn account_without_credentials_is_refused() {
    let d = dir_with(&[("acme.toml", "timezone = \"UTC\"\n")]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.errors[0].message.contains("no credentials"));
}

#[test]
fn files_are_capped_at_16_gib_unless_the_account_says_otherwise() {
    let hash = crate::sftp::auth::hash_password("pw").unwrap();
    let d = dir_with(&[
        ("plain.toml", &format!("password_hash = {hash:?}\n")),
        (
            "big.toml",
            &format!("password_hash = {hash:?}\nmax_file_size = 40_000_000_000\n"),
        ),
    ]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.accounts["plain"].max_file_size, Some(16 << 30));
    assert_eq!(loaded.accounts["big"].max_file_size, Some(40_000_000_000));
}

#[test]
fn demo_key_is_pending_then_generated() {
    let d = dir_with(&[(
        "demo.toml",
        "authorized_keys_file = \"keys/demo_ed25519.pub\"\n",
    )]);
    let checked = load_accounts(d.path(), false);
    assert!(checked.errors.is_empty(), "{:?}", checked.errors);
    assert_eq!(checked.pending_keys.len(), 1);
    let served = load_accounts(d.path(), true);
    assert!(served.errors.is_empty(), "{:?}", served.errors);
    assert_eq!(served.accounts["demo"].authorized_keys.len(), 1);
    assert!(d.path().join("keys/demo_ed25519").exists());
}

#[test]
fn account_names() {
    for ok in ["demo", "a", "acme-fr_2", "0x"] {
        assert!(valid_account_name(ok), "{ok}");
    }
    for bad in ["", "Acme", "-a", "_a", "a.b", &"a".repeat(65)] {
        assert!(!valid_account_name(bad), "{bad}");
    }
}

#[test]
fn costly_argon2_parameters_are_a_config_error() {
    let salt_and_hash = "c2FsdHNhbHRzYWx0$2m1EV0Ywb7zzJkcn+GXbXqXwYjAhOgG4bmAd3aTmXAo";
    for (params, over) in [
        ("m=4194304,t=2,p=1", "m (memory, KiB) = 4194304"),
        ("m=19456,t=3000,p=1", "t (iterations) = 3000"),
        ("m=19456,t=2,p=16", "p (lanes) = 16"),
    ] {
        let toml = format!("password_hash = \"$argon2id$v=19${params}${salt_and_hash}\"\n");
        let d = dir_with(&[("acme.toml", &toml)]);
        let loaded = load_accounts(d.path(), false);
        assert!(loaded.accounts.is_empty(), "{params} accepted");
        let e = &loaded.errors[0];
        assert_eq!(e.key, "password_hash");
        assert!(e.file.ends_with("acme.toml"), "{e}");
        assert!(e.message.contains(over), "{e}");
    }
    // The bounds themselves are allowed.
    let toml = format!("password_hash = \"$argon2id$v=19$m=262144,t=10,p=8${salt_and_hash}\"\n");
    let d = dir_with(&[("acme.toml", &toml)]);
    let loaded = load_accounts(d.path(), false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
}

#[test]
fn an_invalid_account_gets_no_key_pair() {
    let d = dir_with(&[(
        "demo.toml",
        "authorized_keys_file = \"keys/demo_ed25519.pub\"\ntimezone = \"Mars/Olympus\"\n",
    )]);
    let served = load_accounts(d.path(), true);
    assert_eq!(served.errors.len(), 1, "{:?}", served.errors);
    assert_eq!(served.errors[0].key, "timezone");
    assert!(!d.path().join("keys/demo_ed25519").exists());
    assert!(!d.path().join("keys/demo_ed25519.pub").exists());
}

#[test]
fn checking_never_writes_a_key_pair() {
    let d = dir_with(&[(
        "demo.toml",
        "authorized_keys_file = \"keys/demo_ed25519.pub\"\n",
    )]);
    let file = d.path().join("demo.toml");
    let (acc, pending) = load_account(&file, d.path(), false).unwrap();
    assert!(acc.authorized_keys.is_empty());
    assert_eq!(pending, Some(d.path().join("keys/demo_ed25519.pub")));
    assert!(!d.path().join("keys").exists());
    let (acc, pending) = load_account(&file, d.path(), true).unwrap();
    assert_eq!(acc.authorized_keys.len(), 1);
    assert_eq!(pending, None);
    let written = std::fs::read_to_string(d.path().join("keys/demo_ed25519.pub")).unwrap();
    let on_disk = russh::keys::PublicKey::from_openssh(written.trim()).unwrap();
    assert_eq!(on_disk.key_data(), acc.authorized_keys[0].key_data());
}
