//! Deterministic, incremental resolution of events into profiles.
//!
//! For each event (identifiers sorted by kind priority, then value):
//! 1. Each identifier already in the graph brings its profile into the event's merge group
//!    unless the union would break a per-kind limit; then that identifier is *refused*:
//!    it stays in its own profile and its link from this event is kept as a refused edge
//!    carrying the rule. A new identifier joins the group unless its kind is at its limit,
//!    in which case it starts a profile of its own, linked by a refused edge.
//! 2. The group's profiles merge into the oldest (lowest sequence number); absorbed ids
//!    become aliases of the survivor. History records the event and rule of every merge
//!    and refusal.
//! 3. Edges run from the event's anchor (its highest-priority identifier) to every other
//!    identifier of the event, carrying provenance (sources, count, first/last seen, event
//!    ids). **Invariant:** a profile is exactly a connected component of the active edges.
//!
//! A hashed identifier (`email_sha256`) that comes with its plain value in the same event
//! (the validator derives it) *follows* the plain one: ordered right after it, it goes
//! where the plain value goes (the target, or the plain value's own profile when that
//! link is refused) with an active edge from the plain value, and is never refused by a
//! limit of its own. Only a hash already in another profile than its plain value (a
//! third party's hashed-only events made it) is placed like any identifier, so it links
//! that profile exactly as the plain value would have.

//!
//! Unmerge (deleting a link or an identifier) recomputes components with petgraph and
//! splits the profile along them (see [`split`]).

mod audiences;
pub mod erase;
mod feed;
pub mod probable;
pub mod retention;
pub mod review;
pub mod rules;
pub mod session;
pub mod split;
pub mod steward;
#[cfg(test)]
mod tests;
pub mod why_not;

use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeSet;

use serde::Serialize;

use crate::ingest::event::{Ignored, NormalizedEvent};
use crate::model::{split_key, ProbableLink, EDGE_EVENT_IDS};
use crate::profile::golden;
use crate::store::{
    Edge, EdgeStatus, HistoryKind, IdentKey, Node, ProfileId, StoreError, StoredEvent,
};
pub use rules::Rules;
pub use session::Session;

/// A refused link of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// Kind of the refused identifier (values stay out of responses that get logged).
    pub kind: String,
    pub rule: String,
    /// The profile the refused identifier stays in.
    pub profile_id: ProfileId,
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventOutcome {
    Accepted {
        event_id: String,
        profile_id: ProfileId,
        /// Profiles absorbed into `profile_id` by this event.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        merged: Vec<ProfileId>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        conflicts: Vec<Conflict>,
        /// Profiles absorbed by probable links (probabilistic matching); also in `merged`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        probable: Vec<ProfileId>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ignored: Vec<Ignored>,
    },
    Duplicate {
        event_id: String,
        profile_id: Option<ProfileId>,
    },
    /// Refused: the event carries identifiers erased on request (on the suppression list).
    Suppressed {
        event_id: String,
        /// Kinds of the suppressed identifiers (never their values).
        kinds: Vec<String>,
    },
}

enum Placement {
    Group,
    /// A hashed identifier that goes where its plain value (this key, placed before it)
    /// goes, joined to it by an active edge.
    Follows(IdentKey),
    /// Refused; `Some(profile)` if the identifier already existed there.
    Refused {
        rule: String,
        own: Option<ProfileId>,
    },
}

