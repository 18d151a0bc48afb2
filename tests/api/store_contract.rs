//! The graph-store contract, tested on the `GraphStore` trait itself (not through the
//! engine): every read returns what `apply` wrote, deletions delete, reads keep their
//! order and limits, applying the same changes twice is harmless, and batch reads agree
//! with point reads. Written once and run on every implementation: the in-memory
//! reference store, the same behind the remote profile cache, the embedded RocksDB store,
//! and the remote backends (Bolt on ArcadeDB and Neo4j, Gremlin on Gremlin Server) against
//! real servers, both bare and behind their cache. The remote graphs' own part (instance
//! id, key-ordered pages, the writer lease) runs on every remote graph.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;

use idgraph::engine::Engine;
use idgraph::model::codec::golden_cache_value;
use idgraph::model::{
    Attributes, Counters, Edge, EdgeStatus, FieldContribution, HistoryEntry, HistoryKind, IdentKey,
    MatchRecord, Node, Observation, ProbableLink, ProfileId, ProfileState, StoredEvent, TraitStats,
};
use idgraph::store::bolt::BoltGraph;
use idgraph::store::gremlin::GremlinGraph;
use idgraph::store::memory::MemoryStore;
use idgraph::store::remote::lease::{Claim, Holder};
use idgraph::store::remote::{Mirrored, RemoteGraph};
use idgraph::store::{Changes, GraphStore, StoreError};

use crate::conformance::{Backend, Instance};

/// Which implementation a contract test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Subject {
    Memory,
    /// The in-memory store behind the remote backends' profile cache.
    MirroredMemory,
    Embedded,
    /// The embedded store with encryption at rest (`[encryption]`): every key segment
    /// and value sealed at the store's boundary must read back as written.
    EncryptedEmbedded,
    /// An encrypted store as versions before blind indexes made them (no
    /// `encryption_blind_index` marker): its lookup-only key segments are deterministic
    /// ciphertext like the others, and must go on reading back.
    EncryptedSealedIndex,
    /// A remote backend on its real server, as the engine opens it (behind the cache).
    Remote(Backend),
    /// A remote backend on its real server, bare: every read is a query.
    Bare(Backend),
}

/// A store under test and what must live as long as it (directories, server turns).
pub struct Opened {
    pub store: Arc<dyn GraphStore>,
    _hold: Option<Instance>,
    _dir: Option<tempfile::TempDir>,
}

pub fn open(subject: Subject) -> Opened {
    match subject {
        Subject::Memory => Opened {
            store: Arc::new(MemoryStore::new()),
            _hold: None,
            _dir: None,
        },
        Subject::MirroredMemory => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = Mirrored::open(MemoryStore::new(), dir.path(), 30).expect("open the cache");
            Opened {
                store: Arc::new(store),
                _hold: None,
                _dir: Some(dir),
            }
        }
        Subject::Embedded => {
            let inst = Instance::new(Backend::Embedded);
            Opened {
                store: Engine::open_store(&inst.settings).expect("open the store"),
                _hold: Some(inst),
                _dir: None,
            }
        }
        Subject::EncryptedEmbedded => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = crate::encryption::encrypted_store(dir.path());
            Opened {
                store: Arc::new(store),
                _hold: None,
                _dir: Some(dir),
            }
        }
        Subject::EncryptedSealedIndex => {
            let dir = tempfile::tempdir().expect("temporary directory");
            drop(crate::encryption::encrypted_store(dir.path()));
            {
                let cfs = idgraph::store::rocks::ALL_CFS
                    .iter()
                    .map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, rocksdb::Options::default()));
                let path = dir.path().join("data");
                let db = rocksdb::DB::open_cf_descriptors(&rocksdb::Options::default(), path, cfs)
                    .expect("open raw");
                let meta = db.cf_handle("meta").expect("meta family");
                assert!(db
                    .get_cf(meta, b"encryption_blind_index")
                    .expect("read")
                    .is_some());
                db.delete_cf(meta, b"encryption_blind_index")
                    .expect("delete the marker");
            }
            let store = crate::encryption::encrypted_store(dir.path());
            Opened {
                store: Arc::new(store),
                _hold: None,
                _dir: Some(dir),
            }
        }
        Subject::Remote(backend) => {
            let inst = Instance::new(backend);
            Opened {
                store: Engine::open_store(&inst.settings).expect("open the store"),
                _hold: Some(inst),
                _dir: None,
            }
        }
        Subject::Bare(backend) => {
            let (graph, inst) = bare(backend);
            Opened {
                store: graph,
                _hold: Some(inst),
                _dir: None,
            }
        }
    }
}

/// A remote graph under test, bare (for the `RemoteGraph` part of the contract).
fn open_remote(subject: Subject) -> (Box<dyn RemoteGraph>, Option<Instance>) {
    match subject {
        Subject::Memory | Subject::MirroredMemory => (Box::new(MemoryStore::new()), None),
        Subject::Embedded | Subject::EncryptedEmbedded | Subject::EncryptedSealedIndex => {
            unreachable!("the embedded store is not a remote graph")
        }
        Subject::Remote(backend) | Subject::Bare(backend) => {
            let inst = Instance::new(backend);
            let graph: Box<dyn RemoteGraph> = match backend {
                Backend::Gremlin => {
                    Box::new(GremlinGraph::connect(&inst.settings.graph.gremlin).expect("connect"))
                }
                _ => Box::new(BoltGraph::connect(&inst.settings.graph.bolt).expect("connect")),
            };
            (graph, Some(inst))
        }
    }
}

/// A remote backend's graph without the cache, on a fresh database of its server.
fn bare(backend: Backend) -> (Arc<dyn GraphStore>, Instance) {
    let inst = Instance::new(backend);
    let graph: Arc<dyn GraphStore> = match backend {
        Backend::Gremlin => {
            Arc::new(GremlinGraph::connect(&inst.settings.graph.gremlin).expect("connect"))
        }
        _ => Arc::new(BoltGraph::connect(&inst.settings.graph.bolt).expect("connect")),
    };
    (graph, inst)
}

fn key(kind: &str, value: &str) -> IdentKey {
    IdentKey::new(kind, value)
}

fn pid(id: &str) -> ProfileId {
    ProfileId::from(id)
}

/// Values that break naive query building: quotes of every kind, backslashes, newlines,
/// braces and brackets, non-ASCII letters.
const AWKWARD: &str = "o'brien \"q\" `b` \\ {x} [y] $p\nzoë 李";

