//! Read views over the graph for analysts: devices, the identity subgraph in Cytoscape.js
//! elements format, the explain path between two identifiers, and merge history.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use petgraph::graphmap::UnGraphMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::golden::iso;
use crate::ingest::identifier::DEVICE_KINDS;
use crate::model::ident_key;
use crate::store::{
    Edge, EdgeStatus, GraphStore, HistoryEntry, IdentKey, Node, ProfileId, ProfileState, StoreError,
};

/// One device or browser of a profile.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub kind: String,
    pub value: String,
    pub platform: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub sources: BTreeSet<String>,
    pub event_count: u64,
    /// Other profiles seen on this device (links refused by a rule): a shared device.
    pub shared_with: BTreeSet<ProfileId>,
}

pub fn devices(store: &dyn GraphStore, state: &ProfileState) -> Result<Vec<Device>, StoreError> {
    let mut out = Vec::new();
    for kind in DEVICE_KINDS {
        for value in state.identifiers.get(kind).into_iter().flatten() {
            let key = ident_key(kind, value);
            let Some(n) = store.node(&key)? else { continue };
            let mut shared_with = BTreeSet::new();
            for e in store.edges_of(&key, 1000)? {
                if !e.is_active() {
                    if let Some(o) = store.node(&e.other(&key).into())? {
                        if o.profile_id != state.id {
                            shared_with.insert(o.profile_id);
                        }
                    }
                }
            }
            out.push(Device {
                kind: kind.to_owned(),
                value: value.clone(),
                platform: n.platform,
                first_seen: iso(n.first_seen),
                last_seen: iso(n.last_seen),
                sources: n.sources,
                event_count: n.event_count,
                shared_with,
            });
        }
    }
    Ok(out)
}

/// An edge with its provenance, as the API shows it.
pub fn edge_json(e: &Edge) -> Value {
    let (status, rule) = match &e.status {
        EdgeStatus::Active => ("active", None),
        EdgeStatus::Refused { rule } => ("refused", Some(rule.clone())),
    };
    json!({
        "id": format!("{}|{}", e.a, e.b),
        "source": e.a,
        "target": e.b,
        "status": status,
        "rule": rule,
        "count": e.count,
        "sources": e.sources,
        "first_seen": iso(e.first_seen),
        "last_seen": iso(e.last_seen),
        "event_ids": e.event_ids,
        "probable": e.probable,
    })
}

fn node_json(n: &Node, in_profile: bool) -> Value {
    json!({
        "id": n.key(),
        "label": n.value,
        "kind": n.kind,
        "value": n.value,
        "profile_id": n.profile_id,
        "in_profile": in_profile,
        "platform": n.platform,
        "first_seen": iso(n.first_seen),
        "last_seen": iso(n.last_seen),
        "sources": n.sources,
        "event_count": n.event_count,
    })
}

/// The identity subgraph around a profile: its identifiers (depth 0) and everything within
/// `depth` further hops over any edge, at most `limit` nodes, in Cytoscape.js elements form.
pub fn graph(
    store: &dyn GraphStore,
    state: &ProfileState,
    depth: usize,
    limit: usize,
) -> Result<Value, StoreError> {
    let mut dist: BTreeMap<IdentKey, usize> = BTreeMap::new();
    let mut queue: VecDeque<IdentKey> = VecDeque::new();
    let mut truncated = false;
    for key in state.identifier_keys() {
        if dist.len() >= limit {
            truncated = true;
            break;
        }
        dist.insert(key.clone(), 0);
        queue.push_back(key);
    }
    let mut edges: BTreeMap<String, Edge> = BTreeMap::new();
    let mut nodes: Vec<Value> = Vec::new();
    while let Some(key) = queue.pop_front() {
        let d = dist.get(&key).copied().unwrap_or(0);
        let Some(n) = store.node(&key)? else { continue };
        nodes.push(node_json(&n, n.profile_id == state.id));
        for e in store.edges_of(&key, 10_000)? {
            let other = IdentKey::from(e.other(&key));
            if !dist.contains_key(&other) {
                let inside = store
                    .node(&other)?
                    .is_some_and(|o| o.profile_id == state.id);
                if !inside && d >= depth {
                    continue;
                }
                if dist.len() >= limit {
                    truncated = true;
                    continue;
                }
                dist.insert(other.clone(), d + 1);
                queue.push_back(other);
            }
            edges.insert(format!("{}|{}", e.a, e.b), e);
        }
    }
    let edges: Vec<Value> = edges
        .values()
        .filter(|e| dist.contains_key(&e.a) && dist.contains_key(&e.b))
        .map(|e| json!({ "data": edge_json(e) }))
        .collect();
    let nodes: Vec<Value> = nodes.into_iter().map(|n| json!({ "data": n })).collect();
    Ok(json!({
        "profile_id": state.id,
        "elements": { "nodes": nodes, "edges": edges },
        "truncated": truncated,
    }))
}

