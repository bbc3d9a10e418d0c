//! Field rules and Unicode form (`[audio.fields]`, `audio.normalize`): what
//! each metadata field may hold, checked the same way whichever source gave
//! it (the file name or a metadata CSV row), and every value brought to one
//! Unicode form so a name typed on a Mac (NFD) equals the same name typed
//! elsewhere (NFC).
//!
//! Pure functions; the caller says which source failed, so the customer
//! reads "file name" or "metadata CSV" next to the reason.

use crate::config::{FieldRule, Normalize};
use std::collections::BTreeMap;
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// `s` in the account's Unicode form.
pub(crate) fn normalise(mode: Normalize, s: &str) -> String {
    match mode {
        Normalize::Nfc if !is_nfc(s) => s.nfc().collect(),
        _ => s.to_string(),
    }
}

/// Checks every field that has a rule; a value matching `values` is
/// rewritten in the configured spelling (`entrant` → `Entrant` with
/// `ignore_case`). The error is the reason, naming the field.
pub fn apply(
    rules: &BTreeMap<String, FieldRule>,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, rule) in rules {
        if let Some(value) = fields.get_mut(name) {
            if let Some(canonical) = check(name, rule, value)? {
                *value = canonical;
            }
        }
    }
    Ok(())
}

fn check(name: &str, rule: &FieldRule, value: &str) -> Result<Option<String>, String> {
    let shown = super::template::shown(value);
    if let Some(max) = rule.max_len {
        let len = value.chars().count();
        if len > max {
            return Err(format!(
                "{name}: '{shown}' is longer than {max} characters ({len})"
            ));
        }
    }
    if rule.digits && (value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{name}: '{shown}' is not digits only"));
    }
    let Some(allowed) = &rule.values else {
        return Ok(None);
    };
    let found = allowed.iter().find(|a| match rule.ignore_case {
        true => a.to_lowercase() == value.to_lowercase(),
        false => a.as_str() == value,
    });
    match found {
        Some(a) if a == value => Ok(None),
        Some(a) => Ok(Some(a.clone())),
        None => Err(format!(
            "{name}: '{shown}' is not one of {}{}",
            allowed.join(", "),
            if rule.ignore_case {
                " (case ignored)"
            } else {
                ""
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BTreeMap<String, FieldRule> {
        BTreeMap::from([
            (
                "channel".to_string(),
                FieldRule {
                    values: Some(vec!["Entrant".into(), "Sortant".into()]),
                    ignore_case: true,
                    ..Default::default()
                },
            ),
            (
                "advisor_extension".to_string(),
                FieldRule {
                    digits: true,
                    max_len: Some(8),
                    ..Default::default()
                },
            ),
            (
                "site".to_string(),
                FieldRule {
                    values: Some(vec!["Lyon".into()]),
                    ..Default::default()
                },
            ),
        ])
    }

    fn run(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>, String> {
        let mut m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(&rules(), &mut m).map(|()| m)
    }

    #[test]
    fn values_digits_and_lengths() {
        let ok = run(&[
            ("channel", "sortant"),
            ("advisor_extension", "478"),
            ("other", "x"),
        ])
        .unwrap();
        assert_eq!(ok["channel"], "Sortant");
        assert_eq!(ok["advisor_extension"], "478");
        assert_eq!(ok["other"], "x");
        assert_eq!(run(&[]).unwrap().len(), 0, "absent fields are not checked");
        let cases = [
            (
                ("channel", "Inbound"),
                "channel: 'Inbound' is not one of Entrant, Sortant (case ignored)",
            ),
            (
                ("channel", ""),
                "channel: '' is not one of Entrant, Sortant (case ignored)",
            ),
            (
                ("advisor_extension", "A12"),
                "advisor_extension: 'A12' is not digits only",
            ),
            (
                ("advisor_extension", ""),
                "advisor_extension: '' is not digits only",
            ),
            (
                ("advisor_extension", "123456789"),
                "advisor_extension: '123456789' is longer than 8 characters (9)",
            ),
            (("site", "lyon"), "site: 'lyon' is not one of Lyon"),
        ];
        for (pair, want) in cases {
            assert_eq!(run(&[pair]).unwrap_err(), want, "{pair:?}");
        }
        assert_eq!(run(&[("site", "Lyon")]).unwrap()["site"], "Lyon");
    }

    #[test]
    fn nfd_and_nfc_become_one_value() {
        let nfd = "Ele\u{301}onore";
        let nfc = "Éléonore".replace('É', "E");
        assert_ne!(nfd, nfc);
        assert_eq!(normalise(Normalize::Nfc, nfd), nfc);
        assert_eq!(normalise(Normalize::Nfc, &nfc), nfc);
        assert_eq!(normalise(Normalize::None, nfd), nfd);
    }
}
