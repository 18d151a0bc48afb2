//! Resolution quality on the demo population. The generator knows who is who, so:
//! - no profile may hold strong identifiers (customer id, loyalty id, email, phone) of two
//!   different people, despite junk values, typing variations, households and shared
//!   tablets (a wrong merge leaks one person's data to another);
//! - identifiers a person's CRM record names together always end in one profile.
//!
//! Identifiers that never appear together with the rest of a person's identifiers (an
//! email only ever seen alone) legitimately stay in their own profile: deterministic rules
//! need evidence to merge.

use std::collections::{BTreeMap, BTreeSet};

use idgraph::config::Settings;
use idgraph::demo::generate::{generate, DemoConfig};
use idgraph::engine::Engine;
use idgraph::resolve::EventOutcome;

fn profile_of(engine: &Engine, kind: &str, value: &str) -> Option<String> {
    engine
        .lookup(kind, value)
        .ok()
        .and_then(|p| p["profile_id"].as_str().map(str::to_owned))
}

#[test]
fn demo_people_are_never_merged_together_and_crm_records_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_owned();
    let engine = Engine::open(settings).unwrap();
    let data = generate(&DemoConfig {
        people: 400,
        seed: 11,
    });
    for chunk in data.events.chunks(500) {
        let events: Vec<_> = chunk
            .iter()
            .map(|e| engine.validate(e).expect("demo events are valid"))
            .collect();
        for outcome in engine.ingest(events).unwrap() {
            assert!(matches!(outcome, EventOutcome::Accepted { .. }));
        }
    }

    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = 0;
    for person in &data.people {
        let mut keys: Vec<(&str, &String)> = person.emails.iter().map(|e| ("email", e)).collect();
        keys.extend(person.phones.iter().map(|p| ("phone", p)));
        keys.extend(person.customer_id.iter().map(|c| ("customer_id", c)));
        keys.extend(person.loyalty_id.iter().map(|l| ("loyalty_id", l)));
        let profiles: BTreeSet<String> = keys
            .iter()
            .filter_map(|(kind, value)| profile_of(&engine, kind, value))
            .collect();
        found += usize::from(!profiles.is_empty());
        for p in profiles {
            if let Some(other) = owner.insert(p.clone(), person.index) {
                assert_eq!(
                    other, person.index,
                    "profile {p} holds people {other} and {}",
                    person.index
                );
            }
        }
    }
    assert!(found > 350, "most people are found: {found}");

    let mut crm_checked = 0;
    for event in data.events.iter().filter(|e| e["source"] == "crm") {
        let ids = event["identifiers"].as_object().unwrap();
        let profiles: BTreeSet<Option<String>> = ids
            .iter()
            .filter(|(kind, _)| ["customer_id", "email", "phone"].contains(&kind.as_str()))
            .map(|(kind, value)| profile_of(&engine, kind, value.as_str().unwrap()))
            .collect();
        assert_eq!(profiles.len(), 1, "CRM record split: {event}");
        assert!(!profiles.contains(&None), "CRM identifier missing: {event}");
        crm_checked += 1;
    }
    assert!(crm_checked > 200, "CRM records checked: {crm_checked}");
}
