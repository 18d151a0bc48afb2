//! Hashed third-party identifiers (`email_sha256`, `phone_sha256`): a hashed-only event
//! links to the person whose normalized email or phone hashes the same (the test computes
//! the SHA-256 itself), lookups answer by the hash, bad hashes are refused naming the field,
//! agents see hashes pseudonymized, erasure removes and suppresses the hashed forms, and
//! with `derive_hashes = false` (the default) nothing links through a hash.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    assert_error, event, identifiers_of, json_ok, key_of, pid, spawn_app_with, TestApp,
};

/// A server that derives the hashed form of each plain email and phone.
async fn spawn_app() -> TestApp {
    spawn_app_with(|s| s.identifiers.derive_hashes = true).await
}

/// Hex SHA-256 of `text`, as a third party computes it from the normalized value.
fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_hashed_only_email_joins_the_profile_of_its_plain_email() {
    let app = spawn_app().await;
    // Written with upper case and spaces; the hash is of the normalized value.
    let person = app
        .ingest_pid(&event(
            "h-1",
            "crm",
            json!({ "customer_id": "C-H1", "email": "  Ann.Lee@Example.COM " }),
            json!({ "first_name": "Ann" }),
        ))
        .await;
    let hash = sha256("ann.lee@example.com");
    let profile = app.profile(&person).await;
    assert_eq!(
        identifiers_of(&profile, "email_sha256"),
        vec![hash.clone()],
        "{profile}"
    );

    // A third party's hashed-only event, its hex in upper case.
    let outcome = app
        .ingest(&event(
            "h-2",
            "third_party",
            json!({ "email_sha256": hash.to_uppercase() }),
            json!({ "plan": "gold" }),
        ))
        .await;
    assert_eq!(pid(&outcome), person, "{outcome}");
    assert!(outcome.get("conflicts").is_none(), "{outcome}");
    let profile = app.profile(&person).await;
    assert_eq!(profile["event_count"], 2, "{profile}");
    assert_eq!(app.pid_of("email_sha256", &hash).await, person);
    assert_eq!(
        app.pid_of("email_sha256", &hash.to_uppercase()).await,
        person
    );

    // The hash hangs on the plain email by an edge of the event that carried both.
    let graph = json_ok(app.get(&format!("/v1/profiles/{person}/graph")).await).await;
    let text = graph.to_string();
    assert!(
        text.contains(&format!("email:ann.lee@example.com|email_sha256:{hash}"))
            || text.contains(&format!("email_sha256:{hash}|email:ann.lee@example.com")),
        "{graph}"
    );

    // Hashes are looked up, never searched.
    let found = json_ok(app.get_query("/v1/search", &[("q", &hash)]).await).await;
    assert_eq!(found["total"], 0, "{found}");

    // An agent (masked emails) sees the hash pseudonymized, not the hash itself.
    let agent = reqwest::Client::new()
        .get(app.url(&format!("/v1/profiles/{person}")))
        .bearer_auth(key_of("test-agent"))
        .send()
        .await
        .expect("GET as agent");
    let masked = json_ok(agent).await;
    assert!(!masked.to_string().contains(&hash), "{masked}");
    let shown = identifiers_of(&masked, "email_sha256");
    assert!(shown.len() == 1 && shown[0].starts_with("ps_"), "{masked}");
}

#[tokio::test]
async fn a_hashed_only_phone_joins_the_profile_of_its_plain_phone() {
    let app = spawn_app().await;
    let person = app
        .ingest_pid(&event(
            "hp-1",
            "pos",
            json!({ "loyalty_id": "L-7", "phone": "(415) 555-0142" }),
            Value::Null,
        ))
        .await;
    let hash = sha256("+14155550142");
    let outcome = app
        .ingest(&event(
            "hp-2",
            "third_party",
            json!({ "phone_sha256": hash, "cookie_id": "ck-ad-1" }),
            Value::Null,
        ))
        .await;
    assert_eq!(pid(&outcome), person, "{outcome}");
    assert_eq!(app.pid_of("cookie_id", "ck-ad-1").await, person);
    assert_eq!(app.pid_of("phone_sha256", &hash).await, person);
}

#[tokio::test]
async fn a_hashed_only_event_first_links_when_the_plain_value_arrives() {
    let app = spawn_app().await;
    let hash = sha256("late@example.com");
    let hashed = app
        .ingest_pid(&event(
            "hl-1",
            "third_party",
            json!({ "email_sha256": hash, "cookie_id": "ck-late" }),
            Value::Null,
        ))
        .await;
    let outcome = app
        .ingest(&event(
            "hl-2",
            "web",
            json!({ "email": "Late@Example.com" }),
            Value::Null,
        ))
        .await;
    assert_eq!(pid(&outcome), hashed, "{outcome}");
    assert_eq!(app.pid_of("email", "late@example.com").await, hashed);
}

