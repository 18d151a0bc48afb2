//! The typed golden profile: the resolved view of one person that lookups serve, search
//! indexes and exports carry. `profile::golden` renders it from a [`super::ProfileState`];
//! the store caches it rendered (see [`super::codec::golden_cache_value`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::ProfileId;

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
    /// Each configured purpose's latest consent state, with where and when it was given.
    /// A purpose missing here was never stated: activations treat it as not granted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consents: BTreeMap<String, Consent>,
    /// Ids of the audiences the profile is a member of (consent checked).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub audiences: BTreeSet<String>,
}

impl GoldenProfile {
    /// Whether the profile's latest consent for `purpose` is `granted`.
    pub fn consented(&self, purpose: &str) -> bool {
        self.consents
            .get(purpose)
            .is_some_and(|c| c.state == ConsentState::Granted)
    }
}

/// A purpose's consent state as the latest event stating it left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentState {
    Granted,
    Denied,
}

/// One purpose's consent in the golden profile, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub state: ConsentState,
    /// Source of the event that stated it last.
    pub source: String,
    /// Event time of that statement (RFC 3339).
    pub at: String,
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