/// Resolves one validated event inside `s`.
pub fn apply_event(
    s: &mut Session<'_>,
    rules: &Rules,
    ev: &NormalizedEvent,
) -> Result<EventOutcome, StoreError> {
    if s.event_exists(&ev.event_id)? {
        let profile_id = match ev.identifiers.first() {
            Some(id) => s.node(&id.key())?.map(|n| n.profile_id),
            None => None,
        };
        return Ok(EventOutcome::Duplicate {
            event_id: ev.event_id.clone(),
            profile_id,
        });
    }
    if s.suppressed_count() > 0 {
        let mut kinds = Vec::new();
        for id in &ev.identifiers {
            if let Some(hash) = rules.suppression_hash(&id.key()) {
                if s.is_suppressed(&hash)? {
                    kinds.push(id.kind.clone());
                }
            }
        }
        if !kinds.is_empty() {
            return Ok(EventOutcome::Suppressed {
                event_id: ev.event_id.clone(),
                kinds,
            });
        }
    }
    // Hashed identifiers of the event's own plain values: key of the hash -> the plain one.
    let followers = followers(ev);
    let order_of = |id: &crate::ingest::identifier::Identifier| {
        let key = id.key();
        let (kind, value, after) = match followers.get(&key) {
            // Right after its plain value, whatever the hashed kind's own rank.
            Some((plain, _)) => (plain.kind.clone(), plain.value.clone(), 1u8),
            None => (id.kind.clone(), id.value.clone(), 0),
        };
        (rules.kind_rank(&kind), kind, value, after)
    };
    let mut ids: Vec<_> = ev.identifiers.iter().map(|id| (order_of(id), id)).collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<_> = ids.into_iter().map(|(_, id)| id).collect();

    // 1. Decide which identifiers (and their profiles) join the merge group.
    let mut group: Vec<(ProfileId, u64)> = Vec::new();
    let mut counts: HashMap<String, BTreeSet<String>> = HashMap::default();
    // Steward split marks of the group's profiles (see `ProfileState::split_marks`).
    let mut marks: BTreeSet<String> = BTreeSet::new();
    let mut placed: Vec<(IdentKey, Option<Node>, Placement)> = Vec::with_capacity(ids.len());
    for id in &ids {
        let key = id.key();
        let node = s.node(&key)?;
        // A hash follows its plain value unless it is already in another profile.
        let follows = followers.get(&key).and_then(|(_, plain)| {
            let (_, plain_node, plain_placement) = placed.iter().find(|(k, _, _)| k == plain)?;
            let same_profile = match (&node, plain_node) {
                (None, _) => true,
                (Some(n), Some(p)) => n.profile_id == p.profile_id,
                (Some(_), None) => false,
            };
            same_profile.then_some((plain.clone(), matches!(plain_placement, Placement::Group)))
        });
        let placement = match (&node, follows) {
            (_, Some((plain, in_group))) => {
                if in_group {
                    counts
                        .entry(id.kind.clone())
                        .or_default()
                        .insert(id.value.clone());
                }
                Placement::Follows(plain)
            }
            (Some(n), None) if group.iter().any(|(g, _)| *g == n.profile_id) => Placement::Group,
            (Some(n), None) => {
                let st = s.existing_profile(&n.profile_id)?;
                // An untrusted source may not join two profiles that each hold a verified
                // identifier (anti-poisoning); otherwise the per-kind limits decide.
                let poisoning = match group.is_empty() {
                    true => None,
                    false => rules.poisoning(
                        &ev.source,
                        || rules.holds_verified(&counts),
                        || rules.holds_verified(&st.identifiers),
                    ),
                };
                let apart = (!group.is_empty() && st.kept_apart(&marks))
                    .then(|| steward::SPLIT_RULE.to_owned());
                match poisoning
                    .or(apart)
                    .or_else(|| rules.violation(&counts, &st.identifiers))
                {
                    Some(rule) if !placed.is_empty() => Placement::Refused {
                        rule,
                        own: Some(n.profile_id.clone()),
                    },
                    _ => {
                        for (k, vs) in &st.identifiers {
                            counts
                                .entry(k.clone())
                                .or_default()
                                .extend(vs.iter().cloned());
                        }
                        marks.extend(st.split_marks.iter().cloned());
                        group.push((st.id.clone(), st.seq));
                        Placement::Group
                    }
                }
            }
            (None, None) => {
                let set = counts.entry(id.kind.clone()).or_default();
                match rules.limit(&id.kind) {
                    Some(limit)
                        if !placed.is_empty() && set.len() >= limit && !set.contains(&id.value) =>
                    {
                        Placement::Refused {
                            rule: rules.limit_rule(&id.kind),
                            own: None,
                        }
                    }
                    _ => {
                        set.insert(id.value.clone());
                        Placement::Group
                    }
                }
            }
        };
        placed.push((key, node, placement));
    }

    // 2. The target profile: the oldest of the group, or a new one.
    group.sort_by_key(|(_, seq)| *seq);
    let (target, absorbed): (ProfileId, Vec<ProfileId>) = match group.split_first() {
        Some(((first, _), rest)) => (first.clone(), rest.iter().map(|(p, _)| p.clone()).collect()),
        None => {
            let state = s.new_profile(ev.timestamp);
            let id = state.id.clone();
            s.record(
                HistoryKind::Created,
                vec![id.clone()],
                None,
                vec![],
                Some(ev.event_id.clone()),
                "new_identifier".into(),
                vec![],
                None,
            );
            s.put_profile(state);
            (id, vec![])
        }
    };
    let anchor = placed
        .first()
        .map(|(k, _, _)| k.clone())
        .unwrap_or_default();
    for other in &absorbed {
        let via: Vec<IdentKey> = placed
            .iter()
            .filter(|(_, n, p)| {
                matches!(p, Placement::Group) && n.as_ref().is_some_and(|n| n.profile_id == *other)
            })
            .map(|(k, _, _)| k.clone())
            .collect();
        let mut identifiers = vec![anchor.clone()];
        identifiers.extend(via);
        merge_into(
            s,
            &target,
            other,
            ev,
            identifiers,
            "shared_identifier",
            "the event linked identifiers of both profiles; the oldest profile survives".into(),
        )?;
    }

    // 3. Nodes, refused identifiers and edges.
    let mut conflicts = Vec::new();
    let mut target_state = s.existing_profile(&target)?;
    // Where each identifier went (for the hashes that follow their plain value).
    let mut went: HashMap<IdentKey, ProfileId> = HashMap::default();
    for (key, _, placement) in &placed {
        let (kind, value) = split_key(key);
        let profile_of_node = match placement {
            Placement::Group => {
                target_state.insert_identifier(kind, value);
                target.clone()
            }
            Placement::Follows(plain) => {
                let pid = went.get(plain).cloned().unwrap_or_else(|| target.clone());
                if pid == target {
                    target_state.insert_identifier(kind, value);
                } else {
                    let mut st = s.existing_profile(&pid)?;
                    st.insert_identifier(kind, value);
                    s.put_profile(st);
                }
                pid
            }
            Placement::Refused { rule, own } => {
                let device = is_device(kind) || is_device(split_key(&anchor).0);
                let pid = match own {
                    Some(p) => {
                        if device {
                            let mut st = s.existing_profile(p)?;
                            if !st.shared_device {
                                st.shared_device = true;
                                s.put_profile(st);
                            }
                        }
                        p.clone()
                    }
                    None => {
                        let mut st = s.new_profile(ev.timestamp);
                        st.insert_identifier(kind, value);
                        st.sources.insert(ev.source.clone());
                        st.shared_device = device;
                        let id = st.id.clone();
                        s.put_profile(st);
                        id
                    }
                };
                target_state.shared_device |= device;
                s.record(
                    HistoryKind::Conflict,
                    vec![target.clone(), pid.clone()],
                    None,
                    vec![],
                    Some(ev.event_id.clone()),
                    rule.clone(),
                    vec![anchor.clone(), key.clone()],
                    Some("link refused; identifier kept in its own profile".into()),
                );
                s.mark_dirty(&pid);
                conflicts.push(Conflict {
                    kind: kind.to_owned(),
                    rule: rule.clone(),
                    profile_id: pid.clone(),
                });
                pid
            }
        };
        // Re-read: a merge above may have moved the node to the target.
        let mut n = match s.node(key)? {
            Some(n) => n,
            None => Node {
                kind: kind.to_owned(),
                value: value.to_owned(),
                profile_id: profile_of_node.clone(),
                first_seen: ev.timestamp,
                last_seen: ev.timestamp,
                sources: BTreeSet::new(),
                event_count: 0,
                platform: None,
            },
        };
        went.insert(key.clone(), profile_of_node.clone());
        n.profile_id = profile_of_node;
        n.first_seen = n.first_seen.min(ev.timestamp);
        n.last_seen = n.last_seen.max(ev.timestamp);
        n.sources.insert(ev.source.clone());
        n.event_count += 1;
        if let Some(p) = platform_of(ev, kind) {
            n.platform = Some(p);
        }
        s.put_node(n);
        if let Placement::Follows(plain) = placement {
            link(s, plain, key, EdgeStatus::Active, ev, None)?;
        } else if *key != anchor {
            let status = match placement {
                Placement::Refused { rule, .. } => EdgeStatus::Refused { rule: rule.clone() },
                Placement::Group | Placement::Follows(_) => EdgeStatus::Active,
            };
            link(s, &anchor, key, status, ev, None)?;
        }
    }

    // 4. The event itself is attributed to the target profile.
    target_state.event_count += 1;
    target_state.first_seen = target_state.first_seen.min(ev.timestamp);
    target_state.last_seen = target_state.last_seen.max(ev.timestamp);
    target_state.sources.insert(ev.source.clone());
    for (name, value) in &ev.traits {
        target_state.traits.observe_event(
            name,
            value,
            &ev.source,
            ev.timestamp,
            Some(&ev.event_id),
        );
    }
    rules.activity.observe(
        &mut target_state.activity,
        &ev.event_type,
        ev.timestamp,
        &ev.properties,
    );
    s.put_profile(target_state);
    let seq = s.next_event_seq();
    s.put_event(StoredEvent {
        event_id: ev.event_id.clone(),
        seq,
        source: ev.source.clone(),
        event_type: ev.event_type.clone(),
        timestamp: ev.timestamp,
        received_at: s.now,
        identifiers: placed.iter().map(|(k, _, _)| k.clone()).collect(),
        traits: ev.traits.clone(),
        properties: ev.properties.clone(),
        aged_at: None,
    });

    // 5. Probabilistic matching against other profiles' records.
    let (mut target, mut merged, mut probable) = (target, absorbed, Vec::new());
    if let Some(m) = &rules.matcher {
        let found = probable::match_event(s, rules, m, ev, &anchor, &target)?;
        if let Some(p) = found.profile_id {
            target = p;
        }
        for (pid, rule) in found.refused {
            conflicts.push(Conflict {
                kind: "probable_match".into(),
                rule,
                profile_id: pid,
            });
        }
        merged.extend(found.absorbed.iter().cloned());
        probable = found.absorbed;
        // A profile absorbed earlier in this event may itself have been absorbed since.
        merged.retain(|p| *p != target);
    }
    Ok(EventOutcome::Accepted {
        event_id: ev.event_id.clone(),
        profile_id: target,
        merged,
        conflicts,
        probable,
        ignored: ev.ignored.clone(),
    })
}

