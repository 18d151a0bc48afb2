//! The graph-store conformance suite: every behaviour below is written once and run
//! against each backend: the embedded RocksDB store, and the Bolt store on a real ArcadeDB
//! server (`arcadedb.rs`) and on a real Neo4j 5 Community server (`neo4j.rs`). All must
//! give the same results.

use serde_json::{json, Value};
use tempfile::TempDir;

use idgraph::config::{GraphBackend, GraphFlavour, Secret, Settings};
use idgraph::engine::Engine;
use idgraph::model::{IdentKey, ProfileId};
use idgraph::resolve::EventOutcome;

use crate::{arcadedb, gremlin as gremlin_server, neo4j as neo4j_server};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Embedded,
    /// The Bolt store on a real ArcadeDB server (a database per test).
    Bolt,
    /// The Bolt store on a real Neo4j 5 Community server (one database, tests take turns).
    Neo4j,
    /// The Gremlin store on a real Apache TinkerPop Gremlin Server (TinkerGraph with
    /// transactions; one graph, tests take turns).
    Gremlin,
}

/// A data directory (and for Bolt, a fresh database) that engines can be opened on, one
/// after another, as a restarted server would.
pub struct Instance {
    pub settings: Settings,
    _dir: TempDir,
    _neo4j: Option<neo4j_server::Neo4jTurn>,
    _gremlin: Option<gremlin_server::GremlinTurn>,
}

impl Instance {
    pub fn new(backend: Backend) -> Instance {
        Instance::with(backend, |_| {})
    }

    pub fn with(backend: Backend, modify: impl FnOnce(&mut Settings)) -> Instance {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let mut settings = Settings::default();
        settings.storage.data_dir = dir.path().to_owned();
        let mut turn = None;
        let mut gremlin_turn = None;
        match backend {
            Backend::Embedded => {}
            Backend::Bolt => {
                let server = arcadedb::shared();
                bolt_settings(&mut settings, server, &server.create_database());
            }
            Backend::Neo4j => {
                let held = neo4j_server::exclusive();
                settings.graph.store = GraphBackend::Bolt;
                settings.graph.bolt.uri = held.bolt_uri.clone();
                settings.graph.bolt.user = "neo4j".into();
                settings.graph.bolt.password = Secret::new(held.password.clone());
                settings.graph.bolt.database = "neo4j".into();
                settings.graph.bolt.flavour = GraphFlavour::Neo4j;
                settings.graph.bolt.pool_size = 4;
                turn = Some(held);
            }
            Backend::Gremlin => {
                let held = gremlin_server::exclusive();
                settings.graph.store = GraphBackend::Gremlin;
                settings.graph.gremlin.uri = held.server.uri.clone();
                settings.graph.gremlin.user = held.server.user.clone();
                settings.graph.gremlin.password = Secret::new(held.server.password.clone());
                settings.graph.gremlin.pool_size = 4;
                gremlin_turn = Some(held);
            }
        }
        if matches!(backend, Backend::Bolt | Backend::Neo4j) {
            let applied = idgraph::store::bolt::schema::apply(&settings.graph.bolt)
                .expect("apply the graph schema");
            assert!(applied > 0);
        }
        modify(&mut settings);
        Instance {
            settings,
            _dir: dir,
            _neo4j: turn,
            _gremlin: gremlin_turn,
        }
    }

    pub fn open(&self) -> Engine {
        Engine::open(self.settings.clone()).expect("open the engine")
    }
}

/// Points `settings` at `database` on an ArcadeDB server.
pub fn bolt_settings(settings: &mut Settings, server: &arcadedb::Arcade, database: &str) {
    settings.graph.store = GraphBackend::Bolt;
    settings.graph.bolt.uri = server.bolt_uri.clone();
    settings.graph.bolt.user = server.user.clone();
    settings.graph.bolt.password = Secret::new(server.password.clone());
    settings.graph.bolt.database = database.to_owned();
    settings.graph.bolt.flavour = GraphFlavour::Arcadedb;
    settings.graph.bolt.pool_size = 4;
}

