//! Junk identifier values that never link.
//!
//! One shared junk value (`test@test.com`, a cookie `undefined`, a phone `0000000000`)
//! would otherwise glue thousands of people into one mega-profile. Blocklisted values are
//! dropped from an event before resolution and reported back as `ignored`.
//!
//! Built in: generic placeholders (`null`, `undefined`, `anonymous`, `unknown`, `none`,
//! `n/a`, `0`, ...) for every kind; emails `test@test.com` and placeholder local parts
//! (`noemail@`, `no-email@`, `none@`, `null@`, `unknown@`, `noreply@`, `donotreply@`);
//! phones whose digits are all the same (`0000000000`, `+1 111-111-1111`) or `1234567890`.
//! Configured: exact values (`kind:value` or a bare value for any kind, compared after
//! normalization) and regexes matched against `kind:value`.
//!
//! Hashed kinds (`email_sha256`, `phone_sha256`): the hashes of the built-in junk emails
//! and of configured exact `email:`/`phone:` values are junk too, so a third party's hashed
//! placeholder does not glue people together either.

use std::collections::HashSet;

use regex::RegexSet;

use crate::config::BlocklistSettings;

const GENERIC_JUNK: [&str; 17] = [
    "null",
    "nil",
    "none",
    "undefined",
    "unknown",
    "anonymous",
    "n/a",
    "na",
    "-",
    "0",
    "nan",
    "test",
    "[object object]",
    "default",
    "guest",
    "empty",
    "void",
];

const JUNK_EMAIL_LOCALS: [&str; 11] = [
    "noemail",
    "no-email",
    "no_email",
    "none",
    "null",
    "unknown",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
    "nobody",
];

const JUNK_EMAILS: [&str; 3] = ["test@test.com", "email@email.com", "a@a.com"];

/// The compiled blocklist.
#[derive(Debug, Clone)]
pub struct Blocklist {
    exact: HashSet<String>,
    bare: HashSet<String>,
    patterns: RegexSet,
}

impl Blocklist {
    pub fn new(settings: &BlocklistSettings) -> Result<Self, String> {
        use crate::ingest::identifier::{hashed_kind, sha256_hex};
        let mut exact = HashSet::new();
        let mut bare = HashSet::new();
        for email in JUNK_EMAILS {
            exact.insert(format!("email_sha256:{}", sha256_hex(email)));
        }
        for v in &settings.values {
            match v.split_once(':') {
                Some((kind, value)) if crate::ingest::identifier::valid_kind_name(kind) => {
                    let value = value.trim().to_lowercase();
                    if let Some(hashed) = hashed_kind(kind) {
                        exact.insert(format!("{hashed}:{}", sha256_hex(&value)));
                    }
                    exact.insert(format!("{kind}:{value}"));
                }
                _ => {
                    bare.insert(v.trim().to_lowercase());
                }
            }
        }
        let patterns = RegexSet::new(&settings.patterns)
            .map_err(|e| format!("blocklist.patterns: invalid regex: {e}"))?;
        Ok(Blocklist {
            exact,
            bare,
            patterns,
        })
    }

    /// Is the raw (not yet normalized) value a placeholder? Checked before normalization so
    /// that `email: "null"` is ignored instead of rejected as a malformed email.
    pub fn is_junk_raw(&self, kind: &str, raw: &str) -> bool {
        let v = raw.trim().to_lowercase();
        if v.is_empty() || GENERIC_JUNK.contains(&v.as_str()) {
            return true;
        }
        if kind == "phone" {
            let digits: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).collect();
            let national: &[u8] = match digits.first() {
                // Ignore a leading country code 1 (NANP) so "+1 111 111 1111" counts.
                Some(b'1') if digits.len() == 11 => &digits[1..],
                _ => &digits,
            };
            if national.len() >= 3 && national.iter().all(|d| *d == national[0]) {
                return true;
            }
            if national == b"1234567890" || national == b"0123456789" {
                return true;
            }
        }
        false
    }

    /// Is the normalized identifier blocklisted (built-in email junk or configured)?
    pub fn is_junk(&self, kind: &str, value: &str) -> bool {
        if kind == "email" {
            if JUNK_EMAILS.contains(&value) {
                return true;
            }
            if let Some((local, _)) = value.rsplit_once('@') {
                if JUNK_EMAIL_LOCALS.contains(&local) {
                    return true;
                }
            }
        }
        let lower = value.to_lowercase();
        if self.bare.contains(&lower) {
            return true;
        }
        let key = format!("{kind}:{lower}");
        self.exact.contains(&key) || self.patterns.is_match(&format!("{kind}:{value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Blocklist {
        Blocklist::new(&BlocklistSettings {
            values: vec!["customer_id:c-000".into(), "DUMMY".into()],
            patterns: vec![r"^cookie_id:tmp-".into()],
        })
        .unwrap()
    }

    #[test]
    fn placeholders_are_junk_for_every_kind() {
        for v in [
            "",
            "  ",
            "null",
            "NULL",
            "undefined",
            "Anonymous",
            "unknown",
            "n/a",
        ] {
            assert!(list().is_junk_raw("cookie_id", v), "{v:?}");
            assert!(list().is_junk_raw("email", v), "{v:?}");
        }
        assert!(!list().is_junk_raw("cookie_id", "ck_123"));
    }

    #[test]
    fn one_digit_phones_are_junk() {
        for v in [
            "0000000000",
            "111-111-1111",
            "+1 111 111 1111",
            "9999999",
            "1234567890",
        ] {
            assert!(list().is_junk_raw("phone", v), "{v}");
        }
        assert!(!list().is_junk_raw("phone", "+1 415 234 5678"));
    }

    #[test]
    fn junk_emails() {
        for v in [
            "test@test.com",
            "noemail@example.com",
            "none@shop.example",
            "noreply@x.org",
        ] {
            assert!(list().is_junk("email", v), "{v}");
        }
        assert!(!list().is_junk("email", "bob@example.com"));
    }

    #[test]
    fn configured_values_and_patterns() {
        let l = list();
        assert!(l.is_junk("customer_id", "C-000"));
        assert!(!l.is_junk("loyalty_id", "C-000"));
        assert!(l.is_junk("loyalty_id", "dummy"));
        assert!(l.is_junk("cookie_id", "tmp-42"));
        assert!(!l.is_junk("cookie_id", "ck-42"));
    }

    #[test]
    fn hashes_of_junk_are_junk() {
        use crate::ingest::identifier::sha256_hex;
        let l = Blocklist::new(&BlocklistSettings {
            values: vec!["email:shared@shop.example".into()],
            patterns: vec![],
        })
        .unwrap();
        assert!(l.is_junk("email_sha256", &sha256_hex("test@test.com")));
        assert!(l.is_junk("email_sha256", &sha256_hex("shared@shop.example")));
        assert!(!l.is_junk("email_sha256", &sha256_hex("bob@example.com")));
    }

    #[test]
    fn bad_regex_is_a_named_config_error() {
        let err = Blocklist::new(&BlocklistSettings {
            values: vec![],
            patterns: vec!["(".into()],
        })
        .unwrap_err();
        assert!(err.contains("blocklist.patterns"));
    }
}
