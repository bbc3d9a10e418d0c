//! `accounts/<name>.toml`: one customer account — credentials, jail limits and
//! ingestion settings.
//!
//! Every section but the credentials is optional; a missing section switches
//! its feature off. Each file validates on its own, so one broken account never
//! hides the others (hot reload keeps that account's previous version).

use super::{parse_duration, parse_toml, resolve, ConfigError};
use crate::jail::JailPath;
use crate::pipeline::{advisor, datedir, template::Template};
use chrono_tz::Tz;
use ipnet::IpNet;
use russh::keys::ssh_key::AuthorizedKeys;
use russh::keys::PublicKey;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    password_hash: Option<String>,
    authorized_keys: Option<Vec<String>>,
    authorized_keys_file: Option<PathBuf>,
    allowed_ips: Option<Vec<String>>,
    quota_bytes: Option<u64>,
    max_file_size: Option<u64>,
    timezone: Option<String>,
    audio: Option<RawAudio>,
    metadata_csv: Option<RawMetadataCsv>,
    contact_reasons: Option<RawReasons>,
    advisors: Option<RawAdvisors>,
    picking: Option<RawPicking>,
    crm: Option<RawCrm>,
    report: Option<RawReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    dir: Option<String>,
    date_dirs: Option<Vec<String>>,
    require_date_dir: Option<bool>,
    extensions: Option<Vec<String>>,
    filename: Option<String>,
    extensions_case: Option<String>,
    normalize: Option<String>,
    fields: Option<BTreeMap<String, RawFieldRule>>,
    on_unwanted: Option<String>,
    sweep_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldRule {
    values: Option<Vec<String>>,
    ignore_case: Option<bool>,
    digits: Option<bool>,
    max_len: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawColumns {
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadataCsv {
    dir: Option<String>,
    filename_column: Option<String>,
    delimiter: Option<String>,
    quote: Option<String>,
    skip_rows: Option<usize>,
    header: Option<bool>,
    columns: Option<RawColumns>,
    encoding: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    wait: Option<String>,
    on_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReasons {
    file: Option<PathBuf>,
    map: Option<BTreeMap<String, String>>,
    on_unknown: Option<String>,
    columns: Option<Vec<String>>,
    delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvisors {
    create: Option<bool>,
    default_team: Option<String>,
    connector: Option<String>,
    email: Option<String>,
    domain: Option<String>,
    on_invalid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPicking {
    percent: Option<u32>,
    max_per_advisor: Option<u32>,
    window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrm {
    dir: Option<String>,
    key: String,
    column: Option<String>,
    delimiter: Option<String>,
    quote: Option<String>,
    encoding: Option<String>,
    on_conflict: Option<String>,
}

/// A validated account, ready to serve.
#[derive(Debug)]
pub struct Account {
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    pub password_hash: Option<String>,
    pub authorized_keys: Vec<PublicKey>,
    pub allowed_ips: Vec<IpNet>,
    pub quota_bytes: Option<u64>,
    pub max_file_size: Option<u64>,
    pub timezone: Tz,
    pub audio: Option<AudioSettings>,
    pub metadata_csv: Option<MetadataCsvSettings>,
    pub contact_reasons: Option<ContactReasons>,
    pub advisors: Option<AdvisorSettings>,
    pub picking: Option<PickingSettings>,
    pub crm: Option<CrmSettings>,
    /// `report.delimiter`: the separator of the customer's `/rejected/`
    /// reports (`;` by default, which European spreadsheets split on).
    pub report_delimiter: u8,
    /// Files this account reads besides its own (mapping, key files): the
    /// hot-reload watcher follows them too.
    pub referenced_files: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct AudioSettings {
    pub dir: JailPath,
    pub date_dirs: Vec<String>,
    pub require_date_dir: bool,
    /// Without the dot; lower-case unless `extensions_case` is sensitive.
    pub extensions: Vec<String>,
    pub filename: Option<Template>,
    pub extensions_case: ExtensionsCase,
    pub normalize: Normalize,
    /// `[audio.fields]`: rules per metadata key, whichever source gave it.
    pub fields: BTreeMap<String, FieldRule>,
    /// What happens to a final name that can never be ingested here.
    pub on_unwanted: OnUnwanted,
    /// Temporary and partial uploads untouched this long are removed.
    pub sweep_after: Duration,
}

impl AudioSettings {
    /// Whether `name` ends in one of the accepted extensions, under the
    /// account's `extensions_case`.
    pub fn accepts(&self, name: &str) -> bool {
        let Some(ext) = name.rfind('.').filter(|&i| i > 0).map(|i| &name[i + 1..]) else {
            return false;
        };
        match self.extensions_case {
            ExtensionsCase::Insensitive => {
                self.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext))
            }
            ExtensionsCase::Sensitive => self.extensions.iter().any(|e| e == ext),
        }
    }
}

/// A final name that can never be ingested (a type not accepted in an
/// ingestion directory): stored and reported, or refused at OPEN/RENAME.
/// Accepting is the default because batch clients stop the whole night's
/// upload at the first refused file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnwanted {
    Accept,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionsCase {
    Insensitive,
    Sensitive,
}

/// The Unicode form metadata values (and file names, for matching) are
/// brought to: the same name typed on a Mac (NFD) and on Windows (NFC)
/// must be the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    Nfc,
    None,
}

/// What one metadata field may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldRule {
    /// Allowed values; a match is stored in the configured spelling.
    pub values: Option<Vec<String>>,
    pub ignore_case: bool,
    pub digits: bool,
    /// In characters.
    pub max_len: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
}

#[derive(Debug, Clone)]
pub struct CsvDialect {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataUse {
    Merge,
    Only,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    FilenameOnly,
    Reject,
}

#[derive(Debug)]
pub struct MetadataCsvSettings {
    pub dir: JailPath,
    pub filename_column: String,
    pub dialect: CsvDialect,
    pub skip_rows: usize,
    pub header: bool,
    /// Header name → metadata key (with a header row).
    pub column_map: BTreeMap<String, String>,
    /// Positional keys (without a header row).
    pub column_list: Vec<String>,
    pub use_: MetadataUse,
    pub wait: Duration,
    pub on_timeout: OnTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    Keep,
    Reject,
}

#[derive(Debug)]
pub struct ContactReasons {
    pub labels: HashMap<String, String>,
    pub on_unknown: OnUnknown,
}

#[derive(Debug)]
pub struct AdvisorSettings {
    pub create: bool,
    pub default_team: Option<String>,
    pub connector: Option<String>,
    pub email: Option<String>,
    pub domain: String,
    pub on_invalid: OnInvalid,
}

/// What happens to a call whose advisor e-mail cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Ingested with the advisor's names only, flagged.
    Unassigned,
    Reject,
}

#[derive(Debug, Clone)]
pub struct PickingSettings {
    pub percent: Option<u32>,
    pub max_per_advisor: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    KeepCall,
    KeepCrm,
}

#[derive(Debug)]
pub struct CrmSettings {
    pub dir: JailPath,
    /// The call's metadata key joined on.
    pub key: String,
    /// The CRM file's column holding that value (defaults to `key`).
    pub column: String,
    pub dialect: CsvDialect,
    pub on_conflict: OnConflict,
}

impl Account {
    /// The jail directories this account's ingestion uses; they are created
    /// at first login.
    pub fn ingest_dirs(&self) -> Vec<&JailPath> {
        let mut dirs = Vec::new();
        if let Some(a) = &self.audio {
            dirs.push(&a.dir);
        }
        if let Some(m) = &self.metadata_csv {
            dirs.push(&m.dir);
        }
        if let Some(c) = &self.crm {
            dirs.push(&c.dir);
        }
        dirs
    }
}

/// Is `name` a valid account name (`[a-z0-9][a-z0-9_-]{0,63}`)?
pub fn valid_account_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// What loading one directory of account files gave.
pub struct LoadedAccounts {
    pub accounts: BTreeMap<String, Arc<Account>>,
    pub errors: Vec<ConfigError>,
    /// Key files that will be generated on first `serve` (not errors).
    pub pending_keys: Vec<PathBuf>,
}

/// Loads every `*.toml` in `dir`. With `generate_keys`, a missing
/// `authorized_keys_file` named `<account>_ed25519.pub` is generated as a new
/// key pair (this is how the shipped demo account gets its client key).
pub fn load_accounts(dir: &Path, generate_keys: bool) -> LoadedAccounts {
    let mut out = LoadedAccounts {
        accounts: BTreeMap::new(),
        errors: Vec::new(),
        pending_keys: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(ConfigError::new(
                dir,
                "",
                format!("cannot read the accounts directory ({e}); set server.accounts_dir"),
            ));
            return out;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        match load_account(&file, dir, generate_keys) {
            Ok((acc, pending)) => {
                out.pending_keys.extend(pending);
                out.accounts.insert(acc.name.clone(), Arc::new(acc));
            }
            Err(mut errs) => out.errors.append(&mut errs),
        }
    }
    out
}

/// Loads and validates one account file.
pub fn load_account(
    file: &Path,
    accounts_dir: &Path,
    generate_keys: bool,
) -> Result<(Account, Option<PathBuf>), Vec<ConfigError>> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !valid_account_name(&name) {
        return Err(vec![ConfigError::new(
            file,
            "",
            format!("'{name}' is not a valid account name: rename the file to [a-z0-9][a-z0-9_-]{{0,63}}.toml"),
        )]);
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![ConfigError::new(file, "", format!("cannot read ({e})"))])?;
    let (raw, unknown) = parse_account(file, &text)?;
    let mut v = Validator {
        file,
        base: accounts_dir,
        errors: unknown,
        referenced: Vec::new(),
    };
    let acc = v.account(name, raw, generate_keys);
    if v.errors.is_empty() {
        let (mut acc, pending) = acc;
        acc.referenced_files = v.referenced;
        Ok((acc, pending))
    } else {
        Err(v.errors)
    }
}

/// Parses an account file, reporting every unknown key at once (each
/// named by its dotted path and line) rather than stopping at the first:
/// the unknown keys are set aside and the rest still goes through every
/// semantic check, so one run of `check-config` lists everything to fix.
fn parse_account(
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

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
    errors: Vec<ConfigError>,
    referenced: Vec<PathBuf>,
}

impl Validator<'_> {
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(self.file, key, msg));
    }

    fn account(
        &mut self,
        name: String,
        raw: RawAccount,
        generate_keys: bool,
    ) -> (Account, Option<PathBuf>) {
        // A hash given but refused has its own error already.
        let hash_given = raw.password_hash.is_some();
        let password_hash = raw.password_hash.and_then(|h| self.password_hash(h));
        let mut keys = Vec::new();
        for (i, line) in raw.authorized_keys.iter().flatten().enumerate() {
            keys.extend(self.authorized_keys(&format!("authorized_keys[{i}]"), line));
        }
        let mut pending = None;
        if let Some(f) = &raw.authorized_keys_file {
            let (k, p) = self.authorized_keys_file(&name, f, generate_keys);
            keys.extend(k);
            pending = p;
        }
        if !hash_given && keys.is_empty() && pending.is_none() {
            self.err(
                "password_hash",
                "the account has no credentials: set password_hash (from `depot hash-password`) or authorized_keys",
            );
        }
        let allowed_ips = self.allowed_ips(raw.allowed_ips.unwrap_or_default());
        let timezone = self.timezone(raw.timezone.as_deref().unwrap_or("UTC"));
        let acc = Account {
            name,
            source: self.file.to_path_buf(),
            password_hash,
            authorized_keys: keys,
            allowed_ips,
            quota_bytes: raw.quota_bytes,
            // Writes and SETSTAT sizes past it are refused; an account
            // that needs larger files says so.
            max_file_size: Some(raw.max_file_size.unwrap_or(DEFAULT_MAX_FILE_SIZE)),
            timezone,
            audio: raw.audio.map(|a| self.audio(a)),
            metadata_csv: raw.metadata_csv.map(|m| self.metadata_csv(m)),
            contact_reasons: raw.contact_reasons.map(|r| self.reasons(r)),
            advisors: raw.advisors.map(|a| self.advisors(a)),
            picking: raw.picking.map(|p| self.picking(p)),
            crm: raw.crm.map(|c| self.crm(c)),
            report_delimiter: self.byte(
                "report.delimiter",
                raw.report.and_then(|r| r.delimiter),
                b';',
            ),
            referenced_files: Vec::new(),
        };
        (acc, pending)
    }

    fn password_hash(&mut self, h: String) -> Option<String> {
        match argon2::PasswordHash::new(&h) {
            Ok(p) if p.algorithm.as_str() == "argon2id" => match argon2_cost_allowed(&p) {
                Ok(()) => Some(h),
                Err(why) => {
                    self.err("password_hash", why);
                    None
                }
            },
            Ok(p) => {
                self.err(
                    "password_hash",
                    format!(
                        "algorithm '{}' is not argon2id; make one with `depot hash-password`",
                        p.algorithm
                    ),
                );
                None
            }
            Err(_) => {
                self.err(
                    "password_hash",
                    "not an argon2id PHC string ($argon2id$v=19$...); make one with `depot hash-password`",
                );
                None
            }
        }
    }

    fn authorized_keys(&mut self, key: &str, text: &str) -> Vec<PublicKey> {
        let mut out = Vec::new();
        for entry in AuthorizedKeys::new(text) {
            match entry {
                Ok(e) => out.push(e.public_key().clone()),
                Err(e) => self.err(key, format!("not an OpenSSH public key line ({e})")),
            }
        }
        out
    }

    fn authorized_keys_file(
        &mut self,
        account: &str,
        f: &Path,
        generate: bool,
    ) -> (Vec<PublicKey>, Option<PathBuf>) {
        let path = resolve(self.base, f);
        self.referenced.push(path.clone());
        let generable = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == format!("{account}_ed25519.pub"));
        if !path.exists() && generable {
            if !generate {
                return (Vec::new(), Some(path));
            }
            let private = path.with_extension("");
            if let Err(e) = crate::keys::generate_ed25519(&private, &format!("{account}@depot")) {
                self.err(
                    "authorized_keys_file",
                    format!("cannot generate {}: {e:#}", path.display()),
                );
                return (Vec::new(), None);
            }
            tracing::info!(account, key = %private.display(), "generated client key pair for account");
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => (self.authorized_keys("authorized_keys_file", &text), None),
            Err(e) => {
                self.err(
                    "authorized_keys_file",
                    format!("cannot read {} ({e})", path.display()),
                );
                (Vec::new(), None)
            }
        }
    }

    fn allowed_ips(&mut self, list: Vec<String>) -> Vec<IpNet> {
        let mut out = Vec::new();
        for s in list {
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.push(n),
                Err(_) => self.err(
                    "allowed_ips",
                    format!("'{s}' is not an IP address or CIDR network"),
                ),
            }
        }
        out
    }

    fn timezone(&mut self, tz: &str) -> Tz {
        tz.parse::<Tz>().unwrap_or_else(|_| {
            self.err(
                "timezone",
                format!("'{tz}' is not an IANA time zone such as \"Europe/Paris\""),
            );
            Tz::UTC
        })
    }

    fn dir(&mut self, key: &str, v: Option<String>, default: &str) -> JailPath {
        let s = v.unwrap_or_else(|| default.to_string());
        match JailPath::parse(&s) {
            Ok(p) if !p.is_root() => p,
            _ => {
                self.err(
                    key,
                    format!("'{s}' is not a directory path inside the jail such as \"{default}\""),
                );
                JailPath::root()
            }
        }
    }

    fn audio(&mut self, a: RawAudio) -> AudioSettings {
        let dir = self.dir("audio.dir", a.dir, "/audio");
        let date_dirs = a
            .date_dirs
            .unwrap_or_else(|| vec!["%Y%m%d".into(), "%Y_%m_%d".into()]);
        for f in &date_dirs {
            if let Err(e) = datedir::validate_date_format(f) {
                self.err("audio.date_dirs", format!("'{f}': {e}"));
            }
        }
        let extensions_case = self.choice(
            "audio.extensions_case",
            a.extensions_case,
            &[
                ("insensitive", ExtensionsCase::Insensitive),
                ("sensitive", ExtensionsCase::Sensitive),
                ("exact", ExtensionsCase::Sensitive),
            ],
        );
        let normalize = self.choice(
            "audio.normalize",
            a.normalize,
            &[("nfc", Normalize::Nfc), ("none", Normalize::None)],
        );
        let on_unwanted = self.choice(
            "audio.on_unwanted",
            a.on_unwanted,
            &[
                ("accept", OnUnwanted::Accept),
                ("refuse", OnUnwanted::Refuse),
            ],
        );
        let sweep_after = parse_duration(
            self.file,
            "audio.sweep_after",
            a.sweep_after.as_deref().unwrap_or("7d"),
            &mut self.errors,
        )
        .unwrap_or(Duration::from_secs(7 * 86400));
        let extensions: Vec<String> = a
            .extensions
            .unwrap_or_else(|| vec!["mp3".into(), "wav".into()])
            .into_iter()
            .map(|e| {
                let e = e.trim_start_matches('.');
                match extensions_case {
                    ExtensionsCase::Insensitive => e.to_ascii_lowercase(),
                    ExtensionsCase::Sensitive => e.to_string(),
                }
            })
            .collect();
        let mut fields = BTreeMap::new();
        for (name, r) in a.fields.unwrap_or_default() {
            let key = format!("audio.fields.{name}");
            if r.values.as_ref().is_some_and(|v| v.is_empty()) {
                self.err(&key, "values must list at least one allowed value");
            }
            if r.max_len == Some(0) {
                self.err(&key, "max_len must be at least 1");
            }
            let digits = r.digits.unwrap_or(false);
            if digits && r.values.is_some() {
                self.err(&key, "set either values or digits, not both");
            }
            fields.insert(
                name,
                FieldRule {
                    values: r.values,
                    ignore_case: r.ignore_case.unwrap_or(false),
                    digits,
                    max_len: r.max_len,
                },
            );
        }
        if extensions.iter().any(|e| e.is_empty() || e.contains('/')) {
            self.err("audio.extensions", "extensions are names like \"mp3\"");
        }
        let filename = a.filename.and_then(|t| match Template::compile(&t) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err("audio.filename", e.to_string());
                None
            }
        });
        AudioSettings {
            dir,
            date_dirs,
            require_date_dir: a.require_date_dir.unwrap_or(true),
            extensions,
            filename,
            extensions_case,
            normalize,
            fields,
            on_unwanted,
            sweep_after,
        }
    }

    fn byte(&mut self, key: &str, v: Option<String>, default: u8) -> u8 {
        match v {
            None => default,
            Some(s) if s == "\\t" => b'\t',
            Some(s) if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
            Some(s) => {
                self.err(key, format!("'{s}' must be exactly one ASCII character"));
                default
            }
        }
    }

    fn encoding(&mut self, key: &str, v: Option<String>) -> Encoding {
        match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("utf-8") | Some("utf8") => Encoding::Utf8,
            Some("windows-1252") | Some("cp1252") => Encoding::Windows1252,
            Some(other) => {
                self.err(
                    key,
                    format!("'{other}' is not one of \"utf-8\", \"windows-1252\""),
                );
                Encoding::Utf8
            }
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, v: Option<String>, options: &[(&str, T)]) -> T {
        let Some(s) = v else { return options[0].1 };
        if let Some((_, t)) = options.iter().find(|(n, _)| *n == s) {
            return *t;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(key, format!("'{s}' is not one of {}", names.join(", ")));
        options[0].1
    }

    fn metadata_csv(&mut self, m: RawMetadataCsv) -> MetadataCsvSettings {
        let dir = self.dir("metadata_csv.dir", m.dir, "/audio");
        let dialect = CsvDialect {
            delimiter: self.byte("metadata_csv.delimiter", m.delimiter, b','),
            quote: self.byte("metadata_csv.quote", m.quote, b'"'),
            encoding: self.encoding("metadata_csv.encoding", m.encoding),
        };
        let header = m.header.unwrap_or(true);
        let skip_rows = m.skip_rows.unwrap_or(1);
        if header && skip_rows == 0 {
            self.err(
                "metadata_csv.skip_rows",
                "with header = true at least 1 row (the header) is skipped",
            );
        }
        let (column_map, column_list) = match m.columns {
            None => (BTreeMap::new(), Vec::new()),
            Some(RawColumns::Map(map)) => (map, Vec::new()),
            Some(RawColumns::List(list)) => (BTreeMap::new(), list),
        };
        if !header && column_list.is_empty() && !column_map.is_empty() {
            self.err(
                "metadata_csv.columns",
                "without a header row, columns must be a positional list",
            );
        }
        let use_ = self.choice(
            "metadata_csv.use",
            m.use_,
            &[("merge", MetadataUse::Merge), ("only", MetadataUse::Only)],
        );
        let wait = parse_duration(
            self.file,
            "metadata_csv.wait",
            m.wait.as_deref().unwrap_or("24h"),
            &mut self.errors,
        )
        .unwrap_or(Duration::from_secs(86400));
        let on_timeout = self.choice(
            "metadata_csv.on_timeout",
            m.on_timeout,
            &[
                ("filename_only", OnTimeout::FilenameOnly),
                ("reject", OnTimeout::Reject),
            ],
        );
        MetadataCsvSettings {
            dir,
            filename_column: m.filename_column.unwrap_or_else(|| "filename".into()),
            dialect,
            skip_rows,
            header,
            column_map,
            column_list,
            use_,
            wait,
            on_timeout,
        }
    }

    fn reasons(&mut self, r: RawReasons) -> ContactReasons {
        let mut labels = HashMap::new();
        let columns = match r.columns.as_deref() {
            None => Some(["id".to_string(), "label".to_string()]),
            Some([id, label]) if !id.trim().is_empty() && !label.trim().is_empty() => {
                Some([id.trim().to_string(), label.trim().to_string()])
            }
            Some(_) => {
                self.err(
                    "contact_reasons.columns",
                    "must name two header columns, the id's and the label's, e.g. [\"reason_id\", \"reason_label\"]",
                );
                None
            }
        };
        let delimiter = match r.delimiter {
            None => None,
            Some(d) => {
                let b = self.byte("contact_reasons.delimiter", Some(d), b',');
                Some(b)
            }
        };
        if let (Some(f), Some(columns)) = (&r.file, &columns) {
            let path = resolve(self.base, f);
            self.referenced.push(path.clone());
            match read_reason_file(&path, columns, delimiter) {
                Ok(map) => labels.extend(map),
                Err(e) => self.err("contact_reasons.file", format!("{}: {e}", path.display())),
            }
        }
        if let Some(map) = r.map {
            labels.extend(map);
        }
        if r.file.is_none() && labels.is_empty() {
            self.err("contact_reasons", "set `file` (a CSV of id,label) or `map`");
        }
        let on_unknown = self.choice(
            "contact_reasons.on_unknown",
            r.on_unknown,
            &[("keep", OnUnknown::Keep), ("reject", OnUnknown::Reject)],
        );
        ContactReasons { labels, on_unknown }
    }

    fn advisors(&mut self, a: RawAdvisors) -> AdvisorSettings {
        let create = a.create.unwrap_or(false);
        if create && a.email.is_none() {
            self.err(
                "advisors.email",
                "is mandatory when create = true, e.g. \"%firstname%.%lastname%@%domain%.com\"",
            );
        }
        if let Some(f) = &a.email {
            let domain = a.domain.as_deref().unwrap_or("");
            if let Err(e) = advisor::validate_settings(f, domain) {
                self.err("advisors.email", e);
            }
        }
        let on_invalid = self.choice(
            "advisors.on_invalid",
            a.on_invalid,
            &[
                ("unassigned", OnInvalid::Unassigned),
                ("reject", OnInvalid::Reject),
            ],
        );
        AdvisorSettings {
            create,
            default_team: a.default_team,
            connector: a.connector,
            email: a.email,
            domain: a.domain.unwrap_or_default(),
            on_invalid,
        }
    }

    fn picking(&mut self, p: RawPicking) -> PickingSettings {
        if p.percent.is_some_and(|v| v > 100) {
            self.err("picking.percent", "must be between 0 and 100");
        }
        if let Some(w) = p.window {
            if w != "day" {
                self.err(
                    "picking.window",
                    format!("'{w}' is not supported; use \"day\""),
                );
            }
        }
        PickingSettings {
            percent: p.percent,
            max_per_advisor: p.max_per_advisor,
        }
    }

    fn crm(&mut self, c: RawCrm) -> CrmSettings {
        let dir = self.dir("crm.dir", c.dir, "/crm");
        if c.key.trim().is_empty() {
            self.err(
                "crm.key",
                "must name the reconciliation column, e.g. \"agent_id\"",
            );
        }
        let dialect = CsvDialect {
            delimiter: self.byte("crm.delimiter", c.delimiter, b','),
            quote: self.byte("crm.quote", c.quote, b'"'),
            encoding: self.encoding("crm.encoding", c.encoding),
        };
        let on_conflict = self.choice(
            "crm.on_conflict",
            c.on_conflict,
            &[
                ("keep_call", OnConflict::KeepCall),
                ("keep_crm", OnConflict::KeepCrm),
            ],
        );
        let column = match c.column {
            None => c.key.clone(),
            Some(col) if col.trim().is_empty() => {
                self.err(
                    "crm.column",
                    "must name the CRM file's column holding the key, e.g. \"agent_id\" (or leave it out to use crm.key)",
                );
                c.key.clone()
            }
            Some(col) => col,
        };
        CrmSettings {
            dir,
            column,
            key: c.key,
            dialect,
            on_conflict,
        }
    }
}

