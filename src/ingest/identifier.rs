//! Identifier kinds and normalization: every identifier becomes `(kind, normalized value)`.
//!
//! - `email`: trimmed, lowercased, syntax-checked (RFC 5322 addr-spec via `email_address`,
//!   plus a dotted domain).
//! - `phone`: parsed with libphonenumber rules (`phonenumber`) using a default region for
//!   numbers written without a country code, validated, formatted as E.164.
//! - `email_sha256`, `phone_sha256`: an email or phone already hashed by a third party
//!   (the ad platforms' convention): the hex SHA-256 of the value normalized as idgraph
//!   normalizes it (email trimmed and lowercased; phone in E.164, `+14155550100`). The value
//!   must be 64 hexadecimal characters and is lowercased. See [`Identifier::hashed`]: the
//!   validator adds the hashed form of every plain email and phone to its event, so a
//!   hashed-only event links to the person whose plain value hashes the same.
//! - every other kind (`device_id`, `cookie_id`, `customer_id`, `loyalty_id`, custom kinds):
//!   trimmed; 1 to 256 characters; no control characters.

use std::collections::BTreeSet;
use std::fmt;

use phonenumber::country::Id as Region;

/// Identifier kinds every deployment knows.
pub const BUILTIN_KINDS: [&str; 8] = [
    "email",
    "phone",
    "email_sha256",
    "phone_sha256",
    "device_id",
    "cookie_id",
    "customer_id",
    "loyalty_id",
];

/// Kinds that name a device or browser (shown in the device view, used for households).
pub const DEVICE_KINDS: [&str; 2] = ["device_id", "cookie_id"];

const MAX_VALUE_CHARS: usize = 256;

/// Each plain kind with the kind of its SHA-256 hash.
pub const HASHED_KINDS: [(&str, &str); 2] = [("email", "email_sha256"), ("phone", "phone_sha256")];

/// The hashed kind of a plain kind (`email` -> `email_sha256`).
pub fn hashed_kind(plain: &str) -> Option<&'static str> {
    HASHED_KINDS
        .iter()
        .find(|(p, _)| *p == plain)
        .map(|(_, h)| *h)
}

/// The plain kind a hashed kind is the hash of (`email_sha256` -> `email`).
pub fn plain_kind(hashed: &str) -> Option<&'static str> {
    HASHED_KINDS
        .iter()
        .find(|(_, h)| *h == hashed)
        .map(|(p, _)| *p)
}

/// Whether `kind` holds hashes of another kind's values (not readable, not searchable).
pub fn is_hashed_kind(kind: &str) -> bool {
    plain_kind(kind).is_some()
}

/// Lowercase hex SHA-256 of `value`.
pub fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hashed identifier key of a plain `kind:value` key (`None` for other kinds).
pub fn hashed_key(key: &str) -> Option<crate::model::IdentKey> {
    let (kind, value) = crate::model::split_key(key);
    hashed_kind(kind).map(|h| crate::model::ident_key(h, &sha256_hex(value)))
}

/// A normalized identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn key(&self) -> crate::model::IdentKey {
        crate::model::ident_key(&self.kind, &self.value)
    }

    /// The hashed form of a normalized email or phone (`email_sha256` of its value), the
    /// identifier a third party that hashes before sharing would send.
    pub fn hashed(&self) -> Option<Identifier> {
        hashed_kind(&self.kind).map(|kind| Identifier {
            kind: kind.to_owned(),
            value: sha256_hex(&self.value),
        })
    }
}

impl fmt::Display for Identifier {
    /// Shows the kind only: identifier values are personal data and stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.kind)
    }
}

/// Why a raw value could not become an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    UnknownKind,
    Invalid(String),
}

