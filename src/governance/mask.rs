//! The one place where personal values are masked or pseudonymized for a caller, applied
//! to every JSON answer of the API (profiles, lookups, search hits, graph, explain,
//! devices, households, history), which is also everything the console shows.
//!
//! - **Masked** (agents without `unmask`): emails `j***@example.com`, phones
//!   `+1 *** *** 0100`, birth dates `****-**-**`, street `***` and postcode `94***`. Names,
//!   cities and other identifiers stay readable: an agent must be able to confirm who is on
//!   the line. Hashed emails and phones (`email_sha256`, `phone_sha256`) get their keyed
//!   pseudonym, as for analysts: the hash would confirm a guessed email or phone as well
//!   as the value itself, the pseudonym cannot.
//! - **Pseudonymized** (analysts): every identifier value becomes a stable keyed pseudonym
//!   (`email:ps_3f9a…`, HMAC-SHA256 with the governance secret), so the graph keeps its
//!   shape and joins; traits are masked as above.
//!
//! The walker knows where values live: `{kind, value}` objects (devices, graph nodes),
//! `identifiers` maps of kind to values (golden profiles), `kind:value` strings (graph ids,
//! explain paths, history) and the `birth_date` and `address` traits.

use serde_json::Value;

use super::keys::Visibility;

pub struct Masker<'a> {
    pub visibility: Visibility,
    pub secret: &'a [u8],
    /// Identifier kinds known to the service (to recognise `kind:value` strings).
    pub kinds: &'a [String],
}

impl Masker<'_> {
    /// Masks `v` in place for the caller's visibility.
    pub fn apply(&self, v: &mut Value) {
        if self.visibility != Visibility::Full {
            self.walk(v);
        }
    }

    fn walk(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                let kind = map.get("kind").and_then(Value::as_str).map(str::to_owned);
                for (k, child) in map.iter_mut() {
                    match (k.as_str(), &kind, child) {
                        ("value" | "label", Some(kind), Value::String(s)) => {
                            *s = self.identifier(kind, s);
                        }
                        ("identifiers", _, Value::Object(by_kind)) => {
                            for (kind, values) in by_kind.iter_mut() {
                                self.values(kind, values);
                            }
                        }
                        ("birth_date", _, Value::String(s)) => *s = "****-**-**".into(),
                        // Street, and a search's echo of what the caller typed.
                        ("street" | "query", _, Value::String(s)) => *s = "***".into(),
                        ("postal_code", _, Value::String(s)) => *s = keep_prefix(s, 2),
                        (_, _, child) => self.walk(child),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item);
                }
            }
            Value::String(s) => *s = self.text(s),
            _ => {}
        }
    }

    fn values(&self, kind: &str, values: &mut Value) {
        match values {
            Value::Array(items) => {
                for item in items {
                    self.values(kind, item);
                }
            }
            Value::String(s) => *s = self.identifier(kind, s),
            _ => {}
        }
    }

    /// A free string: a `kind:value` identifier key, or two joined by `|` (an edge id).
    fn text(&self, s: &str) -> String {
        if let Some((a, b)) = s.split_once('|') {
            if self.as_key(a).is_some() && self.as_key(b).is_some() {
                return format!("{}|{}", self.text(a), self.text(b));
            }
        }
        match self.as_key(s) {
            Some((kind, value)) => format!("{kind}:{}", self.identifier(kind, value)),
            None => s.to_owned(),
        }
    }

    fn as_key<'s>(&self, s: &'s str) -> Option<(&'s str, &'s str)> {
        let (kind, value) = s.split_once(':')?;
        self.kinds
            .iter()
            .any(|k| k == kind)
            .then_some((kind, value))
    }

    /// One identifier value as the caller may see it.
    pub fn identifier(&self, kind: &str, value: &str) -> String {
        match self.visibility {
            Visibility::Full => value.to_owned(),
            Visibility::Pseudonymized => self.pseudonym(kind, value),
            Visibility::Masked => match kind {
                "email" => mask_email(value),
                "phone" => mask_phone(value),
                "email_sha256" | "phone_sha256" => self.pseudonym(kind, value),
                _ => value.to_owned(),
            },
        }
    }

    fn pseudonym(&self, kind: &str, value: &str) -> String {
        let hash = super::keyed_hash(self.secret, &format!("pseudonym:{kind}:{value}"));
        format!("ps_{}", hash.get(..16).unwrap_or(&hash))
    }
}

/// What masked value `text` (a caller's search query) presents in the raw: `"email"` for a
/// word holding `@`, `"phone number"` for a phone typed whole (only digits and `+-().`
/// separators, 6 to 15 digits, as the search reads phones) or a word of 6 or more digits
/// and separators. Callers shown these values masked may not search by them.
pub fn masked_value_in(text: &str) -> Option<&'static str> {
    let phone_like = |s: &str| {
        let digits = s.chars().filter(char::is_ascii_digit).count();
        digits >= 6
            && s.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    };
    if text.split_whitespace().any(|w| w.contains('@')) {
        return Some("email");
    }
    if phone_like(text.trim()) || text.split_whitespace().any(phone_like) {
        return Some("phone number");
    }
    None
}