/// The provenance of what a re-resolve run does to profile `id` (event id
/// `reresolve:<id>`, source `reresolve`).
pub fn reresolve_event(id: &str, now: i64) -> NormalizedEvent {
    provenance_event(format!("reresolve:{id}"), "reresolve", "reresolve", now)
}

/// The provenance idgraph's own actions (a steward's decision, a re-resolve) leave on the
/// links and history they write: an event of no identifiers or traits.
pub(crate) fn provenance_event(
    event_id: String,
    source: &str,
    event_type: &str,
    now: i64,
) -> NormalizedEvent {
    NormalizedEvent {
        event_id,
        source: source.into(),
        event_type: event_type.into(),
        timestamp: now,
        identifiers: Vec::new(),
        ignored: Vec::new(),
        traits: Default::default(),
        properties: Default::default(),
    }
}

/// The event's hashed identifiers whose plain value it also carries: the hash's key ->
/// (the plain identifier, its key).
fn followers(
    ev: &NormalizedEvent,
) -> HashMap<IdentKey, (&crate::ingest::identifier::Identifier, IdentKey)> {
    use crate::ingest::identifier::is_hashed_kind;
    let mut out = HashMap::default();
    if !ev.identifiers.iter().any(|id| is_hashed_kind(&id.kind)) {
        return out;
    }
    for plain in &ev.identifiers {
        if let Some(hashed) = plain.hashed() {
            if ev.identifiers.contains(&hashed) {
                out.insert(hashed.key(), (plain, plain.key()));
            }
        }
    }
    out
}

