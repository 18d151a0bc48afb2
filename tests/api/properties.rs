//! Property tests of resolution against a union-find reference model, in-process through the
//! library (an [`Engine`] over a fresh temporary directory, no HTTP).
//!
//! The universe is 12 identifiers (4 emails, 4 device ids, 4 cookie ids) and every per-kind
//! limit is raised to 1000, so no identity rule ever refuses a link: the resolver's
//! invariant "a profile is exactly a connected component of the active edges" then says the
//! profiles are the connected components of the events' identifiers.

use std::collections::{BTreeMap, BTreeSet};

use idgraph::config::Settings;
use idgraph::engine::Engine;
use idgraph::model::{IdentKey, ProfileId};
use idgraph::resolve::EventOutcome;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use tempfile::TempDir;

const KINDS: [&str; 3] = ["email", "device_id", "cookie_id"];
const PER_KIND: usize = 4;
const UNIVERSE: usize = KINDS.len() * PER_KIND;
/// The default rules.priority order; the anchor of an event is its first identifier in it.
const PRIORITY: [&str; 6] = [
    "customer_id",
    "loyalty_id",
    "email",
    "phone",
    "device_id",
    "cookie_id",
];

/// Identifiers of one event, as indices into the universe.
type Ev = BTreeSet<usize>;
/// A partition of identifier keys into profiles.
type Partition = BTreeSet<BTreeSet<String>>;

fn ident(i: usize) -> (&'static str, String) {
    let kind = KINDS[i / PER_KIND];
    let n = i % PER_KIND;
    let value = match kind {
        "email" => format!("person{n}@example.com"),
        "device_id" => format!("dev-{n}"),
        _ => format!("ck-{n}"),
    };
    (kind, value)
}

fn key(i: usize) -> String {
    let (kind, value) = ident(i);
    Engine::key(kind, &value).into_string()
}

/// The event's anchor: its highest-priority identifier, ties broken by kind then value.
fn anchor(ev: &Ev) -> usize {
    *ev.iter()
        .min_by_key(|&&i| {
            let (kind, value) = ident(i);
            let rank = PRIORITY
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(usize::MAX);
            (rank, kind, value)
        })
        .expect("events are never empty")
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// The edges the resolver creates: anchor -> every other identifier of each event.
fn anchor_edges(events: &[(usize, Ev)]) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for (_, ev) in events {
        let a = anchor(ev);
        for &other in ev.iter().filter(|&&o| o != a) {
            edges.insert(pair(&key(a), &key(other)));
        }
    }
    edges
}

fn seen_keys(events: &[(usize, Ev)]) -> BTreeSet<String> {
    events
        .iter()
        .flat_map(|(_, ev)| ev.iter().map(|&i| key(i)))
        .collect()
}

/// The reference model: connected components of `nodes` under `edges` (union-find).
fn components(nodes: &BTreeSet<String>, edges: &BTreeSet<(String, String)>) -> Partition {
    let mut parent: BTreeMap<String, String> =
        nodes.iter().map(|n| (n.clone(), n.clone())).collect();
    fn find(parent: &mut BTreeMap<String, String>, x: &str) -> String {
        let p = parent[x].clone();
        if p == x {
            return p;
        }
        let root = find(parent, &p);
        parent.insert(x.to_owned(), root.clone());
        root
    }
    for (a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent.insert(ra, rb);
        }
    }
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in nodes {
        let root = find(&mut parent, n);
        groups.entry(root).or_default().insert(n.clone());
    }
    groups.into_values().collect()
}

fn connected(partition: &Partition, a: &str, b: &str) -> bool {
    partition.iter().any(|p| p.contains(a) && p.contains(b))
}

fn event_json(index: usize, ev: &Ev) -> Value {
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for &i in ev {
        let (kind, value) = ident(i);
        by_kind.entry(kind).or_default().push(value);
    }
    json!({
        "event_id": format!("ev-{index}"),
        "source": "web",
        "timestamp": 1_700_000_000_000i64 + index as i64 * 1000,
        "identifiers": by_kind,
    })
}

/// An engine over its own temporary directory (the engine is dropped first).
struct Store {
    engine: Engine,
    _dir: TempDir,
}

fn open_store() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.rules.limits = PRIORITY.iter().map(|k| (k.to_string(), 1000)).collect();
    let engine = Engine::open(settings).expect("open engine");
    Store { engine, _dir: dir }
}

/// Validates and ingests `events` in write groups of `chunk` events.
fn ingest(store: &Store, events: &[(usize, Ev)], chunk: usize) -> Vec<EventOutcome> {
    let mut outcomes = Vec::new();
    for group in events.chunks(chunk.max(1)) {
        let normalized = group
            .iter()
            .map(|(i, ev)| {
                let raw = event_json(*i, ev);
                store
                    .engine
                    .validate(&raw)
                    .unwrap_or_else(|e| panic!("generated event {raw} is invalid: {e:?}"))
            })
            .collect();
        outcomes.extend(store.engine.ingest(normalized).expect("ingest"));
    }
    outcomes
}

/// What the store says about the identifiers in `keys`.
struct Snapshot {
    partition: Partition,
    /// Live profile id -> event count.
    event_counts: BTreeMap<ProfileId, u64>,
}

