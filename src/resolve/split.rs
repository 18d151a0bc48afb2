//! Unmerge: deleting a link or an identifier, then splitting the profile along the
//! connected components of its remaining active edges (petgraph's union-find).
//!
//! The component that keeps the original profile id is the one holding the highest-priority
//! identifier kind, then the larger one, then the one with the smallest identifier key, so
//! the outcome is deterministic. Every other component becomes a new profile. Each part's
//! traits and counters are rebuilt from the events attributed to it (an event goes to the
//! part holding its highest-priority identifier). Both deletions and splits are recorded
//! in history.

use std::collections::{BTreeMap, HashMap, HashSet};

use petgraph::unionfind::UnionFind;

use super::{Rules, Session};
use crate::model::split_key;
use crate::store::{
    Edge, EdgeStatus, HistoryKind, IdentKey, ProfileId, ProfileState, StoreError, StoredEvent,
};

/// Result of an unmerge operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SplitOutcome {
    /// The profile that was cut.
    pub profile_id: ProfileId,
    /// Profiles it now consists of (the first keeps the original id); empty if it is gone.
    pub profiles: Vec<ProfileId>,
    pub split: bool,
}

/// Why a deletion failed.
#[derive(Debug)]
pub enum UnmergeError {
    NotFound(String),
    Store(StoreError),
}

impl From<StoreError> for UnmergeError {
    fn from(e: StoreError) -> Self {
        UnmergeError::Store(e)
    }
}

/// Deletes the link between identifiers `a` and `b`.
pub fn delete_link(
    s: &mut Session<'_>,
    rules: &Rules,
    a: &str,
    b: &str,
    actor: &str,
) -> Result<SplitOutcome, UnmergeError> {
    let edge = s
        .edge(a, b)?
        .ok_or_else(|| UnmergeError::NotFound("link".into()))?;
    let node = s
        .node(a)?
        .ok_or_else(|| UnmergeError::NotFound("identifier".into()))?;
    let pid = node.profile_id.clone();
    let rule = format!("manual_unmerge:{actor}");
    match &edge.probable {
        // A probable link is kept as a refused edge with its evidence, so matching never
        // re-creates what an operator undid.
        Some(_) if edge.is_active() => {
            let mut kept = edge.clone();
            kept.status = EdgeStatus::Refused { rule: rule.clone() };
            s.put_edge(kept);
        }
        _ => s.delete_edge(a, b),
    }
    s.record(
        HistoryKind::LinkDeleted,
        vec![pid.clone()],
        None,
        vec![],
        None,
        rule.clone(),
        vec![edge.a.clone(), edge.b.clone()],
        Some(format!(
            "link deleted (it was {}{})",
            if edge.is_active() {
                "active"
            } else {
                "refused"
            },
            if edge.probable.is_some() {
                ", probable; kept as refused so matching does not re-create it"
            } else {
                ""
            }
        )),
    );
    if !edge.is_active() {
        return Ok(SplitOutcome {
            profile_id: pid.clone(),
            profiles: vec![pid],
            split: false,
        });
    }
    Ok(resplit(s, rules, &pid, &rule, vec![edge.a, edge.b])?)
}

/// Deletes identifier `key`, its edges and its event index, and splits what falls apart.
pub fn delete_identifier(
    s: &mut Session<'_>,
    rules: &Rules,
    key: &str,
    actor: &str,
) -> Result<SplitOutcome, UnmergeError> {
    let node = s
        .node(key)?
        .ok_or_else(|| UnmergeError::NotFound("identifier".into()))?;
    for e in s.edges_of(key)? {
        s.delete_edge(&e.a, &e.b);
    }
    s.delete_node(key);
    s.drop_event_index(key);
    s.put_match_record(key, None)?;
    let pid = node.profile_id.clone();
    let mut state = s.existing_profile(&pid)?;
    state.remove_identifier(&node.kind, &node.value);
    s.put_profile(state);
    s.record(
        HistoryKind::IdentifierDeleted,
        vec![pid.clone()],
        None,
        vec![],
        None,
        format!("manual_delete:{actor}"),
        vec![key.into()],
        None,
    );
    Ok(resplit(
        s,
        rules,
        &pid,
        &format!("manual_delete:{actor}"),
        vec![key.into()],
    )?)
}

/// Recomputes the components of profile `pid` and splits it if it fell apart.
pub fn resplit(
    s: &mut Session<'_>,
    rules: &Rules,
    pid: &str,
    rule: &str,
    cause: Vec<IdentKey>,
) -> Result<SplitOutcome, StoreError> {
    resplit_keeping(s, rules, pid, rule, cause, &HashSet::new())
}