fn is_device(kind: &str) -> bool {
    crate::ingest::identifier::DEVICE_KINDS.contains(&kind)
}

fn platform_of(ev: &NormalizedEvent, kind: &str) -> Option<String> {
    if !crate::ingest::identifier::DEVICE_KINDS.contains(&kind) {
        return None;
    }
    match ev.properties.get("platform").and_then(|v| v.as_str()) {
        Some(p) if !p.is_empty() && p.len() <= 32 => Some(p.to_lowercase()),
        _ => match ev.source.as_str() {
            "web" => Some("web".into()),
            _ => None,
        },
    }
}

/// Creates or reinforces the edge `a`-`b` with this event's provenance (and, for a probable
/// link, the evidence).
fn link(
    s: &mut Session<'_>,
    a: &str,
    b: &str,
    status: EdgeStatus,
    ev: &NormalizedEvent,
    probable: Option<ProbableLink>,
) -> Result<(), StoreError> {
    let edge = match s.edge(a, b)? {
        Some(mut e) => {
            e.status = status;
            e.count += 1;
            e.first_seen = e.first_seen.min(ev.timestamp);
            e.last_seen = e.last_seen.max(ev.timestamp);
            e.sources.insert(ev.source.clone());
            if e.event_ids.len() < EDGE_EVENT_IDS {
                e.event_ids.push(ev.event_id.clone());
            }
            e
        }
        None => {
            let (a, b) = crate::model::edge_pair(a, b);
            Edge {
                a,
                b,
                status,
                sources: BTreeSet::from([ev.source.clone()]),
                count: 1,
                first_seen: ev.timestamp,
                last_seen: ev.timestamp,
                event_ids: vec![ev.event_id.clone()],
                probable: None,
            }
        }
    };
    let mut edge = edge;
    if probable.is_some() {
        edge.probable = probable;
    }
    s.put_edge(edge);
    Ok(())
}

