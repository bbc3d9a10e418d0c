//! Advisor e-mail: the e-mail built from `advisors.email` is the
//! advisor's identity, so the same person must always give the same address
//! whatever the recorder did to accents, case, spaces or apostrophes.
//!
//! Invariants: [`normalise_part`] is deterministic and idempotent; placeholders
//! (`%firstname%`, `%lastname%`, `%domain%`, `%extension%`) are substituted in a
//! single pass, so a value can never inject another placeholder; every address
//! [`build_email`] returns passes the same validation, and every refusal is a
//! reason a customer can read.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

const PLACEHOLDERS: [&str; 4] = ["firstname", "lastname", "domain", "extension"];

/// Apostrophes recorders and keyboards actually produce (N'Diaye, N’Diaye).
const APOSTROPHES: [char; 4] = ['\'', '’', '‘', 'ʼ'];

/// Lowercases, strips accents (NFD then drops combining marks), removes
/// whitespace and apostrophes; keeps hyphens. Letters that NFD does not
/// decompose but that French names use (Lætitia, Cœur) are spelled out.
pub(crate) fn normalise_part(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for c in lower.nfd() {
        if is_combining_mark(c) || c.is_whitespace() || APOSTROPHES.contains(&c) {
            continue;
        }
        match spelled_out(c) {
            Some(text) => out.push_str(text),
            None => out.push(c),
        }
    }
    out
}

fn spelled_out(c: char) -> Option<&'static str> {
    Some(match c {
        'æ' => "ae",
        'œ' => "oe",
        'ß' => "ss",
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'ı' => "i",
        _ => return None,
    })
}

/// Builds the advisor's address from the account's format; the error is the
/// rejection reason.
pub(crate) fn build_email(
    format: &str,
    firstname: &str,
    lastname: &str,
    domain: &str,
    extension: Option<&str>,
) -> Result<String, String> {
    let mut email = String::new();
    for segment in segments(format) {
        match segment {
            Segment::Literal(text) => email.push_str(&text.to_lowercase()),
            Segment::Placeholder(name) => {
                let (label, raw, from_call) = match name {
                    "firstname" => ("first name", Some(firstname), true),
                    "lastname" => ("last name", Some(lastname), true),
                    "domain" => ("e-mail domain", Some(domain), false),
                    "extension" => ("extension", extension, true),
                    other => return Err(unknown_placeholder(other)),
                };
                email.push_str(&placeholder_value(label, raw, from_call)?);
            }
        }
    }
    validate_address(&email)
        .map_err(|why| format!("advisor e-mail '{email}' is not a valid address: {why}"))?;
    Ok(email)
}

/// A placeholder's text. Values that come from the call (names, extension)
/// also lose every character an address cannot hold (`;`, `"`, `,`, `|`,
/// letters without a Latin spelling...), so a stray character in a
/// recorder's name cell never costs the call its advisor. The domain comes
/// from the operator and is checked at config time instead.
fn placeholder_value(label: &str, raw: Option<&str>, from_call: bool) -> Result<String, String> {
    let raw = raw.unwrap_or("");
    let mut value = normalise_part(raw);
    if from_call {
        value.retain(allowed_in_local);
    }
    if !value.is_empty() {
        Ok(value)
    } else if raw.trim().is_empty() {
        Err(format!("advisor {label} is empty"))
    } else {
        Err(format!("advisor {label} '{raw}' has no usable characters"))
    }
}

/// Config-time check of `advisors.email`, independent of the domain.
pub(crate) fn validate_format(format: &str) -> Result<(), String> {
    let segments = segments(format);
    let mut names = Vec::new();
    let mut has_at = false;
    for segment in &segments {
        match segment {
            Segment::Placeholder(name) if !PLACEHOLDERS.contains(name) => {
                return Err(unknown_placeholder(name))
            }
            Segment::Placeholder(name) => names.push(*name),
            Segment::Literal(text) => has_at |= text.contains('@'),
        }
    }
    if !names.contains(&"firstname") && !names.contains(&"lastname") {
        return Err("the advisor e-mail format must contain %firstname% or %lastname%".into());
    }
    if !has_at {
        return Err("the advisor e-mail format must contain '@'".into());
    }
    // A trial run catches literal mistakes such as "..", "@@" or a bad domain.
    build_email(format, "a", "b", "example.com", Some("1"))
        .map(|_| ())
        .map_err(|why| format!("the advisor e-mail format cannot give a valid address: {why}"))
}

