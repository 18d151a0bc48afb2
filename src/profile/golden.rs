//! The golden profile: one resolved view of a person, rendered from [`ProfileState`] by
//! survivorship and cached (as JSON) in the store on every change.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ingest::event::CONSENT_TRAIT_PREFIX;
use crate::model::golden::{Consent, ConsentState};

use crate::ingest::identifier::DEVICE_KINDS;
pub use crate::model::golden::{
    DeviceSummary, GoldenProfile, GoldenTraits, ALONE, CO_RESIDENTS_CHECKED, MAY_HAVE_HOUSEHOLD,
};
use crate::model::{ident_key, ProfileState};
use crate::resolve::{Rules, Session};
use crate::store::StoreError;

/// Traits with a fixed meaning; every other trait lands in `traits.extra`.
const CORE_TRAITS: [&str; 4] = ["first_name", "last_name", "birth_date", "address"];

/// RFC 3339 text of epoch milliseconds.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The value survivorship chooses for trait `name` of `state` (what the golden profile shows).
/// A steward's pin wins over survivorship.
pub fn chosen(state: &ProfileState, rules: &Rules, name: &str) -> Option<Value> {
    if let Some(pin) = state.pins.get(name) {
        return Some(pin.value.clone());
    }
    state
        .traits
        .choose(name, rules.strategy(name), &|s| rules.source_rank(s))
        .cloned()
}

/// The normalized key of the surviving address, if it has one.
pub fn chosen_address_key(state: &ProfileState, rules: &Rules) -> Option<String> {
    chosen(state, rules, "address").and_then(|a| super::household::address_key(&a))
}

/// Each purpose's latest consent statement (see [`CONSENT_TRAIT_PREFIX`]), with the
/// source and event time of that statement.
pub fn consents(state: &ProfileState, rules: &Rules) -> BTreeMap<String, Consent> {
    let mut out = BTreeMap::new();
    for name in state.traits.names() {
        let Some(purpose) = name.strip_prefix(CONSENT_TRAIT_PREFIX) else {
            continue;
        };
        let Some(o) = state
            .traits
            .winner(name, rules.strategy(name), &|s| rules.source_rank(s))
        else {
            continue;
        };
        let state = match o.value.get("state").and_then(Value::as_str) {
            Some("granted") => ConsentState::Granted,
            Some("denied") => ConsentState::Denied,
            _ => continue,
        };
        let source = o
            .value
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        out.insert(
            purpose.to_owned(),
            Consent {
                state,
                source,
                at: iso(o.last_seen),
            },
        );
    }
    out
}

/// Builds the golden profile of `state`.
pub fn build(
    s: &Session<'_>,
    state: &ProfileState,
    rules: &Rules,
) -> Result<GoldenProfile, StoreError> {
    let mut devices = Vec::new();
    for kind in DEVICE_KINDS {
        for value in state.identifiers.get(kind).into_iter().flatten() {
            if let Some(n) = s.node(&ident_key(kind, value))? {
                devices.push(DeviceSummary {
                    kind: kind.to_owned(),
                    value: value.clone(),
                    platform: n.platform.clone(),
                    first_seen: iso(n.first_seen),
                    last_seen: iso(n.last_seen),
                });
            }
        }
    }
    let names: std::collections::BTreeSet<&str> = state
        .traits
        .names()
        .chain(state.pins.keys().map(String::as_str))
        .collect();
    let extra = names
        .into_iter()
        .filter(|n| !CORE_TRAITS.contains(n) && !n.starts_with(CONSENT_TRAIT_PREFIX))
        .filter_map(|n| chosen(state, rules, n).map(|v| (n.to_owned(), v)))
        .collect();
    Ok(GoldenProfile {
        consents: consents(state, rules),
        audiences: state
            .audiences
            .iter()
            .filter(|(_, member)| **member)
            .map(|(id, _)| id.clone())
            .collect(),
        profile_id: state.id.clone(),
        identifiers: state.identifiers.clone(),
        traits: GoldenTraits {
            first_name: chosen(state, rules, "first_name"),
            last_name: chosen(state, rules, "last_name"),
            birth_date: chosen(state, rules, "birth_date"),
            address: chosen(state, rules, "address"),
            extra,
        },
        first_seen: iso(state.first_seen),
        last_seen: iso(state.last_seen),
        event_count: state.event_count,
        sources: state.sources.clone(),
        devices,
        household_id: None,
        merged_ids: state.absorbed.clone(),
    })
}

/// Renders the cached JSON of the golden profile.
pub fn render(s: &Session<'_>, state: &ProfileState, rules: &Rules) -> Result<Vec<u8>, StoreError> {
    let golden = build(s, state, rules)?;
    serde_json::to_vec(&golden)
        .map_err(|e| StoreError::Engine(format!("encode golden profile: {e}")))
}
