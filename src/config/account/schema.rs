//! The account file as written: raw TOML structs with unknown keys
//! refused, and the parse that reports every unknown key at once.

use super::super::{parse_toml, ConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) password_hash: Option<String>,
    pub(super) authorized_keys: Option<Vec<String>>,
    pub(super) authorized_keys_file: Option<PathBuf>,
    pub(super) allowed_ips: Option<Vec<String>>,
    pub(super) quota_bytes: Option<u64>,
    pub(super) max_file_size: Option<u64>,
    pub(super) timezone: Option<String>,
    pub(super) audio: Option<RawAudio>,
    pub(super) metadata_csv: Option<RawMetadataCsv>,
    pub(super) contact_reasons: Option<RawReasons>,
    pub(super) advisors: Option<RawAdvisors>,
    pub(super) picking: Option<RawPicking>,
    pub(super) crm: Option<RawCrm>,
    pub(super) report: Option<RawReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub(super) delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudio {
    pub(super) dir: Option<String>,
    pub(super) date_dirs: Option<Vec<String>>,
    pub(super) require_date_dir: Option<bool>,
    pub(super) extensions: Option<Vec<String>>,
    pub(super) filename: Option<String>,
    pub(super) extensions_case: Option<String>,
    pub(super) normalize: Option<String>,
    pub(super) fields: Option<BTreeMap<String, RawFieldRule>>,
    pub(super) on_unwanted: Option<String>,
    pub(super) sweep_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFieldRule {
    pub(super) values: Option<Vec<String>>,
    pub(super) ignore_case: Option<bool>,
    pub(super) digits: Option<bool>,
    pub(super) max_len: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawColumns {
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetadataCsv {
    pub(super) dir: Option<String>,
    pub(super) filename_column: Option<String>,
    pub(super) delimiter: Option<String>,
    pub(super) quote: Option<String>,
    pub(super) skip_rows: Option<usize>,
    pub(super) header: Option<bool>,
    pub(super) columns: Option<RawColumns>,
    pub(super) encoding: Option<String>,
    #[serde(rename = "use")]
    pub(super) use_: Option<String>,
    pub(super) wait: Option<String>,
    pub(super) on_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReasons {
    pub(super) file: Option<PathBuf>,
    pub(super) map: Option<BTreeMap<String, String>>,
    pub(super) on_unknown: Option<String>,
    pub(super) columns: Option<Vec<String>>,
    pub(super) delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdvisors {
    pub(super) create: Option<bool>,
    pub(super) default_team: Option<String>,
    pub(super) connector: Option<String>,
    pub(super) email: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) on_invalid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPicking {
    pub(super) percent: Option<u32>,
    pub(super) max_per_advisor: Option<u32>,
    pub(super) window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrm {
    pub(super) dir: Option<String>,
    pub(super) key: String,
    pub(super) column: Option<String>,
    pub(super) delimiter: Option<String>,
    pub(super) quote: Option<String>,
    pub(super) encoding: Option<String>,
    pub(super) on_conflict: Option<String>,
}

/// Parses an account file, reporting every unknown key at once (each
/// named by its dotted path and line) rather than stopping at the first:
/// the unknown keys are set aside and the rest still goes through every
/// semantic check, so one run of `check-config` lists everything to fix.
pub(super) fn parse_account(
    file: &Path,
    text: &str,
) -> Result<(RawAccount, Vec<ConfigError>), Vec<ConfigError>> {
    let mut table: toml::Table = parse_toml(file, text).map_err(|e| vec![e])?;
    let mut unknown = Vec::new();
    strip_unknown(&mut table, &mut Vec::new(), &mut unknown);
    let errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|(path, known)| {
            let key = path.join(".");
            let name = path.last().map(String::as_str).unwrap_or_default();
            let section = match path.len() {
                0 | 1 => "at the top level".to_string(),
                n => format!("in [{}]", path[..n - 1].join(".")),
            };
            let line = line_of(text, name)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let msg = format!(
                "{line}unknown key `{name}` {section} (known: {})",
                known.join(", ")
            );
            ConfigError::new(file, &key, msg)
        })
        .collect();
    match toml::Value::Table(table).try_into::<RawAccount>() {
        Ok(raw) => Ok((raw, errors)),
        // Without unknown keys, the parser's own error carries the line.
        Err(_) if errors.is_empty() => parse_toml::<RawAccount>(file, text)
            .map(|raw| (raw, Vec::new()))
            .map_err(|e| vec![e]),
        Err(e) => {
            let mut errors = errors;
            errors.push(ConfigError::new(file, "", e.message().to_string()));
            Err(errors)
        }
    }
}

/// The field names a table at `path` accepts, read from the deserializer's
/// own refusal of a key no field can have; `None` where the table is a
/// free-form map (column maps, per-field rules by name).
fn known_keys(path: &[String]) -> Option<Vec<String>> {
    const PROBE: &str = "\u{1}";
    let mut probe = toml::Table::new();
    probe.insert(PROBE.to_string(), toml::Value::Integer(0));
    for part in path.iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert(part.clone(), toml::Value::Table(probe));
        probe = outer;
    }
    let err = toml::Value::Table(probe).try_into::<RawAccount>().err()?;
    let msg = err.message().to_string();
    let rest = msg.strip_prefix(&format!("unknown field `{PROBE}`"))?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

fn strip_unknown(
    table: &mut toml::Table,
    path: &mut Vec<String>,
    unknown: &mut Vec<(Vec<String>, Vec<String>)>,
) {
    if let Some(known) = known_keys(path) {
        let bad: Vec<String> = table
            .keys()
            .filter(|k| !known.contains(k))
            .cloned()
            .collect();
        for k in bad {
            table.remove(&k);
            let mut p = path.clone();
            p.push(k);
            unknown.push((p, known.clone()));
        }
    }
    for (k, v) in table.iter_mut() {
        if let toml::Value::Table(t) = v {
            path.push(k.clone());
            strip_unknown(t, path, unknown);
            path.pop();
        }
    }
}

/// The first line that sets `key` (`key =`, `key.x =` or `[..key]`).
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('[').trim_start();
            l.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with('.') || rest.starts_with(']')
            })
        })
        .map(|i| i + 1)
}