/// Config-time check of the format together with the account's domain, so a
/// domain that can never give a valid address is refused before any upload.
pub(crate) fn validate_settings(format: &str, domain: &str) -> Result<(), String> {
    validate_format(format)?;
    build_email(format, "a", "b", domain, Some("1"))
        .map(|_| ())
        .map_err(|why| format!("advisors.email with domain '{domain}' cannot work: {why}"))
}

fn unknown_placeholder(name: &str) -> String {
    format!("unknown placeholder %{name}% (known: %firstname% %lastname% %domain% %extension%)")
}

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// `%word%` (lowercase ASCII letters) is a placeholder; any other `%` is
/// literal text, since `%` is legal in a local part.
fn segments(format: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(open) = format[i..].find('%').map(|o| i + o) {
        let after = &format[open + 1..];
        let placeholder = after
            .find('%')
            .map(|len| &after[..len])
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
        let Some(name) = placeholder else {
            i = open + 1;
            continue;
        };
        if literal_start < open {
            out.push(Segment::Literal(&format[literal_start..open]));
        }
        out.push(Segment::Placeholder(name));
        i = open + name.len() + 2;
        literal_start = i;
    }
    if literal_start < format.len() {
        out.push(Segment::Literal(&format[literal_start..]));
    }
    out
}

fn validate_address(email: &str) -> Result<(), String> {
    if email.len() > 254 {
        return Err("it is longer than 254 characters".into());
    }
    let [local, domain] = email.split('@').collect::<Vec<_>>()[..] else {
        return Err("it must contain exactly one '@'".into());
    };
    validate_local(local)?;
    validate_domain(domain)
}

