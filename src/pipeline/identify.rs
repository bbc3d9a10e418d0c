//! Stage 5 (SPEC §5.6): who the advisor is. With `advisors.create`, the
//! advisor is identified by the e-mail built from the account's format
//! (found or created by the store, under a unique constraint); without it
//! the conversation names the advisor only.

use super::advisor::build_email;
use super::Rejection;
use crate::config::AdvisorSettings;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdvisor {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub team: Option<String>,
    pub connector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisorRef {
    Unknown,
    /// Recorded on the conversation by name only.
    Named(String),
    /// Found by e-mail, or created with these details.
    ByEmail(NewAdvisor),
}

impl AdvisorRef {
    /// The name recorded on a conversation whose advisor is known by name
    /// only.
    pub fn name(&self) -> Option<&str> {
        match self {
            AdvisorRef::Named(n) => Some(n),
            _ => None,
        }
    }

    /// The key picking caps are counted under.
    pub fn picking_key(&self) -> Option<String> {
        match self {
            AdvisorRef::Unknown => None,
            AdvisorRef::Named(n) => Some(n.to_lowercase()),
            AdvisorRef::ByEmail(a) => Some(a.email.clone()),
        }
    }
}

pub fn identify(
    settings: Option<&AdvisorSettings>,
    metadata: &BTreeMap<String, String>,
) -> Result<AdvisorRef, Rejection> {
    let first = metadata
        .get("advisor_firstname")
        .map(|s| s.trim())
        .unwrap_or("");
    let last = metadata
        .get("advisor_lastname")
        .map(|s| s.trim())
        .unwrap_or("");
    let create = settings.is_some_and(|s| s.create);
    if first.is_empty() && last.is_empty() {
        if create {
            return Err(Rejection::new(
                "advisor",
                "the advisor's first and last name are missing, so no advisor can be identified",
            ));
        }
        return Ok(AdvisorRef::Unknown);
    }
    let (Some(s), true) = (settings, create) else {
        return Ok(AdvisorRef::Named(
            format!("{first} {last}").trim().to_string(),
        ));
    };
    let Some(format) = s.email.as_deref() else {
        return Ok(AdvisorRef::Named(
            format!("{first} {last}").trim().to_string(),
        ));
    };
    let extension = metadata.get("advisor_extension").map(String::as_str);
    let email = build_email(format, first, last, &s.domain, extension).map_err(|why| {
        Rejection::new(
            "advisor",
            format!("no valid advisor e-mail for '{first} {last}': {why}"),
        )
    })?;
    Ok(AdvisorRef::ByEmail(NewAdvisor {
        email,
        first_name: first.to_string(),
        last_name: last.to_string(),
        team: s.default_team.clone(),
        connector: s.connector.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(create: bool) -> AdvisorSettings {
        AdvisorSettings {
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
        let r = identify(Some(&settings(true)), &meta("Éloïse", "Lefèvre")).unwrap();
        let AdvisorRef::ByEmail(a) = r else {
            panic!("{r:?}")
        };
        assert_eq!(a.email, "eloise.lefevre@acme.com");
        assert_eq!(a.team.as_deref(), Some("Support"));
    }

    #[test]
    fn named_only_without_create() {
        let r = identify(Some(&settings(false)), &meta("Jean-Pierre", "Dupont")).unwrap();
        assert_eq!(r, AdvisorRef::Named("Jean-Pierre Dupont".into()));
        assert_eq!(
            identify(None, &BTreeMap::new()).unwrap(),
            AdvisorRef::Unknown
        );
    }

    #[test]
    fn invalid_email_and_missing_names_reject() {
        assert_eq!(
            identify(Some(&settings(true)), &meta("@@", "!!"))
                .unwrap_err()
                .stage,
            "advisor"
        );
        assert_eq!(
            identify(Some(&settings(true)), &BTreeMap::new())
                .unwrap_err()
                .stage,
            "advisor"
        );
    }
}
