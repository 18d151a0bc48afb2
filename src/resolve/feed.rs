//! The change-feed records of a write group, derived when the group is finished (so they
//! are written in the group's own synced write: see `model::feed`).
//!
//! - From this group's new history entries: created, merged, split, identifier and link
//!   removed, erased (conflicts change nothing downstream and are left out).
//! - From each re-rendered profile that existed before the group: the identifiers it
//!   gained, and the golden fields whose chosen value changed (survivorship over its state
//!   before and after; `last_seen` and `event_count` alone are not a change).
//! - For an erasure: every earlier record about the erased profiles, or naming one of
//!   their identifiers as removed, is rewritten without values, and their index rows go.

use std::collections::{BTreeMap, BTreeSet};

use super::Rules;
use super::Session;
use crate::ingest::identifier::DEVICE_KINDS;
use crate::model::feed::{
    self, by_kind, identifier_subject, profile_subject, ChangeRecord, ChangeType, MatchType,
    SplitPart,
};
use crate::model::{HistoryKind, ProfileId, ProfileState};
use crate::profile::golden;
use crate::store::StoreError;

/// What a re-rendered profile changed, noted while the group is finished.
pub(super) struct Rendered {
    pub id: ProfileId,
    /// The identifiers it holds now.
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
    /// The identifiers it held before the group (`None`: it did not exist).
    pub before: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Golden fields that changed.
    pub fields: Vec<String>,
}

/// Notes what re-rendering `state` changed against the profile as stored before the
/// group: identifiers, and the golden fields whose chosen value differs (computed from
/// both states with the survivorship rules: no read of the stored golden copy).
pub(super) fn rendered(
    s: &Session<'_>,
    state: &ProfileState,
    rules: &Rules,
) -> Result<Rendered, StoreError> {
    let before = s.stored_profile(&state.id)?;
    let fields = match &before {
        Some(old) => changed_fields(old, state, rules),
        None => Vec::new(),
    };
    Ok(Rendered {
        id: state.id.clone(),
        identifiers: state.identifiers.clone(),
        before: before.map(|b| b.identifiers),
        fields,
    })
}

/// Names of the golden fields that differ between two states of a profile: traits by
/// name (their chosen values), then identifiers, sources, devices, merged ids.
fn changed_fields(old: &ProfileState, new: &ProfileState, rules: &Rules) -> Vec<String> {
    let mut out = Vec::new();
    if old.traits != new.traits {
        let names: BTreeSet<&str> = old.traits.names().chain(new.traits.names()).collect();
        for name in names {
            if golden::chosen(old, rules, name) != golden::chosen(new, rules, name) {
                out.push(name.to_owned());
            }
        }
    }
    if old.identifiers != new.identifiers {
        out.push("identifiers".into());
        if DEVICE_KINDS
            .iter()
            .any(|k| old.identifiers.get(*k) != new.identifiers.get(*k))
        {
            out.push("devices".into());
        }
    }
    if old.sources != new.sources {
        out.push("sources".into());
    }
    if old.absorbed != new.absorbed {
        out.push("merged_ids".into());
    }
    out
}

