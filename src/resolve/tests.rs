//! The resolver's core, driven session by session over a real embedded store: linking,
//! the per-profile limits, idempotency, and that a group resolves like its events one by
//! one (group commit must not change the outcome).

use serde_json::{json, Value};

use super::{apply_event, finish, EventOutcome, Rules, Session};
use crate::config::Settings;
use crate::engine::Engine;
use crate::store::{HistoryKind, ProfileId};

fn engine(dir: &tempfile::TempDir) -> (Engine, Rules) {
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let rules = Rules::from_settings(&settings).expect("rules");
    (Engine::open(settings).expect("engine"), rules)
}

/// Resolves `events` in one session and writes it; the outcomes.
fn group(engine: &Engine, rules: &Rules, events: &[Value]) -> Vec<EventOutcome> {
    let mut s = Session::new(engine.store(), crate::engine::now_ms()).expect("session");
    let out = events
        .iter()
        .map(|e| {
            let ev = engine.validate(e).expect("valid event");
            apply_event(&mut s, rules, &ev).expect("resolve")
        })
        .collect();
    let changes = finish(s, rules).expect("finish");
    engine.store().apply(&changes).expect("apply");
    out
}

fn profile_of(engine: &Engine, key: &str) -> Option<ProfileId> {
    engine.store().profile_of(&key.into()).expect("read")
}

fn accepted(o: &EventOutcome) -> (&ProfileId, &[ProfileId], usize) {
    match o {
        EventOutcome::Accepted {
            profile_id,
            merged,
            conflicts,
            ..
        } => (profile_id, merged, conflicts.len()),
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn a_shared_identifier_merges_and_the_history_names_the_event_and_rule() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, rules) = engine(&dir);
    let out = group(
        &engine,
        &rules,
        &[
            json!({"event_id": "m1", "source": "web", "identifiers": {"email": "ann@example.com"}}),
            json!({"event_id": "m2", "source": "pos", "identifiers": {"phone": "+14155550101"}}),
        ],
    );
    let (a, _, _) = accepted(&out[0]);
    let (b, _, _) = accepted(&out[1]);
    assert_ne!(a, b, "nothing links them yet");

    let out = group(
        &engine,
        &rules,
        &[json!({"event_id": "m3", "source": "crm",
            "identifiers": {"email": "ann@example.com", "phone": "+14155550101"}})],
    );
    let (survivor, merged, conflicts) = accepted(&out[0]);
    assert_eq!(conflicts, 0);
    assert_eq!(merged.len(), 1, "{out:?}");
    let absorbed = &merged[0];
    assert!([a, b].contains(&survivor) && [a, b].contains(&absorbed));
    assert_eq!(
        profile_of(&engine, "email:ann@example.com").as_ref(),
        Some(survivor)
    );
    assert_eq!(
        profile_of(&engine, "phone:+14155550101").as_ref(),
        Some(survivor)
    );
    let history = engine.store().history(survivor, 100).expect("history");
    let merge = history
        .iter()
        .find(|e| e.kind == HistoryKind::Merged)
        .expect("a merge entry");
    assert_eq!(merge.event_id.as_deref(), Some("m3"));
    assert_eq!(merge.rule, "shared_identifier");
    assert_eq!(merge.absorbed, vec![absorbed.clone()]);
    assert_eq!(
        engine.store().alias(absorbed).expect("alias").as_ref(),
        Some(survivor),
        "the absorbed id points to its survivor"
    );
}

#[test]
fn a_second_customer_id_is_refused_and_recorded_as_a_conflict() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, rules) = engine(&dir);
    let out = group(
        &engine,
        &rules,
        &[
            json!({"event_id": "c1", "source": "crm",
                "identifiers": {"customer_id": "CUST-1", "email": "shared@example.com"}}),
            json!({"event_id": "c2", "source": "crm",
                "identifiers": {"customer_id": "CUST-2", "email": "shared@example.com"}}),
        ],
    );
    let (first, _, _) = accepted(&out[0]);
    let (second, merged, conflicts) = accepted(&out[1]);
    assert!(merged.is_empty(), "two customer ids never merge: {out:?}");
    assert_eq!(conflicts, 1, "{out:?}");
    assert_ne!(first, second);
    assert_eq!(
        profile_of(&engine, "email:shared@example.com").as_ref(),
        Some(first),
        "the shared email stays where it was first seen"
    );
    let history = engine.store().history(second, 100).expect("history");
    let conflict = history
        .iter()
        .find(|e| e.kind == HistoryKind::Conflict)
        .expect("a conflict entry");
    assert!(
        conflict.rule.starts_with("max_per_profile:customer_id"),
        "{conflict:?}"
    );
    assert_eq!(conflict.event_id.as_deref(), Some("c2"));
}

#[test]
fn a_replayed_event_is_a_duplicate_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, rules) = engine(&dir);
    let ev = json!({"event_id": "d1", "source": "web", "identifiers": {"email": "d@example.com"}});
    let out = group(&engine, &rules, std::slice::from_ref(&ev));
    let (pid, _, _) = accepted(&out[0]);
    let pid = pid.clone();
    let before = engine.store().counters().expect("counters");
    // Again, in a later group and twice within one group.
    for events in [vec![ev.clone()], vec![ev.clone(), ev.clone()]] {
        for o in group(&engine, &rules, &events) {
            assert_eq!(
                o,
                EventOutcome::Duplicate {
                    event_id: "d1".into(),
                    profile_id: Some(pid.clone())
                }
            );
        }
    }
    let after = engine.store().counters().expect("counters");
    assert_eq!(after.event_seq, before.event_seq);
    assert_eq!(after.profile_seq, before.profile_seq);
}

/// Group commit must not change what is resolved: the same events, in one group or one
/// group each, end with the same grouping of identifiers into profiles.
#[test]
fn a_group_resolves_like_its_events_one_by_one() {
    let events: Vec<Value> = (0..60)
        .map(|i| {
            let mut ids = serde_json::Map::new();
            ids.insert("email".into(), json!(format!("p{}@example.com", i % 17)));
            if i % 3 == 0 {
                ids.insert("phone".into(), json!(format!("+1415555{:04}", i % 11)));
            }
            if i % 5 == 0 {
                ids.insert("customer_id".into(), json!(format!("C{}", i % 7)));
            }
            json!({"event_id": format!("g{i}"), "source": "web", "identifiers": ids})
        })
        .collect();
    let grouping = |one_group: bool| {
        let dir = tempfile::tempdir().expect("dir");
        let (engine, rules) = engine(&dir);
        if one_group {
            group(&engine, &rules, &events);
        } else {
            for e in &events {
                group(&engine, &rules, std::slice::from_ref(e));
            }
        }
        // Identifiers by profile, as sets (profile ids may differ).
        let mut by_profile: std::collections::BTreeMap<ProfileId, Vec<String>> = Default::default();
        for i in 0..17 {
            let key = format!("email:p{i}@example.com");
            let p = profile_of(&engine, &key).expect("every email resolves");
            by_profile.entry(p).or_default().push(key);
        }
        for i in 0..11 {
            let key = format!("phone:+1415555{i:04}");
            if let Some(p) = profile_of(&engine, &key) {
                by_profile.entry(p).or_default().push(key);
            }
        }
        let mut parts: Vec<Vec<String>> = by_profile.into_values().collect();
        parts.sort();
        parts
    };
    let together = grouping(true);
    let apart = grouping(false);
    assert!(together.len() > 1, "the data must leave several people");
    assert_eq!(together, apart);
}
