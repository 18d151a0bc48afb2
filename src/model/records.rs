//! The records kept in a graph store: identifier nodes, edges with provenance, profile
//! state (with the trait observations survivorship chooses from), match attributes,
//! stored events and merge history. Plain data with serde derives: no storage engine
//! types, no resolution or matching logic (that lives in `resolve`, `profile` and
//! `matching`, as `impl` blocks and functions over these types). How they become bytes
//! is [`super::codec`]'s business.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde_json::Value;

use super::ids::{ident_key, IdentKey, ProfileId};

/// Upper bound of event ids kept on an edge for provenance.
pub const EDGE_EVENT_IDS: usize = 8;

/// An identifier node of the identity graph.
///
/// `kind` and `value` are not stored in the record (the store key holds them); stores fill
/// them in when they read a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(skip)]
    pub kind: String,
    #[serde(skip)]
    pub value: String,
    /// The profile this identifier currently belongs to (always a live profile id).
    pub profile_id: ProfileId,
    /// Milliseconds since the Unix epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    pub sources: BTreeSet<String>,
    pub event_count: u64,
    /// Device platform (ios, android, web...) when an event told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Node {
    pub fn key(&self) -> IdentKey {
        ident_key(&self.kind, &self.value)
    }
}

/// Whether an edge may join profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EdgeStatus {
    /// The link joins its two identifiers into one profile.
    Active,
    /// The link was refused by an identity rule and never joins profiles.
    Refused { rule: String },
}

/// An edge between two identifiers seen together, with provenance.
///
/// `a < b`; like a node's kind and value, the endpoints live in the store key, not in the
/// stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    #[serde(skip)]
    pub a: IdentKey,
    #[serde(skip)]
    pub b: IdentKey,
    #[serde(flatten)]
    pub status: EdgeStatus,
    pub sources: BTreeSet<String>,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Ids of the first events that created or reinforced the edge (bounded).
    pub event_ids: Vec<String>,
    /// Set when probabilistic matching created the edge: why the two records were judged
    /// the same person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probable: Option<ProbableLink>,
}

/// The evidence of a probable link: the model's verdict on the two records it compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbableLink {
    /// P(same person) by the Fellegi-Sunter model.
    pub probability: f64,
    /// The match weight (log2 odds), prior included.
    pub weight: f64,
    /// Each compared field's contribution (log2(m/u)); missing fields are left out.
    pub fields: Vec<FieldContribution>,
    /// Mean probability of the two profiles' sampled records (the chaining guard).
    pub cluster_probability: f64,
}

/// A candidate pair the matcher was unsure of (scored between `matching.review_threshold`
/// and `matching.threshold`), waiting for a steward's decision (`/v1/review`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Its place in the queue (from the history sequence: oldest first).
    pub seq: u64,
    pub at: i64,
    /// The record that arrived (its anchor identifier) and the candidate's identifier.
    pub a: IdentKey,
    pub b: IdentKey,
    /// The profiles of `a` and `b` when it was proposed.
    pub profiles: Vec<ProfileId>,
    /// The event whose record was matched.
    pub event_id: String,
    /// The source of that event.
    pub source: String,
    pub evidence: ProbableLink,
}

/// One field's share of a probable link's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldContribution {
    pub field: String,
    /// Agreement level: 0 is the strongest agreement, the highest is "different".
    pub level: u8,
    /// The field's part of the match weight, its term-frequency adjustment included.
    pub weight: f64,
    /// The term-frequency adjustment within `weight` (how much more or less an exact
    /// agreement on this value says than on the field's average value); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tf_adjustment: Option<f64>,
}

/// The comparable attributes of a record (already normalized by `matching::compare::normalize`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// Lowercased email, compared for typos (identity itself is the identifier's job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The comparable attributes last seen with an identifier (the anchor of an event that
/// carried person traits), indexed under its blocking keys for probabilistic matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    pub attributes: Attributes,
    /// Blocking keys the record is indexed under.
    pub keys: Vec<String>,
}