fn node(kind: &str, value: &str, profile: &str, seen: i64) -> Node {
    Node {
        kind: kind.to_owned(),
        value: value.to_owned(),
        profile_id: pid(profile),
        first_seen: seen,
        last_seen: seen + 10,
        sources: BTreeSet::from(["web".to_owned(), "crm".to_owned()]),
        event_count: 3,
        platform: (kind == "device_id").then(|| "ios".to_owned()),
    }
}

fn edge(a: &IdentKey, b: &IdentKey, status: EdgeStatus, probable: bool) -> Edge {
    let (a, b) = idgraph::model::edge_pair(a, b);
    Edge {
        a,
        b,
        status,
        sources: BTreeSet::from(["web".to_owned()]),
        count: 2,
        first_seen: 100,
        last_seen: 200,
        event_ids: vec!["e1".to_owned(), "e2".to_owned()],
        probable: probable.then(|| ProbableLink {
            probability: 0.97,
            weight: 11.5,
            fields: vec![FieldContribution {
                field: "first_name".to_owned(),
                level: 0,
                weight: 4.25,
                tf_adjustment: Some(-1.5),
            }],
            cluster_probability: 0.95,
        }),
    }
}

fn profile(id: &str, seq: u64, identifiers: &[&IdentKey]) -> ProfileState {
    let mut p = ProfileState::new(pid(id), seq, 100);
    for k in identifiers {
        p.insert_identifier(k.kind(), k.value());
    }
    p.event_count = 2;
    p.sources.insert("web".to_owned());
    p.address_key = Some("1 main st|02139|US".to_owned());
    p.split_marks.insert("7/1".to_owned());
    p.pins.insert(
        "last_name".to_owned(),
        idgraph::model::Pin {
            value: json!(AWKWARD),
            actor: "steward-key".to_owned(),
            reason: AWKWARD.to_owned(),
            at: 100,
        },
    );
    p.traits = TraitStats(BTreeMap::from([(
        "first_name".to_owned(),
        vec![Observation {
            value: json!(AWKWARD),
            count: 1,
            last_seen: 100,
            sources: BTreeSet::from(["web".to_owned()]),
            first_seen: Some(90),
            last_event: Some(AWKWARD.to_owned()),
        }],
    )]));
    p
}

fn golden(id: &str, name: &str) -> Vec<u8> {
    let body = json!({"profile_id": id, "traits": {"first_name": name}});
    golden_cache_value(0, body.to_string().as_bytes())
}

fn stored_event(id: &str, seq: u64, identifiers: &[&IdentKey]) -> StoredEvent {
    StoredEvent {
        event_id: id.to_owned(),
        seq,
        source: "web".to_owned(),
        event_type: "identify".to_owned(),
        timestamp: 1_000 + seq as i64,
        received_at: 2_000 + seq as i64,
        identifiers: identifiers.iter().map(|k| (*k).clone()).collect(),
        traits: BTreeMap::from([("first_name".to_owned(), json!(AWKWARD))]),
        properties: serde_json::Map::from_iter([("amount".to_owned(), json!(12.5))]),
        aged_at: None,
    }
}

fn history(
    seq: u64,
    kind: HistoryKind,
    profiles: &[&str],
    identifiers: &[&IdentKey],
) -> HistoryEntry {
    HistoryEntry {
        seq,
        at: 100 + seq as i64,
        kind,
        profiles: profiles.iter().map(|p| pid(p)).collect(),
        survivor: profiles.first().map(|p| pid(p)),
        absorbed: profiles.iter().skip(1).map(|p| pid(p)).collect(),
        event_id: Some(format!("e{seq}")),
        rule: "shared_identifier".to_owned(),
        identifiers: identifiers.iter().map(|k| (*k).clone()).collect(),
        detail: Some(AWKWARD.to_owned()),
        // A steward's note on some entries: it must come back from every store.
        steward: (seq % 2 == 1).then(|| idgraph::model::StewardNote {
            actor: "steward-key".to_owned(),
            reason: AWKWARD.to_owned(),
            overrides: vec!["max_per_profile:email=5".to_owned()],
        }),
    }
}

fn match_record(name: &str, keys: &[&str]) -> MatchRecord {
    MatchRecord {
        attributes: Attributes {
            first_name: Some(name.to_owned()),
            last_name: Some("smith".to_owned()),
            birth_date: chrono::NaiveDate::from_ymd_opt(1980, 2, 29),
            ..Attributes::default()
        },
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    }
}

/// The graph of two people the tests write: Ann (p1: email, phone, device; an active
/// link and a probable one) and Bob (p2: email, customer id; refused link to Ann's
/// device), Ann's absorbed profile p0, events, indexes, history, suppression, counters.
struct Fixture {
    ann_email: IdentKey,
    ann_phone: IdentKey,
    device: IdentKey,
    bob_email: IdentKey,
    bob_customer: IdentKey,
    changes: Changes,
}