fn event(id: &str, source: &str, identifiers: Value, traits: Value) -> Value {
    json!({ "event_id": id, "source": source, "type": "identify",
            "timestamp": "2026-11-01T10:00:00Z",
            "identifiers": identifiers, "traits": traits })
}

fn ingest(engine: &Engine, events: &[Value]) -> Vec<EventOutcome> {
    let normalized = events
        .iter()
        .map(|e| engine.validate(e).expect("valid test event"))
        .collect();
    engine.ingest(normalized).expect("ingest")
}

fn pid(engine: &Engine, kind: &str, value: &str) -> ProfileId {
    let golden = engine.lookup(kind, value).expect("lookup");
    golden["profile_id"]
        .as_str()
        .expect("golden profile has a profile_id")
        .into()
}

fn key(kind: &str, value: &str) -> IdentKey {
    Engine::key(kind, value)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Two people joined by an event carrying identifiers of both: one profile, found by
/// every identifier right after the write, and the absorbed id answers with the survivor.
pub fn merge(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    ingest(
        &engine,
        &[
            event(
                "m1",
                "web",
                json!({"email": "ann@example.com", "device_id": "d-1"}),
                json!({}),
            ),
            event(
                "m2",
                "crm",
                json!({"phone": "+1 415 555 0100", "customer_id": "C1"}),
                json!({"first_name": "Ann"}),
            ),
        ],
    );
    let (p1, p2) = (
        pid(&engine, "email", "ann@example.com"),
        pid(&engine, "phone", "+14155550100"),
    );
    assert_ne!(p1, p2, "separate until something links them");
    let out = ingest(
        &engine,
        &[event(
            "m3",
            "pos",
            json!({"device_id": "d-1", "customer_id": "C1"}),
            json!({}),
        )],
    );
    let survivor = pid(&engine, "customer_id", "C1");
    for (kind, value) in [
        ("email", "ann@example.com"),
        ("phone", "+14155550100"),
        ("device_id", "d-1"),
    ] {
        assert_eq!(
            pid(&engine, kind, value),
            survivor,
            "{kind} resolves to the merged profile"
        );
    }
    assert!(matches!(&out[0], EventOutcome::Accepted { merged, .. } if merged.len() == 1));
    let absorbed = if survivor == p1 { &p2 } else { &p1 };
    assert_eq!(
        engine.profile(absorbed).unwrap()["profile_id"],
        json!(survivor)
    );
    let golden = engine.profile(&survivor).unwrap();
    assert_eq!(golden["traits"]["first_name"], json!("Ann"));
    assert_eq!(golden["event_count"], json!(3));
    let (_, history) = engine.history(&survivor, 100).unwrap();
    assert!(history.iter().any(|h| format!("{:?}", h.kind) == "Merged"));
}

/// A merge that would give a profile two customer ids is refused and recorded.
pub fn limits(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    ingest(
        &engine,
        &[
            event(
                "l1",
                "crm",
                json!({"customer_id": "C1", "email": "a@example.com"}),
                json!({}),
            ),
            event(
                "l2",
                "crm",
                json!({"customer_id": "C2", "email": "b@example.com"}),
                json!({}),
            ),
        ],
    );
    let out = ingest(
        &engine,
        &[event(
            "l3",
            "web",
            json!({"email": ["a@example.com", "b@example.com"]}),
            json!({}),
        )],
    );
    assert_ne!(
        pid(&engine, "customer_id", "C1"),
        pid(&engine, "customer_id", "C2")
    );
    assert!(
        matches!(&out[0], EventOutcome::Accepted { conflicts, merged, .. } if !conflicts.is_empty() && merged.is_empty()),
        "{out:?}"
    );
    let (_, history) = engine
        .history(&pid(&engine, "customer_id", "C1"), 100)
        .unwrap();
    assert!(
        history.iter().any(|h| h.rule.contains("customer_id")),
        "{history:?}"
    );
}

/// A junk value shared by two people never links them.
pub fn blocklist(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    ingest(
        &engine,
        &[
            event(
                "b1",
                "web",
                json!({"email": ["x@example.com", "test@test.com"]}),
                json!({}),
            ),
            event(
                "b2",
                "web",
                json!({"email": ["y@example.com", "test@test.com"]}),
                json!({}),
            ),
        ],
    );
    assert_ne!(
        pid(&engine, "email", "x@example.com"),
        pid(&engine, "email", "y@example.com")
    );
    assert!(
        engine.lookup("email", "test@test.com").is_err(),
        "junk is never stored"
    );
}

fn merged_pair(engine: &Engine) {
    ingest(
        engine,
        &[
            event(
                "s1",
                "web",
                json!({"email": "sam@example.com", "cookie_id": "ck-1"}),
                json!({}),
            ),
            event(
                "s2",
                "mobile",
                json!({"phone": "+14155550111", "device_id": "dev-9"}),
                json!({}),
            ),
            event(
                "s3",
                "web",
                json!({"cookie_id": "ck-1", "device_id": "dev-9"}),
                json!({}),
            ),
        ],
    );
}

/// Deleting the only link between two halves splits them; re-sending a linking event
/// joins them again.
pub fn unmerge_split(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    merged_pair(&engine);
    let before = pid(&engine, "email", "sam@example.com");
    assert_eq!(before, pid(&engine, "phone", "+14155550111"));
    let out = block_on(engine.delete_link(key("cookie_id", "ck-1"), key("device_id", "dev-9")))
        .expect("delete link");
    assert!(out.split);
    assert_eq!(out.profiles.len(), 2);
    let (a, c) = (
        pid(&engine, "email", "sam@example.com"),
        pid(&engine, "phone", "+14155550111"),
    );
    assert_ne!(a, c);
    assert_eq!(pid(&engine, "cookie_id", "ck-1"), a);
    assert_eq!(pid(&engine, "device_id", "dev-9"), c);
    let (_, history) = engine.history(&a, 100).unwrap();
    assert!(history
        .iter()
        .any(|h| format!("{:?}", h.kind) == "LinkDeleted"));
    ingest(
        &engine,
        &[event(
            "s4",
            "web",
            json!({"cookie_id": "ck-1", "device_id": "dev-9"}),
            json!({}),
        )],
    );
    assert_eq!(
        pid(&engine, "email", "sam@example.com"),
        pid(&engine, "phone", "+14155550111")
    );
    // Deleting an identifier removes it and splits what it held together.
    let out = block_on(engine.delete_identifier(key("cookie_id", "ck-1"))).expect("delete id");
    assert!(out.split);
    assert!(engine.lookup("cookie_id", "ck-1").is_err());
    assert_ne!(
        pid(&engine, "email", "sam@example.com"),
        pid(&engine, "phone", "+14155550111")
    );
}

/// The explain path names every edge between two identifiers with its provenance.
pub fn explain(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    merged_pair(&engine);
    let p = pid(&engine, "email", "sam@example.com");
    let path = engine
        .explain(
            &p,
            &key("email", "sam@example.com"),
            &key("phone", "+14155550111"),
        )
        .unwrap();
    assert_eq!(path["connected"], json!(true));
    assert_eq!(path["hops"], json!(3));
    let edges = path["edges"].as_array().unwrap();
    let events: Vec<&str> = edges
        .iter()
        .flat_map(|e| e["event_ids"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(events, ["s1", "s3", "s2"], "{path}");
}

/// People at the same postal address form a household; the golden profile names it.
pub fn household(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    let address = json!({"street": "12 Oak Street", "city": "Springfield", "postal_code": "12345", "country": "US"});
    ingest(
        &engine,
        &[
            event(
                "h1",
                "crm",
                json!({"email": "pat@example.com"}),
                json!({"last_name": "Lee", "address": address}),
            ),
            event(
                "h2",
                "crm",
                json!({"email": "kim@example.com"}),
                json!({"last_name": "Lee", "address": {"street": "12 oak st", "city": "springfield", "postal_code": "12345", "country": "US"}}),
            ),
            event(
                "h3",
                "crm",
                json!({"email": "other@example.com"}),
                json!({"address": {"street": "1 Elm Road", "city": "Springfield", "postal_code": "12345", "country": "US"}}),
            ),
        ],
    );
    let pat = pid(&engine, "email", "pat@example.com");
    let kim = pid(&engine, "email", "kim@example.com");
    let hh = engine.household(&pat).unwrap();
    let mut members = hh.members.clone();
    members.sort();
    let mut expected = vec![pat.clone(), kim.clone()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(
        engine
            .household_by_id(&hh.household_id)
            .unwrap()
            .members
            .len(),
        2
    );
    assert_eq!(
        engine.profile(&pat).unwrap()["household_id"],
        json!(hh.household_id)
    );
    assert_eq!(
        engine
            .household(&pid(&engine, "email", "other@example.com"))
            .unwrap()
            .members
            .len(),
        1
    );
}

/// The device view lists devices and cookies with platform and sources.
pub fn devices(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    ingest(
        &engine,
        &[
            json!({"event_id": "d1", "source": "mobile", "type": "app_open", "timestamp": "2026-11-01T10:00:00Z",
                   "identifiers": {"email": "dev@example.com", "device_id": "phone-1"},
                   "properties": {"platform": "ios"}}),
            event(
                "d2",
                "web",
                json!({"email": "dev@example.com", "cookie_id": "web-1"}),
                json!({}),
            ),
        ],
    );
    let (_, devices) = engine
        .devices(&pid(&engine, "email", "dev@example.com"))
        .unwrap();
    let mut names: Vec<String> = devices
        .iter()
        .map(|d| format!("{}:{}", d.kind, d.value))
        .collect();
    names.sort();
    assert_eq!(names, ["cookie_id:web-1", "device_id:phone-1"]);
    let phone = devices.iter().find(|d| d.value == "phone-1").unwrap();
    assert!(phone.sources.contains("mobile"));
}

/// The graph neighbourhood has a node per identifier and an edge per link.
pub fn graph_neighbourhood(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    merged_pair(&engine);
    let p = pid(&engine, "email", "sam@example.com");
    let g = engine.graph(&p, 3, 100).unwrap();
    let nodes = g["elements"]["nodes"].as_array().unwrap();
    let edges = g["elements"]["edges"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{g}");
    assert_eq!(edges.len(), 3, "{g}");
    let limited = engine.graph(&p, 3, 2).unwrap();
    assert_eq!(limited["elements"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(limited["truncated"], json!(true));
}

/// Re-sending events changes nothing: each is reported as a duplicate.
pub fn idempotent_resend(b: Backend) {
    let inst = Instance::new(b);
    let engine = inst.open();
    merged_pair(&engine);
    let p = pid(&engine, "email", "sam@example.com");
    let before = engine.profile(&p).unwrap();
    let again = ingest(
        &engine,
        &[event(
            "s1",
            "web",
            json!({"email": "sam@example.com", "cookie_id": "ck-1"}),
            json!({}),
        )],
    );
    assert!(
        matches!(&again[0], EventOutcome::Duplicate { .. }),
        "{again:?}"
    );
    assert_eq!(engine.profile(&p).unwrap(), before);
}

/// Everything written is still there after the engine is closed and opened again.
pub fn restart(b: Backend) {
    let inst = Instance::new(b);
    let (p, golden, history) = {
        let engine = inst.open();
        merged_pair(&engine);
        let p = pid(&engine, "email", "sam@example.com");
        (
            p.clone(),
            engine.profile(&p).unwrap(),
            engine.history(&p, 100).unwrap().1,
        )
    };
    let engine = inst.open();
    assert_eq!(pid(&engine, "phone", "+14155550111"), p);
    assert_eq!(engine.profile(&p).unwrap(), golden);
    assert_eq!(engine.history(&p, 100).unwrap().1, history);
    // The counters survived too: the next profile gets a new id.
    ingest(
        &engine,
        &[event(
            "r1",
            "web",
            json!({"email": "new@example.com"}),
            json!({}),
        )],
    );
    let fresh = pid(&engine, "email", "new@example.com");
    assert!(fresh > p, "{fresh} after {p}");
}

fn person(first: &str, city: &str) -> Value {
    json!({"first_name": first, "last_name": "Kowalczyk", "birth_date": "1984-03-07",
           "address": {"street": "12 Oak Street", "city": city, "postal_code": "62704"}})
}

/// Probabilistic matching: records without a shared identifier merge by a probable link
/// carrying its evidence (kept across a restart), an identifier-less record is anchored
/// and matched, a different customer_id is never joined, and a deleted probable link stays
/// deleted.
pub fn probable_match(b: Backend) {
    let inst = Instance::with(b, |s| s.matching.enabled = true);
    {
        let engine = inst.open();
        ingest(
            &engine,
            &[event(
                "pm1",
                "crm",
                json!({"customer_id": "C1"}),
                person("Jonathan", "Springfield"),
            )],
        );
        let p1 = pid(&engine, "customer_id", "C1");
        // A typo in the first name and the city, a different identifier: same person.
        let out = ingest(
            &engine,
            &[event(
                "pm2",
                "pos",
                json!({"phone": "+1 415 555 0100"}),
                person("Jonathon", "Springfeld"),
            )],
        );
        match &out[0] {
            EventOutcome::Accepted {
                profile_id,
                probable,
                merged,
                ..
            } => {
                assert_eq!(profile_id, &p1, "the older profile survives");
                assert_eq!(probable.len(), 1, "{out:?}");
                assert_eq!(merged, probable);
            }
            other => panic!("not accepted: {other:?}"),
        }
        assert_eq!(pid(&engine, "phone", "+14155550100"), p1);
        // A row with no identifier at all is anchored on a record identifier and matched.
        let out = ingest(
            &engine,
            &[event(
                "pm3",
                "third_party",
                json!({}),
                person("Jon", "Springfield"),
            )],
        );
        assert!(
            matches!(&out[0], EventOutcome::Accepted { profile_id, .. } if *profile_id == p1),
            "{out:?}"
        );
        assert_eq!(pid(&engine, "record", "pm3"), p1);
        // Another customer_id is another customer, however alike.
        let out = ingest(
            &engine,
            &[event(
                "pm4",
                "crm",
                json!({"customer_id": "C2"}),
                person("Jonathan", "Springfield"),
            )],
        );
        match &out[0] {
            EventOutcome::Accepted {
                profile_id,
                conflicts,
                probable,
                ..
            } => {
                assert_ne!(profile_id, &p1);
                assert!(probable.is_empty());
                assert!(
                    conflicts
                        .iter()
                        .any(|c| c.rule == "probable_conflict:customer_id"),
                    "{conflicts:?}"
                );
            }
            other => panic!("not accepted: {other:?}"),
        }
    }
    // After a restart, the evidence is read back from the store.
    let engine = inst.open();
    let p1 = pid(&engine, "customer_id", "C1");
    let (a, b) = (key("customer_id", "C1"), key("phone", "+14155550100"));
    let explained = engine.explain(&p1, &a, &b).expect("explain");
    assert_eq!(explained["connected"], true, "{explained}");
    let edge = &explained["edges"][0];
    let evidence = &edge["probable"];
    assert!(evidence["probability"].as_f64().unwrap() >= 0.9, "{edge}");
    let fields: Vec<&str> = evidence["fields"]
        .as_array()
        .expect("per-field contributions")
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["first_name", "last_name", "birth_date", "postcode"] {
        assert!(fields.contains(&f), "{f} missing from {evidence}");
    }
    let (_, history) = engine.history(&p1, 100).unwrap();
    let merge = history
        .iter()
        .find(|h| h.rule == "probable_match")
        .expect("the probable merge is in the history");
    assert_eq!(merge.event_id.as_deref(), Some("pm2"));
    let detail = merge.detail.clone().unwrap_or_default();
    assert!(detail.contains("first_name level 1"), "{detail}");
    assert!(
        !detail.contains("Jonathon") && !detail.contains("62704"),
        "{detail}"
    );
    // Undo: the split holds, and the same records do not merge again.
    let out = block_on(engine.delete_link(a, b)).expect("delete the probable link");
    assert!(out.split, "{out:?}");
    let phone_profile = pid(&engine, "phone", "+14155550100");
    assert_ne!(phone_profile, p1);
    ingest(
        &engine,
        &[event(
            "pm5",
            "pos",
            json!({"phone": "+1 415 555 0100"}),
            person("Jonathon", "Springfeld"),
        )],
    );
    assert_ne!(pid(&engine, "phone", "+14155550100"), p1);
}

/// Erasure: the person is gone from every read, other profiles lose the values from
/// their history, later events carrying the identifiers are suppressed until lifted, and
/// all of it survives a restart.
pub fn erasure(b: Backend) {
    use idgraph::resolve::erase::ErasureTarget;
    let inst = Instance::new(b);
    {
        let engine = std::sync::Arc::new(inst.open());
        ingest(
            &engine,
            &[
                event(
                    "x1",
                    "crm",
                    json!({"customer_id": "X1", "email": "gone@example.com"}),
                    json!({"first_name": "Gone", "last_name": "Person"}),
                ),
                event(
                    "x2",
                    "web",
                    json!({"email": "gone@example.com", "cookie_id": "ck-gone"}),
                    json!({}),
                ),
                event(
                    "x3",
                    "crm",
                    json!({"customer_id": "X2", "email": "gone@example.com"}),
                    json!({"first_name": "Stays"}),
                ),
            ],
        );
        let gone = pid(&engine, "customer_id", "X1");
        let stays = pid(&engine, "customer_id", "X2");
        let out = block_on(engine.erase(ErasureTarget::Profile(gone.clone()))).expect("erase");
        assert_eq!(out.profile_id, gone);
        assert_eq!(out.identifiers, 3);
        assert_eq!(out.events, 3);
        for (kind, value) in [
            ("customer_id", "X1"),
            ("email", "gone@example.com"),
            ("cookie_id", "ck-gone"),
        ] {
            assert!(engine.lookup(kind, value).is_err(), "{kind} still resolves");
        }
        assert!(engine.profile(&gone).is_err());
        assert!(engine.store().event("x2").unwrap().is_none());
        let (_, history) = engine.history(&stays, 100).unwrap();
        assert!(
            !format!("{history:?}").contains("gone@example.com"),
            "{history:?}"
        );
        let again = ingest(
            &engine,
            &[event(
                "x4",
                "web",
                json!({"email": "gone@example.com"}),
                json!({}),
            )],
        );
        assert!(
            matches!(&again[0], EventOutcome::Suppressed { kinds, .. } if kinds == &["email"]),
            "{again:?}"
        );
    }
    let engine = inst.open();
    let again = ingest(
        &engine,
        &[event("x5", "web", json!({"customer_id": "X1"}), json!({}))],
    );
    assert!(
        matches!(&again[0], EventOutcome::Suppressed { .. }),
        "suppression survives a restart: {again:?}"
    );
    assert!(block_on(engine.unsuppress(key("customer_id", "X1"))).expect("unsuppress"));
    assert!(!block_on(engine.unsuppress(key("customer_id", "X1"))).expect("unsuppress twice"));
    let accepted = ingest(
        &engine,
        &[event("x6", "web", json!({"customer_id": "X1"}), json!({}))],
    );
    assert!(
        matches!(&accepted[0], EventOutcome::Accepted { .. }),
        "{accepted:?}"
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $name() { super::$name(super::Backend::Embedded) } )*
        }
        mod bolt {
            $( #[test] fn $name() { super::$name(super::Backend::Bolt) } )*
        }
        mod neo4j {
            $( #[test] fn $name() { super::$name(super::Backend::Neo4j) } )*
        }
        mod gremlin {
            $( #[test] fn $name() { super::$name(super::Backend::Gremlin) } )*
        }
    };
}

conformance!(
    merge,
    probable_match,
    erasure,
    limits,
    blocklist,
    unmerge_split,
    explain,
    household,
    devices,
    graph_neighbourhood,
    idempotent_resend,
    restart,
);
