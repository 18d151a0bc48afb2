//! The writer pipelines group commits (resolve group N+1 while group N is written). Many
//! clients ingesting concurrently must end with exactly the grouping a union-find over all
//! events gives, whatever the interleaving, with every identifier in one live profile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use idgraph::config::Settings;
use idgraph::model::ProfileId;
use idgraph::resolve::EventOutcome;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::conformance::{Backend, Instance};

fn find(parent: &mut [usize], x: usize) -> usize {
    let mut r = x;
    while parent[r] != r {
        r = parent[r];
    }
    parent[x] = r;
    r
}

#[test]
fn concurrent_clients_end_with_the_union_find_grouping() {
    concurrent_clients(Backend::Embedded);
}

/// The same on the Bolt store (ArcadeDB), where the resolver also reads ahead in batches
/// through the pipelined view.
#[test]
fn concurrent_clients_end_with_the_union_find_grouping_on_bolt() {
    concurrent_clients(Backend::Bolt);
}

/// The same on the Bolt store on a real Neo4j 5.
#[test]
fn concurrent_clients_end_with_the_union_find_grouping_on_neo4j() {
    concurrent_clients(Backend::Neo4j);
}

/// The same on the Gremlin store on a real Gremlin Server.
#[test]
fn concurrent_clients_end_with_the_union_find_grouping_on_gremlin() {
    concurrent_clients(Backend::Gremlin);
}

fn concurrent_clients(backend: Backend) {
    const UNIVERSE: usize = 600;
    const EVENTS: usize = 2400;
    let instance = Instance::with(backend, |settings: &mut Settings| {
        for limit in settings.rules.limits.values_mut() {
            *limit = 10_000;
        }
    });
    let engine = Arc::new(instance.open());

    // Events of 2 or 3 cookies drawn mostly from a neighbourhood, so components grow and
    // merge across events handled by different clients.
    let mut rng = StdRng::seed_from_u64(5);
    let events: Vec<Vec<usize>> = (0..EVENTS)
        .map(|_| {
            let base = rng.gen_range(0..UNIVERSE);
            let n = rng.gen_range(2..=3);
            (0..n)
                .map(|_| (base + rng.gen_range(0..8)) % UNIVERSE)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .collect();
    let wire: Vec<serde_json::Value> = events
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let cookies: Vec<String> = ids.iter().map(|c| format!("ck{c}")).collect();
            json!({ "event_id": format!("pl-{i}"), "source": "web", "identifiers": { "cookie_id": cookies } })
        })
        .collect();

    // 4 clients, batches of 25: many small groups in flight at once.
    let chunks: Vec<Vec<serde_json::Value>> = wire.chunks(25).map(<[_]>::to_vec).collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (engine, chunks) = (engine.clone(), chunks.clone());
            std::thread::spawn(move || loop {
                let next = chunks.lock().unwrap().next();
                let Some(chunk) = next else { return };
                let batch: Vec<_> = chunk.iter().map(|e| engine.validate(e).unwrap()).collect();
                for outcome in engine.ingest(batch).unwrap() {
                    assert!(matches!(outcome, EventOutcome::Accepted { .. }));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    let mut parent: Vec<usize> = (0..UNIVERSE).collect();
    let mut seen = BTreeSet::new();
    for ids in &events {
        for w in ids.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            parent[a] = b;
        }
        seen.extend(ids.iter().copied());
    }
    let mut expected: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for &c in &seen {
        let root = find(&mut parent, c);
        expected.entry(root).or_default().insert(format!("ck{c}"));
    }
    let expected: BTreeSet<BTreeSet<String>> = expected.into_values().collect();

    let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for &c in &seen {
        let profile = engine.lookup("cookie_id", &format!("ck{c}")).unwrap();
        let pid = profile["profile_id"].as_str().unwrap().to_owned();
        let listed: BTreeSet<String> = profile["identifiers"]["cookie_id"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert!(
            listed.contains(&format!("ck{c}")),
            "profile {pid} must list ck{c}"
        );
        actual.entry(pid).or_default().insert(format!("ck{c}"));
    }
    let actual: BTreeSet<BTreeSet<String>> = actual.into_values().collect();
    assert_eq!(actual, expected);
    let total_events: u64 = engine.store().counters().unwrap().event_seq;
    assert_eq!(total_events, EVENTS as u64);
}

/// Records what the commit hook is told.
#[derive(Default)]
struct Recorder {
    groups: std::sync::Mutex<Vec<(u64, BTreeSet<ProfileId>)>>,
}

impl idgraph::engine::CommitListener for Recorder {
    fn committed(&self, changes: &Arc<idgraph::store::Changes>) {
        let seq = changes.counters.map(|c| c.commit_seq).unwrap_or_default();
        let profiles = changes.goldens.keys().cloned().collect();
        self.groups.lock().expect("lock").push((seq, profiles));
    }
}

/// The commit hook sees every durable write group once, in commit order, with the profiles
/// it changed: ingests from several threads, a merge, an unmerge and an erasure.
#[test]
fn the_commit_hook_sees_every_durable_group_in_order() {
    use idgraph::engine::Engine;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let store = Engine::open_store(&settings).expect("store");
    let search = Engine::open_search(&settings, store.as_ref()).expect("search");
    let recorder = Arc::new(Recorder::default());
    let engine = Arc::new(
        Engine::with_listeners(settings, store, Some(search), vec![recorder.clone()])
            .expect("engine"),
    );
    let before = engine.store().counters().expect("counters").commit_seq;

    let mut expected_profiles = BTreeSet::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let engine = engine.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..25 {
                        let ev = json!({"event_id": format!("hook-{t}-{i}"), "source": "web",
                            "identifiers": {"email": format!("hook.{t}.{i}@example.com")}});
                        let ev = engine.validate(&ev).expect("valid");
                        for out in engine.ingest(vec![ev]).expect("ingest") {
                            if let EventOutcome::Accepted { profile_id, .. } = out {
                                mine.push(profile_id);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            expected_profiles.extend(h.join().expect("thread"));
        }
    });
    assert_eq!(expected_profiles.len(), 100);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let merge = engine
        .validate(&json!({"event_id": "hook-merge", "source": "web",
            "identifiers": {"email": "hook.0.0@example.com", "cookie_id": "hook-ck"}}))
        .expect("valid");
    engine.ingest(vec![merge]).expect("merge");
    runtime
        .block_on(engine.delete_identifier(Engine::key("cookie_id", "hook-ck")))
        .expect("unmerge");
    runtime
        .block_on(
            engine.erase(idgraph::resolve::erase::ErasureTarget::Identifier(
                Engine::key("email", "hook.1.1@example.com"),
            )),
        )
        .expect("erase");

    let after = engine.store().counters().expect("counters").commit_seq;
    let groups = recorder.groups.lock().expect("lock").clone();
    let seqs: Vec<u64> = groups.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        ((before + 1)..=after).collect::<Vec<_>>(),
        "every group once, in commit order"
    );
    let seen: BTreeSet<ProfileId> = groups.iter().flat_map(|(_, p)| p.clone()).collect();
    assert!(
        expected_profiles.is_subset(&seen),
        "profiles created but never reported: {:?}",
        expected_profiles.difference(&seen).collect::<Vec<_>>()
    );
    // The erasure's group reports the erased profile (its golden record removed).
    let erased = engine.lookup("email", "hook.1.1@example.com");
    assert!(erased.is_err(), "erased: {erased:?}");
    assert!(groups.last().is_some_and(|(_, p)| !p.is_empty()));
}