#[tokio::test]
async fn a_derived_hash_adds_no_refusal_of_its_own() {
    let app = spawn_app_with(|s| {
        s.identifiers.derive_hashes = true;
        s.rules.limits.insert("email".into(), 1);
    })
    .await;
    let person = app
        .ingest_pid(&event(
            "hr-1",
            "crm",
            json!({ "customer_id": "C-R", "email": "one@example.com" }),
            Value::Null,
        ))
        .await;
    let outcome = app
        .ingest(&event(
            "hr-2",
            "crm",
            json!({ "customer_id": "C-R", "email": "two@example.com" }),
            Value::Null,
        ))
        .await;
    assert_eq!(pid(&outcome), person, "{outcome}");
    let conflicts = outcome["conflicts"].as_array().expect("conflicts");
    assert_eq!(
        conflicts.len(),
        1,
        "one refusal, the plain email's: {outcome}"
    );
    assert_eq!(conflicts[0]["kind"], "email", "{outcome}");
    // The refused email's hash went with it, not into the person's profile.
    let own = app.pid_of("email", "two@example.com").await;
    assert_ne!(own, person);
    assert_eq!(
        app.pid_of("email_sha256", &sha256("two@example.com")).await,
        own
    );
    let profile = app.profile(&person).await;
    assert_eq!(
        identifiers_of(&profile, "email_sha256"),
        [sha256("one@example.com")],
        "{profile}"
    );
}

#[tokio::test]
async fn malformed_hashes_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let long = "ab".repeat(33);
    let not_hex = format!("{}zz", "a".repeat(62));
    for (kind, bad) in [
        ("email_sha256", "abc123"),
        ("email_sha256", long.as_str()),
        ("phone_sha256", not_hex.as_str()),
        ("email_sha256", "ann@example.com"),
    ] {
        let ev = event("hb-1", "third_party", json!({ kind: bad }), Value::Null);
        let err = assert_error(app.post_events(&ev).await, 422, "invalid_field").await;
        assert_eq!(err["field"], format!("identifiers.{kind}"), "{err}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains("SHA-256"), "{err}");
        assert!(!err.to_string().contains(bad), "the value is echoed: {err}");
    }
}

/// Erases `identifier` (`kind:value`) through the API; returns the outcome.
async fn erase(app: &TestApp, identifier: &str) -> Value {
    json_ok(
        app.client
            .post(app.url("/v1/erasure"))
            .json(&json!({ "identifier": identifier }))
            .send()
            .await
            .expect("POST /v1/erasure"),
    )
    .await
}

#[tokio::test]
async fn erasure_removes_and_suppresses_the_hashed_forms() {
    let app = spawn_app().await;
    let person = app
        .ingest_pid(&event(
            "he-1",
            "crm",
            json!({ "customer_id": "C-E", "email": "gone@example.com", "phone": "+1 415 555 0177" }),
            Value::Null,
        ))
        .await;
    let email_hash = sha256("gone@example.com");
    let phone_hash = sha256("+14155550177");
    app.ingest(&event(
        "he-2",
        "third_party",
        json!({ "email_sha256": email_hash }),
        Value::Null,
    ))
    .await;
    let out = erase(&app, "email:gone@example.com").await;
    assert_eq!(out["profile_id"], person.as_str(), "{out}");
    // customer_id, email, phone and their two hashes.
    assert_eq!(out["identifiers"], 5, "{out}");
    assert!(!out.to_string().contains(&email_hash), "{out}");

    for (kind, value) in [("email_sha256", &email_hash), ("phone_sha256", &phone_hash)] {
        assert_error(app.lookup(kind, value).await, 404, "not_found").await;
        // A later hashed-only event for the erased person is refused like a plain one.
        let again = event(
            &format!("he-again-{kind}"),
            "third_party",
            json!({ kind: value.to_uppercase(), "cookie_id": "ck-after" }),
            Value::Null,
        );
        let err = assert_error(app.post_events(&again).await, 422, "suppressed").await;
        assert!(!err.to_string().contains(value.as_str()), "{err}");
    }
    assert_error(app.lookup("cookie_id", "ck-after").await, 404, "not_found").await;

    // Lifting the plain email's suppression lifts its hashed form too.
    json_ok(
        app.delete("/v1/suppressions?identifier=email:gone@example.com")
            .await,
    )
    .await;
    app.ingest(&event(
        "he-back",
        "third_party",
        json!({ "email_sha256": email_hash }),
        Value::Null,
    ))
    .await;
}

#[tokio::test]
async fn without_derived_hashes_a_hash_links_nothing_but_erasure_still_suppresses_it() {
    let app = spawn_app_with(|s| s.identifiers.derive_hashes = false).await;
    let person = app
        .ingest_pid(&event(
            "hd-1",
            "crm",
            json!({ "customer_id": "C-D", "email": "Dee@Example.com" }),
            Value::Null,
        ))
        .await;
    assert!(
        identifiers_of(&app.profile(&person).await, "email_sha256").is_empty(),
        "no hash derived"
    );
    let hash = sha256("dee@example.com");
    let hashed = app
        .ingest_pid(&event(
            "hd-2",
            "third_party",
            json!({ "email_sha256": hash }),
            Value::Null,
        ))
        .await;
    assert_ne!(
        hashed, person,
        "a hashed-only event links nothing without derivation"
    );

    // Erasing the plain email suppresses its hashed form all the same.
    let out = erase(&app, "email:dee@example.com").await;
    assert_eq!(out["identifiers"], 2, "{out}");
    let again = event(
        "hd-3",
        "third_party",
        json!({ "email_sha256": hash }),
        Value::Null,
    );
    assert_error(app.post_events(&again).await, 422, "suppressed").await;
}