fn fixture() -> Fixture {
    let ann_email = key("email", "ann@example.com");
    let ann_phone = key("phone", "+14155550100");
    let device = key("device_id", AWKWARD);
    let bob_email = key("email", "bob@example.com");
    let bob_customer = key("customer_id", "C-1");
    let mut ch = Changes::default();
    for (k, p) in [
        (&ann_email, "p1"),
        (&ann_phone, "p1"),
        (&device, "p1"),
        (&bob_email, "p2"),
        (&bob_customer, "p2"),
    ] {
        ch.nodes
            .insert(k.clone(), Some(node(k.kind(), k.value(), p, 50)));
    }
    for (a, b, status, probable) in [
        (&ann_email, &ann_phone, EdgeStatus::Active, false),
        (&ann_email, &device, EdgeStatus::Active, true),
        (
            &bob_email,
            &device,
            EdgeStatus::Refused {
                rule: "device_limit".to_owned(),
            },
            false,
        ),
        (&bob_email, &bob_customer, EdgeStatus::Active, false),
    ] {
        let e = edge(a, b, status, probable);
        ch.edges.insert((e.a.clone(), e.b.clone()), Some(e));
    }
    ch.profiles.insert(
        pid("p1"),
        Some(profile("p1", 1, &[&ann_email, &ann_phone, &device])),
    );
    ch.profiles.insert(
        pid("p2"),
        Some(profile("p2", 2, &[&bob_email, &bob_customer])),
    );
    ch.goldens.insert(pid("p1"), Some(golden("p1", AWKWARD)));
    ch.goldens.insert(pid("p2"), Some(golden("p2", "Bob")));
    ch.aliases.insert(pid("p0"), pid("p1"));
    // Events and their index rows, written out of sequence order on purpose.
    for (id, seq, keys) in [
        ("e3", 3, vec![&ann_email]),
        ("e1", 1, vec![&ann_email, &ann_phone]),
        ("e2", 2, vec![&ann_email, &device, &bob_email]),
    ] {
        ch.events.push(stored_event(id, seq, &keys));
        for k in keys {
            ch.event_index.push((k.clone(), seq, id.to_owned()));
        }
    }
    ch.address_index
        .push(("1 main st|02139|US".to_owned(), pid("p2"), true));
    ch.address_index
        .push(("1 main st|02139|US".to_owned(), pid("p1"), true));
    ch.match_records.insert(
        ann_email.clone(),
        Some(match_record(AWKWARD, &["S530|1980", "ann"])),
    );
    ch.match_records
        .insert(bob_email.clone(), Some(match_record("bob", &["S530|1980"])));
    ch.match_index
        .push(("S530|1980".to_owned(), bob_email.clone(), true));
    ch.match_index
        .push(("S530|1980".to_owned(), ann_email.clone(), true));
    ch.match_index
        .push(("ann".to_owned(), ann_email.clone(), true));
    ch.history.push(history(
        2,
        HistoryKind::Merged,
        &["p1", "p0"],
        &[&ann_email],
    ));
    ch.history
        .push(history(1, HistoryKind::Created, &["p1"], &[&ann_email]));
    ch.history
        .push(history(3, HistoryKind::Conflict, &["p2", "p1"], &[&device]));
    ch.suppression.push(("h-erased".to_owned(), true));
    ch.counters = Some(Counters {
        profile_seq: 2,
        event_seq: 3,
        commit_seq: 1,
        history_seq: 3,
        suppressed: 1,
        // Live counts are the embedded store's own (graph databases keep none).
        ..Counters::default()
    });
    Fixture {
        ann_email,
        ann_phone,
        device,
        bob_email,
        bob_customer,
        changes: ch,
    }
}

fn ids(list: &[ProfileId]) -> Vec<&str> {
    list.iter().map(ProfileId::as_str).collect()
}

/// Everything the fixture wrote reads back as written, by point and by batch reads.
pub fn round_trip(subject: Subject) {
    let opened = open(subject);
    let s = opened.store.as_ref();
    let f = fixture();
    // Empty first.
    assert_eq!(s.node(&f.ann_email).expect("node"), None);
    // (The embedded store has counted its live records, none: `live_counted`.)
    let counters = s.counters().expect("counters");
    assert_eq!(
        Counters {
            live_counted: false,
            ..counters
        },
        Counters::default()
    );
    assert!(s.goldens_after(None, 10).expect("goldens").is_empty());
    assert!(!s.is_suppressed("h-erased").expect("suppressed"));

    s.apply(&f.changes).expect("apply");

    for (k, written) in &f.changes.nodes {
        let read = s.node(k).expect("node").expect("node is stored");
        assert_eq!(Some(&read), written.as_ref(), "node {k}");
        assert_eq!(read.key(), *k);
        assert_eq!(
            s.profile_of(k).expect("profile_of"),
            Some(read.profile_id.clone())
        );
    }
    for ((a, b), written) in &f.changes.edges {
        // Either endpoint order finds the same edge.
        assert_eq!(s.edge(a, b).expect("edge").as_ref(), written.as_ref());
        assert_eq!(s.edge(b, a).expect("edge").as_ref(), written.as_ref());
    }
    for (id, written) in &f.changes.profiles {
        assert_eq!(s.profile(id).expect("profile").as_ref(), written.as_ref());
    }
    for (id, written) in &f.changes.goldens {
        assert_eq!(s.golden(id).expect("golden").as_ref(), written.as_ref());
    }
    assert_eq!(s.alias(&pid("p0")).expect("alias"), Some(pid("p1")));
    assert_eq!(s.alias(&pid("p1")).expect("alias"), None);
    for e in &f.changes.events {
        assert_eq!(s.event(&e.event_id).expect("event").as_ref(), Some(e));
    }
    assert_eq!(s.event("nope").expect("event"), None);
    for (k, written) in &f.changes.match_records {
        assert_eq!(
            s.match_record(k).expect("match record").as_ref(),
            written.as_ref()
        );
    }
    assert!(s.is_suppressed("h-erased").expect("suppressed"));
    assert!(!s.is_suppressed("h-other").expect("suppressed"));
    assert_eq!(
        s.counters().expect("counters"),
        f.changes.counters.expect("set")
    );

    // Batch reads agree with point reads, in the order asked, absent ones included.
    let missing = key("email", "nobody@example.com");
    let keys = vec![f.device.clone(), missing.clone(), f.ann_email.clone()];
    let nodes = s.nodes(&keys).expect("nodes");
    let point: Vec<Option<Node>> = keys.iter().map(|k| s.node(k).expect("node")).collect();
    assert_eq!(nodes, point);
    assert!(nodes[1].is_none() && nodes[0].is_some());
    let pairs = vec![
        (f.device.clone(), f.ann_email.clone()),
        (f.ann_phone.clone(), missing.clone()),
        (f.bob_customer.clone(), f.bob_email.clone()),
    ];
    let edges = s.edges(&pairs).expect("edges");
    assert!(edges[1].is_none());
    for ((a, b), e) in pairs.iter().zip(&edges) {
        assert_eq!(e, &s.edge(a, b).expect("edge"));
    }
    let profiles = s
        .profiles(&[pid("p2"), pid("p9"), pid("p1")])
        .expect("profiles");
    assert_eq!(profiles[0].as_ref().map(|p| p.id.as_str()), Some("p2"));
    assert!(profiles[1].is_none());
    assert_eq!(profiles[2].as_ref().map(|p| p.id.as_str()), Some("p1"));
    let goldens = s.goldens(&[pid("p9"), pid("p1")]).expect("goldens");
    assert_eq!(goldens, vec![None, s.golden(&pid("p1")).expect("golden")]);
    let stored = s
        .stored_events(&["e2".to_owned(), "e9".to_owned(), "e1".to_owned()])
        .expect("stored events");
    assert_eq!(
        stored.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["e1".to_owned(), "e2".to_owned()])
    );
}

