//! Stage 1: what a completed deposit is, from the
//! account's settings and its path alone — audio (with the date of its date
//! directory), a metadata CSV, a CRM CSV, or nothing to ingest.

use super::datedir::parse_date_dir;
use super::Rejection;
use crate::config::Account;
use crate::deposit::names::{is_system_file, is_temp_name, unwanted_reason};
use crate::jail::JailPath;
use chrono::NaiveDate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Audio; `deposit_date` is the date of its date directory, if any.
    Audio {
        deposit_date: Option<NaiveDate>,
    },
    MetadataCsv,
    CrmCsv,
    /// Not for ingestion (temporary name, outside every ingestion dir...).
    Ignored(&'static str),
}

fn extension(name: &str) -> Option<String> {
    match name.rfind('.') {
        Some(i) if i > 0 => Some(name[i + 1..].to_ascii_lowercase()),
        _ => None,
    }
}

/// Why a system or editor file (`Thumbs.db`, `.DS_Store`...) is not
/// ingested; the worker counts these.
pub(crate) const SYSTEM_FILE: &str = "system file";

/// Classifies `path`; an audio file in the wrong place is a rejection.
pub(crate) fn classify(account: &Account, path: &JailPath) -> Result<Kind, Rejection> {
    let Some(name) = path.file_name() else {
        return Ok(Kind::Ignored("not a file"));
    };
    if is_system_file(name) {
        return Ok(Kind::Ignored(SYSTEM_FILE));
    }
    if is_temp_name(name) {
        return Ok(Kind::Ignored("temporary name"));
    }
    let ext = extension(name);
    if ext.as_deref() == Some("csv") {
        if account
            .crm
            .as_ref()
            .is_some_and(|c| path.starts_with(&c.dir))
        {
            return Ok(Kind::CrmCsv);
        }
        if account
            .metadata_csv
            .as_ref()
            .is_some_and(|m| path.starts_with(&m.dir))
        {
            return Ok(Kind::MetadataCsv);
        }
    }
    // A type this directory never takes: stored (the customer's batch goes
    // on) and reported, so the customer learns why it was not ingested.
    if let Some(reason) = unwanted_reason(account, path) {
        return Err(Rejection::new("file_type", reason));
    }
    let Some(audio) = &account.audio else {
        return Ok(Kind::Ignored("no [audio] settings"));
    };
    if !path.starts_with(&audio.dir) {
        return Ok(Kind::Ignored("outside the ingestion directories"));
    }
    let deposit_date = date_of_parent(&audio.dir, &audio.date_dirs, path);
    if deposit_date.is_none() && audio.require_date_dir {
        let example = audio
            .date_dirs
            .first()
            .map(String::as_str)
            .unwrap_or("%Y%m%d");
        return Err(Rejection::new(
            "date_directory",
            format!(
                "audio must be in a date directory directly under {} (named like {}, e.g. {}/{}/{name})",
                audio.dir,
                audio.date_dirs.join(" or "),
                audio.dir,
                chrono::NaiveDate::from_ymd_opt(2026, 2, 11)
                    .map(|d| d.format(example).to_string())
                    .unwrap_or_default(),
            ),
        ));
    }
    Ok(Kind::Audio { deposit_date })
}

/// The date of `path`'s directory when that directory is a date directory
/// directly under `audio_dir`.
fn date_of_parent(audio_dir: &JailPath, formats: &[String], path: &JailPath) -> Option<NaiveDate> {
    let parent = path.parent()?;
    if parent.parent().as_ref() != Some(audio_dir) {
        return None;
    }
    parse_date_dir(formats, parent.file_name()?)
}
