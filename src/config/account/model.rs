//! The validated account: every setting in its ready-to-use type, as the
//! SFTP front and the pipeline stages read it.

use crate::jail::JailPath;
use crate::pipeline::template::Template;
use chrono_tz::Tz;
use ipnet::IpNet;
use russh::keys::PublicKey;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

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

/// `max_file_size` when an account file leaves it out: 16 GiB.
pub(crate) const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 30;
