//! Row-level scope: the one rule for what a key limited to some sources
//! (`KeySettings::sources`) may see of people other than the one it asked for. Every
//! `/v1` answer given to a scoped key passes through [`RowScope::redact`] before masking:
//! golden profiles, lookups, search, devices, households, graph, explain, history, the
//! audit log and the answers of admin writes. Later readers (change feed, exports) must
//! call it too.
//!
//! **References.** A string that names a person: a profile id (`p_<digits>`), a household
//! id (`hh_<digits>`, named after its oldest member `p_<digits>`), an identifier key
//! (`kind:value` of a known kind), an edge id (`key|key`), or an object `{kind, value}`.
//! A reference is **hidden** when the live profile it resolves to (identifiers to the
//! profile holding them, absorbed ids to their survivor, an edge to either end) holds no
//! data from the key's sources, or does not exist any more (deleted or erased
//! identifiers: nothing tells whose they were, so they are hidden too).
//!
//! **The rule**, the same everywhere:
//! 1. a hidden reference in a list is left out (`shared_with`, `members`, `profiles`,
//!    `identifiers`, `path`...);
//! 2. an object whose identity field (`id`, `profile_id`, `source`, `target`, `from`,
//!    `to`, `a`, `b`, or a Cytoscape `data` wrapper) is hidden is left out of its list
//!    (graph nodes and edges, household bonds, search hits);
//! 3. an object about profiles (a `profiles` list: history and audit entries) none of
//!    which is visible is left out;
//! 4. any other field holding a hidden reference becomes `null` (a merge's `survivor`, a
//!    household id named after a hidden member).
//!
//! [`RowScope::redact`] says when the answer as a whole is about a hidden person; the
//! caller then answers exactly as for one that does not exist.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::store::{ProfileId, StoreError};

/// What the rule needs to know of the graph (the engine implements it over its store).
pub trait Resolver {
    /// The sources of the live profile `id` resolves to (aliases followed); `None` when
    /// there is no such profile.
    fn profile_sources(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;
    /// The profile holding identifier `key` (`kind:value`), if any.
    fn identifier_profile(&self, key: &str) -> Result<Option<ProfileId>, StoreError>;
}

/// Fields that say what an object is: when one is hidden, the object is.
const IDENTITY_FIELDS: [&str; 9] = [
    "id",
    "profile_id",
    "source",
    "target",
    "from",
    "to",
    "a",
    "b",
    "data",
];

/// One caller's scope over one answer (visibility is remembered per reference).
pub struct RowScope<'a> {
    sources: &'a BTreeSet<String>,
    kinds: &'a [String],
    resolver: &'a dyn Resolver,
    profiles: HashMap<String, bool>,
    identifiers: HashMap<String, bool>,
}

