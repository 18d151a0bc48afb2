//! Resolution over HTTP: merges (oldest survives, absorbed ids keep resolving), per-kind
//! limits refusing links, the blocklist, and the merge history.

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, event, identifier_count, identifiers_of, json_ok, pid, spawn_app,
};

#[tokio::test]
async fn an_event_sharing_an_email_merges_two_profiles_into_the_oldest() {
    let app = spawn_app().await;
    let first = app
        .ingest_pid(&event(
            "r-1",
            "web",
            json!({ "email": "ana@example.com", "device_id": "dev-1" }),
            json!({ "first_name": "Ana" }),
        ))
        .await;
    let second = app
        .ingest_pid(&event(
            "r-2",
            "pos",
            json!({ "phone": "+1 415 234 5678", "cookie_id": "ck-1" }),
            json!({ "last_name": "Lopez" }),
        ))
        .await;
    assert_ne!(first, second);

    let outcome = app
        .ingest(&event(
            "r-3",
            "crm",
            json!({ "email": "ANA@example.com", "phone": "(415) 234-5678" }),
            Value::Null,
        ))
        .await;
    assert_eq!(
        outcome["profile_id"],
        first.as_str(),
        "the oldest profile survives: {outcome}"
    );
    assert_eq!(outcome["merged"], json!([second]), "{outcome}");

    // A lookup right after the 2xx sees the merge, through any identifier.
    for (kind, value) in [
        ("email", "ana@example.com"),
        ("device_id", "dev-1"),
        ("phone", "+14152345678"),
        ("cookie_id", "ck-1"),
    ] {
        assert_eq!(app.pid_of(kind, value).await, first, "lookup {kind}");
    }

    let golden = app.profile(&first).await;
    assert_eq!(identifiers_of(&golden, "email"), ["ana@example.com"]);
    assert_eq!(identifiers_of(&golden, "device_id"), ["dev-1"]);
    assert_eq!(identifiers_of(&golden, "phone"), ["+14152345678"]);
    assert_eq!(identifiers_of(&golden, "cookie_id"), ["ck-1"]);
    assert_eq!(identifier_count(&golden), 4);
    assert_eq!(golden["event_count"], 3);
    assert_eq!(golden["merged_ids"], json!([second]));
    assert_eq!(golden["traits"]["first_name"], "Ana");
    assert_eq!(golden["traits"]["last_name"], "Lopez");
    assert_eq!(golden["sources"], json!(["crm", "pos", "web"]));

    // The absorbed id keeps answering, with the survivor.
    let absorbed = app.profile(&second).await;
    assert_eq!(absorbed["profile_id"], first.as_str());
    assert_eq!(absorbed, golden);
}

#[tokio::test]
async fn a_merge_inside_one_batch_is_visible_right_after_the_answer() {
    let app = spawn_app().await;
    let batch = json!([
        event("rb-1", "web", json!({ "cookie_id": "ck-b1" }), Value::Null),
        event(
            "rb-2",
            "web",
            json!({ "email": "batch@example.com" }),
            Value::Null
        ),
        event(
            "rb-3",
            "web",
            json!({ "email": "batch@example.com", "cookie_id": "ck-b1" }),
            Value::Null
        ),
    ]);
    let body = json_ok(app.post_events(&batch).await).await;
    assert_eq!(body["accepted"], 3, "{body}");
    let results = body["results"].as_array().unwrap();
    let (p1, p2) = (pid(&results[0]), pid(&results[1]));
    assert_ne!(p1, p2);
    assert_eq!(results[2]["profile_id"], p1.as_str(), "{body}");
    assert_eq!(results[2]["merged"], json!([p2]), "{body}");
    assert_eq!(app.pid_of("email", "batch@example.com").await, p1);
    assert_eq!(app.pid_of("cookie_id", "ck-b1").await, p1);
}