impl Edge {
    pub fn is_active(&self) -> bool {
        matches!(self.status, EdgeStatus::Active)
    }

    /// The endpoint that is not `key`.
    pub fn other<'a>(&'a self, key: &str) -> &'a str {
        if self.a == key {
            &self.b
        } else {
            &self.a
        }
    }
}

/// One distinct value of a trait with how it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub value: Value,
    pub count: u64,
    pub last_seen: i64,
    pub sources: BTreeSet<String>,
    /// When the value was first seen (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<i64>,
    /// The latest event that carried the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
}

/// A value a steward pinned for a trait: the golden profile shows it whatever
/// survivorship would choose, until unpinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub value: Value,
    pub actor: String,
    pub reason: String,
    pub at: i64,
}

/// Observed values per trait name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct TraitStats(pub BTreeMap<String, Vec<Observation>>);

/// The resolver's state of one profile; the golden profile is rendered from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    pub id: ProfileId,
    /// Creation order; the oldest profile (lowest seq) survives a merge.
    pub seq: u64,
    /// Identifier values by kind.
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub event_count: u64,
    pub sources: BTreeSet<String>,
    pub traits: TraitStats,
    /// Normalized address key of the surviving address, for household grouping.
    #[serde(default)]
    pub address_key: Option<String>,
    /// Profile ids absorbed into this one (for history and alias resolution).
    #[serde(default)]
    pub absorbed: BTreeSet<ProfileId>,
    /// Set once a refused edge touching a device or cookie links this profile to another
    /// (a shared device). Never cleared by mistake: merges OR it, splits inherit it.
    #[serde(default)]
    pub shared_device: bool,
    /// Remembered steward splits: `"<split>/<part>"` marks. Two profiles carrying marks of
    /// the same split with different parts were separated by a steward and are never
    /// merged again automatically (events and matching report a `steward_split`
    /// conflict); only a steward's merge joins them, collapsing the marks.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub split_marks: BTreeSet<String>,
    /// Values stewards pinned, by trait name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, Pin>,
    /// Event aggregates by event type, for audience filters (see `activation::activity`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activity: BTreeMap<String, TypeActivity>,
    /// Audiences whose filter the profile matched when last evaluated: `true` a member,
    /// `false` matched but left out for want of the audience's consent purpose.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audiences: BTreeMap<String, bool>,
}

/// One event type's aggregates in a profile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TypeActivity {
    /// Events of the type, all time.
    pub count: u64,
    /// Time (ms) of the latest.
    pub last: i64,
    /// All-time sums of the summed properties (`audiences.sum_properties`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, f64>,
    /// Per UTC day (days since the epoch) of the last `audiences.activity_days` days:
    /// events and sums, for windows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<i64, DayActivity>,
}

/// One day of one event type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DayActivity {
    pub n: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, f64>,
}

impl ProfileState {
    pub fn new(id: ProfileId, seq: u64, at: i64) -> Self {
        ProfileState {
            id,
            seq,
            identifiers: BTreeMap::new(),
            first_seen: at,
            last_seen: at,
            event_count: 0,
            sources: BTreeSet::new(),
            traits: TraitStats::default(),
            address_key: None,
            absorbed: BTreeSet::new(),
            shared_device: false,
            split_marks: BTreeSet::new(),
            pins: BTreeMap::new(),
            activity: BTreeMap::new(),
            audiences: BTreeMap::new(),
        }
    }

    /// Whether a steward split this profile's people apart from `other`'s: both carry a
    /// mark of the same split with different parts.
    pub fn kept_apart(&self, other: &BTreeSet<String>) -> bool {
        kept_apart(&self.split_marks, other)
    }

    /// After a steward's merge: the parts of one split now in this profile keep one mark
    /// (the lowest part), so the profile stays apart from that split's other parts only.
    pub fn collapse_split_marks(&mut self) {
        let mut seen = BTreeSet::new();
        self.split_marks
            .retain(|m| seen.insert(m.split_once('/').map_or(m.as_str(), |(t, _)| t).to_owned()));
    }

