//! The dashboard's snapshot pass at the engine: it reads page by page, only a committed
//! write makes its snapshot stale, and a restart serves the saved snapshot at once.

use serde_json::json;

use idgraph::config::Settings;
use idgraph::engine::Engine;

use crate::helpers::event;

/// More people than one page of a pass (1,000 golden profiles).
const PEOPLE: usize = 1_203;

fn ingest(engine: &Engine, events: &[serde_json::Value]) {
    let normalized = events
        .iter()
        .map(|e| engine.validate(e).expect("valid test event"))
        .collect();
    engine.ingest(normalized).expect("ingest");
}

/// Whether the engine's dashboard snapshot is due a pass.
fn stale(engine: &Engine) -> bool {
    engine
        .dashboard_stale()
        .expect("the store's commit sequence number")
}

/// Ingests one new person with only an email: one more profile.
fn one_person(engine: &Engine, name: &str) {
    let email = format!("dash.{name}@example.com");
    ingest(
        engine,
        &[event(
            &format!("dash-{name}"),
            "web",
            json!({ "email": email }),
            serde_json::Value::Null,
        )],
    );
}

#[test]
fn dashboard_pass_reads_every_page_and_a_restart_serves_its_saved_snapshot() {
    let dir = tempfile::tempdir().expect("temporary data directory");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let before_restart = {
        let engine = Engine::open(settings.clone()).expect("open the engine");
        assert!(stale(&engine), "no snapshot yet: a pass is due");
        // One person per event, each with an email and a cookie; the last three share a
        // phone number with the first, so that profile has 4 emails, 4 cookies, 1 phone.
        let mut events: Vec<_> = (0..PEOPLE)
            .map(|i| {
                event(
                    &format!("dash-{i}"),
                    if i % 2 == 0 { "web" } else { "crm" },
                    json!({ "email": format!("dash{i}@example.com"), "cookie_id": format!("ck-dash-{i}") }),
                    serde_json::Value::Null,
                )
            })
            .collect();
        for i in [0, PEOPLE - 3, PEOPLE - 2, PEOPLE - 1] {
            events[i]["identifiers"]["phone"] = json!("+14155550100");
        }
        for chunk in events.chunks(300) {
            ingest(&engine, chunk);
        }
        let profiles = (PEOPLE - 3) as u64;
        let mut pass = engine.begin_dashboard_pass().expect("begin a pass");
        assert!(
            pass.step(&engine).expect("first page").is_none(),
            "{profiles} profiles do not fit one page"
        );
        assert!(engine.dashboard().snapshot().is_none(), "unfinished pass");
        let snap = pass
            .step(&engine)
            .expect("second page")
            .expect("the second page is the last");
        assert_eq!(snap.profiles, profiles);
        assert_eq!(snap.identifiers, 2 * PEOPLE as u64 + 1);
        assert_eq!(snap.identifiers_by_kind["phone"], 1);
        assert_eq!(snap.largest[0].identifiers, 9, "{:?}", snap.largest);
        let counted: u64 = snap.identifiers_per_profile.iter().map(|b| b.count).sum();
        assert_eq!(counted, profiles, "every profile read once");
        assert_eq!(snap.source_overlap.sources, ["crm", "web"]);
        assert!(!stale(&engine), "nothing written since the pass began");

        one_person(&engine, "late");
        assert!(stale(&engine), "a committed write makes it stale");
        let snap = engine.refresh_dashboard().expect("a whole pass");
        assert_eq!(snap.profiles, profiles + 1);
        assert!(!stale(&engine));
        snap
    };

    let engine = Engine::open(settings.clone()).expect("reopen the engine");
    let restored = engine.dashboard().snapshot().expect("the saved snapshot");
    assert_eq!(*restored, *before_restart);
    assert_eq!(engine.stats().snapshot.as_ref(), Some(&*before_restart));
    assert!(
        !stale(&engine),
        "nothing was written since: no pass is due after a restart"
    );
    one_person(&engine, "after");
    assert!(stale(&engine), "written after the restart");
    drop(engine);

    // An unreadable snapshot file is replaced by the next pass, never an error.
    std::fs::write(dir.path().join("dashboard-snapshot.json"), b"{not json")
        .expect("spoil the saved snapshot");
    let engine = Engine::open(settings).expect("open with a spoilt snapshot file");
    assert!(engine.dashboard().snapshot().is_none());
    assert!(stale(&engine));
    let snap = engine.refresh_dashboard().expect("a pass");
    assert_eq!(snap.profiles, (PEOPLE - 3) as u64 + 2);
}
