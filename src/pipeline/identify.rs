//! Stage 5: who the advisor is. With `advisors.create`, the
//! advisor is identified by the e-mail built from the account's format
//! (found or created by the store, under a unique constraint); without it
//! the conversation names the advisor only.
//!
//! A call is never lost to its advisor's e-mail by default: when no valid
//! address can be built, `advisors.on_invalid = "unassigned"` records the
//! call with the advisor's names and no advisor record, flagged
//! `advisor_unresolved` with the reason; `"reject"` rejects it.

use super::advisor::build_email;
use super::Rejection;
use crate::config::{AdvisorSettings, OnInvalid};
pub(crate) use crate::record::{AdvisorRef, NewAdvisor};
use std::collections::BTreeMap;

/// The flag a conversation carries when its advisor could not be resolved.
pub(crate) const UNRESOLVED: &str = "advisor_unresolved";

pub(crate) fn identify(
    settings: Option<&AdvisorSettings>,
    metadata: &BTreeMap<String, String>,
    flags: &mut Vec<String>,
) -> Result<AdvisorRef, Rejection> {
    let first = metadata
        .get("advisor_firstname")
        .map(|s| s.trim())
        .unwrap_or("");
    let last = metadata
        .get("advisor_lastname")
        .map(|s| s.trim())
        .unwrap_or("");
    let name = format!("{first} {last}").trim().to_string();
    let Some(s) = settings.filter(|s| s.create) else {
        return Ok(match name.is_empty() {
            true => AdvisorRef::Unknown,
            false => AdvisorRef::Named(name),
        });
    };
    let Some(format) = s.email.as_deref() else {
        return Ok(AdvisorRef::Named(name));
    };
    let built = if name.is_empty() {
        Err(
            "the advisor's first and last name are missing, so no advisor can be identified"
                .to_string(),
        )
    } else {
        let extension = metadata.get("advisor_extension").map(String::as_str);
        build_email(format, first, last, &s.domain, extension)
            .map_err(|why| format!("no valid advisor e-mail for '{name}': {why}"))
    };
    match built {
        Ok(email) => Ok(AdvisorRef::ByEmail(NewAdvisor {
            email,
            first_name: first.to_string(),
            last_name: last.to_string(),
            team: s.default_team.clone(),
            connector: s.connector.clone(),
        })),
        Err(reason) if s.on_invalid == OnInvalid::Reject => Err(Rejection::new("advisor", reason)),
        Err(reason) => {
            flags.push(format!("{UNRESOLVED} ({reason})"));
            Ok(match name.is_empty() {
                true => AdvisorRef::Unknown,
                false => AdvisorRef::Named(name),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(create: bool) -> AdvisorSettings {
        strict(create, OnInvalid::Reject)
    }

    fn strict(create: bool, on_invalid: OnInvalid) -> AdvisorSettings {
        AdvisorSettings {
            on_invalid,
            create,
            default_team: Some("Support".into()),
            connector: Some("Recorder".into()),
            email: Some("%firstname%.%lastname%@%domain%.com".into()),
            domain: "acme".into(),
        }
    }

    fn meta(first: &str, last: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("advisor_firstname".to_string(), first.to_string()),
            ("advisor_lastname".to_string(), last.to_string()),
        ])
    }

    #[test]
    fn created_by_email() {
        let r = identify(
            Some(&settings(true)),
            &meta("Éloïse", "Lefèvre"),
            &mut Vec::new(),
        )
        .unwrap();
        let AdvisorRef::ByEmail(a) = r else {
            panic!("{r:?}")
        };
        assert_eq!(a.email, "eloise.lefevre@acme.com");
        assert_eq!(a.team.as_deref(), Some("Support"));
    }

    #[test]
    fn named_only_without_create() {
        let r = identify(
            Some(&settings(false)),
            &meta("Jean-Pierre", "Dupont"),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(r, AdvisorRef::Named("Jean-Pierre Dupont".into()));
        assert_eq!(
            identify(None, &BTreeMap::new(), &mut Vec::new()).unwrap(),
            AdvisorRef::Unknown
        );
    }

    #[test]
    fn invalid_email_and_missing_names_reject() {
        assert_eq!(
            identify(Some(&settings(true)), &meta("@@", "!!"), &mut Vec::new())
                .unwrap_err()
                .stage,
            "advisor"
        );
        assert_eq!(
            identify(Some(&settings(true)), &BTreeMap::new(), &mut Vec::new())
                .unwrap_err()
                .stage,
            "advisor"
        );
    }

    #[test]
    fn unresolved_advisor_keeps_the_call_by_default() {
        let s = strict(true, OnInvalid::Unassigned);
        let long = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft";
        let mut flags = Vec::new();
        let r = identify(Some(&s), &meta("Jean", long), &mut flags).unwrap();
        assert_eq!(r, AdvisorRef::Named(format!("Jean {long}")));
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert!(
            flags[0].starts_with("advisor_unresolved (no valid advisor e-mail for 'Jean Wolf"),
            "{flags:?}"
        );
        assert!(
            flags[0].contains("more than 64 characters before '@'"),
            "{flags:?}"
        );

        let mut flags = Vec::new();
        let r = identify(Some(&s), &BTreeMap::new(), &mut flags).unwrap();
        assert_eq!(r, AdvisorRef::Unknown);
        assert!(
            flags[0]
                .starts_with("advisor_unresolved (the advisor's first and last name are missing"),
            "{flags:?}"
        );

        // Characters an address cannot hold are dropped, not fatal.
        let mut flags = Vec::new();
        let r = identify(Some(&s), &meta("Jean;", "\"Du|pont\""), &mut flags).unwrap();
        let AdvisorRef::ByEmail(a) = r else {
            panic!("{r:?}")
        };
        assert_eq!(a.email, "jean.dupont@acme.com");
        assert_eq!(a.last_name, "\"Du|pont\"");
        assert!(flags.is_empty(), "{flags:?}");
    }
}