/// `p_<digits>` (a profile id as the store makes them).
fn is_profile_id(s: &str) -> bool {
    s.strip_prefix("p_")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

impl<'a> RowScope<'a> {
    pub fn new(
        sources: &'a BTreeSet<String>,
        kinds: &'a [String],
        resolver: &'a dyn Resolver,
    ) -> RowScope<'a> {
        RowScope {
            sources,
            kinds,
            resolver,
            profiles: HashMap::new(),
            identifiers: HashMap::new(),
        }
    }

    /// Whether the caller sees profile `id` (an absorbed id: its survivor).
    pub fn sees_profile(&mut self, id: &str) -> Result<bool, StoreError> {
        if let Some(seen) = self.profiles.get(id) {
            return Ok(*seen);
        }
        let seen = self
            .resolver
            .profile_sources(id)?
            .is_some_and(|s| s.iter().any(|s| self.sources.contains(s)));
        self.profiles.insert(id.to_owned(), seen);
        Ok(seen)
    }

    /// Whether the caller sees the profile holding identifier `key`.
    pub fn sees_identifier(&mut self, key: &str) -> Result<bool, StoreError> {
        if let Some(seen) = self.identifiers.get(key) {
            return Ok(*seen);
        }
        let seen = match self.resolver.identifier_profile(key)? {
            Some(pid) => self.sees_profile(&pid)?,
            None => false,
        };
        self.identifiers.insert(key.to_owned(), seen);
        Ok(seen)
    }

    fn is_identifier_key(&self, s: &str) -> bool {
        s.split_once(':')
            .is_some_and(|(kind, value)| !value.is_empty() && self.kinds.iter().any(|k| k == kind))
    }

    /// Whether `s` is a reference the caller does not see.
    fn hidden_text(&mut self, s: &str) -> Result<bool, StoreError> {
        if is_profile_id(s) {
            return Ok(!self.sees_profile(s)?);
        }
        if let Some(digits) = s.strip_prefix("hh_") {
            let pid = format!("p_{digits}");
            if is_profile_id(&pid) {
                return Ok(!self.sees_profile(&pid)?);
            }
        }
        if let Some((a, b)) = s.split_once('|') {
            if self.is_identifier_key(a) && self.is_identifier_key(b) {
                return Ok(!(self.sees_identifier(a)? && self.sees_identifier(b)?));
            }
        }
        if self.is_identifier_key(s) {
            return Ok(!self.sees_identifier(s)?);
        }
        Ok(false)
    }

    /// Applies the rule to `v` in place; `true` when `v` itself is about a hidden person.
    pub fn redact(&mut self, v: &mut Value) -> Result<bool, StoreError> {
        match v {
            Value::String(s) => {
                let s = s.clone();
                self.hidden_text(&s)
            }
            Value::Array(items) => {
                self.retain(items)?;
                Ok(false)
            }
            Value::Object(map) => {
                if let (Some(Value::String(kind)), Some(Value::String(value))) =
                    (map.get("kind"), map.get("value"))
                {
                    let key = format!("{kind}:{value}");
                    if self.is_identifier_key(&key) && !self.sees_identifier(&key)? {
                        return Ok(true);
                    }
                }
                for (name, child) in map.iter_mut() {
                    if let Value::Array(items) = child {
                        let (refs, hidden) = self.retain(items)?;
                        if name == "profiles" && refs > 0 && hidden == refs {
                            return Ok(true);
                        }
                    } else if self.redact(child)? {
                        if IDENTITY_FIELDS.contains(&name.as_str()) {
                            return Ok(true);
                        }
                        *child = Value::Null;
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Leaves the hidden items out of `items`; returns how many profile ids it held and
    /// how many of them were hidden.
    fn retain(&mut self, items: &mut Vec<Value>) -> Result<(usize, usize), StoreError> {
        let mut refs = 0;
        let mut hidden = 0;
        let mut kept = Vec::with_capacity(items.len());
        for mut item in items.drain(..) {
            let is_ref = item.as_str().is_some_and(is_profile_id);
            let drop = self.redact(&mut item)?;
            refs += usize::from(is_ref);
            hidden += usize::from(is_ref && drop);
            if !drop {
                kept.push(item);
            }
        }
        *items = kept;
        Ok((refs, hidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// p_1 holds pos data (visible to a pos key), p_2 crm only, p_3 was absorbed by p_1.
    struct Graph;

    impl Resolver for Graph {
        fn profile_sources(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
            Ok(match id {
                "p_1" | "p_3" => Some(vec!["pos".into(), "crm".into()]),
                "p_2" => Some(vec!["crm".into()]),
                _ => None,
            })
        }

        fn identifier_profile(&self, key: &str) -> Result<Option<ProfileId>, StoreError> {
            Ok(match key {
                "customer_id:A1" | "device_id:d1" | "email:a@x.com" => Some("p_1".into()),
                "customer_id:B1" | "device_id:d2" => Some("p_2".into()),
                _ => None,
            })
        }
    }

    fn redact(v: &mut Value) -> bool {
        let sources = BTreeSet::from(["pos".to_owned()]);
        let kinds: Vec<String> = ["email", "customer_id", "device_id"]
            .map(String::from)
            .to_vec();
        RowScope::new(&sources, &kinds, &Graph)
            .redact(v)
            .expect("no store error")
    }

    #[test]
    fn hidden_references_leave_lists_and_objects_they_name() {
        let mut history = json!({"profile_id": "p_1", "history": [
            {"kind": "conflict", "profiles": ["p_1", "p_2"], "rule": "max_per_profile:customer_id=1",
             "identifiers": ["customer_id:A1", "customer_id:B1"]},
            {"kind": "merged", "profiles": ["p_1", "p_3"], "survivor": "p_1", "absorbed": ["p_3"]},
            {"kind": "split", "profiles": ["p_2"], "survivor": "p_2"},
        ]});
        assert!(!redact(&mut history));
        assert_eq!(
            history["history"],
            json!([
                {"kind": "conflict", "profiles": ["p_1"], "rule": "max_per_profile:customer_id=1",
                 "identifiers": ["customer_id:A1"]},
                {"kind": "merged", "profiles": ["p_1", "p_3"], "survivor": "p_1", "absorbed": ["p_3"]},
            ])
        );

        let mut graph = json!({"profile_id": "p_1", "elements": {
            "nodes": [{"data": {"id": "device_id:d1", "kind": "device_id", "value": "d1", "profile_id": "p_1"}},
                      {"data": {"id": "device_id:d2", "kind": "device_id", "value": "d2", "profile_id": "p_2"}}],
            "edges": [{"data": {"id": "device_id:d1|device_id:d2", "source": "device_id:d1",
                                "target": "device_id:d2", "sources": ["web"]}}]}});
        assert!(!redact(&mut graph));
        assert_eq!(graph["elements"]["nodes"].as_array().map(Vec::len), Some(1));
        assert_eq!(graph["elements"]["edges"], json!([]));

        let mut devices =
            json!({"devices": [{"kind": "device_id", "value": "d1", "shared_with": ["p_2"]}]});
        redact(&mut devices);
        assert_eq!(
            devices["devices"],
            json!([{"kind": "device_id", "value": "d1", "shared_with": []}])
        );

        let mut household = json!({"household_id": "hh_2", "members": ["p_2", "p_1"],
            "bonds": [{"type": "shared_address", "a": "p_2", "b": "p_1"}]});
        redact(&mut household);
        assert_eq!(
            household,
            json!({"household_id": null, "members": ["p_1"], "bonds": []})
        );
    }

    #[test]
    fn an_answer_about_a_hidden_or_unknown_person_is_hidden_as_a_whole() {
        assert!(redact(&mut json!({"profile_id": "p_2", "traits": {}})));
        assert!(redact(&mut json!({"profile_id": "p_9"})));
        assert!(redact(&mut json!({"seq": 4, "profiles": ["p_2"]})));
        assert!(!redact(&mut json!({"seq": 5, "route": "/v1/config"})));
        // Unknown identifiers are hidden; text that is no reference is left alone.
        let mut v = json!([
            "email:gone@x.com",
            "email:a@x.com",
            "crm",
            "p_x",
            "note: p_2"
        ]);
        redact(&mut v);
        assert_eq!(v, json!(["email:a@x.com", "crm", "p_x", "note: p_2"]));
    }
}