/// The common case: a brand-new customer id arrives with an email that already belongs to
/// another customer. One profile may hold one customer id, so the link is refused.
#[tokio::test]
async fn a_second_customer_id_on_a_known_email_is_refused() {
    let app = spawn_app().await;
    let first = app
        .ingest_pid(&event(
            "l-1",
            "crm",
            json!({ "customer_id": "C-1", "email": "shared@example.com" }),
            Value::Null,
        ))
        .await;

    let outcome = app
        .ingest(&event(
            "l-2",
            "crm",
            json!({ "customer_id": "C-2", "email": "shared@example.com" }),
            Value::Null,
        ))
        .await;
    let conflicts = outcome["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("no conflicts reported: {outcome}"));
    assert!(
        conflicts
            .iter()
            .any(|c| c["rule"] == "max_per_profile:customer_id=1"),
        "{outcome}"
    );
    assert!(
        outcome
            .get("merged")
            .is_none_or(|m| m.as_array().is_some_and(Vec::is_empty)),
        "{outcome}"
    );

    // The profiles stay separate; the email stays with the first customer.
    let c1 = app.pid_of("customer_id", "C-1").await;
    let c2 = app.pid_of("customer_id", "C-2").await;
    assert_eq!(c1, first);
    assert_ne!(c1, c2, "two customer ids ended up in one profile");
    assert_eq!(app.pid_of("email", "shared@example.com").await, first);
    let golden = app.profile(&first).await;
    assert_eq!(identifiers_of(&golden, "customer_id"), ["C-1"], "{golden}");
    let other = app.profile(&c2).await;
    assert_eq!(identifiers_of(&other, "customer_id"), ["C-2"], "{other}");
    assert!(identifiers_of(&other, "email").is_empty(), "{other}");
}

/// Both customers are already known; an event links the second one to the first's email.
#[tokio::test]
async fn an_email_linking_two_known_customer_ids_is_refused() {
    let app = spawn_app().await;
    let first = app
        .ingest_pid(&event(
            "k-1",
            "crm",
            json!({ "customer_id": "C-1", "email": "shared@example.com" }),
            Value::Null,
        ))
        .await;
    let second = app
        .ingest_pid(&event(
            "k-2",
            "crm",
            json!({ "customer_id": "C-2", "phone": "+1 650 253 0000" }),
            Value::Null,
        ))
        .await;
    assert_ne!(first, second);

    let outcome = app
        .ingest(&event(
            "k-3",
            "web",
            json!({ "customer_id": "C-2", "email": "shared@example.com" }),
            Value::Null,
        ))
        .await;
    assert_eq!(outcome["profile_id"], second.as_str(), "{outcome}");
    assert_eq!(
        outcome["conflicts"],
        json!([{ "kind": "email", "rule": "max_per_profile:customer_id=1", "profile_id": first }]),
        "{outcome}"
    );
    assert!(outcome.get("merged").is_none(), "{outcome}");

    assert_eq!(app.pid_of("customer_id", "C-1").await, first);
    assert_eq!(app.pid_of("customer_id", "C-2").await, second);
    assert_eq!(
        app.pid_of("email", "shared@example.com").await,
        first,
        "the email stays with the first"
    );
    assert_eq!(
        identifiers_of(&app.profile(&first).await, "customer_id"),
        ["C-1"]
    );
    let golden2 = app.profile(&second).await;
    assert_eq!(identifiers_of(&golden2, "customer_id"), ["C-2"]);
    assert!(identifiers_of(&golden2, "email").is_empty(), "{golden2}");

    // The refusal is in both profiles' history, with the rule and the event.
    for id in [&first, &second] {
        let history = json_ok(app.get(&format!("/v1/profiles/{id}/history")).await).await;
        assert!(
            history["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["kind"] == "conflict"
                    && h["rule"] == "max_per_profile:customer_id=1"
                    && h["event_id"] == "k-3"),
            "{history}"
        );
    }
}

#[tokio::test]
async fn blocklisted_values_never_link_two_people() {
    let app = spawn_app().await;
    let mut outcomes = Vec::new();
    for (n, customer) in ["C-A", "C-B"].iter().enumerate() {
        let outcome = app
            .ingest(&event(
                &format!("j-{n}"),
                "web",
                json!({
                    "customer_id": customer,
                    "email": "test@test.com",
                    "cookie_id": "undefined",
                    "phone": "0000000000",
                }),
                Value::Null,
            ))
            .await;
        let mut ignored: Vec<(String, String)> = outcome["ignored"]
            .as_array()
            .unwrap_or_else(|| panic!("no ignored list: {outcome}"))
            .iter()
            .map(|i| {
                (
                    i["field"].as_str().unwrap().to_owned(),
                    i["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                ("identifiers.cookie_id".to_owned(), "blocklisted".to_owned()),
                ("identifiers.email".to_owned(), "blocklisted".to_owned()),
                ("identifiers.phone".to_owned(), "blocklisted".to_owned()),
            ],
            "{outcome}"
        );
        assert!(outcome.get("merged").is_none(), "{outcome}");
        outcomes.push(pid(&outcome));
    }
    assert_ne!(
        outcomes[0], outcomes[1],
        "junk values glued two people together"
    );
    for (id, customer) in outcomes.iter().zip(["C-A", "C-B"]) {
        let golden = app.profile(id).await;
        assert_eq!(identifiers_of(&golden, "customer_id"), [customer]);
        assert_eq!(
            identifier_count(&golden),
            1,
            "junk stored as an identifier: {golden}"
        );
    }
    assert_error(app.lookup("email", "test@test.com").await, 404, "not_found").await;
    assert_error(app.lookup("cookie_id", "undefined").await, 404, "not_found").await;
}

#[tokio::test]
async fn an_event_with_only_junk_identifiers_is_rejected() {
    let app = spawn_app().await;
    let junk = event(
        "junk-1",
        "web",
        json!({ "email": "test@test.com", "cookie_id": "undefined", "phone": "0000000000" }),
        Value::Null,
    );
    let err = assert_error(app.post_events(&junk).await, 422, "no_linkable_identifier").await;
    assert_eq!(err["field"], "identifiers");

    let good = event(
        "junk-2",
        "web",
        json!({ "email": "real@example.com" }),
        Value::Null,
    );
    let body = json_ok(app.post_events(&json!([junk, good])).await).await;
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["results"][0]["status"], "rejected");
    assert_eq!(
        body["results"][0]["error"]["code"],
        "no_linkable_identifier"
    );
    assert_eq!(body["results"][0]["error"]["field"], "identifiers");

    let health = json_ok(app.get("/health").await).await;
    assert_eq!(
        health["events"], 1,
        "only the good event is stored: {health}"
    );
}

#[tokio::test]
async fn history_of_a_merged_profile_names_the_event_and_rule() {
    let app = spawn_app().await;
    let first = app
        .ingest_pid(&event(
            "hm-1",
            "web",
            json!({ "email": "hist@example.com" }),
            Value::Null,
        ))
        .await;
    let second = app
        .ingest_pid(&event(
            "hm-2",
            "mobile",
            json!({ "device_id": "dev-h" }),
            Value::Null,
        ))
        .await;
    app.ingest(&event(
        "hm-3",
        "mobile",
        json!({ "email": "hist@example.com", "device_id": "dev-h" }),
        Value::Null,
    ))
    .await;

    let body = json_ok(app.get(&format!("/v1/profiles/{first}/history")).await).await;
    assert_eq!(body["profile_id"], first.as_str());
    let history = body["history"].as_array().expect("history array");
    let merged = history
        .iter()
        .find(|h| h["kind"] == "merged")
        .unwrap_or_else(|| panic!("no merged entry: {body}"));
    assert_eq!(merged["event_id"], "hm-3");
    assert_eq!(merged["rule"], "shared_identifier");
    assert_eq!(merged["survivor"], first.as_str());
    assert_eq!(merged["absorbed"], json!([second]));
    // Both profiles' creations are there too (the absorbed one's history is folded in).
    let created: Vec<&Value> = history.iter().filter(|h| h["kind"] == "created").collect();
    assert_eq!(created.len(), 2, "{body}");
    let seqs: Vec<u64> = history.iter().map(|h| h["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "history is oldest first: {seqs:?}"
    );

    // The absorbed id answers with the survivor's history.
    let via_absorbed = json_ok(app.get(&format!("/v1/profiles/{second}/history")).await).await;
    assert_eq!(via_absorbed, body);
}

/// Anti-poisoning: an untrusted source attaches identifiers and may join a profile without
/// a verified identifier, but never merges two profiles that each hold one; a trusted
/// source still can.
#[tokio::test]
async fn an_untrusted_source_cannot_merge_two_verified_profiles() {
    let app = crate::helpers::spawn_app_with(|s| s.sources.untrusted = vec!["web".into()]).await;
    let p1 = app
        .ingest_pid(&event(
            "ap1",
            "crm",
            json!({"customer_id": "AP-1", "email": "a@ap.example"}),
            json!({}),
        ))
        .await;
    let p2 = app
        .ingest_pid(&event(
            "ap2",
            "pos",
            json!({"loyalty_id": "L-AP-2", "email": "b@ap.example"}),
            json!({}),
        ))
        .await;
    let p3 = app
        .ingest_pid(&event(
            "ap3",
            "email",
            json!({"email": "c@ap.example"}),
            json!({}),
        ))
        .await;
    let out = app
        .ingest(&event(
            "ap4",
            "web",
            json!({"email": ["a@ap.example", "b@ap.example"]}),
            json!({}),
        ))
        .await;
    assert_eq!(out["conflicts"][0]["rule"], "untrusted_source:web", "{out}");
    assert_ne!(
        app.pid_of("email", "a@ap.example").await,
        app.pid_of("email", "b@ap.example").await
    );
    // Attaching is fine, and so is joining a profile that holds no verified identifier.
    let out = app
        .ingest(&event(
            "ap5",
            "web",
            json!({"email": "a@ap.example", "cookie_id": "ck-ap"}),
            json!({}),
        ))
        .await;
    assert_eq!(out["profile_id"], p1.as_str());
    let out = app
        .ingest(&event(
            "ap6",
            "web",
            json!({"email": ["a@ap.example", "c@ap.example"]}),
            json!({}),
        ))
        .await;
    assert_eq!(out["profile_id"], p1.as_str(), "{out}");
    assert_eq!(out["merged"], json!([p3]), "{out}");
    // A trusted source's evidence merges them.
    let out = app
        .ingest(&event(
            "ap7",
            "crm",
            json!({"email": ["a@ap.example", "b@ap.example"]}),
            json!({}),
        ))
        .await;
    assert_eq!(out["merged"], json!([p2]), "{out}");
}
