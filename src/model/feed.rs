//! The change feed's records: every change to the identity graph, in commit order, for
//! the systems downstream of idgraph (`GET /v1/changes`, webhooks, exports).
//!
//! A record is written in the same synced write as the change it describes (see
//! `resolve::feed`), so no acknowledged change is missing from the feed and no record
//! describes a change that was not stored.
//!
//! **Sequence numbers** increase strictly in commit order but are not contiguous: a
//! record's number is its write group's `commit_seq` shifted left by [`ORDINAL_BITS`],
//! plus its place in the group ([`seq`]). Clients keep the last number they processed
//! and ask for what comes after it.
//!
//! **Personal values**: records carry identifier values (which identifiers a profile
//! gained, lost, or which part of a split got which), never traits (a changed golden
//! profile names its fields, not their values). When a person is erased, every record
//! concerning them is rewritten without values ([`ChangeRecord::redact`]) in the erasure's
//! own write; the erasure record itself carries profile ids only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ids::{split_key, IdentKey, ProfileId};

/// Bits of a sequence number that hold the record's place in its write group.
pub const ORDINAL_BITS: u32 = 20;

/// Most records one write group can hold (a group has at most 20,000 events).
pub const MAX_GROUP_RECORDS: u64 = 1 << ORDINAL_BITS;

/// The sequence number of the `ordinal`-th record of write group `commit_seq`; `None` past
/// [`MAX_GROUP_RECORDS`].
pub fn seq(commit_seq: u64, ordinal: u64) -> Option<u64> {
    (ordinal < MAX_GROUP_RECORDS)
        .then(|| commit_seq.checked_mul(MAX_GROUP_RECORDS))
        .flatten()
        .map(|base| base | ordinal)
}

/// The write group a sequence number belongs to.
pub fn commit_of(seq: u64) -> u64 {
    seq >> ORDINAL_BITS
}

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// A new profile, with the identifiers it holds once its group is written.
    ProfileCreated,
    /// Identifiers the profile did not hold before (from an event, or from a merge).
    IdentifiersAdded,
    /// `survivor` absorbed `absorbed` (whose ids keep resolving to it).
    ProfilesMerged,
    /// A profile fell apart: `parts`, each with its identifiers.
    ProfileSplit,
    /// Golden fields that changed (names only, in `fields`).
    GoldenChanged,
    /// An identifier was deleted from the profile (by a steward or the API).
    IdentifierRemoved,
    /// A link between two identifiers was deleted (a split may follow).
    LinkRemoved,
    /// The person was erased: profile ids only.
    PersonErased,
    /// The profile became a member of `audience`.
    AudienceEntered,
    /// The profile stopped being a member of `audience` (no longer matches, consent
    /// withdrawn, merged into another profile, split, erased, or the audience deleted).
    AudienceExited,
}

impl ChangeType {
    pub const ALL: [ChangeType; 10] = [
        ChangeType::ProfileCreated,
        ChangeType::IdentifiersAdded,
        ChangeType::ProfilesMerged,
        ChangeType::ProfileSplit,
        ChangeType::GoldenChanged,
        ChangeType::IdentifierRemoved,
        ChangeType::LinkRemoved,
        ChangeType::PersonErased,
        ChangeType::AudienceEntered,
        ChangeType::AudienceExited,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ChangeType::ProfileCreated => "profile_created",
            ChangeType::IdentifiersAdded => "identifiers_added",
            ChangeType::ProfilesMerged => "profiles_merged",
            ChangeType::ProfileSplit => "profile_split",
            ChangeType::GoldenChanged => "golden_changed",
            ChangeType::IdentifierRemoved => "identifier_removed",
            ChangeType::LinkRemoved => "link_removed",
            ChangeType::PersonErased => "person_erased",
            ChangeType::AudienceEntered => "audience_entered",
            ChangeType::AudienceExited => "audience_exited",
        }
    }

    pub fn parse(name: &str) -> Option<ChangeType> {
        ChangeType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// How a merge was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    /// A shared identifier under the configured rules.
    Deterministic,
    /// The probabilistic matcher's score over the threshold.
    Probable,
    /// A steward's manual merge or accepted review item.
    Steward,
}

/// One part of a split profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPart {
    pub profile_id: ProfileId,
    #[serde(default)]
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
}