/// Reads the profile of every key, checking that each identifier belongs to exactly one
/// live profile and that every such profile lists exactly the identifiers pointing to it.
fn snapshot(store: &Store, keys: &BTreeSet<String>) -> Result<Snapshot, TestCaseError> {
    let db = store.engine.store();
    let mut members: BTreeMap<ProfileId, BTreeSet<String>> = BTreeMap::new();
    for k in keys {
        let node = db.node(&IdentKey::from(k)).expect("read node");
        let node =
            node.ok_or_else(|| TestCaseError::fail(format!("identifier {k} has no node")))?;
        members
            .entry(node.profile_id)
            .or_default()
            .insert(k.clone());
    }
    let mut event_counts = BTreeMap::new();
    for (pid, nodes) in &members {
        let state = db.profile(pid).expect("read profile");
        let state = state.ok_or_else(|| {
            TestCaseError::fail(format!(
                "nodes {nodes:?} point to {pid}, which is not a live profile"
            ))
        })?;
        let listed: BTreeSet<String> = state.identifier_keys().map(String::from).collect();
        prop_assert_eq!(
            &listed,
            nodes,
            "profile {} lists other identifiers than the nodes pointing to it",
            pid
        );
        event_counts.insert(pid.clone(), state.event_count);
    }
    Ok(Snapshot {
        partition: members.into_values().collect(),
        event_counts,
    })
}

fn events_strategy() -> impl Strategy<Value = Vec<(usize, Ev)>> {
    prop::collection::vec(prop::collection::btree_set(0..UNIVERSE, 1..=4), 1..=16)
        .prop_map(|evs| evs.into_iter().enumerate().collect())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// 1) Profiles are exactly the connected components of the reference model.
    #[test]
    fn profiles_are_the_connected_components_of_the_events(events in events_strategy(), chunk in 1usize..=5) {
        let store = open_store();
        let outcomes = ingest(&store, &events, chunk);
        prop_assert!(outcomes.iter().all(|o| matches!(o, EventOutcome::Accepted { conflicts, .. } if conflicts.is_empty())),
            "every event is accepted without conflicts: {:?}", outcomes);
        let keys = seen_keys(&events);
        let snap = snapshot(&store, &keys)?;
        prop_assert_eq!(snap.partition, components(&keys, &anchor_edges(&events)));
        prop_assert_eq!(snap.event_counts.values().sum::<u64>(), events.len() as u64, "every event is counted in exactly one profile");
    }

    /// 2) The grouping does not depend on the order of the events.
    #[test]
    fn grouping_does_not_depend_on_event_order(
        (events, shuffled) in events_strategy().prop_flat_map(|evs| (Just(evs.clone()), Just(evs).prop_shuffle())),
        chunk in 1usize..=5,
    ) {
        let first = open_store();
        ingest(&first, &events, chunk);
        let second = open_store();
        ingest(&second, &shuffled, 1);
        let keys = seen_keys(&events);
        let a = snapshot(&first, &keys)?;
        let b = snapshot(&second, &keys)?;
        prop_assert_eq!(a.partition, b.partition);
    }

    /// 3) Re-sending every event is a no-op.
    #[test]
    fn resending_every_event_changes_nothing(events in events_strategy(), chunk in 1usize..=5) {
        let store = open_store();
        ingest(&store, &events, chunk);
        let keys = seen_keys(&events);
        let before = snapshot(&store, &keys)?;
        let counters = store.engine.store().counters().expect("counters");
        let again = ingest(&store, &events, chunk);
        prop_assert_eq!(again.len(), events.len());
        prop_assert!(again.iter().all(|o| matches!(o, EventOutcome::Duplicate { .. })), "every re-sent event is a duplicate: {:?}", again);
        let after = snapshot(&store, &keys)?;
        prop_assert_eq!(&after.partition, &before.partition);
        prop_assert_eq!(&after.event_counts, &before.event_counts);
        let counters_after = store.engine.store().counters().expect("counters");
        prop_assert_eq!(counters_after.event_seq, counters.event_seq, "no event stored twice");
        prop_assert_eq!(counters_after.profile_seq, counters.profile_seq, "no profile created by duplicates");
    }

    /// 4) Deleting an anchor link splits along the remaining edges; re-adding it restores
    /// the grouping.
    #[test]
    fn deleting_a_link_splits_along_remaining_edges_and_re_adding_it_restores_the_grouping(
        events in events_strategy(),
        chunk in 1usize..=5,
        pick_event in any::<Index>(),
        pick_other in any::<Index>(),
    ) {
        let linking: Vec<&Ev> = events.iter().map(|(_, ev)| ev).filter(|ev| ev.len() >= 2).collect();
        prop_assume!(!linking.is_empty());
        let ev = pick_event.get(&linking);
        let a = anchor(ev);
        let others: Vec<usize> = ev.iter().copied().filter(|&o| o != a).collect();
        let b = *pick_other.get(&others);
        let (ka, kb) = (key(a), key(b));

        let store = open_store();
        ingest(&store, &events, chunk);
        let keys = seen_keys(&events);
        let edges = anchor_edges(&events);
        let original = components(&keys, &edges);
        prop_assert_eq!(&snapshot(&store, &keys)?.partition, &original);

        let outcome = runtime()
            .block_on(store.engine.delete_link(ka.as_str().into(), kb.as_str().into()))
            .map_err(|e| TestCaseError::fail(format!("delete_link({ka}, {kb}): {e}")))?;
        let mut remaining = edges.clone();
        remaining.remove(&pair(&ka, &kb));
        let expected = components(&keys, &remaining);
        let after_delete = snapshot(&store, &keys)?;
        prop_assert_eq!(&after_delete.partition, &expected, "after deleting {}-{}", ka, kb);
        prop_assert_eq!(outcome.split, !connected(&expected, &ka, &kb), "split flag of {:?}", outcome);

        let readd = vec![(events.len(), Ev::from([a, b]))];
        let readded = ingest(&store, &readd, 1);
        prop_assert!(matches!(&readded[0], EventOutcome::Accepted { .. }), "{:?}", readded);
        prop_assert_eq!(&snapshot(&store, &keys)?.partition, &original, "after re-adding {}-{}", ka, kb);
    }
}