/// Adds the group's feed records (and the erasure rewrites) to the session's changes.
pub(super) fn write(
    s: &mut Session<'_>,
    rendered: Vec<Rendered>,
    audiences: Vec<ChangeRecord>,
) -> Result<(), StoreError> {
    let at = s.now;
    let now: BTreeMap<&ProfileId, &Rendered> = rendered.iter().map(|r| (&r.id, r)).collect();
    let identifiers_of = |id: &ProfileId| now.get(id).map(|r| r.identifiers.clone());

    let mut erased: BTreeSet<ProfileId> = BTreeSet::new();
    let mut created: BTreeSet<ProfileId> = BTreeSet::new();
    let mut records: Vec<ChangeRecord> = Vec::new();
    for entry in s.new_history() {
        let first = entry.profiles.first().cloned().unwrap_or_default();
        let mut r = ChangeRecord::new(ChangeType::ProfileCreated, first.clone(), at);
        r.rule = Some(entry.rule.clone());
        r.event_id = entry.event_id.clone();
        match entry.kind {
            HistoryKind::Created => {
                created.insert(first.clone());
                r.identifiers = identifiers_of(&first).unwrap_or_default();
            }
            HistoryKind::Merged => {
                let survivor = entry.survivor.clone().unwrap_or(first);
                r.change = ChangeType::ProfilesMerged;
                r.profile_id = survivor.clone();
                r.survivor = Some(survivor);
                r.absorbed = entry.absorbed.clone();
                r.match_type = Some(if entry.rule == super::probable::RULE {
                    MatchType::Probable
                } else if entry.rule == super::steward::MERGE_RULE {
                    MatchType::Steward
                } else {
                    MatchType::Deterministic
                });
                r.identifiers = by_kind(&entry.identifiers);
            }
            HistoryKind::Split => {
                r.change = ChangeType::ProfileSplit;
                r.profile_id = entry.survivor.clone().unwrap_or(first);
                r.parts = entry
                    .profiles
                    .iter()
                    .map(|p| SplitPart {
                        profile_id: p.clone(),
                        identifiers: identifiers_of(p).unwrap_or_default(),
                    })
                    .collect();
                r.identifiers = by_kind(&entry.identifiers);
            }
            HistoryKind::IdentifierDeleted => {
                r.change = ChangeType::IdentifierRemoved;
                r.identifiers = by_kind(&entry.identifiers);
            }
            HistoryKind::LinkDeleted => {
                r.change = ChangeType::LinkRemoved;
                r.identifiers = by_kind(&entry.identifiers);
            }
            HistoryKind::Erased => {
                r.change = ChangeType::PersonErased;
                r.erased = std::iter::once(first.clone())
                    .chain(entry.absorbed.iter().cloned())
                    .collect();
                erased.extend(r.erased.iter().cloned());
            }
            HistoryKind::Conflict | HistoryKind::Pinned | HistoryKind::Unpinned => continue,
        }
        records.push(r);
    }
    // An erasure drops the person's history of this group too; what is left about them
    // (a split part, say) is not reported either.
    records.retain(|r| {
        r.change == ChangeType::PersonErased || r.profiles().iter().all(|p| !erased.contains(*p))
    });
    for r in &rendered {
        let Some(before) = &r.before else { continue };
        if created.contains(&r.id) || erased.contains(&r.id) {
            continue;
        }
        let mut added: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (kind, values) in &r.identifiers {
            let old = before.get(kind);
            let new: BTreeSet<String> = values
                .iter()
                .filter(|v| !old.is_some_and(|o| o.contains(*v)))
                .cloned()
                .collect();
            if !new.is_empty() {
                added.insert(kind.clone(), new);
            }
        }
        if !added.is_empty() {
            let mut rec = ChangeRecord::new(ChangeType::IdentifiersAdded, r.id.clone(), at);
            rec.identifiers = added;
            records.push(rec);
        }
        if !r.fields.is_empty() {
            let mut rec = ChangeRecord::new(ChangeType::GoldenChanged, r.id.clone(), at);
            rec.fields = r.fields.clone();
            records.push(rec);
        }
    }
    // Audience exits of an erased person stay: they carry ids only, and destinations
    // must drop the person.
    records.extend(audiences);

    let commit = s.commit_seq();
    for (ordinal, r) in records.iter_mut().enumerate() {
        r.seq = feed::seq(commit, ordinal as u64).ok_or_else(|| {
            StoreError::Engine(format!(
                "a write group made more than {} change records",
                feed::MAX_GROUP_RECORDS
            ))
        })?;
    }

    // Erasure: earlier records about the person lose their values.
    let mut subjects: Vec<String> = erased.iter().map(|p| profile_subject(p)).collect();
    subjects.extend(s.erased_identifiers().iter().map(|k| identifier_subject(k)));
    let mut redacted: BTreeSet<u64> = BTreeSet::new();
    for subject in subjects {
        for seq in s.store().change_seqs_of(&subject)? {
            if !redacted.insert(seq) {
                continue;
            }
            if let Some(mut old) = s.store().change(seq)? {
                if !old.redacted {
                    old.redact();
                    s.push_change(old, false);
                }
            }
        }
        s.drop_change_index(subject);
    }
    for r in records {
        s.push_change(r, true);
    }
    Ok(())
}
