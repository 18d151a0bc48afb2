//! Data retention on a live server (`[retention]`): raw events past `retention.events`
//! lose their payload in the background while golden profiles, the graph, duplicates
//! and splits keep working; audit entries past `retention.audit` are removed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use idgraph::config::Period;

use crate::helpers::*;

/// The value of a counter or gauge in `/metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = metrics_text(&app.client, &app.address).await;
    metric_sample(&text, name).unwrap_or(0.0)
}

/// Polls until `metric` reaches `at_least` (the retention pass runs every second).
async fn wait_for_metric(app: &TestApp, name: &str, at_least: f64) {
    let started = Instant::now();
    loop {
        let v = metric(app, name).await;
        if v >= at_least {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} stayed at {v}, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn retaining_events_for(seconds: u64) -> TestApp {
    spawn_app_with(|s| {
        s.retention.events = Some(Period::from_seconds(seconds));
        s.retention.interval_seconds = 1;
    })
    .await
}

fn with_properties(mut ev: Value, properties: Value) -> Value {
    ev["properties"] = properties;
    ev
}

#[tokio::test]
async fn aged_events_lose_their_payload_and_the_profile_graph_and_duplicates_stay() {
    let app = retaining_events_for(2).await;
    let first = with_properties(
        event(
            "ret-1",
            "pos",
            json!({"email": "rita@example.com", "phone": "+14155550111"}),
            json!({"first_name": "Rita", "city": "Chicago"}),
        ),
        json!({"sku": "SKU-991", "amount": 42.5}),
    );
    let pid = app.ingest_pid(&first).await;
    app.ingest(&event(
        "ret-2",
        "web",
        json!({"email": "rita@example.com", "cookie_id": "ck-rita"}),
        json!({"last_name": "Moreno"}),
    ))
    .await;
    let before = app.profile(&pid).await;
    assert_eq!(metric(&app, "idgraph_retention_events_seconds").await, 2.0);

    wait_for_metric(&app, "idgraph_retention_events_aged_total", 2.0).await;

    // The stored events keep what resolution needs and nothing else.
    for id in ["ret-1", "ret-2"] {
        let stored = app
            .engine
            .store()
            .event(id)
            .expect("read the event")
            .expect("an aged event is kept as a record");
        assert!(stored.aged_at.is_some(), "{id} aged");
        assert!(stored.traits.is_empty(), "{id}: {:?}", stored.traits);
        assert!(
            stored.properties.is_empty(),
            "{id}: {:?}",
            stored.properties
        );
        assert!(!stored.identifiers.is_empty(), "{id}: identifiers kept");
    }
    // The golden profile and the graph are untouched.
    assert_eq!(app.profile(&pid).await, before);
    assert_eq!(app.pid_of("phone", "+14155550111").await, pid);
    assert_eq!(app.pid_of("cookie_id", "ck-rita").await, pid);

    // A resent event is still a duplicate: its payload is not taken in again.
    let again = json_ok(app.post_events(&first).await).await;
    assert_eq!(again["status"], "duplicate", "{again}");
    assert!(app
        .engine
        .store()
        .event("ret-1")
        .expect("read")
        .expect("kept")
        .traits
        .is_empty());

    // New events keep flowing into the same profile and are kept whole until they age.
    let third = app
        .ingest(&event(
            "ret-3",
            "web",
            json!({"email": "rita@example.com"}),
            json!({"loyalty_tier": "gold"}),
        ))
        .await;
    assert_eq!(third["profile_id"], pid.as_str());
    let fresh = app
        .engine
        .store()
        .event("ret-3")
        .expect("read")
        .expect("kept");
    assert!(fresh.aged_at.is_none() && !fresh.traits.is_empty());
    assert_eq!(
        app.profile(&pid).await["traits"]["extra"]["loyalty_tier"],
        "gold",
        "{}",
        app.profile(&pid).await
    );
    assert_eq!(metric(&app, "idgraph_retention_failures_total").await, 0.0);
    assert!(metric(&app, "idgraph_retention_last_success_timestamp_seconds").await > 0.0);
}

/// A split after ageing cannot tell which side an aged value came from: it keeps exact
/// counts and the graph, and gives neither side a value only aged events carried (the
/// privacy-safe side); values of events still held go where they belong.
#[tokio::test]
async fn a_split_after_ageing_attributes_no_aged_value_to_either_person() {
    let app = retaining_events_for(2).await;
    app.ingest(&event(
        "sp-1",
        "crm",
        json!({"email": "ann.split@example.com"}),
        json!({"first_name": "Ann"}),
    ))
    .await;
    app.ingest(&event(
        "sp-2",
        "crm",
        json!({"phone": "+14155550122"}),
        json!({"first_name": "Bob"}),
    ))
    .await;
    // The wrong link: one event carried both.
    let pid = app
        .ingest_pid(&event(
            "sp-3",
            "web",
            json!({"email": "ann.split@example.com", "phone": "+14155550122"}),
            Value::Null,
        ))
        .await;
    assert_eq!(app.profile(&pid).await["event_count"], 3);
    wait_for_metric(&app, "idgraph_retention_events_aged_total", 3.0).await;
    // Bob's later event is young: its value is kept and goes to Bob's side.
    app.ingest(&event(
        "sp-4",
        "pos",
        json!({"phone": "+14155550122"}),
        json!({"city": "Denver"}),
    ))
    .await;

    let resp = app
        .delete_link("email:ann.split@example.com", "phone:+14155550122")
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let ann = app
        .profile(&app.pid_of("email", "ann.split@example.com").await)
        .await;
    let bob = app
        .profile(&app.pid_of("phone", "+14155550122").await)
        .await;
    assert_ne!(ann["profile_id"], bob["profile_id"], "split");
    for side in [&ann, &bob] {
        let text = side.to_string();
        assert!(
            !text.contains("\"Ann\"") && !text.contains("\"Bob\""),
            "{text}"
        );
    }
    assert_eq!(bob["traits"]["extra"]["city"], "Denver", "{bob}");
    assert!(!ann.to_string().contains("Denver"), "{ann}");
    let counts =
        ann["event_count"].as_u64().expect("count") + bob["event_count"].as_u64().expect("count");
    assert_eq!(counts, 4, "every event still counted once: {ann} {bob}");
}

#[tokio::test]
async fn audit_entries_past_retention_are_removed_and_later_ones_kept() {
    let app = spawn_app_with(|s| {
        s.retention.audit = Some(Period::from_seconds(3));
        s.retention.interval_seconds = 1;
    })
    .await;
    let pid = app
        .ingest_pid(&event(
            "au-1",
            "web",
            json!({"email": "audit.me@example.com"}),
            Value::Null,
        ))
        .await;
    app.profile(&pid).await;
    let reads = |audit: &Value| {
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["route"] == "/v1/profiles/{id}")
            .count()
    };
    let audit = json_ok(app.get_query("/v1/audit", &[("profile", &pid)]).await).await;
    assert_eq!(reads(&audit), 1, "{audit}");

    wait_for_metric(&app, "idgraph_retention_audit_entries_removed_total", 1.0).await;
    let started = Instant::now();
    loop {
        let audit = json_ok(app.get_query("/v1/audit", &[("profile", &pid)]).await).await;
        if reads(&audit) == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{audit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new read is audited and kept (younger than the period).
    app.profile(&pid).await;
    let audit = json_ok(app.get_query("/v1/audit", &[("profile", &pid)]).await).await;
    assert_eq!(reads(&audit), 1, "{audit}");
}

#[tokio::test]
async fn a_malformed_period_is_refused_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (value, why) in [
        ("400", "no unit"),
        ("0d", "zero"),
        ("12w", "unknown unit"),
        ("-3d", "negative"),
    ] {
        let out = idgraph_command()
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("IDGRAPH_RETENTION__EVENTS", value)
            .output()
            .expect("run idgraph");
        assert!(!out.status.success(), "{why}: {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.to_lowercase().contains("retention.events"),
            "{why}: {err}"
        );
        assert!(
            err.contains("400d"),
            "{why}: the message shows the form: {err}"
        );
    }
}