/// Scans come back in key or sequence order, limits are honoured, pages cover everything
/// exactly once.
pub fn order_and_limits(subject: Subject) {
    // An encrypted store keeps identifier keys encrypted: its pages follow the stored
    // (ciphertext) order, still each record once.
    let identifier_order = !matches!(
        subject,
        Subject::EncryptedEmbedded | Subject::EncryptedSealedIndex
    );
    let opened = open(subject);
    let s = opened.store.as_ref();
    let f = fixture();
    s.apply(&f.changes).expect("apply");

    assert_eq!(
        s.event_ids_of(&f.ann_email, 10).expect("event ids"),
        vec!["e1", "e2", "e3"],
        "oldest first"
    );
    assert_eq!(
        s.event_ids_of(&f.ann_email, 2).expect("event ids"),
        vec!["e1", "e2"]
    );
    assert_eq!(
        s.event_ids_of(&f.bob_customer, 10).expect("event ids"),
        Vec::<String>::new()
    );

    let seqs = |id: &str, limit| -> Vec<u64> {
        s.history(&pid(id), limit)
            .expect("history")
            .iter()
            .map(|h| h.seq)
            .collect()
    };
    assert_eq!(
        seqs("p1", 10),
        vec![1, 2, 3],
        "oldest first, under every profile"
    );
    assert_eq!(seqs("p1", 2), vec![1, 2]);
    assert_eq!(seqs("p0", 10), vec![2]);
    assert_eq!(seqs("p2", 10), vec![3]);
    let entry = &s.history(&pid("p2"), 1).expect("history")[0];
    assert_eq!(entry, &f.changes.history[2], "history entries round-trip");

    let mut around_ann: Vec<Edge> = s.edges_of(&f.ann_email, 10).expect("edges of");
    around_ann.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    let mut expected: Vec<Edge> = f
        .changes
        .edges
        .values()
        .flatten()
        .filter(|e| e.a == f.ann_email || e.b == f.ann_email)
        .cloned()
        .collect();
    expected.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    assert_eq!(around_ann, expected);
    assert_eq!(
        s.edges_of(&f.device, 10).expect("edges of").len(),
        2,
        "refused edges too"
    );
    assert_eq!(s.edges_of(&f.device, 1).expect("edges of").len(), 1);

    let mut at = s
        .profiles_at_address("1 main st|02139|US", 10)
        .expect("address");
    at.sort();
    assert_eq!(ids(&at), vec!["p1", "p2"]);
    assert_eq!(
        s.profiles_at_address("1 main st|02139|US", 1)
            .expect("address")
            .len(),
        1
    );
    assert!(s
        .profiles_at_address("2 main st|02139|US", 10)
        .expect("address")
        .is_empty());

    let mut candidates = s.match_candidates("S530|1980", 10).expect("candidates");
    candidates.sort();
    assert_eq!(candidates, vec![f.ann_email.clone(), f.bob_email.clone()]);
    assert_eq!(
        s.match_candidates("S530|1980", 1)
            .expect("candidates")
            .len(),
        1
    );

    // Paging by one covers every golden and match record once, in key order.
    let mut seen = Vec::new();
    let mut after: Option<ProfileId> = None;
    loop {
        let page = s.goldens_after(after.as_ref(), 1).expect("goldens after");
        let Some((id, raw)) = page.into_iter().next() else {
            break;
        };
        assert_eq!(Some(&raw), f.changes.goldens[&id].as_ref());
        seen.push(id.clone());
        after = Some(id);
    }
    assert_eq!(ids(&seen), vec!["p1", "p2"]);
    let all = s.goldens_after(None, 10).expect("goldens after");
    assert_eq!(all.len(), 2);
    let mut seen = Vec::new();
    let mut after: Option<IdentKey> = None;
    loop {
        let page = s
            .match_records_after(after.as_ref(), 1)
            .expect("records after");
        let Some((k, record)) = page.into_iter().next() else {
            break;
        };
        assert_eq!(Some(&record), f.changes.match_records[&k].as_ref());
        seen.push(k.clone());
        after = Some(k);
    }
    if !identifier_order {
        seen.sort();
    }
    assert_eq!(seen, vec![f.ann_email.clone(), f.bob_email.clone()]);
}

/// Deleting removes exactly what was named; deleting twice, or applying the same changes
/// twice, is harmless.
pub fn deletions(subject: Subject) {
    let opened = open(subject);
    let s = opened.store.as_ref();
    let f = fixture();
    s.apply(&f.changes).expect("apply");
    s.apply(&f.changes).expect("apply again");
    assert_eq!(
        s.event_ids_of(&f.ann_email, 10).expect("event ids").len(),
        3
    );
    assert_eq!(s.history(&pid("p1"), 10).expect("history").len(), 3);

    // Erase Bob: his identifiers, links, profile, golden, events, index rows, history.
    let mut del = Changes::default();
    del.nodes.insert(f.bob_email.clone(), None);
    del.nodes.insert(f.bob_customer.clone(), None);
    for (a, b) in [(&f.bob_email, &f.device), (&f.bob_email, &f.bob_customer)] {
        del.edges.insert(idgraph::model::edge_pair(a, b), None);
    }
    del.profiles.insert(pid("p2"), None);
    del.goldens.insert(pid("p2"), None);
    del.delete_events.push("e2".to_owned());
    del.drop_event_index.push(f.bob_email.clone());
    del.address_index
        .push(("1 main st|02139|US".to_owned(), pid("p2"), false));
    del.match_records.insert(f.bob_email.clone(), None);
    del.match_index
        .push(("S530|1980".to_owned(), f.bob_email.clone(), false));
    del.delete_aliases.push(pid("p0"));
    del.drop_history.push(pid("p2"));
    del.history
        .push(history(4, HistoryKind::Erased, &["p2"], &[]));
    del.suppression.push(("h-erased".to_owned(), false));
    del.suppression.push(("h-bob".to_owned(), true));
    del.counters = Some(Counters {
        commit_seq: 2,
        history_seq: 4,
        ..f.changes.counters.expect("set")
    });
    s.apply(&del).expect("delete");
    s.apply(&del).expect("delete again");

    for k in [&f.bob_email, &f.bob_customer] {
        assert_eq!(s.node(k).expect("node"), None);
        assert_eq!(s.profile_of(k).expect("profile_of"), None);
        assert_eq!(s.match_record(k).expect("record"), None);
        assert!(s.event_ids_of(k, 10).expect("event ids").is_empty());
    }
    assert_eq!(s.edge(&f.device, &f.bob_email).expect("edge"), None);
    assert_eq!(s.edges_of(&f.device, 10).expect("edges of").len(), 1);
    assert_eq!(s.profile(&pid("p2")).expect("profile"), None);
    assert_eq!(s.golden(&pid("p2")).expect("golden"), None);
    assert_eq!(s.event("e2").expect("event"), None);
    assert_eq!(s.alias(&pid("p0")).expect("alias"), None);
    assert_eq!(
        ids(&s
            .profiles_at_address("1 main st|02139|US", 10)
            .expect("address")),
        vec!["p1"]
    );
    assert_eq!(
        s.match_candidates("S530|1980", 10).expect("candidates"),
        vec![f.ann_email.clone()]
    );
    let p2: Vec<HistoryKind> = s
        .history(&pid("p2"), 10)
        .expect("history")
        .iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(
        p2,
        vec![HistoryKind::Erased],
        "dropped, then the new entry written"
    );
    assert!(!s.is_suppressed("h-erased").expect("suppressed"));
    assert!(s.is_suppressed("h-bob").expect("suppressed"));
    assert_eq!(s.counters().expect("counters").commit_seq, 2);
    assert_eq!(s.goldens_after(None, 10).expect("goldens").len(), 1);

    // Ann is untouched, except that the deleted event left every index.
    assert!(s.node(&f.ann_email).expect("node").is_some());
    assert!(s.edge(&f.ann_email, &f.device).expect("edge").is_some());
    assert!(s.profile(&pid("p1")).expect("profile").is_some());
    assert_eq!(
        s.event_ids_of(&f.ann_email, 10).expect("event ids"),
        vec!["e1", "e3"]
    );
    assert!(s.event_ids_of(&f.device, 10).expect("event ids").is_empty());
    assert_eq!(s.history(&pid("p1"), 10).expect("history").len(), 3);
}

