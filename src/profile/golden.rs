//! The golden profile: one resolved view of a person, rendered from [`ProfileState`] by
//! survivorship and cached (as JSON) in the store on every change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ingest::identifier::DEVICE_KINDS;
use crate::resolve::{Rules, Session};
use crate::store::records::ident_key;
use crate::store::{ProfileId, ProfileState, StoreError};

/// Traits with a fixed meaning; every other trait lands in `traits.extra`.
const CORE_TRAITS: [&str; 4] = ["first_name", "last_name", "birth_date", "address"];

/// A device or browser of the profile, as shown in the golden profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub kind: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

/// The resolved view of one person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenProfile {
    pub profile_id: ProfileId,
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
    pub traits: GoldenTraits,
    pub first_seen: String,
    pub last_seen: String,
    pub event_count: u64,
    pub sources: BTreeSet<String>,
    pub devices: Vec<DeviceSummary>,
    /// Filled in when served (households depend on other profiles); `null` if alone.
    #[serde(default)]
    pub household_id: Option<String>,
    /// Profile ids merged into this one; they keep resolving here.
    pub merged_ids: BTreeSet<ProfileId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GoldenTraits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// RFC 3339 text of epoch milliseconds.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn chosen(state: &ProfileState, rules: &Rules, name: &str) -> Option<Value> {
    state
        .traits
        .choose(name, rules.strategy(name), &|s| rules.source_rank(s))
        .cloned()
}

/// The normalized key of the surviving address, if it has one.
pub fn chosen_address_key(state: &ProfileState, rules: &Rules) -> Option<String> {
    chosen(state, rules, "address").and_then(|a| super::household::address_key(&a))
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
    let extra = state
        .traits
        .names()
        .filter(|n| !CORE_TRAITS.contains(n))
        .filter_map(|n| chosen(state, rules, n).map(|v| (n.to_owned(), v)))
        .collect();
    Ok(GoldenProfile {
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

/// First byte of a cached golden profile: the profile may belong to a household
/// (another profile lives at its address, now or once since it was rendered, or it
/// shares a device), so serving it needs the household computed.
pub const MAY_HAVE_HOUSEHOLD: u8 = 1;
/// First byte of a cached golden profile that is served exactly as stored: when it was
/// rendered nobody else lived at its address and it shared no device, and nobody has
/// moved in since (a profile rendered at an address turns the copies of those already
/// there to [`MAY_HAVE_HOUSEHOLD`] in the same write).
pub const ALONE: u8 = 0;

/// How many other profiles at its address a rendered profile looks at. Enough: from the
/// second resident on, every profile at an address is [`MAY_HAVE_HOUSEHOLD`], so an
/// [`ALONE`] copy there is always among the first few found.
pub const CO_RESIDENTS_CHECKED: usize = 8;

/// The cache value: one household-hint byte, then the golden profile JSON.
pub fn cache_value(hint: u8, json: Vec<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(json.len() + 1);
    v.push(hint);
    v.extend_from_slice(&json);
    v
}

/// Renders the cached JSON of the golden profile.
pub fn render(s: &Session<'_>, state: &ProfileState, rules: &Rules) -> Result<Vec<u8>, StoreError> {
    let golden = build(s, state, rules)?;
    serde_json::to_vec(&golden)
        .map_err(|e| StoreError::Engine(format!("encode golden profile: {e}")))
}