/// Merges profile `absorbed` into `target`, recording the identifiers, rule and detail.
fn merge_into(
    s: &mut Session<'_>,
    target: &str,
    absorbed: &str,
    ev: &NormalizedEvent,
    identifiers: Vec<IdentKey>,
    rule: &str,
    detail: String,
) -> Result<(), StoreError> {
    let gone = s.existing_profile(absorbed)?;
    let mut t = s.existing_profile(target)?;
    for key in gone.identifier_keys() {
        if let Some(mut n) = s.node(&key)? {
            n.profile_id = target.into();
            s.put_node(n);
        }
    }
    for (kind, values) in &gone.identifiers {
        t.identifiers
            .entry(kind.clone())
            .or_default()
            .extend(values.iter().cloned());
    }
    t.traits.merge(&gone.traits);
    crate::activation::activity::merge(&mut t.activity, &gone.activity);
    t.first_seen = t.first_seen.min(gone.first_seen);
    t.last_seen = t.last_seen.max(gone.last_seen);
    t.event_count += gone.event_count;
    t.sources.extend(gone.sources.iter().cloned());
    t.absorbed.insert(absorbed.into());
    t.shared_device |= gone.shared_device;
    t.split_marks.extend(gone.split_marks.iter().cloned());
    for (name, pin) in &gone.pins {
        // The survivor's own pin wins; otherwise the absorbed profile's pin is kept.
        t.pins.entry(name.clone()).or_insert_with(|| pin.clone());
    }
    s.put_profile(t);
    s.delete_profile(absorbed)?;
    s.set_alias(absorbed, target);
    s.record(
        HistoryKind::Merged,
        vec![target.into(), absorbed.into()],
        Some(target.into()),
        vec![absorbed.into()],
        Some(ev.event_id.clone()),
        rule.to_owned(),
        identifiers,
        Some(detail),
    );
    Ok(())
}