/// Checks that a kind name is well formed (`[a-z][a-z0-9_]{0,31}`).
pub fn valid_kind_name(kind: &str) -> bool {
    let mut chars = kind.chars();
    matches!(chars.next(), Some('a'..='z'))
        && kind.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Normalizes identifier values of the configured kinds.
#[derive(Debug, Clone)]
pub struct Normalizer {
    kinds: BTreeSet<String>,
    region: Region,
    region_name: String,
}

impl Normalizer {
    /// `region` is an ISO 3166 alpha-2 code such as `US` or `GB`.
    pub fn new(region: &str, custom_kinds: &[String]) -> Result<Self, String> {
        let region_name = region.trim().to_ascii_uppercase();
        let region: Region = region_name
            .parse()
            .map_err(|_| format!("identifiers.default_region: unknown region {region:?}"))?;
        let mut kinds: BTreeSet<String> = BUILTIN_KINDS.iter().map(|k| k.to_string()).collect();
        // Known for lookups; events cannot send it (the validator reserves it).
        kinds.insert(crate::ingest::event::RECORD_KIND.to_owned());
        for kind in custom_kinds {
            if kind == crate::ingest::event::RECORD_KIND {
                return Err(format!(
                    "identifiers.custom_kinds: {kind:?} is reserved for events without identifiers"
                ));
            }
            if !valid_kind_name(kind) {
                return Err(format!(
                    "identifiers.custom_kinds: {kind:?} is not a valid kind name ([a-z][a-z0-9_]*, at most 32)"
                ));
            }
            kinds.insert(kind.clone());
        }
        Ok(Normalizer {
            kinds,
            region,
            region_name,
        })
    }

    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.iter().map(String::as_str)
    }

    /// Normalizes `raw` as an identifier of `kind`.
    pub fn normalize(&self, kind: &str, raw: &str) -> Result<Identifier, NormalizeError> {
        if !self.knows(kind) {
            return Err(NormalizeError::UnknownKind);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NormalizeError::Invalid("must not be empty".into()));
        }
        if trimmed.chars().count() > MAX_VALUE_CHARS {
            return Err(NormalizeError::Invalid(format!(
                "longer than {MAX_VALUE_CHARS} characters"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(NormalizeError::Invalid(
                "must not contain control characters".into(),
            ));
        }
        let value = match kind {
            "email" => normalize_email(trimmed)?,
            "phone" => self.normalize_phone(trimmed)?,
            "email_sha256" | "phone_sha256" => normalize_sha256(trimmed)?,
            _ => trimmed.to_owned(),
        };
        Ok(Identifier {
            kind: kind.to_owned(),
            value,
        })
    }

    fn normalize_phone(&self, raw: &str) -> Result<String, NormalizeError> {
        if raw.len() > 40 {
            return Err(NormalizeError::Invalid(
                "is not a phone number (too long)".into(),
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().x/".contains(c) || c.is_ascii_alphabetic())
        {
            return Err(NormalizeError::Invalid(
                "is not a phone number (unexpected characters)".into(),
            ));
        }
        let region = self.region;
        let owned = raw.to_owned();
        // The phone library must never take the service down: treat a panic as invalid input.
        let parsed = std::panic::catch_unwind(move || {
            phonenumber::parse(Some(region), &owned)
                .ok()
                .filter(phonenumber::is_valid)
                .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
        });
        match parsed {
            Ok(Some(e164)) => Ok(e164),
            Ok(None) | Err(_) => Err(NormalizeError::Invalid(format!(
                "is not a valid phone number (default region {})",
                self.region_name
            ))),
        }
    }
}

/// A hex SHA-256 digest, lowercased.
fn normalize_sha256(raw: &str) -> Result<String, NormalizeError> {
    if raw.len() != 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NormalizeError::Invalid(
            "must be a SHA-256 digest: 64 hexadecimal characters (the hash of the normalized value)"
                .into(),
        ));
    }
    Ok(raw.to_ascii_lowercase())
}

fn normalize_email(raw: &str) -> Result<String, NormalizeError> {
    let lower = raw.to_lowercase();
    let invalid = |why: &str| {
        Err(NormalizeError::Invalid(format!(
            "is not a valid email address: {why}"
        )))
    };
    if lower.len() > 254 {
        return invalid("longer than 254 characters");
    }
    if lower
        .chars()
        .any(|c| c.is_whitespace() || c == '<' || c == '>')
    {
        return invalid("contains spaces or angle brackets");
    }
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return invalid("missing @");
    };
    if local.is_empty() || domain.is_empty() {
        return invalid("empty local part or domain");
    }
    if !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return invalid("domain must be a dotted host name");
    }
    if domain.starts_with('[') {
        return invalid("IP address literals are not accepted");
    }
    if !email_address::EmailAddress::is_valid(&lower) {
        return invalid("bad syntax");
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Normalizer {
        Normalizer::new("US", &["national_id".to_string()]).unwrap()
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let id = n().normalize("email", "  Bob.Smith@Example.COM ").unwrap();
        assert_eq!(id.value, "bob.smith@example.com");
    }

    #[test]
    fn bad_emails_are_rejected_with_reason() {
        for bad in [
            "bob",
            "bob@",
            "@example.com",
            "bob@localhost",
            "a b@example.com",
            "Bob <b@example.com>",
            "bob@ex..com",
        ] {
            match n().normalize("email", bad) {
                Err(NormalizeError::Invalid(why)) => assert!(why.contains("email"), "{bad}: {why}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn phones_become_e164_whatever_the_typing() {
        for typed in [
            "(415) 234-5678",
            "415.234.5678",
            "+1 415 234 5678",
            "+14152345678",
            "1-415-234-5678",
        ] {
            assert_eq!(
                n().normalize("phone", typed).unwrap().value,
                "+14152345678",
                "{typed}"
            );
        }
        let gb = Normalizer::new("GB", &[]).unwrap();
        assert_eq!(
            gb.normalize("phone", "020 7946 0018").unwrap().value,
            "+442079460018"
        );
    }

    #[test]
    fn invalid_phones_are_rejected() {
        for bad in ["12", "not a phone", "+1 415 234 567899999", "☎☎☎"] {
            assert!(
                matches!(n().normalize("phone", bad), Err(NormalizeError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_are_trimmed_and_checked() {
        assert_eq!(n().normalize("customer_id", " C-1 ").unwrap().value, "C-1");
        assert_eq!(
            n().normalize("national_id", "123").unwrap().kind,
            "national_id"
        );
        assert!(matches!(
            n().normalize("customer_id", "a\u{0}b"),
            Err(NormalizeError::Invalid(_))
        ));
        assert!(matches!(
            n().normalize("customer_id", "  "),
            Err(NormalizeError::Invalid(_))
        ));
        assert!(matches!(
            n().normalize("customer_id", &"x".repeat(300)),
            Err(NormalizeError::Invalid(_))
        ));
        assert_eq!(
            n().normalize("passport", "1"),
            Err(NormalizeError::UnknownKind)
        );
    }

    #[test]
    fn hashes_are_64_hex_lowercased() {
        let h = "A".repeat(64);
        assert_eq!(
            n().normalize("email_sha256", &format!(" {h} "))
                .unwrap()
                .value,
            "a".repeat(64)
        );
        for bad in ["abc", &"g".repeat(64), &"a".repeat(65), "bob@example.com"] {
            match n().normalize("phone_sha256", bad) {
                Err(NormalizeError::Invalid(why)) => {
                    assert!(why.contains("SHA-256"), "{why}");
                    assert!(!why.contains(bad), "{why}");
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn the_hashed_form_is_the_sha256_of_the_normalized_value() {
        let email = n().normalize("email", " Bob@Example.com").unwrap();
        let hashed = email.hashed().unwrap();
        assert_eq!(hashed.kind, "email_sha256");
        // sha256("bob@example.com")
        assert_eq!(
            hashed.value,
            "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018"
        );
        assert_eq!(hashed_key(email.key().as_str()), Some(hashed.key()));
        let phone = n().normalize("phone", "(415) 234-5678").unwrap();
        assert_eq!(phone.hashed().unwrap().value, sha256_hex("+14152345678"));
        assert!(n()
            .normalize("customer_id", "C1")
            .unwrap()
            .hashed()
            .is_none());
    }

    #[test]
    fn display_never_shows_the_value() {
        let id = n().normalize("email", "bob@example.com").unwrap();
        assert!(!id.to_string().contains("bob"));
    }

    #[test]
    fn config_errors_are_named() {
        assert!(Normalizer::new("XX", &[])
            .unwrap_err()
            .contains("default_region"));
        assert!(Normalizer::new("US", &["Bad Kind".into()])
            .unwrap_err()
            .contains("custom_kinds"));
    }
}