/// One write may remove and set again the same index rows and history entries (a split
/// rebuilds a profile's indexes and history in the group that drops them): the last state
/// wins, and the same write applied twice gives the same result.
pub fn rewrites(subject: Subject) {
    let opened = open(subject);
    let s = opened.store.as_ref();
    let f = fixture();
    s.apply(&f.changes).expect("apply");
    let address = "1 main st|02139|US".to_owned();
    let mut ch = Changes::default();
    ch.drop_event_index.push(f.ann_email.clone());
    ch.event_index
        .push((f.ann_email.clone(), 3, "e3".to_owned()));
    ch.event_index
        .push((f.ann_email.clone(), 1, "e1".to_owned()));
    ch.address_index.push((address.clone(), pid("p1"), false));
    ch.address_index.push((address.clone(), pid("p1"), true));
    ch.address_index.push((address.clone(), pid("p2"), false));
    ch.match_index
        .push(("S530|1980".to_owned(), f.bob_email.clone(), false));
    ch.match_index
        .push(("S530|1980".to_owned(), f.bob_email.clone(), true));
    ch.match_index
        .push(("ann".to_owned(), f.ann_email.clone(), false));
    ch.drop_history.push(pid("p1"));
    ch.history
        .push(history(2, HistoryKind::Split, &["p1"], &[&f.ann_email]));
    for round in 0..2 {
        s.apply(&ch)
            .unwrap_or_else(|e| panic!("apply round {round}: {e}"));
        assert_eq!(
            s.event_ids_of(&f.ann_email, 10).expect("event ids"),
            vec!["e1", "e3"]
        );
        assert_eq!(
            ids(&s.profiles_at_address(&address, 10).expect("address")),
            vec!["p1"]
        );
        let mut candidates = s.match_candidates("S530|1980", 10).expect("candidates");
        candidates.sort();
        assert_eq!(candidates, vec![f.ann_email.clone(), f.bob_email.clone()]);
        assert!(s
            .match_candidates("ann", 10)
            .expect("candidates")
            .is_empty());
        let p1: Vec<(u64, HistoryKind)> = s
            .history(&pid("p1"), 10)
            .expect("history")
            .iter()
            .map(|h| (h.seq, h.kind))
            .collect();
        assert_eq!(p1, vec![(2, HistoryKind::Split)]);
    }
}

/// A remote graph keeps one instance id, and pages through identifiers and aliases in
/// key order (what rebuilding the profile cache reads).
pub fn remote_paging(subject: Subject) {
    let (g, _hold) = open_remote(subject);
    let first = g.instance("g_first").expect("instance");
    assert_eq!(g.instance("g_second").expect("instance"), first, "kept");
    let f = fixture();
    g.apply(&f.changes).expect("apply");
    let mut more = Changes::default();
    more.aliases.insert(pid("p5"), pid("p2"));
    g.apply(&more).expect("apply");
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = g.identifiers_after(&after, 2).expect("identifiers after");
        for n in &page {
            assert_eq!(Some(n), f.changes.nodes[&n.key()].as_ref());
            after = n.key().into_string();
            seen.push(n.key());
        }
        if page.len() < 2 {
            break;
        }
    }
    let mut expected: Vec<IdentKey> = f.changes.nodes.keys().cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);
    let aliases = g.aliases_after("", 10).expect("aliases after");
    assert_eq!(
        aliases,
        vec![(pid("p0"), pid("p1")), (pid("p5"), pid("p2"))]
    );
    assert_eq!(
        g.aliases_after("p0", 10).expect("aliases after"),
        vec![(pid("p5"), pid("p2"))]
    );
}

fn claim(holder: &str, now_ms: u64, ttl_ms: u64) -> Claim {
    Claim {
        holder: holder.to_owned(),
        label: format!("label of {holder}"),
        now_ms,
        expires_ms: now_ms + ttl_ms,
    }
}

fn one_node(value: &str) -> Changes {
    let mut ch = Changes::default();
    let n = node("email", value, "p1", 10);
    ch.nodes.insert(n.key(), Some(n));
    ch
}

