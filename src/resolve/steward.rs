//! A steward's manual merge and split of profiles.
//!
//! - **Merge** joins two or more profiles into the oldest. Each joins by an active link
//!   (provenance event `steward-merge:<history seq>`, source `steward`) from its
//!   highest-priority identifier to the survivor's, or by re-activating the links an
//!   earlier steward split cut between them, so a profile stays exactly a connected
//!   component of the active links. A deterministic rule the merge would break (a per-kind
//!   limit, an exclusive kind) refuses it with 409 `rule_conflict` unless the steward
//!   names that rule in `override`; the override is recorded.
//! - **Split** moves named groups of identifiers out into profiles of their own (the
//!   identifiers named in no group stay, together, under the profile's id), or explodes the profile into the parts its
//!   event-made links connect (`components`: probable and steward links are cut) or into
//!   single identifiers (`identifiers`). Every active link crossing two parts is kept as a
//!   refused link with rule `steward_split`; a group (or the rest) that is not connected
//!   on its own is joined by steward links (the steward said it is one person). Cutting a link an event
//!   made (deterministic evidence, rule `shared_identifier`) needs that rule in `override`.
//!   Each part carries a mark of the split (`ProfileState::split_marks`), so later events or
//!   matching never re-merge the parts silently: they record a `steward_split` conflict.
//!
//! Both are recorded in history with the steward's key name, reason and overrides
//! ([`StewardNote`]), and both are reversible: a merge's answer carries the groups that
//! split it back; a split is undone by merging its parts (which re-activates the cut links
//! and collapses the marks). Nothing is written unless the whole request is valid.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::split::{self, components};
use super::{link, merge_into, Rules, Session};
use crate::ingest::event::NormalizedEvent;
use crate::model::{split_key, Edge, EdgeStatus, StewardNote};
use crate::store::{IdentKey, ProfileId, ProfileState, StoreError};

/// The rule of a merge a steward made (by hand or by accepting a review item).
pub const MERGE_RULE: &str = "steward";
/// The rule of the links a steward's split cut, and of the conflicts it later causes.
pub const SPLIT_RULE: &str = "steward_split";
/// The rule an override must name to cut links events made.
pub const EVENT_LINK_RULE: &str = "shared_identifier";
/// Most profiles one merge may name.
pub const MAX_MERGE: usize = 100;
/// Most parts one split may make.
pub const MAX_PARTS: usize = 1_000;

