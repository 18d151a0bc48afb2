//! Consent: events state a purpose's consent, the profile keeps each purpose's latest
//! statement with its source and time, merges keep the latest of both sides, and purposes
//! that are not configured (or states that are not granted/denied) are refused.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, spawn_app, spawn_app_with};

fn consenting(id: &str, source: &str, ids: Value, ts: &str, consent: Value) -> Value {
    let mut ev = event(id, source, ids, Value::Null);
    ev["timestamp"] = json!(ts);
    ev["consent"] = consent;
    ev
}

#[tokio::test]
async fn the_latest_statement_of_each_purpose_wins_with_its_provenance() {
    let app = spawn_app().await;
    let ann = json!({ "email": "ann@example.com" });
    app.ingest(&consenting(
        "c1",
        "crm",
        ann.clone(),
        "2026-01-01T00:00:00Z",
        json!({ "marketing_email": "granted", "analytics": true }),
    ))
    .await;
    app.ingest(&consenting(
        "c2",
        "web",
        ann.clone(),
        "2026-03-01T00:00:00Z",
        json!({ "marketing_email": "denied" }),
    ))
    .await;
    // Arrives last but was stated earlier: it does not override the March statement.
    app.ingest(&consenting(
        "c3",
        "pos",
        ann.clone(),
        "2026-02-01T00:00:00Z",
        json!({ "marketing_email": "granted" }),
    ))
    .await;
    let pid = app.pid_of("email", "ann@example.com").await;
    let p = app.profile(&pid).await;
    let c = &p["consents"];
    assert_eq!(c["marketing_email"]["state"], "denied", "{p}");
    assert_eq!(c["marketing_email"]["source"], "web");
    assert_eq!(c["marketing_email"]["at"], "2026-03-01T00:00:00.000Z");
    assert_eq!(c["analytics"]["state"], "granted");
    assert_eq!(c["analytics"]["source"], "crm");
    assert!(c.get("partner_sharing").is_none(), "never stated: {p}");
    // Consent is not a trait of the person.
    let extra = p["traits"]["extra"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        extra.keys().all(|k| !k.starts_with("consent")),
        "consent leaked into traits: {p}"
    );
}

#[tokio::test]
async fn a_merge_keeps_the_latest_statement_of_either_side() {
    let app = spawn_app().await;
    app.ingest(&consenting(
        "m1",
        "crm",
        json!({ "email": "bo@example.com" }),
        "2026-01-01T00:00:00Z",
        json!({ "analytics": "granted", "advertising": "granted" }),
    ))
    .await;
    app.ingest(&consenting(
        "m2",
        "web",
        json!({ "phone": "+14155550111" }),
        "2026-02-01T00:00:00Z",
        json!({ "analytics": "denied" }),
    ))
    .await;
    app.ingest(&event(
        "m3",
        "crm",
        json!({ "email": "bo@example.com", "phone": "+14155550111" }),
        Value::Null,
    ))
    .await;
    let pid = app.pid_of("phone", "+14155550111").await;
    assert_eq!(pid, app.pid_of("email", "bo@example.com").await);
    let p = app.profile(&pid).await;
    assert_eq!(p["consents"]["analytics"]["state"], "denied", "{p}");
    assert_eq!(p["consents"]["analytics"]["source"], "web");
    assert_eq!(p["consents"]["advertising"]["state"], "granted");
}

#[tokio::test]
async fn unknown_purposes_and_states_are_refused_naming_the_field() {
    let app = spawn_app_with(|s| s.consent.purposes = vec!["newsletter".into()]).await;
    let ids = json!({ "email": "cy@example.com" });
    let body = assert_error(
        app.post_events(&consenting(
            "u1",
            "web",
            ids.clone(),
            "2026-01-01T00:00:00Z",
            json!({ "marketing_email": "granted" }),
        ))
        .await,
        422,
        "invalid_field",
    )
    .await;
    let text = body.to_string();
    assert!(text.contains("consent.marketing_email"), "{text}");
    assert!(
        text.contains("newsletter"),
        "names the configured purposes: {text}"
    );
    let body = assert_error(
        app.post_events(&consenting(
            "u2",
            "web",
            ids.clone(),
            "2026-01-01T00:00:00Z",
            json!({ "newsletter": "maybe" }),
        ))
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert!(body.to_string().contains("consent.newsletter"), "{body}");
    assert_error(
        app.post_events(&consenting(
            "u3",
            "web",
            ids.clone(),
            "2026-01-01T00:00:00Z",
            json!(["newsletter"]),
        ))
        .await,
        422,
        "invalid_field",
    )
    .await;
    // Nothing of the refused events was stored.
    assert_eq!(app.lookup("email", "cy@example.com").await.status(), 404);
    app.ingest(&consenting(
        "u4",
        "web",
        ids,
        "2026-01-01T00:00:00Z",
        json!({ "newsletter": "granted" }),
    ))
    .await;
    let pid = app.pid_of("email", "cy@example.com").await;
    assert_eq!(
        app.profile(&pid).await["consents"]["newsletter"]["state"],
        "granted"
    );
}
