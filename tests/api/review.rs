//! The review queue: candidate pairs probabilistic matching was unsure of (between
//! `review_threshold` and `threshold`) are queued once, listed oldest first with both
//! profiles and the evidence, and decided by a steward: accept merges (rule `steward`,
//! unless a deterministic rule forbids it and is not overridden), reject refuses the link
//! for good. Bad input is named; erasure removes the items of the erased.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, json_ok, post_json, spawn_app_with, TestApp};

/// A person's record; `city` differs between the two records of a pair, which puts the
/// pair (same names and birth date) at about 0.88 with the built-in model: under the
/// threshold (0.9), over the review threshold (0.5).
fn person(first: &str, last: &str, city: &str) -> Value {
    json!({"first_name": first, "last_name": last, "birth_date": "1980-01-01",
           "address": {"city": city}})
}

async fn queue(app: &TestApp, query: &[(&str, &str)]) -> Vec<Value> {
    json_ok(app.get_query("/v1/review", query).await).await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn decide(app: &TestApp, seq: &Value, body: Value) -> (u16, Value) {
    post_json(&app.client, &app.url(&format!("/v1/review/{seq}")), &body).await
}

async fn history_rules(app: &TestApp, pid: &str) -> Vec<Value> {
    json_ok(app.get(&format!("/v1/profiles/{pid}/history")).await).await["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn unsure_pairs_are_queued_once_and_decided_by_a_steward() {
    let app = spawn_app_with(|s| s.matching.enabled = true).await;
    app.ingest(&event(
        "r1",
        "crm",
        json!({"phone": "+16175550111"}),
        person("Anna", "Kowalski", "Boston"),
    ))
    .await;
    let outcome = app
        .ingest(&event(
            "r2",
            "pos",
            json!({"phone": "+16175550112"}),
            person("Anna", "Kowalski", "Denver"),
        ))
        .await;
    assert!(
        outcome.get("probable").is_none(),
        "under the threshold: {outcome}"
    );
    let items = queue(&app, &[]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    let score = item["score"].as_f64().unwrap();
    assert!((0.5..0.9).contains(&score), "{item}");
    assert_eq!(item["status"], "open");
    assert_eq!(item["source"], "pos");
    assert_eq!(item["a"]["identifier"], "phone:+16175550112", "{item}");
    assert_eq!(item["b"]["identifier"], "phone:+16175550111", "{item}");
    assert_eq!(
        item["a"]["profile"]["traits"]["address"]["city"], "Denver",
        "{item}"
    );
    let fields: Vec<&str> = item["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["first_name", "last_name", "birth_date", "city"]);
    let text = crate::helpers::metrics_text(&app.client, &app.address).await;
    assert!(
        text.contains("idgraph_matching_total{what=\"queued_for_review\"} 1"),
        "{text}"
    );

    // The same records again: no second item for the same two profiles.
    app.ingest(&event(
        "r3",
        "pos",
        json!({"phone": "+16175550112"}),
        person("Anna", "Kowalski", "Denver"),
    ))
    .await;
    assert_eq!(queue(&app, &[]).await.len(), 1);
    // Filters.
    assert_eq!(queue(&app, &[("source", "web")]).await.len(), 0);
    assert_eq!(queue(&app, &[("min_score", "0.95")]).await.len(), 0);
    assert_eq!(
        queue(&app, &[("after", &item["seq"].to_string())])
            .await
            .len(),
        0
    );

    // Accept: one profile, rule `steward`, the key's name and the reason in history.
    let (status, decided) = decide(
        &app,
        &item["seq"],
        json!({"decision": "accept", "reason": "same customer, moved"}),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    let merged = decided["profile_id"].as_str().unwrap().to_owned();
    assert_eq!(app.pid_of("phone", "+16175550111").await, merged);
    assert_eq!(app.pid_of("phone", "+16175550112").await, merged);
    let entry = history_rules(&app, &merged)
        .await
        .into_iter()
        .find(|h| h["rule"] == "steward")
        .expect("a steward merge in history");
    let detail = entry["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("test-admin") && detail.contains("same customer, moved"),
        "{entry}"
    );
    assert!(
        queue(&app, &[]).await.is_empty(),
        "decided items leave the queue"
    );
    let (status, again) = decide(
        &app,
        &item["seq"],
        json!({"decision": "reject", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{again}");
}

#[tokio::test]
async fn rules_win_unless_overridden_and_a_rejection_is_final() {
    let app = spawn_app_with(|s| s.matching.enabled = true).await;
    let pair = |id: &str, customer: &str, first: &str, last: &str, city: &str| {
        event(
            id,
            "crm",
            json!({ "customer_id": customer }),
            person(first, last, city),
        )
    };
    app.ingest(&pair("c1", "C-1", "Brian", "O'Hara", "Boston"))
        .await;
    app.ingest(&pair("c2", "C-2", "Brian", "O'Hara", "Denver"))
        .await;
    let items = queue(&app, &[]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let seq = items[0]["seq"].clone();
    let before = (
        app.pid_of("customer_id", "C-1").await,
        app.pid_of("customer_id", "C-2").await,
    );

    // Two customer ids: accepting breaks the exclusive kind, and nothing changes.
    let (status, refused) =
        decide(&app, &seq, json!({"decision": "accept", "reason": "dupe"})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "rule_conflict", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("probable_conflict:customer_id"),
        "{refused}"
    );
    assert_eq!(app.pid_of("customer_id", "C-2").await, before.1);
    assert_eq!(queue(&app, &[]).await.len(), 1, "the item stays");
    // Overriding another rule is no override.
    let (status, _) = decide(
        &app,
        &seq,
        json!({"decision": "accept", "reason": "dupe", "override": ["max_per_profile:email=5"]}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, forced) = decide(
        &app,
        &seq,
        json!({"decision": "accept", "reason": "CRM duplicate", "override": ["probable_conflict:customer_id"]}),
    )
    .await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["overridden"], "probable_conflict:customer_id");
    let pid = forced["profile_id"].as_str().unwrap().to_owned();
    assert_eq!(app.pid_of("customer_id", "C-2").await, pid);
    let overridden = history_rules(&app, &pid).await.into_iter().any(|h| {
        h["rule"] == "steward"
            && h["detail"]
                .as_str()
                .is_some_and(|d| d.contains("overriding probable_conflict:customer_id"))
    });
    assert!(overridden, "the override is recorded");

    // A rejection: the link is refused for good, and why-not says so.
    app.ingest(&pair("d1", "D-1", "Carla", "Marsh", "Boston"))
        .await;
    app.ingest(&pair("d2", "D-2", "Carla", "Marsh", "Denver"))
        .await;
    let items = queue(&app, &[]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let (status, rejected) = decide(
        &app,
        &items[0]["seq"],
        json!({"decision": "reject", "reason": "different people"}),
    )
    .await;
    assert_eq!(status, 200, "{rejected}");
    app.ingest(&pair("d3", "D-2", "Carla", "Marsh", "Denver"))
        .await;
    assert!(queue(&app, &[]).await.is_empty(), "never proposed again");
    assert_ne!(
        app.pid_of("customer_id", "D-1").await,
        app.pid_of("customer_id", "D-2").await
    );
    let why = json_ok(
        app.get_query(
            "/v1/explain",
            &[("a", "customer_id:D-2"), ("b", "customer_id:D-1")],
        )
        .await,
    )
    .await;
    assert_eq!(why["verdict"], "refused", "{why}");
    assert!(
        why["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("steward_rejected"),
        "{why}"
    );
}

#[tokio::test]
async fn bad_requests_are_named_and_erasure_empties_the_queue_of_the_erased() {
    let app = spawn_app_with(|s| s.matching.enabled = true).await;
    for (q, field) in [
        (vec![("limit", "0")], "limit"),
        (vec![("min_score", "2")], "min_score"),
        (vec![("profile", "")], "profile"),
    ] {
        let body = assert_error(
            app.get_query("/v1/review", &q).await,
            400,
            "invalid_parameter",
        )
        .await;
        assert_eq!(body["field"], field, "{body}");
    }
    assert_error(
        app.get_query("/v1/review", &[("colour", "red")]).await,
        400,
        "invalid_query",
    )
    .await;
    let (status, body) = decide(
        &app,
        &json!(1),
        json!({"decision": "accept", "reason": " "}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (400, json!("reason")),
        "{body}"
    );
    let (status, body) = decide(&app, &json!(1), json!({"decision": "maybe", "reason": "r"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = decide(
        &app,
        &json!("x"),
        json!({"decision": "accept", "reason": "r"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (400, json!("seq")),
        "{body}"
    );
    let (status, body) = decide(
        &app,
        &json!(12345),
        json!({"decision": "accept", "reason": "r"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    app.ingest(&event(
        "e1",
        "crm",
        json!({"phone": "+16175550131"}),
        person("Dora", "Lindqvist", "Boston"),
    ))
    .await;
    app.ingest(&event(
        "e2",
        "crm",
        json!({"phone": "+16175550132"}),
        person("Dora", "Lindqvist", "Denver"),
    ))
    .await;
    assert_eq!(queue(&app, &[]).await.len(), 1);
    let (status, erased) = post_json(
        &app.client,
        &app.url("/v1/erasure"),
        &json!({"identifier": "phone:+16175550132"}),
    )
    .await;
    assert_eq!(status, 200, "{erased}");
    assert!(
        queue(&app, &[]).await.is_empty(),
        "the erased person's items are gone"
    );
}

/// Stewards' decisions are labels for `idgraph train`: accepting pairs whose city differs
/// teaches the model that true matches often disagree on the city (its disagreement
/// weight rises), and the report counts the labels and how the model scores them.
#[tokio::test]
async fn decisions_are_labels_for_training() {
    let app = spawn_app_with(|s| s.matching.enabled = true).await;
    const PAIRS: usize = 30;
    let firsts = [
        "Anna", "Brian", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    ];
    let lasts = [
        "Kowalski",
        "Marsh",
        "Okafor",
        "Lindqvist",
        "Tanaka",
        "Moreau",
    ];
    for i in 0..PAIRS {
        let (first, last) = (firsts[i % firsts.len()], lasts[i % lasts.len()]);
        let dob = format!("19{:02}-0{}-1{}", 50 + i, 1 + i % 9, i % 10);
        let rec = |city: &str| {
            json!({"first_name": first, "last_name": last, "birth_date": dob,
                   "address": {"city": city}})
        };
        for (n, city) in [(1, "Boston"), (2, "Denver")] {
            app.ingest(&event(
                &format!("l{i}-{n}"),
                "crm",
                json!({ "phone": format!("+161755{:02}{:03}", n, i) }),
                rec(city),
            ))
            .await;
        }
    }
    let items = queue(&app, &[("limit", "500")]).await;
    assert_eq!(items.len(), PAIRS, "one item per pair");
    let (mut accepted, mut rejected) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let decision = if i < 20 { "accept" } else { "reject" };
        let (status, out) = decide(
            &app,
            &item["seq"],
            json!({"decision": decision, "reason": "labelling"}),
        )
        .await;
        assert_eq!(status, 200, "{out}");
        if i < 20 {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    let store = app.engine.store();
    let (_, report) = idgraph::matching::train::train_store(store, 100_000, 7, 0.9)
        .expect("training on the store");
    let report = report.expect("the decisions are found as labels");
    assert_eq!((report.accepted, report.rejected), (accepted, rejected));
    let city = report
        .weight_change
        .iter()
        .find(|(f, _)| f == "city")
        .map(|(_, c)| *c)
        .unwrap_or_default();
    assert!(city > 0.0, "the city's weights move: {report:?}");
    // Every accepted pair disagrees on the city: the model, told so, scores more of them
    // as matches than before.
    assert!(
        report.accepted_over_threshold.1 >= report.accepted_over_threshold.0,
        "{report:?}"
    );
}