/// Delimiters tried, in order, when `contact_reasons.delimiter` is not set.
const REASON_DELIMITERS: [u8; 4] = [b',', b';', b'|', b'\t'];

/// Reads a contact-reason mapping CSV by its header: the first non-blank
/// row names the id and label columns (`columns`, compared without case or
/// surrounding spaces), in any position, with other columns ignored. The
/// delimiter is the one given, or the first of , ; | TAB that splits the
/// header into both names. UTF-8 with or without BOM.
fn read_reason_file(
    path: &Path,
    columns: &[String; 2],
    delimiter: Option<u8>,
) -> Result<HashMap<String, String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read ({e})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
    parse_reasons(text.trim_start_matches('\u{feff}'), columns, delimiter)
}

fn parse_reasons(
    text: &str,
    columns: &[String; 2],
    delimiter: Option<u8>,
) -> Result<HashMap<String, String>, String> {
    let [id_name, label_name] = columns;
    // Blank lines above the header are skipped; line numbers still count them.
    let skipped = text.lines().take_while(|l| l.trim().is_empty()).count();
    let header = text.lines().nth(skipped).unwrap_or("");
    let position = |d: u8, name: &str| {
        split_header(header, d)
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let tried: Vec<u8> = match delimiter {
        Some(d) => vec![d],
        None => REASON_DELIMITERS.to_vec(),
    };
    let found = tried
        .iter()
        .find_map(|&d| Some((d, position(d, id_name)?, position(d, label_name)?)));
    let Some((delimiter, id_col, label_col)) = found else {
        let shown: String = header.chars().take(80).collect();
        let how = match delimiter {
            Some(d) => format!("split by '{}'", shown_delimiter(d)),
            None => "split by any of , ; | TAB".to_string(),
        };
        return Err(format!(
            "the header row '{shown}' ({how}) does not name both columns '{id_name}' and '{label_name}'; \
             set contact_reasons.columns to the header's names (e.g. [\"reason_id\", \"reason_label\"]) \
             and contact_reasons.delimiter if needed"
        ));
    };
    let body = text.split_inclusive('\n').skip(skipped).collect::<String>();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut map = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("cannot be read as CSV ({e})"))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0) + skipped as u64;
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(id), Some(label)) = (rec.get(id_col), rec.get(label_col)) else {
            return Err(format!(
                "line {line}: expected the '{id_name}' and '{label_name}' columns separated by '{}'",
                shown_delimiter(delimiter)
            ));
        };
        if id.trim().is_empty() {
            return Err(format!("line {line}: the '{id_name}' column is empty"));
        }
        map.insert(id.trim().to_string(), label.trim().to_string());
    }
    Ok(map)
}