    pub fn identifier_keys(&self) -> impl Iterator<Item = IdentKey> + '_ {
        self.identifiers
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| ident_key(k, v)))
    }

    pub fn identifier_count(&self) -> usize {
        self.identifiers.values().map(BTreeSet::len).sum()
    }

    pub fn insert_identifier(&mut self, kind: &str, value: &str) {
        self.identifiers
            .entry(kind.to_owned())
            .or_default()
            .insert(value.to_owned());
    }

    pub fn remove_identifier(&mut self, kind: &str, value: &str) {
        if let Some(set) = self.identifiers.get_mut(kind) {
            set.remove(value);
            if set.is_empty() {
                self.identifiers.remove(kind);
            }
        }
    }
}

/// Whether two sets of split marks hold different parts of one steward split.
pub fn kept_apart(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a.iter().any(|x| {
        let (split, part) = x.split_once('/').unwrap_or((x, ""));
        b.iter().any(|y| {
            let (s2, p2) = y.split_once('/').unwrap_or((y, ""));
            s2 == split && p2 != part
        })
    })
}

/// A steward's action recorded on a history entry: who (the API key's name), why, and
/// the rules they overrode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StewardNote {
    pub actor: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// An event as stored: normalized identifiers and the attributes survivorship needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub seq: u64,
    pub source: String,
    pub event_type: String,
    pub timestamp: i64,
    pub received_at: i64,
    /// Normalized identifier keys carried by the event (blocklisted ones excluded).
    pub identifiers: Vec<IdentKey>,
    pub traits: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// When retention (`retention.events`) aged the event out: its traits and properties
    /// are gone, what resolution still needs (id, sequence, source, type, times and the
    /// identifier keys the graph holds anyway) is kept, so a resent event stays a
    /// duplicate, an erasure still finds it, and a split still counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aged_at: Option<i64>,
}

impl StoredEvent {
    /// The event without its payload (see [`StoredEvent::aged_at`]).
    pub fn aged(self, at: i64) -> StoredEvent {
        StoredEvent {
            traits: BTreeMap::new(),
            properties: serde_json::Map::new(),
            aged_at: Some(at),
            ..self
        }
    }
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    Created,
    Merged,
    Conflict,
    Split,
    LinkDeleted,
    IdentifierDeleted,
    /// The person was erased: only this tombstone remains.
    Erased,
    /// A steward pinned a trait's value (the trait in `detail`).
    Pinned,
    /// A steward removed a pin.
    Unpinned,
}

/// One entry of a profile's merge history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: i64,
    pub kind: HistoryKind,
    /// Every profile the entry concerns; it is stored under each of them.
    pub profiles: Vec<ProfileId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor: Option<ProfileId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absorbed: Vec<ProfileId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The rule behind the change, e.g. `shared_identifier` or `max_per_profile:customer_id=1`.
    pub rule: String,
    /// Identifiers that caused it (the linking identifiers, the deleted link...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<IdentKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Set on the entries of a steward's merge, split or review decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward: Option<StewardNote>,
}

/// Monotonic counters kept in the metadata column family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub profile_seq: u64,
    pub event_seq: u64,
    /// Number of write groups applied; derived indexes (search) record the last one they
    /// reflect.
    #[serde(default)]
    pub commit_seq: u64,
    pub history_seq: u64,
    /// Entries on the suppression list (ingest skips the check while there are none).
    #[serde(default)]
    pub suppressed: u64,
    /// Live profiles and identifier nodes, kept by every write group once `live_counted`
    /// (the embedded store counts them once when it is opened by a version that keeps
    /// them; a graph database's store does not).
    #[serde(default)]
    pub profiles: u64,
    #[serde(default)]
    pub identifiers: u64,
    #[serde(default)]
    pub live_counted: bool,
}
