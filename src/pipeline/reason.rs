//! Stage 4: the recorder's contact-reason id mapped to its
//! label through the account's mapping matrix.

use super::Rejection;
use crate::config::{ContactReasons, OnUnknown};
use std::collections::BTreeMap;

pub(crate) const KEY: &str = "contact_reason";
pub(crate) const LABEL_KEY: &str = "contact_reason_label";

/// Adds `contact_reason_label` to `metadata` when the id is known. An
/// unknown id is kept and flagged, or rejected, as the account says; an
/// empty one is treated the same way (`on_unknown`) but reported as empty,
/// since "'' is not in the mapping" tells the customer nothing.
pub fn label(
    settings: Option<&ContactReasons>,
    metadata: &mut BTreeMap<String, String>,
    flags: &mut Vec<String>,
) -> Result<(), Rejection> {
    let (Some(settings), Some(id)) = (settings, metadata.get(KEY).cloned()) else {
        return Ok(());
    };
    if id.trim().is_empty() {
        return match settings.on_unknown {
            OnUnknown::Keep => {
                flags.push("contact_reason_empty".to_string());
                Ok(())
            }
            OnUnknown::Reject => Err(Rejection::new("contact_reason", "contact reason is empty")),
        };
    }
    match settings.labels.get(id.trim()) {
        Some(l) => {
            metadata.insert(LABEL_KEY.to_string(), l.clone());
            Ok(())
        }
        None if settings.on_unknown == OnUnknown::Keep => {
            flags.push(format!("unknown_contact_reason ({id})"));
            Ok(())
        }
        None => Err(Rejection::new(
            "contact_reason",
            format!("contact reason '{id}' is not in the account's mapping"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reasons(on_unknown: OnUnknown) -> ContactReasons {
        ContactReasons {
            labels: HashMap::from([("163".to_string(), "Résiliation".to_string())]),
            on_unknown,
        }
    }

    #[test]
    fn known_unknown_and_absent() {
        let r = reasons(OnUnknown::Keep);
        let mut m = BTreeMap::from([(KEY.to_string(), "163".to_string())]);
        let mut flags = Vec::new();
        label(Some(&r), &mut m, &mut flags).unwrap();
        assert_eq!(m[LABEL_KEY], "Résiliation");

        let mut m = BTreeMap::from([(KEY.to_string(), "999".to_string())]);
        label(Some(&r), &mut m, &mut flags).unwrap();
        assert!(!m.contains_key(LABEL_KEY));
        assert_eq!(flags, vec!["unknown_contact_reason (999)"]);

        let strict = reasons(OnUnknown::Reject);
        let e = label(Some(&strict), &mut m, &mut flags).unwrap_err();
        assert!(e.reason.contains("'999'"));

        let mut none = BTreeMap::new();
        label(Some(&strict), &mut none, &mut flags).unwrap();
    }

    #[test]
    fn empty_reason_is_reported_as_empty() {
        for empty in ["", "  "] {
            let mut m = BTreeMap::from([(KEY.to_string(), empty.to_string())]);
            let mut flags = Vec::new();
            label(Some(&reasons(OnUnknown::Keep)), &mut m, &mut flags).unwrap();
            assert_eq!(flags, vec!["contact_reason_empty"]);
            assert!(!m.contains_key(LABEL_KEY));
            let e = label(Some(&reasons(OnUnknown::Reject)), &mut m, &mut flags).unwrap_err();
            assert_eq!(e.stage, "contact_reason");
            assert_eq!(e.reason, "contact reason is empty");
        }
    }
}