/// Why an explain request cannot be answered.
#[derive(Debug)]
pub enum ExplainError {
    NotInProfile(&'static str),
    Store(StoreError),
}

impl From<StoreError> for ExplainError {
    fn from(e: StoreError) -> Self {
        ExplainError::Store(e)
    }
}

/// The shortest path of active edges joining identifiers `a` and `b` inside the profile,
/// each edge with its provenance (petgraph A* with a zero heuristic, i.e. BFS by hops).
pub fn explain(
    store: &dyn GraphStore,
    state: &ProfileState,
    a: &str,
    b: &str,
) -> Result<Value, ExplainError> {
    let keys: Vec<IdentKey> = state.identifier_keys().collect();
    let a = keys
        .iter()
        .find(|k| *k == a)
        .ok_or(ExplainError::NotInProfile("a"))?;
    let b = keys
        .iter()
        .find(|k| *k == b)
        .ok_or(ExplainError::NotInProfile("b"))?;
    let mut g: UnGraphMap<&str, ()> = UnGraphMap::new();
    let mut records: HashMap<(IdentKey, IdentKey), Edge> = HashMap::new();
    for k in &keys {
        g.add_node(k.as_str());
    }
    for k in &keys {
        for e in store.edges_of(k, 10_000)? {
            if !e.is_active() {
                continue;
            }
            if let Some(other) = keys.iter().find(|x| x.as_str() == e.other(k)) {
                g.add_edge(k.as_str(), other.as_str(), ());
                records.insert((e.a.clone(), e.b.clone()), e);
            }
        }
    }
    let path = petgraph::algo::astar(&g, a.as_str(), |n| n == b.as_str(), |_| 1u32, |_| 0u32);
    let steps: Vec<Value> = match &path {
        Some((_, nodes)) => nodes
            .windows(2)
            .filter_map(|w| {
                let pair = crate::model::edge_pair(w[0], w[1]);
                records.get(&pair).map(|e| {
                    let mut v = edge_json(e);
                    v["from"] = json!(w[0]);
                    v["to"] = json!(w[1]);
                    v
                })
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "profile_id": state.id,
        "a": a,
        "b": b,
        "connected": path.is_some(),
        "hops": steps.len(),
        "path": path.map(|(_, n)| n).unwrap_or_default(),
        "edges": steps,
    }))
}

/// History of a profile and of every profile merged into it, oldest first.
pub fn history(
    store: &dyn GraphStore,
    id: &ProfileId,
    limit: usize,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut seen_profiles = BTreeSet::from([id.clone()]);
    let mut queue = vec![id.clone()];
    let mut entries: BTreeMap<u64, HistoryEntry> = BTreeMap::new();
    while let Some(p) = queue.pop() {
        for e in store.history(&p, limit)? {
            for absorbed in &e.absorbed {
                if seen_profiles.len() < 1000 && seen_profiles.insert(absorbed.clone()) {
                    queue.push(absorbed.clone());
                }
            }
            entries.insert(e.seq, e);
        }
    }
    Ok(entries.into_values().take(limit).collect())
}