/// The writer lease: the first claim takes it; another holder is refused while it runs
/// and takes it once it expired; a fenced write of a holder that lost it (or never had it)
/// stores nothing and says `Fenced`; renewal reports the loss; release frees it at once.
pub fn writer_lease(subject: Subject) {
    let (g, _hold) = open_remote(subject);
    let t = 1_000_000_000u64;
    let fenced = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Fenced(_)));

    // No lease yet: nothing to renew, and a fenced write is refused.
    assert!(!g.renew_lease(&claim("w_a", t, 30_000)).expect("renew"));
    assert!(fenced(g.apply_fenced(
        &one_node("x0@example.com"),
        &claim("w_a", t, 30_000)
    )));
    assert_eq!(g.node(&key("email", "x0@example.com")).expect("node"), None);

    let a_holds = |expires_ms| Holder {
        holder: "w_a".into(),
        label: "label of w_a".into(),
        expires_ms,
    };
    assert_eq!(
        g.claim_lease(&claim("w_a", t, 30_000)).expect("claim"),
        a_holds(t + 30_000)
    );
    // B is refused while A's lease runs; the record is unchanged.
    assert_eq!(
        g.claim_lease(&claim("w_b", t + 1_000, 30_000))
            .expect("claim"),
        a_holds(t + 30_000)
    );
    assert!(!g
        .renew_lease(&claim("w_b", t + 1_000, 30_000))
        .expect("renew"));
    assert!(fenced(g.apply_fenced(
        &one_node("b0@example.com"),
        &claim("w_b", t + 1_000, 30_000)
    )));
    assert_eq!(g.node(&key("email", "b0@example.com")).expect("node"), None);
    // A renews and writes (the write extends the lease too).
    assert!(g
        .renew_lease(&claim("w_a", t + 2_000, 30_000))
        .expect("renew"));
    g.apply_fenced(
        &one_node("a1@example.com"),
        &claim("w_a", t + 3_000, 30_000),
    )
    .expect("the holder writes");
    assert!(g
        .node(&key("email", "a1@example.com"))
        .expect("node")
        .is_some());
    // A claim of the holder again keeps it theirs.
    assert_eq!(
        g.claim_lease(&claim("w_a", t + 4_000, 30_000))
            .expect("claim"),
        a_holds(t + 34_000)
    );

    // Expired: B takes over; A is fenced from then on.
    let b = g
        .claim_lease(&claim("w_b", t + 40_000, 30_000))
        .expect("claim");
    assert_eq!((b.holder.as_str(), b.expires_ms), ("w_b", t + 70_000));
    assert!(!g
        .renew_lease(&claim("w_a", t + 41_000, 30_000))
        .expect("renew"));
    assert!(fenced(g.apply_fenced(
        &one_node("a2@example.com"),
        &claim("w_a", t + 41_000, 30_000)
    )));
    assert_eq!(g.node(&key("email", "a2@example.com")).expect("node"), None);
    assert_eq!(
        g.claim_lease(&claim("w_a", t + 41_000, 30_000))
            .expect("claim")
            .holder,
        "w_b"
    );

    // Release by another holder changes nothing; by the holder, frees it at once.
    g.release_lease("w_a").expect("release");
    assert!(g
        .renew_lease(&claim("w_b", t + 42_000, 30_000))
        .expect("renew"));
    g.release_lease("w_b").expect("release");
    assert_eq!(
        g.claim_lease(&claim("w_a", t + 43_000, 30_000))
            .expect("claim"),
        a_holds(t + 73_000)
    );
}

macro_rules! contract {
    ($($subject:ident => $value:expr),* $(,)?) => {
        $(
            mod $subject {
                use super::*;
                #[test] fn round_trip() { super::round_trip($value) }
                #[test] fn order_and_limits() { super::order_and_limits($value) }
                #[test] fn deletions() { super::deletions($value) }
                #[test] fn rewrites() { super::rewrites($value) }
            }
        )*
    };
}

contract!(
    memory => Subject::Memory,
    mirrored_memory => Subject::MirroredMemory,
    embedded => Subject::Embedded,
    encrypted_embedded => Subject::EncryptedEmbedded,
    encrypted_sealed_index => Subject::EncryptedSealedIndex,
    arcadedb => Subject::Remote(Backend::Bolt),
    arcadedb_bare => Subject::Bare(Backend::Bolt),
    neo4j => Subject::Remote(Backend::Neo4j),
    neo4j_bare => Subject::Bare(Backend::Neo4j),
    gremlin => Subject::Remote(Backend::Gremlin),
    gremlin_bare => Subject::Bare(Backend::Gremlin),
);

/// Events in arrival order, what retention ages next: every event holding its payload,
/// by sequence number, paged by `after`; an aged event (rewritten without payload) and
/// an erased one leave the order, a re-stored event does not appear twice.
pub fn event_order(subject: Subject) {
    let opened = open(subject);
    let s = opened.store.as_ref();
    let f = fixture();
    s.apply(&f.changes).expect("apply");
    let order = |after, limit| s.events_in_order(after, limit).expect("event order");
    let listed = |rows: Vec<(u64, String)>| rows.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    assert_eq!(
        order(0, 10),
        vec![
            (1, "e1".to_owned()),
            (2, "e2".to_owned()),
            (3, "e3".to_owned())
        ]
    );
    assert_eq!(listed(order(0, 2)), vec!["e1", "e2"]);
    assert_eq!(listed(order(2, 10)), vec!["e3"]);

    // Ageing e1 keeps the event (a duplicate stays a duplicate) without its payload.
    let e1 = s.event("e1").expect("read").expect("e1 stored");
    let mut age = Changes::default();
    age.events.push(e1.clone().aged(9_000));
    s.apply(&age).expect("age");
    let aged = s.event("e1").expect("read").expect("an aged event is kept");
    assert_eq!(aged.aged_at, Some(9_000));
    assert!(aged.traits.is_empty() && aged.properties.is_empty());
    assert_eq!((aged.seq, &aged.identifiers), (e1.seq, &e1.identifiers));
    assert_eq!(
        s.event_ids_of(&f.ann_email, 10).expect("event ids"),
        vec!["e1", "e2", "e3"],
        "an aged event keeps its identifiers' index rows"
    );
    assert_eq!(listed(order(0, 10)), vec!["e2", "e3"]);

    // An erased event leaves the order too.
    let mut erase = Changes::default();
    erase.delete_events.push("e3".to_owned());
    s.apply(&erase).expect("erase");
    assert_eq!(listed(order(0, 10)), vec!["e2"]);

    // Writing an event again (a group re-applied) lists it once.
    let mut again = Changes::default();
    again
        .events
        .push(s.event("e2").expect("read").expect("e2 stored"));
    s.apply(&again).expect("rewrite");
    assert_eq!(order(0, 10), vec![(2, "e2".to_owned())]);
}

