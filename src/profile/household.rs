//! Households: profiles bound by a shared normalized postal address or a shared device.
//!
//! **Rule.** Two profiles are in the same household when (a) their surviving addresses have
//! the same normalized key (street, postal code and country; see [`address_key`]), or (b)
//! a device (`device_id` or `cookie_id`) of one was seen in an event of the other: the
//! device's link to the other person was refused by an identity rule (e.g. two customer
//! ids on one family tablet), so the refused edge records the sharing. A household is the
//! connected group over these bonds, bounded by `households.max_members`. Its id is
//! `hh_` followed by the sequence number of its oldest member profile.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use serde_json::Value;

use crate::ingest::identifier::DEVICE_KINDS;
use crate::model::ids::ordered_pair;
use crate::model::{ident_key, IdentKey};
use crate::store::{GraphStore, ProfileId, ProfileState, StoreError};

/// Normalized street + postal code + country; `None` without street and postal code.
pub fn address_key(address: &Value) -> Option<String> {
    let field = |name: &str| address.get(name).and_then(Value::as_str).unwrap_or("");
    let street = normalize_street(field("street"));
    let postal: String = field("postal_code")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_uppercase();
    if street.is_empty() || postal.is_empty() {
        return None;
    }
    let country = field("country").trim().to_uppercase();
    Some(format!("{street}|{postal}|{country}"))
}

/// Lowercases, strips punctuation and abbreviates common street words.
pub fn normalize_street(street: &str) -> String {
    let cleaned: String = street
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    cleaned
        .split_whitespace()
        .map(street_word)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The canonical form of one lowercase street word (`street` -> `st`); empty for words
/// that carry no address information (`apt`, `unit`).
pub fn street_word(w: &str) -> &str {
    match w {
        "street" => "st",
        "avenue" => "ave",
        "road" => "rd",
        "drive" => "dr",
        "lane" => "ln",
        "boulevard" => "blvd",
        "court" => "ct",
        "place" => "pl",
        "apartment" | "apt" | "unit" | "suite" | "no" => "",
        "north" => "n",
        "south" => "s",
        "east" => "e",
        "west" => "w",
        other => other,
    }
}

/// What binds two members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Bond {
    SharedAddress {
        a: ProfileId,
        b: ProfileId,
    },
    SharedDevice {
        a: ProfileId,
        b: ProfileId,
        device: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Household {
    pub household_id: String,
    pub members: Vec<ProfileId>,
    pub bonds: Vec<Bond>,
    /// True when the member limit stopped the search.
    pub truncated: bool,
}

/// The household id of a household whose oldest member has sequence number `seq`.
pub fn household_id(seq: u64) -> String {
    format!("hh_{seq:012}")
}

/// The profile id a household id names (its oldest member when it was issued).
pub fn profile_of_household_id(hid: &str) -> Option<ProfileId> {
    let digits = hid.strip_prefix("hh_")?;
    let seq: u64 = digits.parse().ok()?;
    Some(crate::resolve::session::profile_id(seq))
}

/// Profiles sharing a device with `state`: refused edges between an identifier of this
/// profile and one of another profile where either end is a device or cookie. Either
/// person may own the device node, so both directions are found.
fn device_partners(
    store: &dyn GraphStore,
    state: &ProfileState,
) -> Result<Vec<(ProfileId, String)>, StoreError> {
    let mut out = Vec::new();
    for (kind, values) in &state.identifiers {
        for value in values {
            let key = ident_key(kind, value);
            for e in store.edges_of(&key, 1000)? {
                if e.is_active() {
                    continue;
                }
                let other = IdentKey::from(e.other(&key));
                let device = if DEVICE_KINDS.contains(&kind.as_str()) {
                    key.to_string()
                } else if DEVICE_KINDS.contains(&other.kind()) {
                    other.to_string()
                } else {
                    continue;
                };
                if let Some(n) = store.node(&other)? {
                    if n.profile_id != state.id {
                        out.push((n.profile_id, device));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The household of profile `start` (which must be live), by breadth-first search.
pub fn household_of(
    store: &dyn GraphStore,
    start: &ProfileState,
    max_members: usize,
) -> Result<Household, StoreError> {
    let mut members: BTreeMap<ProfileId, u64> = BTreeMap::from([(start.id.clone(), start.seq)]);
    let mut bonds = BTreeSet::new();
    let mut queue = VecDeque::from([start.clone()]);
    let mut truncated = false;
    while let Some(p) = queue.pop_front() {
        let mut neighbours: Vec<(ProfileId, Bond)> = Vec::new();
        if let Some(key) = &p.address_key {
            for q in store.profiles_at_address(key, max_members + 1)? {
                if q != p.id {
                    let (a, b) = ordered_pair(&p.id, &q);
                    neighbours.push((q, Bond::SharedAddress { a, b }));
                }
            }
        }
        for (q, device) in device_partners(store, &p)? {
            let (a, b) = ordered_pair(&p.id, &q);
            neighbours.push((q, Bond::SharedDevice { a, b, device }));
        }
        for (q, bond) in neighbours {
            bonds.insert(bond);
            if members.contains_key(&q) {
                continue;
            }
            if members.len() >= max_members {
                truncated = true;
                continue;
            }
            if let Some(state) = store.profile(&q)? {
                members.insert(q, state.seq);
                queue.push_back(state);
            }
        }
    }
    bonds.retain(|b| match b {
        Bond::SharedAddress { a, b } | Bond::SharedDevice { a, b, .. } => {
            members.contains_key(a) && members.contains_key(b)
        }
    });
    let oldest = members.values().min().copied().unwrap_or(start.seq);
    Ok(Household {
        household_id: household_id(oldest),
        members: members.into_keys().collect(),
        bonds: bonds.into_iter().collect(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn address_keys_ignore_case_punctuation_and_street_words() {
        let a =
            json!({"street": "12 Main Street, Apt. 4", "postal_code": "94107", "country": "us"});
        let b = json!({"street": "12 MAIN ST # 4", "postal_code": " 94107", "country": "US", "city": "SF"});
        assert_eq!(address_key(&a), address_key(&b));
        assert!(address_key(&a).is_some());
    }

    #[test]
    fn incomplete_addresses_have_no_key() {
        assert_eq!(address_key(&json!({"street": "12 Main St"})), None);
        assert_eq!(address_key(&json!({"postal_code": "94107"})), None);
    }

    #[test]
    fn household_ids_round_trip() {
        let hid = household_id(42);
        assert_eq!(
            profile_of_household_id(&hid).as_deref(),
            Some("p_000000000042")
        );
        assert_eq!(profile_of_household_id("hh_x"), None);
        assert_eq!(profile_of_household_id("p_1"), None);
    }
}
