//! `GET /v1/explain?a=&b=`: why two identifiers are not one person, one verdict per cause
//! (the same profile, erased, a refusal by a rule, matching off, no record, no shared
//! blocking key, a score under the threshold, the cluster guard), with bad input named.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, json_ok, spawn_app, spawn_app_with, TestApp};
use crate::matching::{family_and_lookalike, traits};

async fn why(app: &TestApp, a: &str, b: &str) -> Value {
    json_ok(app.get_query("/v1/explain", &[("a", a), ("b", b)]).await).await
}

#[tokio::test]
async fn linked_erased_unknown_and_refused_identifiers_are_told_apart() {
    let app = spawn_app().await;
    let first = app
        .ingest_pid(&event(
            "w1",
            "crm",
            json!({"customer_id": "C-1", "email": "shared@example.com"}),
            Value::Null,
        ))
        .await;
    let same = why(&app, "customer_id:C-1", "email:shared@example.com").await;
    assert_eq!(same["verdict"], "same_profile", "{same}");
    assert_eq!(same["profiles"]["a"], first.as_str());

    // A second customer id on the same email: the limit of one customer id per profile
    // refuses the link, and the answer names the rule.
    app.ingest(&event(
        "w2",
        "crm",
        json!({"customer_id": "C-2", "email": "shared@example.com"}),
        Value::Null,
    ))
    .await;
    let refused = why(&app, "customer_id:C-1", "customer_id:C-2").await;
    assert_eq!(refused["verdict"], "refused", "{refused}");
    assert_ne!(refused["profiles"]["a"], refused["profiles"]["b"]);
    let rules: Vec<&str> = refused["refused_links"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(refused["conflicts"].as_array().into_iter().flatten())
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert!(
        rules.contains(&"max_per_profile:customer_id=1"),
        "{refused}"
    );
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max_per_profile:customer_id=1")),
        "{refused}"
    );

    // Never seen, and erased.
    let unknown = why(&app, "customer_id:C-1", "email:nobody@example.com").await;
    assert_eq!(unknown["verdict"], "unknown", "{unknown}");
    app.ingest(&event(
        "w3",
        "web",
        json!({"cookie_id": "ck-gone"}),
        Value::Null,
    ))
    .await;
    let (status, body) = crate::helpers::post_json(
        &app.client,
        &app.url("/v1/erasure"),
        &json!({"identifier": "cookie_id:ck-gone"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let erased = why(&app, "customer_id:C-1", "cookie_id:ck-gone").await;
    assert_eq!(erased["verdict"], "suppressed", "{erased}");

    // Two strangers, matching off.
    app.ingest(&event(
        "w4",
        "web",
        json!({"cookie_id": "ck-other"}),
        Value::Null,
    ))
    .await;
    let off = why(&app, "customer_id:C-1", "cookie_id:ck-other").await;
    assert_eq!(off["verdict"], "matching_off", "{off}");

    // Bad input names the parameter; other roles may not ask.
    assert_error(
        app.get_query("/v1/explain", &[("a", "customer_id:C-1")])
            .await,
        400,
        "invalid_query",
    )
    .await;
    let bad = app
        .get_query("/v1/explain", &[("a", "nokind"), ("b", "customer_id:C-1")])
        .await;
    let body = assert_error(bad, 400, "invalid_parameter").await;
    assert_eq!(body["field"], "a", "{body}");
}

#[tokio::test]
async fn matching_verdicts_show_the_keys_the_score_and_the_guard() {
    let app = spawn_app_with(|s| {
        s.matching.enabled = true;
        s.matching.guard = 0.9;
    })
    .await;
    // No traits: nothing to compare.
    app.ingest(&event(
        "m0",
        "web",
        json!({"cookie_id": "ck-bare"}),
        Value::Null,
    ))
    .await;
    // Anna and a stranger who shares her last name and birth year (one blocking key) but
    // nothing else; and someone who shares nothing at all.
    let anna_like = |first: &str, dob: &str, city: &str| {
        traits(first, "Kowalski", dob, "5 Oak Road", city, "99999")
    };
    app.ingest(&event(
        "m1",
        "crm",
        json!({"customer_id": "K-1"}),
        anna_like("Anna", "1980-01-01", "Boston"),
    ))
    .await;
    app.ingest(&event(
        "m2",
        "crm",
        json!({"customer_id": "K-2"}),
        traits(
            "Zed",
            "Kowalski",
            "1980-11-20",
            "77 Pine Lane",
            "Denver",
            "80201",
        ),
    ))
    .await;
    app.ingest(&event(
        "m3",
        "crm",
        json!({"customer_id": "K-3"}),
        traits("Bob", "Nguyen", "1944-06-06", "1 Main St", "Miami", "33101"),
    ))
    .await;

    let bare = why(&app, "customer_id:K-1", "cookie_id:ck-bare").await;
    assert_eq!(bare["verdict"], "no_record", "{bare}");

    let none = why(&app, "customer_id:K-1", "customer_id:K-3").await;
    assert_eq!(none["verdict"], "no_candidate", "{none}");
    assert_eq!(none["blocking"]["shared"], json!([]), "{none}");
    assert!(
        none["blocking"]["a"]
            .as_array()
            .is_some_and(|k| k.iter().any(|n| n == "sx")),
        "each side's keys are listed: {none}"
    );

    let low = why(&app, "customer_id:K-1", "customer_id:K-2").await;
    assert_eq!(low["verdict"], "below_threshold", "{low}");
    assert!(
        low["blocking"]["shared"]
            .as_array()
            .is_some_and(|k| k.iter().any(|n| n == "sx")),
        "{low}"
    );
    let m = &low["match"];
    assert!(m["probability"].as_f64().unwrap() < m["threshold"].as_f64().unwrap());
    assert_eq!(m["threshold"], 0.9);
    let fields: Vec<&str> = m["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"first_name") && fields.contains(&"birth_date"),
        "{low}"
    );

    // The strict guard: a look-alike of one of a family profile's two people.
    let (family, outcome) = family_and_lookalike(&app).await;
    assert_ne!(outcome["profile_id"], family.as_str(), "{outcome}");
    let guarded = why(&app, "email:family@example.com", "phone:+16175550199").await;
    assert_eq!(guarded["verdict"], "guard", "{guarded}");
    assert!(guarded["match"]["cluster_probability"].as_f64().unwrap() < 0.9);
    assert!(guarded["match"]["probability"].as_f64().unwrap() >= 0.9);
}