/// Renders the golden profile of every profile changed in the session and returns the
/// session's changes, ready for one atomic write.
pub fn finish(mut s: Session<'_>, rules: &Rules) -> Result<crate::store::Changes, StoreError> {
    let dirty = s.take_dirty();
    // Rendering reads the nodes of every device of a changed profile: on a remote store,
    // read them in one go.
    if s.store().prefers_batched_reads() {
        let mut device_keys = Vec::new();
        for id in &dirty {
            if let Some(state) = s.profile(id)? {
                for kind in crate::ingest::identifier::DEVICE_KINDS {
                    for value in state.identifiers.get(kind).into_iter().flatten() {
                        device_keys.push(crate::model::ident_key(kind, value));
                    }
                }
            }
        }
        s.prefetch_nodes(&device_keys)?;
    }
    let mut rendered = Vec::new();
    let defined = rules.audiences.snapshot();
    let evaluating = rules.audiences.active();
    let mut tally = audiences::Tally::default();
    for id in dirty {
        let Some(mut state) = s.profile(&id)? else {
            continue;
        };
        let address = golden::chosen_address_key(&state, rules);
        s.set_address(&mut state, address);
        // Served as stored unless someone else lives at the address or shares a device;
        // those already there may now form a household with it: their copies say so.
        let others: Vec<ProfileId> = match &state.address_key {
            Some(a) => s
                .profiles_at_address(a, golden::CO_RESIDENTS_CHECKED)?
                .into_iter()
                .filter(|q| *q != id)
                .collect(),
            None => Vec::new(),
        };
        // No audience defined or being deleted: no profile holds a membership to update.
        let json = if !evaluating {
            golden::render(&s, &state, rules)?
        } else {
            let mut g = golden::build(&s, &state, rules)?;
            let household = state.shared_device || !others.is_empty();
            tally.evaluate(&mut s, &mut state, &g, household, &defined)?;
            g.audiences = state
                .audiences
                .iter()
                .filter(|(_, member)| **member)
                .map(|(a, _)| a.clone())
                .collect();
            serde_json::to_vec(&g)
                .map_err(|e| StoreError::Engine(format!("encode golden profile: {e}")))?
        };
        if rules.change_feed {
            rendered.push(feed::rendered(&s, &state, rules)?);
        }
        let hint = if state.shared_device || !others.is_empty() {
            golden::MAY_HAVE_HOUSEHOLD
        } else {
            golden::ALONE
        };
        s.put_golden(&id, crate::model::codec::golden_cache_value(hint, &json));
        for q in others {
            if let Some(mut cached) = s.golden(&q)? {
                if cached.first() == Some(&golden::ALONE) {
                    cached[0] = golden::MAY_HAVE_HOUSEHOLD;
                    s.put_golden(&q, cached);
                }
            }
        }
        s.put_profile_clean(state);
    }
    if evaluating {
        for id in s.deleted_profiles() {
            tally.left(&mut s, &id)?;
        }
    }
    tally.write_counts(&mut s, &defined)?;
    if rules.change_feed {
        feed::write(&mut s, rendered, tally.records)?;
    }
    s.count_live()?;
    Ok(s.into_changes())
}