/// One change to the identity graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, when the change was resolved.
    pub at: i64,
    #[serde(rename = "type")]
    pub change: ChangeType,
    /// The profile the change is about (the survivor of a merge, the profile that was
    /// split): the key of the record in a Kafka topic.
    pub profile_id: ProfileId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor: Option<ProfileId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absorbed: Vec<ProfileId>,
    /// Every profile id an erasure removed (the profile and those it had absorbed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<ProfileId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<MatchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Identifier values by kind (added, removed, or the ends of a deleted link).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<SplitPart>,
    /// Names of the golden fields that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The audience a profile entered or exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Set when the person was erased since: the values were removed from the record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl ChangeRecord {
    /// A record of `change` about `profile_id` with nothing else set yet.
    pub fn new(change: ChangeType, profile_id: ProfileId, at: i64) -> Self {
        ChangeRecord {
            seq: 0,
            at,
            change,
            profile_id,
            survivor: None,
            absorbed: Vec::new(),
            erased: Vec::new(),
            rule: None,
            match_type: None,
            event_id: None,
            identifiers: BTreeMap::new(),
            parts: Vec::new(),
            fields: Vec::new(),
            audience: None,
            redacted: false,
        }
    }

    /// Every profile id the record concerns: erasing any of them redacts it.
    pub fn profiles(&self) -> BTreeSet<&ProfileId> {
        let mut out: BTreeSet<&ProfileId> = BTreeSet::new();
        out.insert(&self.profile_id);
        out.extend(self.survivor.iter());
        out.extend(self.absorbed.iter());
        out.extend(self.erased.iter());
        out.extend(self.parts.iter().map(|p| &p.profile_id));
        out
    }

    /// Whether the record holds personal values (identifier values) an erasure must
    /// remove.
    pub fn holds_values(&self) -> bool {
        !self.identifiers.is_empty() || self.parts.iter().any(|p| !p.identifiers.is_empty())
    }

    /// The subjects the record is indexed under (see [`profile_subject`] and
    /// [`identifier_subject`]) so that an erasure finds it: its profiles, and the
    /// identifier a removal names (which may later belong to someone else who is erased).
    /// A record without values (golden fields changed, an erasure) is not indexed.
    pub fn subjects(&self) -> Vec<String> {
        if !self.holds_values() {
            return Vec::new();
        }
        let mut out: Vec<String> = self
            .profiles()
            .into_iter()
            .map(|p| profile_subject(p))
            .collect();
        if matches!(
            self.change,
            ChangeType::IdentifierRemoved | ChangeType::LinkRemoved
        ) {
            for (kind, values) in &self.identifiers {
                for value in values {
                    out.push(identifier_subject(&crate::model::ident_key(kind, value)));
                }
            }
        }
        out
    }

    /// Removes every personal value (identifiers, the parts' identifiers, the linking
    /// identifiers of a rule) and marks the record redacted; ids, types, rules and field
    /// names stay.
    pub fn redact(&mut self) {
        self.identifiers.clear();
        for part in &mut self.parts {
            part.identifiers.clear();
        }
        self.redacted = true;
    }
}

/// The index subject of a profile's records.
pub fn profile_subject(id: &str) -> String {
    format!("p:{id}")
}

/// The index subject of the records naming a removed identifier.
pub fn identifier_subject(key: &str) -> String {
    format!("i:{key}")
}

/// `kind:value` keys as a map of kind to values.
pub fn by_kind<'a>(
    keys: impl IntoIterator<Item = &'a IdentKey>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in keys {
        let (kind, value) = split_key(key);
        out.entry(kind.to_owned())
            .or_default()
            .insert(value.to_owned());
    }
    out
}

/// Where the feed starts: records up to `pruned_through` were removed by retention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedBounds {
    /// Highest sequence number retention removed (0: none yet).
    pub pruned_through: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_follow_commit_order_then_place() {
        let a = seq(7, 0).unwrap_or_default();
        let b = seq(7, 5).unwrap_or_default();
        let c = seq(8, 0).unwrap_or_default();
        assert!(a < b && b < c);
        assert_eq!(commit_of(b), 7);
        assert_eq!(seq(7, MAX_GROUP_RECORDS), None);
        assert_eq!(seq(u64::MAX, 0), None);
    }

    #[test]
    fn redaction_keeps_ids_and_drops_values() {
        let mut r = ChangeRecord::new(ChangeType::ProfileSplit, ProfileId::from("p1"), 5);
        r.identifiers = by_kind(&[IdentKey::from("email:a@example.com")]);
        r.parts.push(SplitPart {
            profile_id: ProfileId::from("p2"),
            identifiers: by_kind(&[IdentKey::from("phone:+15550100")]),
        });
        r.fields.push("first_name".into());
        r.redact();
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert!(
            !text.contains("example.com") && !text.contains("5550100"),
            "{text}"
        );
        assert!(
            text.contains("p2")
                && text.contains("first_name")
                && text.contains("\"redacted\":true")
        );
        assert_eq!(
            ChangeType::parse("profile_split"),
            Some(ChangeType::ProfileSplit)
        );
    }

    #[test]
    fn removals_are_indexed_under_their_identifier_too() {
        let mut r = ChangeRecord::new(ChangeType::IdentifierRemoved, ProfileId::from("p1"), 5);
        r.identifiers = by_kind(&[IdentKey::from("email:a@example.com")]);
        let subjects = r.subjects();
        assert!(subjects.contains(&"p:p1".to_owned()));
        assert!(subjects.contains(&"i:email:a@example.com".to_owned()));
        let mut golden = ChangeRecord::new(ChangeType::GoldenChanged, ProfileId::from("p1"), 5);
        golden.fields.push("first_name".into());
        assert!(
            golden.subjects().is_empty(),
            "nothing to erase, nothing to index"
        );
    }
}