fn validate_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("nothing before '@'".into());
    }
    if local.len() > 64 {
        return Err("more than 64 characters before '@'".into());
    }
    if let Some(c) = local.chars().find(|&c| !allowed_in_local(c)) {
        return Err(format!("'{c}' is not allowed before '@'"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("a '.' before '@' is misplaced".into());
    }
    Ok(())
}

/// The characters depot accepts before '@' (a conservative subset of RFC
/// 5321's dot-atom that every mail system takes).
fn allowed_in_local(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "._%+-".contains(c)
}

fn validate_domain(domain: &str) -> Result<(), String> {
    if !domain.contains('.') {
        return Err(format!("the domain '{domain}' has no '.'"));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("the domain '{domain}' has an empty part"));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(format!("'{c}' is not allowed in the domain"));
        }
        if label.starts_with('-') || label.ends_with('-') || label.len() > 63 {
            return Err(format!("the domain part '{label}' is not valid"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "%firstname%.%lastname%@%domain%.com";

    /// firstname, lastname, domain, extension → address or reason.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Result<&'static str, &'static str>,
    );

    #[test]
    fn normalises_parts() {
        let cases = [
            ("Éloïse", "eloise"),
            ("Lefèvre", "lefevre"),
            ("de la Fontaine", "delafontaine"),
            ("N'Diaye", "ndiaye"),
            ("N’Diaye", "ndiaye"),
            ("Jean-Pierre", "jean-pierre"),
            ("  ÇA\u{a0}VA ", "cava"),
            ("Lætitia", "laetitia"),
            ("Cœur", "coeur"),
            ("Straße", "strasse"),
            ("İlker", "ilker"),
            ("Ångström", "angstrom"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise_part(raw), want, "raw {raw:?}");
            assert_eq!(normalise_part(want), want, "idempotent on {want:?}");
        }
    }

    #[test]
    fn builds_emails() {
        let cases: [Case; 15] = [
            ("Éloïse", "Lefèvre", "acme", None, Ok("eloise.lefevre@acme.com")),
            ("Jean", "de la Fontaine", "acme", None, Ok("jean.delafontaine@acme.com")),
            ("Awa", "N'Diaye", "acme", None, Ok("awa.ndiaye@acme.com")),
            ("Jean-Pierre", "Dupont", "acme", None, Ok("jean-pierre.dupont@acme.com")),
            ("Jean", "Dupont", "ACME", None, Ok("jean.dupont@acme.com")),
            ("", "Dupont", "acme", None, Err("advisor first name is empty")),
            ("''", "Dupont", "acme", None, Err("advisor first name '''' has no usable characters")),
            ("@@", "Dupont", "acme", None, Err("advisor first name '@@' has no usable characters")),
            ("Jean", "Dupont!", "acme", None, Ok("jean.dupont@acme.com")),
            // CSV cells with separators or quotes left in by a recorder.
            ("Jean", "Dupont;", "acme", None, Ok("jean.dupont@acme.com")),
            ("\"Jean\"", "Du,pont", "acme", None, Ok("jean.dupont@acme.com")),
            ("Jean|Paul", "Dupont", "acme", None, Ok("jeanpaul.dupont@acme.com")),
            ("Жан", "Dupont", "acme", None, Err("advisor first name 'Жан' has no usable characters")),
            ("Jean", "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft", "acme", None, Err("advisor e-mail 'jean.wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft@acme.com' is not a valid address: more than 64 characters before '@'")),
            ("Jean", "Dupont", "-acme", None, Err("advisor e-mail 'jean.dupont@-acme.com' is not a valid address: the domain part '-acme' is not valid")),
        ];
        for (first, last, domain, ext, want) in cases {
            let got = build_email(FORMAT, first, last, domain, ext);
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "{first:?} {last:?}"
            );
        }
    }

    #[test]
    fn other_formats() {
        let cases = [
            ("%lastname%%extension%@%domain%", Some("478"), Ok("dupont478@acme.fr")),
            ("%lastname%%extension%@%domain%", None, Err("advisor extension is empty")),
            ("%firstname%@%domain%", None, Ok("jean@acme.fr")),
            ("%firstname%..%lastname%@%domain%", None, Err("advisor e-mail 'jean..dupont@acme.fr' is not a valid address: a '.' before '@' is misplaced")),
            ("%firstname%@%domain%%nope%", None, Err("unknown placeholder %nope% (known: %firstname% %lastname% %domain% %extension%)")),
            ("%firstname%+100%@%domain%", None, Ok("jean+100%@acme.fr")),
        ];
        for (format, ext, want) in cases {
            let got = build_email(format, "Jean", "Dupont", "acme.fr", ext);
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "format {format:?}"
            );
        }
    }

    #[test]
    fn placeholders_are_not_reinjected() {
        // '%' is legal in a local part; what matters is the single pass.
        let got = build_email(FORMAT, "%lastname%", "Dupont", "acme", None);
        assert_eq!(got.as_deref(), Ok("%lastname%.dupont@acme.com"));
    }

    #[test]
    fn rejects_overlong_addresses() {
        let got = build_email("%lastname%@%domain%.com", "x", "a", &"b".repeat(260), None);
        assert!(got
            .unwrap_err()
            .ends_with("it is longer than 254 characters"));
    }

    #[test]
    fn validates_formats() {
        let cases = [
            (FORMAT, Ok(())),
            ("%lastname%@%domain%", Ok(())),
            ("%firstname%.%extension%@acme.com", Ok(())),
            ("%domain%@acme.com", Err("the advisor e-mail format must contain %firstname% or %lastname%")),
            ("%firstname%.%lastname%", Err("the advisor e-mail format must contain '@'")),
            ("%firstname%@%domain%%x%", Err("unknown placeholder %x% (known: %firstname% %lastname% %domain% %extension%)")),
            ("%firstname%@@%domain%", Err("the advisor e-mail format cannot give a valid address: advisor e-mail 'a@@example.com' is not a valid address: it must contain exactly one '@'")),
            ("%firstname%@%domain%.", Err("the advisor e-mail format cannot give a valid address: advisor e-mail 'a@example.com.' is not a valid address: the domain 'example.com.' has an empty part")),
        ];
        for (format, want) in cases {
            assert_eq!(
                validate_format(format),
                want.map_err(str::to_string),
                "format {format:?}"
            );
        }
    }

    #[test]
    fn validates_settings_with_domain() {
        let cases = [
            (FORMAT, "acme", true),
            (FORMAT, "acme.fr", true),
            ("%firstname%@%domain%", "acme", false),
            ("%firstname%@%domain%", "acme.fr", true),
            (FORMAT, "", false),
        ];
        for (format, domain, ok) in cases {
            assert_eq!(
                validate_settings(format, domain).is_ok(),
                ok,
                "{format:?} {domain:?}"
            );
        }
    }
}