/// `max_file_size` when an account file leaves it out: 16 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 30;

/// The costliest argon2 parameters a `password_hash` may ask for: each
/// guess costs the server this much memory and time, so an account file
/// must not be able to make one guess take gigabytes or seconds.
pub const ARGON2_MAX_M_KIB: u32 = 256 * 1024;
pub const ARGON2_MAX_T: u32 = 10;
pub const ARGON2_MAX_P: u32 = 8;

/// Whether a parsed argon2 hash stays within the bounds above; the error
/// says which parameter is over and what to do.
pub fn argon2_cost_allowed(h: &argon2::PasswordHash<'_>) -> Result<(), String> {
    let p = argon2::Params::try_from(h).map_err(|e| {
        format!("argon2 parameters unreadable ({e}); make one with `depot hash-password`")
    })?;
    for (name, value, max) in [
        ("m (memory, KiB)", p.m_cost(), ARGON2_MAX_M_KIB),
        ("t (iterations)", p.t_cost(), ARGON2_MAX_T),
        ("p (lanes)", p.p_cost(), ARGON2_MAX_P),
    ] {
        if value > max {
            return Err(format!(
                "argon2 parameter {name} = {value} is over the maximum {max}; make a new hash with `depot hash-password`"
            ));
        }
    }
    Ok(())
}

fn split_header(header: &str, delimiter: u8) -> Vec<String> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(header.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .unwrap_or_default()
}

fn shown_delimiter(d: u8) -> String {
    match d {
        b'\t' => "TAB".to_string(),
        d => (d as char).to_string(),
    }
}

#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod tests;
