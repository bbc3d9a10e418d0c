//! Raw account → validated [`Account`]: every section checked, every
//! problem collected (each naming its key) so one run lists them all.
//! Validation reads the files an account names but writes nothing.

use super::super::{parse_duration, resolve, ConfigError};
use super::model::*;
use super::reasons::read_reason_file;
use super::schema::*;
use crate::jail::JailPath;
use crate::pipeline::{advisor, datedir, template::Template};
use chrono_tz::Tz;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
    pub(super) base: &'a Path,
    pub(super) errors: Vec<ConfigError>,
    /// Files read besides the account's own, for the hot-reload watcher.
    pub(super) referenced: Vec<PathBuf>,
}

impl Validator<'_> {
    pub(super) fn err(&mut self, key: &str, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(self.file, key, msg));
    }

    /// The account, and the key file still to generate, if any.
    pub(super) fn account(&mut self, name: String, raw: RawAccount) -> (Account, Option<PathBuf>) {
        // A hash given but refused has its own error already.
        let hash_given = raw.password_hash.is_some();
        let password_hash = raw.password_hash.and_then(|h| self.password_hash(h));
        let mut keys = Vec::new();
        for (i, line) in raw.authorized_keys.iter().flatten().enumerate() {
            keys.extend(self.authorized_keys(&format!("authorized_keys[{i}]"), line));
        }
        let mut pending = None;
        if let Some(f) = &raw.authorized_keys_file {
            let (k, p) = self.authorized_keys_file(&name, f);
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