/// [`resplit`], where the component holding any of `keep` keeps the profile id (a
/// steward's split: the identifiers not moved out stay in the profile).
pub fn resplit_keeping(
    s: &mut Session<'_>,
    rules: &Rules,
    pid: &str,
    rule: &str,
    cause: Vec<IdentKey>,
    keep: &HashSet<IdentKey>,
) -> Result<SplitOutcome, StoreError> {
    let state = s.existing_profile(pid)?;
    let keys: Vec<IdentKey> = state.identifier_keys().collect();
    if keys.is_empty() {
        s.delete_profile(pid)?;
        return Ok(SplitOutcome {
            profile_id: pid.into(),
            profiles: vec![],
            split: false,
        });
    }
    let mut active = Vec::new();
    for key in &keys {
        active.extend(s.edges_of(key)?.into_iter().filter(|e| e.is_active()));
    }
    let root = components(&keys, active.iter());
    let mut comps: BTreeMap<usize, Vec<IdentKey>> = BTreeMap::new();
    for (key, r) in keys.iter().zip(root) {
        comps.entry(r).or_default().push(key.clone());
    }
    let mut comps: Vec<Vec<IdentKey>> = comps.into_values().collect();
    if comps.len() == 1 {
        rebuild(s, rules, vec![(state.clone(), keys)])?;
        return Ok(SplitOutcome {
            profile_id: pid.into(),
            profiles: vec![pid.into()],
            split: false,
        });
    }
    let best_rank = |c: &Vec<IdentKey>| {
        c.iter()
            .map(|k| rules.kind_rank(split_key(k).0))
            .min()
            .unwrap_or(usize::MAX)
    };
    let kept = |c: &Vec<IdentKey>| !c.iter().any(|k| keep.contains(k));
    comps.sort_by(|x, y| {
        (
            kept(x),
            best_rank(x),
            std::cmp::Reverse(x.len()),
            x.iter().min(),
        )
            .cmp(&(
                kept(y),
                best_rank(y),
                std::cmp::Reverse(y.len()),
                y.iter().min(),
            ))
    });
    let mut parts = Vec::with_capacity(comps.len());
    for (i, comp) in comps.into_iter().enumerate() {
        let mut part = if i == 0 {
            let mut p = ProfileState::new(state.id.clone(), state.seq, state.first_seen);
            p.absorbed = state.absorbed.clone();
            p.address_key = state.address_key.clone();
            p.shared_device = state.shared_device;
            p.split_marks = state.split_marks.clone();
            // Pins stay with the part that keeps the profile id.
            p.pins = state.pins.clone();
            p
        } else {
            let mut p = s.new_profile(s.now);
            p.shared_device = state.shared_device;
            p.split_marks = state.split_marks.clone();
            p
        };
        for key in &comp {
            let (kind, value) = split_key(key);
            part.insert_identifier(kind, value);
        }
        parts.push((part, comp));
    }
    let ids: Vec<ProfileId> = parts.iter().map(|(p, _)| p.id.clone()).collect();
    s.record(
        HistoryKind::Split,
        ids.clone(),
        Some(pid.into()),
        vec![],
        None,
        rule.to_owned(),
        cause,
        Some(format!(
            "profile fell apart into {} connected components",
            ids.len()
        )),
    );
    rebuild(s, rules, parts)?;
    Ok(SplitOutcome {
        profile_id: pid.into(),
        profiles: ids,
        split: true,
    })
}

/// Rebuilds counters and traits of each part from the events of its identifiers and
/// points the parts' nodes at them.
fn rebuild(
    s: &mut Session<'_>,
    rules: &Rules,
    parts: Vec<(ProfileState, Vec<IdentKey>)>,
) -> Result<(), StoreError> {
    let owner: HashMap<IdentKey, usize> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, (_, keys))| keys.iter().map(move |k| (k.clone(), i)))
        .collect();
    let mut seen = HashSet::new();
    let mut events: Vec<StoredEvent> = Vec::new();
    for key in owner.keys() {
        for id in s.event_ids_of(key)? {
            if seen.insert(id.clone()) {
                if let Some(e) = s.event(&id)? {
                    events.push(e);
                }
            }
        }
    }
    events.sort_by_key(|e| e.seq);
    let mut parts: Vec<ProfileState> = parts
        .into_iter()
        .map(|(mut p, _)| {
            p.event_count = 0;
            p.sources.clear();
            p.traits = Default::default();
            p.activity = Default::default();
            p.first_seen = i64::MAX;
            p.last_seen = i64::MIN;
            p
        })
        .collect();
    for e in &events {
        let mut ids: Vec<&IdentKey> = e
            .identifiers
            .iter()
            .filter(|k| owner.contains_key(*k))
            .collect();
        ids.sort_by_key(|k| (rules.kind_rank(split_key(k).0), k.as_str()));
        let Some(i) = ids.first().and_then(|k| owner.get(*k)) else {
            continue;
        };
        let p = &mut parts[*i];
        p.event_count += 1;
        p.first_seen = p.first_seen.min(e.timestamp);
        p.last_seen = p.last_seen.max(e.timestamp);
        p.sources.insert(e.source.clone());
        for (name, value) in &e.traits {
            p.traits
                .observe_event(name, value, &e.source, e.timestamp, Some(&e.event_id));
        }
        rules
            .activity
            .observe(&mut p.activity, &e.event_type, e.timestamp, &e.properties);
    }
    for (key, i) in &owner {
        if let Some(mut n) = s.node(key)? {
            let p = &mut parts[*i];
            if p.event_count == 0 {
                p.first_seen = p.first_seen.min(n.first_seen);
                p.last_seen = p.last_seen.max(n.last_seen);
                p.sources.extend(n.sources.iter().cloned());
            }
            if n.profile_id != p.id {
                n.profile_id = p.id.clone();
                s.put_node(n);
            }
        }
    }
    for mut p in parts {
        if p.first_seen == i64::MAX {
            p.first_seen = s.now;
            p.last_seen = s.now;
        }
        s.put_profile(p);
    }
    Ok(())
}

/// The component (a root index) of each of `keys` under the links of `edges` between them.
pub(super) fn components<'e>(
    keys: &[IdentKey],
    edges: impl Iterator<Item = &'e Edge>,
) -> Vec<usize> {
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut uf = UnionFind::<usize>::new(keys.len());
    for e in edges {
        if let (Some(i), Some(j)) = (index.get(e.a.as_str()), index.get(e.b.as_str())) {
            uf.union(*i, *j);
        }
    }
    (0..keys.len()).map(|i| uf.find(i)).collect()
}