mod event_order {
    use super::*;
    #[test]
    fn memory() {
        super::event_order(Subject::Memory)
    }
    #[test]
    fn embedded() {
        super::event_order(Subject::Embedded)
    }
    #[test]
    fn encrypted_embedded() {
        super::event_order(Subject::EncryptedEmbedded)
    }
    #[test]
    fn encrypted_sealed_index() {
        super::event_order(Subject::EncryptedSealedIndex)
    }

    /// A store written before the order existed (no `q` rows, no marker) gets it on first
    /// open: its events are listed, aged ones are not.
    #[test]
    fn an_older_store_is_indexed_on_first_open() {
        use idgraph::store::rocks::RocksStore;
        let dir = tempfile::tempdir().expect("temporary directory");
        let f = fixture();
        {
            let store = RocksStore::open(dir.path()).expect("open");
            store.apply(&f.changes).expect("apply");
            let mut age = Changes::default();
            let e2 = store.event("e2").expect("read").expect("e2 stored");
            age.events.push(e2.aged(9_000));
            store.apply(&age).expect("age");
        }
        {
            // What an older version left: the events, without their order or its marker.
            let cfs = idgraph::store::rocks::ALL_CFS
                .iter()
                .map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, rocksdb::Options::default()));
            let db =
                rocksdb::DB::open_cf_descriptors(&rocksdb::Options::default(), dir.path(), cfs)
                    .expect("open raw");
            let events = db.cf_handle("events").expect("events family");
            for seq in 1u64..=3 {
                let mut k = b"q\0".to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                db.delete_cf(events, k).expect("delete order row");
            }
            db.delete_cf(db.cf_handle("meta").expect("meta family"), b"event_order")
                .expect("delete marker");
        }
        let store = RocksStore::open(dir.path()).expect("reopen");
        let listed: Vec<String> = store
            .events_in_order(0, 10)
            .expect("order")
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(listed, vec!["e1", "e3"], "the aged e2 is not listed");
    }

    /// A store whose counters do not keep live counts (written before they existed) is
    /// counted once when opened.
    #[test]
    fn an_older_store_counts_its_live_profiles_and_identifiers_on_first_open() {
        use idgraph::store::rocks::RocksStore;
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = RocksStore::open(dir.path()).expect("open");
            // The fixture's counters, as an older version wrote them: no live counts.
            store.apply(&fixture().changes).expect("apply");
            assert!(!store.counters().expect("counters").live_counted);
        }
        let c = RocksStore::open(dir.path())
            .expect("reopen")
            .counters()
            .expect("counters");
        assert!(c.live_counted);
        assert_eq!((c.profiles, c.identifiers), (2, 5));
        assert_eq!(c.commit_seq, 1, "counting is not a write group");
    }
}

/// The `RemoteGraph` part of the contract, on every remote graph.
macro_rules! remote_contract {
    ($($name:ident => $test:path),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[test] fn memory() { $test(Subject::Memory) }
                #[test] fn arcadedb() { $test(Subject::Bare(Backend::Bolt)) }
                #[test] fn neo4j() { $test(Subject::Bare(Backend::Neo4j)) }
                #[test] fn gremlin() { $test(Subject::Bare(Backend::Gremlin)) }
            }
        )*
    };
}

remote_contract!(remote => remote_paging, lease => writer_lease);

/// The embedded store's last-level compression (`storage.bottommost_compression`): files
/// written under one setting are read under the other, and zstd (with its per-file
/// dictionary) really is what the last level gets: fewer bytes than lz4 for the same
/// records.
mod compression {
    use super::*;
    use idgraph::config::Compression;
    use idgraph::store::rocks::RocksStore;

    fn changes(from: usize, to: usize) -> Changes {
        let mut ch = Changes::default();
        for i in from..to {
            let n = node(
                "email",
                &format!("person.{i}@example.com"),
                &format!("p{}", i / 3),
                i as i64,
            );
            ch.nodes.insert(n.key(), Some(n));
        }
        ch
    }

    fn all_read_back(store: &RocksStore, upto: usize) {
        let expected = changes(0, upto);
        for (k, n) in &expected.nodes {
            assert_eq!(&store.node(k).expect("node"), n, "{k}");
        }
    }

    #[test]
    fn either_setting_reads_the_other_and_zstd_writes_fewer_bytes() {
        let (zstd_dir, lz4_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut sizes = Vec::new();
        for (dir, first, second) in [
            (&zstd_dir, Compression::Zstd, Compression::Lz4),
            (&lz4_dir, Compression::Lz4, Compression::Zstd),
        ] {
            let store = RocksStore::open_with_cache(dir.path(), 64, first, None).expect("open");
            store.apply(&changes(0, 20_000)).expect("apply");
            store.compact().expect("compact to the last level");
            sizes.push(crate::helpers::sst_bytes(dir.path()));
            drop(store);
            let store = RocksStore::open_with_cache(dir.path(), 64, second, None).expect("reopen");
            all_read_back(&store, 20_000);
            store.apply(&changes(20_000, 25_000)).expect("apply");
            store.compact().expect("compact");
            drop(store);
            let store = RocksStore::open_with_cache(dir.path(), 64, first, None).expect("reopen");
            all_read_back(&store, 25_000);
        }
        assert!(
            sizes[0] < sizes[1],
            "zstd {} bytes, lz4 {} bytes",
            sizes[0],
            sizes[1]
        );
    }
}

/// The embedded store's record cache never answers with a record a later write replaced
/// or deleted: reads between writes see every write, on the writer and on a replica
/// applying the writer's groups as written, and a record read twice is answered from the
/// cache the second time (the metrics count the hits). Plaintext and encrypted.
#[test]
fn the_record_cache_follows_every_write_and_replicated_group() {
    use idgraph::config::Compression;
    use idgraph::store::rocks::RocksStore;
    let plain = |dir: &std::path::Path, name: &str| {
        RocksStore::open_with_cache(&dir.join(name), 64, Compression::default(), None)
            .and_then(|s| s.with_record_cache(1 << 20))
            .expect("open the store")
    };
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (writer, replica) = if encrypted {
            (
                crate::encryption::encrypted_store(dir.path()),
                crate::encryption::encrypted_store_in(dir.path(), "replica"),
            )
        } else {
            (plain(dir.path(), "data"), plain(dir.path(), "replica"))
        };
        record_cache_follows_writes(
            writer
                .with_replication(1 << 20)
                .expect("replication backlog"),
            replica,
            if encrypted { "encrypted" } else { "plaintext" },
        );
    }
}