fn keep_prefix(s: &str, n: usize) -> String {
    let head: String = s.chars().take(n).collect();
    format!("{head}***")
}

/// `john@example.com` -> `j***@example.com`.
pub fn mask_email(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".into(),
    }
}

/// `+14155550100` -> `+1 *** *** 0100` (country code and last four digits).
pub fn mask_phone(s: &str) -> String {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let cc = phonenumber::parse(None, s)
        .ok()
        .map(|n| n.code().value().to_string())
        .filter(|cc| digits.starts_with(cc.as_str()))
        .unwrap_or_default();
    let last: String = digits
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if cc.is_empty() {
        format!("*** *** {last}")
    } else {
        format!("+{cc} *** *** {last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds() -> Vec<String> {
        ["email", "phone", "customer_id", "cookie_id"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn agents_see_masked_contact_data_and_readable_names() {
        let kinds = kinds();
        let m = Masker {
            visibility: Visibility::Masked,
            secret: b"0123456789abcdef",
            kinds: &kinds,
        };
        let mut v = json!({
            "identifiers": {"email": ["john@example.com"], "phone": ["+14155550100"],
                            "customer_id": ["C-1"]},
            "traits": {"first_name": "John", "birth_date": "1984-03-07",
                       "address": {"street": "12 Oak St", "city": "Boston", "postal_code": "02108"}},
            "devices": [{"kind": "cookie_id", "value": "ck-1"}],
            "elements": [{"data": {"id": "email:john@example.com", "kind": "email",
                                   "value": "john@example.com", "label": "john@example.com"}},
                         {"data": {"id": "email:john@example.com|phone:+14155550100"}}],
            "at": "2026-11-01T10:00:00Z"
        });
        m.apply(&mut v);
        let text = v.to_string();
        for secret in [
            "john@example.com",
            "4155550100",
            "1984-03-07",
            "12 Oak St",
            "02108",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["identifiers"]["email"][0], "j***@example.com");
        assert_eq!(v["identifiers"]["phone"][0], "+1 *** *** 0100");
        assert_eq!(v["identifiers"]["customer_id"][0], "C-1");
        let hash = "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018";
        let hashed = m.identifier("email_sha256", hash);
        assert!(hashed.starts_with("ps_") && !hash.contains(&hashed[3..]));
        assert_eq!(hashed, m.identifier("email_sha256", hash), "stable");
        assert_eq!(v["traits"]["first_name"], "John");
        assert_eq!(v["traits"]["address"]["city"], "Boston");
        assert_eq!(v["traits"]["address"]["postal_code"], "02***");
        assert_eq!(v["elements"][0]["data"]["id"], "email:j***@example.com");
        assert_eq!(
            v["elements"][1]["data"]["id"],
            "email:j***@example.com|phone:+1 *** *** 0100"
        );
        assert_eq!(
            v["at"], "2026-11-01T10:00:00Z",
            "timestamps are not identifiers"
        );
    }

    #[test]
    fn raw_emails_and_phones_in_a_query_are_recognised() {
        for (q, what) in [
            ("bob@example.com", Some("email")),
            ("Bob Smith bob@", Some("email")),
            ("(415) 555-0199", Some("phone number")),
            ("+1 415 555 0199", Some("phone number")),
            ("Smith 4155550199", Some("phone number")),
            ("Bob Smith", None),
            ("CUST-1234567", None),
            ("Oak Street 12", None),
            ("94110", None),
        ] {
            assert_eq!(masked_value_in(q), what, "{q}");
        }
    }

    #[test]
    fn analysts_see_stable_pseudonyms() {
        let kinds = kinds();
        let m = Masker {
            visibility: Visibility::Pseudonymized,
            secret: b"0123456789abcdef",
            kinds: &kinds,
        };
        let a = m.identifier("customer_id", "C-1");
        assert_eq!(a, m.identifier("customer_id", "C-1"), "stable");
        assert_ne!(a, m.identifier("customer_id", "C-2"));
        assert!(a.starts_with("ps_") && !a.contains("C-1"));
        let other = Masker {
            secret: b"another-secret-key",
            ..m
        };
        assert_ne!(a, other.identifier("customer_id", "C-1"), "keyed");
        let mut v = json!({"id": "customer_id:C-1", "kind": "customer_id", "value": "C-1"});
        m.apply(&mut v);
        assert_eq!(v["value"], a.as_str());
        assert_eq!(v["id"], format!("customer_id:{a}"));
    }
}