/// Why a steward's request was not applied.
#[derive(Debug)]
pub enum StewardError {
    /// 404: `field` names no profile (unknown or erased).
    NotFound {
        field: String,
        message: String,
    },
    /// 409 with a code: the request conflicts with the stored state or a rule.
    Conflict(&'static str, String),
    /// 422: `field` is well-formed but does not fit the profile.
    Unprocessable {
        code: &'static str,
        field: String,
        message: String,
    },
    Store(StoreError),
}

impl From<StoreError> for StewardError {
    fn from(e: StoreError) -> Self {
        StewardError::Store(e)
    }
}

/// How a split divides a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPlan {
    /// Each group becomes a profile; identifiers in no group stay.
    Groups(Vec<Vec<IdentKey>>),
    /// The parts connected by links events made (probable and steward links cut).
    Components,
    /// Every identifier alone.
    Identifiers,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeOutcome {
    pub profile_id: ProfileId,
    pub absorbed: Vec<ProfileId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
    /// Splitting `profile_id` into these groups (each absorbed profile's identifiers)
    /// undoes the merge.
    pub undo: Vec<Vec<IdentKey>>,
}

/// What a split did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StewardSplitOutcome {
    pub profile_id: ProfileId,
    /// Every profile the split left (the first keeps the original id); merging them undoes it.
    pub profiles: Vec<ProfileId>,
    /// Links cut (kept refused with rule `steward_split`).
    pub links_cut: usize,
    /// Links added to keep a group together.
    pub links_added: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

/// The live profile `id` names, or why not: 404 for none (unknown or erased), 409
/// `profile_merged` naming the survivor for an absorbed one.
fn live_profile(s: &Session<'_>, field: &str, id: &str) -> Result<ProfileState, StewardError> {
    if let Some(p) = s.profile(id)? {
        return Ok(p);
    }
    match s.store().alias(&ProfileId::from(id))? {
        Some(survivor) => Err(StewardError::Conflict(
            "profile_merged",
            format!("{field}: profile {id} was merged into {survivor}; name {survivor} instead"),
        )),
        None => Err(StewardError::NotFound {
            field: field.to_owned(),
            message: format!("{field}: no profile {id} (unknown or erased)"),
        }),
    }
}

/// The highest-priority identifier of a profile (kind priority, then key).
fn anchor(rules: &Rules, p: &ProfileState) -> Option<IdentKey> {
    p.identifier_keys().min_by_key(|k| priority(rules, k))
}

/// Sort key of an identifier: its kind's priority, then the key.
fn priority(rules: &Rules, key: &IdentKey) -> (usize, IdentKey) {
    (rules.kind_rank(split_key(key).0), key.clone())
}

/// The provenance a steward action leaves on links: source `steward`.
fn steward_event(s: &Session<'_>, event_id: String, what: &str) -> NormalizedEvent {
    super::provenance_event(event_id, "steward", what, s.now)
}

/// A link made by events (not by the matcher or a steward): deterministic evidence.
fn event_made(e: &Edge) -> bool {
    e.probable.is_none() && !(e.sources.len() == 1 && e.sources.contains("steward"))
}

/// Merges `profiles` (at least two, distinct) into the oldest of them.
pub fn merge(
    s: &mut Session<'_>,
    rules: &Rules,
    profiles: &[ProfileId],
    note: &StewardNote,
) -> Result<MergeOutcome, StewardError> {
    let mut states = Vec::with_capacity(profiles.len());
    for (i, id) in profiles.iter().enumerate() {
        let p = live_profile(s, &format!("profiles[{i}]"), id)?;
        if states.iter().any(|q: &ProfileState| q.id == p.id) {
            return Err(StewardError::Unprocessable {
                code: "duplicate_profile",
                field: format!("profiles[{i}]"),
                message: format!("profiles[{i}]: profile {id} is named twice"),
            });
        }
        states.push(p);
    }
    states.sort_by_key(|p| p.seq);
    // Every deterministic rule the merged profile would break, checked as it grows.
    let mut overridden = Vec::new();
    let mut acc = states[0].clone();
    for next in &states[1..] {
        if let Some(rule) = super::probable::rule_conflict(rules, &acc, next) {
            if !note.overrides.contains(&rule) {
                return Err(StewardError::Conflict(
                    "rule_conflict",
                    format!(
                        "merging profile {} into {} would break rule {rule}; to merge anyway, send \"override\": [\"{rule}\"]",
                        next.id, states[0].id
                    ),
                ));
            }
            if !overridden.contains(&rule) {
                overridden.push(rule);
            }
        }
        for (kind, values) in &next.identifiers {
            acc.identifiers
                .entry(kind.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
    }
    let survivor = states[0].id.clone();
    let Some(survivor_anchor) = anchor(rules, &states[0]) else {
        return Err(StewardError::Conflict(
            "empty_profile",
            format!("profile {survivor} holds no identifier"),
        ));
    };
    let from = s.next_history_seq();
    let provenance = steward_event(s, format!("steward-merge:{from}"), "merge");
    let mut joined: BTreeSet<IdentKey> = states[0].identifier_keys().collect();
    let mut undo = Vec::new();
    for gone in &states[1..] {
        let keys: Vec<IdentKey> = gone.identifier_keys().collect();
        // The links an earlier steward split cut between the two come back.
        let mut restored = false;
        for key in &keys {
            for mut e in s.edges_of(key)? {
                let cut = matches!(&e.status, EdgeStatus::Refused { rule } if rule == SPLIT_RULE);
                if cut && joined.contains(e.other(key)) {
                    e.status = EdgeStatus::Active;
                    s.put_edge(e);
                    restored = true;
                }
            }
        }
        let gone_anchor = anchor(rules, gone);
        let mut via = vec![survivor_anchor.clone()];
        if let Some(a) = &gone_anchor {
            via.push(a.clone());
            if !restored {
                link(
                    s,
                    &survivor_anchor,
                    a,
                    EdgeStatus::Active,
                    &provenance,
                    None,
                )?;
            }
        }
        merge_into(
            s,
            &survivor,
            &gone.id,
            &provenance,
            via,
            MERGE_RULE,
            format!("merged by steward {}: {}", note.actor, note.reason),
        )?;
        joined.extend(keys.iter().cloned());
        undo.push(keys);
    }
    let mut merged = s.existing_profile(&survivor)?;
    merged.collapse_split_marks();
    s.put_profile(merged);
    s.note_steward(from, note);
    Ok(MergeOutcome {
        profile_id: survivor,
        absorbed: states[1..].iter().map(|p| p.id.clone()).collect(),
        overridden,
        undo,
    })
}

/// Splits profile `id` as `plan` says.
pub fn split_profile(
    s: &mut Session<'_>,
    rules: &Rules,
    id: &ProfileId,
    plan: &SplitPlan,
    note: &StewardNote,
) -> Result<StewardSplitOutcome, StewardError> {
    let state = live_profile(s, "id", id)?;
    let pid = state.id.clone();
    let keys: Vec<IdentKey> = state.identifier_keys().collect();
    let members: BTreeSet<&str> = keys.iter().map(IdentKey::as_str).collect();
    let mut edges: BTreeMap<(IdentKey, IdentKey), Edge> = BTreeMap::new();
    for key in &keys {
        for e in s.edges_of(key)? {
            if e.is_active() && members.contains(e.other(key)) {
                edges.insert((e.a.clone(), e.b.clone()), e);
            }
        }
    }
    // Part of every identifier: 0 for the rest, 1.. for the groups.
    let mut part: HashMap<IdentKey, usize> = keys.iter().map(|k| (k.clone(), 0)).collect();
    let mut named_groups = 0;
    match plan {
        SplitPlan::Groups(groups) => {
            if groups.is_empty() {
                return Err(invalid("groups", "name at least one group of identifiers"));
            }
            if groups.len() > MAX_PARTS {
                return Err(invalid("groups", format!("at most {MAX_PARTS} groups")));
            }
            for (g, group) in groups.iter().enumerate() {
                if group.is_empty() {
                    return Err(invalid(
                        &format!("groups[{g}]"),
                        "a group needs at least one identifier",
                    ));
                }
                for (j, key) in group.iter().enumerate() {
                    let field = format!("groups[{g}][{j}]");
                    match part.get_mut(key) {
                        None => {
                            return Err(StewardError::Unprocessable {
                                code: "not_in_profile",
                                field: field.clone(),
                                message: format!("{field}: the identifier is not in profile {pid}"),
                            })
                        }
                        Some(p) if *p != 0 => {
                            return Err(StewardError::Unprocessable {
                                code: "overlapping_groups",
                                field: field.clone(),
                                message: format!(
                                    "{field}: the identifier is already in groups[{}]",
                                    *p - 1
                                ),
                            })
                        }
                        Some(p) => *p = g + 1,
                    }
                }
            }
            named_groups = groups.len();
        }
        SplitPlan::Identifiers => {
            for (i, k) in keys.iter().enumerate() {
                part.insert(k.clone(), i + 1);
            }
            named_groups = keys.len();
        }
        SplitPlan::Components => {
            let root = components(&keys, edges.values().filter(|e| event_made(e)));
            let mut label: BTreeMap<usize, usize> = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                let n = label.len();
                let l = *label.entry(root[i]).or_insert(n);
                part.insert(k.clone(), l);
            }
        }
    }
    let parts_used: BTreeSet<usize> = part.values().copied().collect();
    if parts_used.len() < 2 {
        return Err(StewardError::Unprocessable {
            code: "nothing_to_split",
            field: match plan {
                SplitPlan::Groups(_) => "groups".into(),
                _ => "mode".into(),
            },
            message: match plan {
                SplitPlan::Groups(_) => "the groups name every identifier of the profile as one part: nothing would be split".into(),
                _ => "the profile is already one part under this mode: nothing would be split".into(),
            },
        });
    }
    if parts_used.len() > MAX_PARTS {
        return Err(invalid(
            "mode",
            format!("the split would make more than {MAX_PARTS} profiles"),
        ));
    }
    let crossing: Vec<&Edge> = edges
        .values()
        .filter(|e| part.get(&e.a) != part.get(&e.b))
        .collect();
    let mut overridden = Vec::new();
    let deterministic = crossing.iter().filter(|e| event_made(e)).count();
    if deterministic > 0 {
        if !note.overrides.iter().any(|o| o == EVENT_LINK_RULE) {
            return Err(StewardError::Conflict(
                "rule_conflict",
                format!(
                    "the split cuts {deterministic} link(s) that events made (rule {EVENT_LINK_RULE}); to split anyway, send \"override\": [\"{EVENT_LINK_RULE}\"]"
                ),
            ));
        }
        overridden.push(EVENT_LINK_RULE.to_owned());
    }
    let from = s.next_history_seq();
    let provenance = steward_event(s, format!("steward-split:{from}"), "split");
    let links_cut = crossing.len();
    for e in crossing {
        let mut kept = e.clone();
        kept.status = EdgeStatus::Refused {
            rule: SPLIT_RULE.into(),
        };
        s.put_edge(kept);
    }
    // A named group the cuts left in pieces is joined by steward links, and so are the
    // identifiers named in no group: they stay in the profile, together.
    let mut links_added = 0;
    let grouped = matches!(plan, SplitPlan::Groups(_));
    if named_groups > 0 {
        let mut by_part: BTreeMap<usize, Vec<IdentKey>> = BTreeMap::new();
        for k in &keys {
            if let Some(p) = part.get(k).filter(|p| grouped || **p > 0) {
                by_part.entry(*p).or_default().push(k.clone());
            }
        }
        for group in by_part.values().filter(|g| g.len() > 1) {
            let root = components(group, edges.values());
            let mut heads: BTreeMap<usize, &IdentKey> = BTreeMap::new();
            for (i, k) in group.iter().enumerate() {
                heads.entry(root[i]).or_insert(k);
            }
            let mut heads: Vec<&IdentKey> = heads.into_values().collect();
            heads.sort_by_key(|k| priority(rules, k));
            if let Some((first, rest)) = heads.split_first() {
                for other in rest {
                    link(s, first, other, EdgeStatus::Active, &provenance, None)?;
                    links_added += 1;
                }
            }
        }
    }
    let mut cause: Vec<IdentKey> = keys.clone();
    cause.truncate(50);
    let rest: std::collections::HashSet<IdentKey> = match plan {
        SplitPlan::Groups(_) => keys
            .iter()
            .filter(|k| part.get(*k) == Some(&0))
            .cloned()
            .collect(),
        _ => Default::default(),
    };
    let out = split::resplit_keeping(s, rules, &pid, SPLIT_RULE, cause, &rest)?;
    // Each resulting profile remembers which part of this split it is.
    for p in &out.profiles {
        let mut st = s.existing_profile(p)?;
        let part_no = st.identifier_keys().find_map(|k| part.get(&k).copied());
        if let Some(part_no) = part_no {
            st.split_marks.insert(format!("{from}/{part_no}"));
            s.put_profile(st);
        }
    }
    s.note_steward(from, note);
    Ok(StewardSplitOutcome {
        profile_id: pid,
        profiles: out.profiles,
        links_cut,
        links_added,
        overridden,
    })
}

/// Pins `value` as trait `name` of profile `id` (or removes the pin when `value` is
/// `None`); returns the live profile id. The golden profile shows a pinned value whatever
/// survivorship would choose; history records the pin with the steward's note.
pub fn set_pin(
    s: &mut Session<'_>,
    id: &ProfileId,
    name: &str,
    value: Option<serde_json::Value>,
    note: &StewardNote,
) -> Result<ProfileId, StewardError> {
    let mut st = live_profile(s, "id", id)?;
    let pid = st.id.clone();
    let kind = match value {
        Some(value) => {
            st.pins.insert(
                name.to_owned(),
                crate::model::Pin {
                    value,
                    actor: note.actor.clone(),
                    reason: note.reason.clone(),
                    at: s.now,
                },
            );
            crate::model::HistoryKind::Pinned
        }
        None => {
            if st.pins.remove(name).is_none() {
                return Err(StewardError::NotFound {
                    field: "name".into(),
                    message: format!("name: trait {name} of profile {pid} is not pinned"),
                });
            }
            crate::model::HistoryKind::Unpinned
        }
    };
    s.put_profile(st);
    let from = s.next_history_seq();
    s.record(
        kind,
        vec![pid.clone()],
        None,
        vec![],
        None,
        PIN_RULE.into(),
        vec![],
        Some(format!("trait {name}")),
    );
    s.note_steward(from, note);
    Ok(pid)
}

/// The rule of a steward's pin in history.
pub const PIN_RULE: &str = "steward_pin";

fn invalid(field: &str, message: impl Into<String>) -> StewardError {
    let message = message.into();
    StewardError::Unprocessable {
        code: "invalid_split",
        field: field.to_owned(),
        message: format!("{field}: {message}"),
    }
}