fn record_cache_follows_writes(
    writer: idgraph::store::rocks::RocksStore,
    replica: idgraph::store::rocks::RocksStore,
    mode: &str,
) {
    use idgraph::store::rocks::RocksStore;
    let backlog = writer.replication_backlog().expect("a backlog");
    let email = key("email", "ann@example.com");
    let hits = |s: &RocksStore| -> u64 {
        metric(&s.engine_metrics(), "idgraph_store_record_cache_hits_total")
    };
    let expect = |s: &RocksStore, at: &str, profile: &str, seen: i64, name: Option<&str>| {
        for read in ["first read", "second read"] {
            let got = s.node(&email).expect("node");
            assert_eq!(
                got.as_ref()
                    .map(|n| (n.profile_id.as_str().to_owned(), n.first_seen)),
                name.map(|_| (profile.to_owned(), seen)),
                "{at}, {read}: the identifier node"
            );
            assert_eq!(
                s.golden(&pid(profile)).expect("golden"),
                name.map(|n| golden(profile, n)),
                "{at}, {read}: the golden profile"
            );
        }
    };
    let steps: [(&str, Option<&str>); 4] = [
        ("p1", Some("Ann")),
        ("p1", Some("Anne")),
        ("p2", Some("Annie")),
        ("p2", None),
    ];
    for (i, (profile, name)) in steps.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let mut ch = Changes::default();
        ch.nodes.insert(
            email.clone(),
            name.map(|_| node("email", "ann@example.com", profile, seq as i64)),
        );
        ch.goldens
            .insert(pid(profile), name.map(|n| golden(profile, n)));
        if profile == "p2" {
            // The move from p1 to p2 leaves no golden profile of p1 behind.
            ch.goldens.insert(pid("p1"), None);
        }
        ch.counters = Some(Counters {
            commit_seq: seq,
            ..Counters::default()
        });
        let before = (hits(&writer), hits(&replica));
        writer.apply(&ch).expect("apply");
        let groups = backlog.after(seq - 1, usize::MAX).expect("the group");
        assert_eq!(groups.len(), 1, "step {seq}: one group");
        replica
            .apply_replicated(&groups[0].batch)
            .expect("apply the writer's group");
        for (s, at) in [(&writer, "writer"), (&replica, "replica")] {
            let at = &format!("{mode} {at}");
            expect(s, &format!("{at}, step {seq}"), profile, seq as i64, name);
            assert!(
                s.golden(&pid("p1")).expect("golden of p1").is_none() || profile == "p1",
                "{at}, step {seq}: p1's golden profile is gone"
            );
        }
        if name.is_some() {
            // The second reads of the node and the golden profile were hits.
            assert!(hits(&writer) >= before.0 + 2, "writer, step {seq}: no hits");
            assert!(
                hits(&replica) >= before.1 + 2,
                "replica, step {seq}: no hits"
            );
        }
    }
}

/// The value in a `/metrics` text of the unlabelled sample `name` (it must be there).
fn metric(text: &str, name: &str) -> u64 {
    crate::helpers::metric_sample(text, name)
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}")) as u64
}

/// An encrypted store compresses values before sealing them once it has trained a
/// dictionary on its first values; the dictionary travels in the writer's next write
/// group, so a replica applying the groups as written reads every value, compressed or
/// not, and so does the writer reopened.
#[test]
fn an_encrypted_replica_reads_the_values_compressed_with_a_dictionary_from_a_group() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let writer = crate::encryption::encrypted_store(dir.path())
        .with_replication(64 << 20)
        .expect("replication backlog");
    let replica = crate::encryption::encrypted_store_in(dir.path(), "replica");
    let backlog = writer.replication_backlog().expect("a backlog");
    const GROUPS: u64 = 60;
    const PER_GROUP: usize = 50;
    let email = |g: u64, i: usize| format!("person.{g}.{i}@mail{}.example.org", i % 5);
    let write = |s: &idgraph::store::rocks::RocksStore, groups: std::ops::RangeInclusive<u64>| {
        for g in groups {
            let mut ch = Changes::default();
            for i in 0..PER_GROUP {
                let value = email(g, i);
                ch.nodes.insert(
                    key("email", &value),
                    Some(node("email", &value, &format!("p_{g}_{i}"), g as i64)),
                );
            }
            ch.counters = Some(Counters {
                commit_seq: g,
                ..Counters::default()
            });
            s.apply(&ch).expect("apply");
        }
    };
    for g in 1..=GROUPS {
        write(&writer, g..=g);
        for group in backlog.after(g - 1, usize::MAX).expect("the group") {
            replica
                .apply_replicated(&group.batch)
                .expect("apply the writer's group");
        }
    }
    let text = writer.engine_metrics();
    assert!(
        metric(&text, "idgraph_store_compression_dictionaries") >= 1,
        "the identifiers' dictionary is in use:\n{text}"
    );
    let (bytes_in, bytes_out) = (
        metric(&text, "idgraph_store_compressed_bytes_in_total"),
        metric(&text, "idgraph_store_compressed_bytes_out_total"),
    );
    assert!(
        metric(&text, "idgraph_store_compressed_values_total") > 500 && bytes_out * 2 < bytes_in,
        "hundreds of values compressed to less than half: {bytes_out} of {bytes_in} bytes"
    );
    let check = |s: &idgraph::store::rocks::RocksStore, at: &str, groups: u64| {
        for g in 1..=groups {
            for i in 0..PER_GROUP {
                let value = email(g, i);
                let got = s.node(&key("email", &value)).expect("node");
                assert_eq!(
                    got.map(|n| (n.value, n.profile_id.as_str().to_owned())),
                    Some((value.clone(), format!("p_{g}_{i}"))),
                    "{at}: the node of group {g}, item {i}"
                );
            }
        }
    };
    check(&replica, "replica", GROUPS);
    check(&writer, "writer", GROUPS);
    drop((writer, replica));
    // Reopened, the writer goes on with the dictionaries it stored (a second one trained
    // and stored over the first would leave the values written before unreadable).
    let reopened = crate::encryption::encrypted_store(dir.path());
    write(&reopened, GROUPS + 1..=3 * GROUPS);
    check(&reopened, "writer reopened", 3 * GROUPS);
    drop(reopened);
    check(
        &crate::encryption::encrypted_store(dir.path()),
        "writer reopened twice",
        3 * GROUPS,
    );
    let replica = crate::encryption::encrypted_store_in(dir.path(), "replica");
    check(&replica, "replica reopened", GROUPS);
}
