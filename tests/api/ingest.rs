//! Ingest: single events and batches, normalization seen through lookup, idempotency,
//! survivorship in the golden profile, health and metrics.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, identifiers_of, json_ok, pid, spawn_app};

#[tokio::test]
async fn a_single_event_is_accepted_and_gets_a_profile() {
    let app = spawn_app().await;
    let resp = app
        .post_events(&event(
            "e-1",
            "web",
            json!({ "email": "Ana@Example.com", "cookie_id": "ck-1" }),
            json!({ "first_name": "Ana" }),
        ))
        .await;
    let outcome = json_ok(resp).await;
    assert_eq!(outcome["status"], "accepted");
    assert_eq!(outcome["event_id"], "e-1");
    let id = pid(&outcome);
    assert!(id.starts_with("p_"), "unexpected profile id {id}");
    assert!(outcome
        .get("conflicts")
        .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty)));

    let profile = app.profile(&id).await;
    assert_eq!(profile["profile_id"], id.as_str());
    assert_eq!(identifiers_of(&profile, "email"), ["ana@example.com"]);
    assert_eq!(identifiers_of(&profile, "cookie_id"), ["ck-1"]);
    assert_eq!(profile["event_count"], 1);
    assert_eq!(profile["sources"], json!(["web"]));
    assert_eq!(profile["traits"]["first_name"], "Ana");
}

#[tokio::test]
async fn lookup_finds_the_profile_by_every_identifier_kind() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "e-1",
            "crm",
            json!({
                "email": "ana.lopez@example.com",
                "phone": "(415) 234-5678",
                "device_id": "dev-A1",
                "cookie_id": "ck-A1",
                "customer_id": " C-100 ",
                "loyalty_id": "LOY-7",
            }),
            Value::Null,
        ))
        .await;

    let typings = [
        ("email", "ana.lopez@example.com"),
        ("phone", "+14152345678"),
        ("phone", "415.234.5678"),
        ("phone", "+1 (415) 234-5678"),
        ("phone", "(415) 234-5678"),
        ("device_id", "dev-A1"),
        ("cookie_id", "ck-A1"),
        ("customer_id", "C-100"),
        ("customer_id", "  C-100"),
        ("loyalty_id", "LOY-7"),
    ];
    for (kind, value) in typings {
        let found = json_ok(app.lookup(kind, value).await).await;
        assert_eq!(found["profile_id"], id.as_str(), "lookup {kind}={value:?}");
    }

    let profile = app.profile(&id).await;
    assert_eq!(
        identifiers_of(&profile, "phone"),
        ["+14152345678"],
        "phones are stored as E.164"
    );
    assert_eq!(
        identifiers_of(&profile, "customer_id"),
        ["C-100"],
        "ids are trimmed"
    );
}

#[tokio::test]
async fn email_lookup_ignores_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "e-1",
            "web",
            json!({ "email": "Bob.Smith@Example.COM" }),
            Value::Null,
        ))
        .await;
    for typed in [
        "bob.smith@example.com",
        "BOB.SMITH@EXAMPLE.COM",
        "  Bob.Smith@example.com ",
    ] {
        let found = json_ok(app.lookup("email", typed).await).await;
        assert_eq!(found["profile_id"], id.as_str(), "lookup email={typed:?}");
        assert_eq!(identifiers_of(&found, "email"), ["bob.smith@example.com"]);
    }
}

#[tokio::test]
async fn a_resent_event_id_is_a_duplicate_and_changes_nothing() {
    let app = spawn_app().await;
    let ev = event(
        "e-dup",
        "web",
        json!({ "email": "dup@example.com" }),
        json!({ "first_name": "Dee" }),
    );
    let id = app.ingest_pid(&ev).await;

    let again = json_ok(app.post_events(&ev).await).await;
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["event_id"], "e-dup");
    assert_eq!(again["profile_id"], id.as_str());

    // Same id, different content: still a duplicate, and the new identifier is not stored.
    let changed = event(
        "e-dup",
        "web",
        json!({ "email": "dup@example.com", "cookie_id": "ck-new" }),
        Value::Null,
    );
    let again = json_ok(app.post_events(&changed).await).await;
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_error(app.lookup("cookie_id", "ck-new").await, 404, "not_found").await;

    let profile = app.profile(&id).await;
    assert_eq!(profile["event_count"], 1, "{profile}");

    // In a batch too, and twice within one batch.
    let other = event(
        "e-2",
        "web",
        json!({ "email": "dup@example.com" }),
        Value::Null,
    );
    let batch = json_ok(app.post_events(&json!([ev, other.clone(), other])).await).await;
    assert_eq!(batch["accepted"], 1, "{batch}");
    assert_eq!(batch["duplicate"], 2, "{batch}");
    assert_eq!(batch["rejected"], 0, "{batch}");
    let statuses: Vec<&str> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["duplicate", "accepted", "duplicate"]);
    assert_eq!(app.profile(&id).await["event_count"], 2);
}

#[tokio::test]
async fn a_bad_event_in_a_batch_rejects_only_itself() {
    let app = spawn_app().await;
    let batch = json!([
        event(
            "b-1",
            "web",
            json!({ "email": "one@example.com" }),
            Value::Null
        ),
        event(
            "b-2",
            "web",
            json!({ "email": "not-an-email", "customer_id": "C-bad" }),
            Value::Null
        ),
        event(
            "b-3",
            "mobile",
            json!({ "device_id": "dev-3" }),
            Value::Null
        ),
    ]);
    let body = json_ok(app.post_events(&batch).await).await;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["duplicate"], 0, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    let results = body["results"].as_array().expect("results array");
    assert_eq!(results.len(), 3);

    assert_eq!(results[0]["index"], 0);
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[0]["event_id"], "b-1");
    assert_eq!(results[2]["index"], 2);
    assert_eq!(results[2]["status"], "accepted");
    assert_eq!(results[2]["event_id"], "b-3");

    let bad = &results[1];
    assert_eq!(bad["index"], 1);
    assert_eq!(bad["status"], "rejected");
    assert_eq!(bad["event_id"], "b-2");
    assert_eq!(bad["error"]["code"], "invalid_field");
    assert_eq!(bad["error"]["field"], "identifiers.email");
    assert!(bad["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(
        !bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not-an-email"),
        "error messages must not echo identifier values"
    );

    // The good events are stored, nothing of the bad one is.
    assert_eq!(
        app.pid_of("email", "one@example.com").await,
        pid(&results[0])
    );
    assert_eq!(app.pid_of("device_id", "dev-3").await, pid(&results[2]));
    assert_error(app.lookup("customer_id", "C-bad").await, 404, "not_found").await;
}

#[tokio::test]
async fn golden_traits_follow_the_survivorship_rules() {
    let app = spawn_app().await;
    let ids = json!({ "customer_id": "C-42" });
    let mut e1 = event(
        "t-1",
        "web",
        ids.clone(),
        json!({
            "first_name": "Bobby",
            "last_name": "Smith",
            "birth_date": "1990-05-01",
            "address": { "street": "1 Old Road", "postal_code": "94107", "country": "us" },
            "tier": "silver",
        }),
    );
    e1["timestamp"] = json!("2024-01-01T10:00:00Z");
    let mut e2 = event(
        "t-2",
        "crm",
        ids.clone(),
        json!({
            "first_name": "Robert",
            "birth_date": "1990-05-01",
            "address": { "street": "2 Middle Street", "postal_code": "94107", "country": "US" },
        }),
    );
    e2["timestamp"] = json!("2024-02-01T10:00:00Z");
    let mut e3 = event(
        "t-3",
        "web",
        ids,
        json!({
            "first_name": "Bob",
            "birth_date": "1991-01-01",
            "address": { "street": "3 New Avenue", "city": "Oakland", "postal_code": "94607", "country": "US" },
            "tier": "gold",
        }),
    );
    e3["timestamp"] = json!("2024-03-01T10:00:00Z");
    let id = app.ingest_pid(&e1).await;
    assert_eq!(app.ingest_pid(&e2).await, id);
    assert_eq!(app.ingest_pid(&e3).await, id);

    let profile = app.profile(&id).await;
    let traits = &profile["traits"];
    // Names: source priority; crm beats web although web spoke last.
    assert_eq!(traits["first_name"], "Robert", "{profile}");
    assert_eq!(traits["last_name"], "Smith", "{profile}");
    // Birth date: most frequent.
    assert_eq!(traits["birth_date"], "1990-05-01", "{profile}");
    // Address and extra traits: most recent.
    assert_eq!(traits["address"]["street"], "3 New Avenue", "{profile}");
    assert_eq!(traits["address"]["postal_code"], "94607", "{profile}");
    assert_eq!(traits["address"]["city"], "Oakland", "{profile}");
    assert_eq!(traits["extra"]["tier"], "gold", "{profile}");
    assert_eq!(profile["event_count"], 3);
    assert_eq!(profile["sources"], json!(["crm", "web"]));
    assert!(
        profile["first_seen"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01"),
        "{profile}"
    );
    assert!(
        profile["last_seen"]
            .as_str()
            .unwrap()
            .starts_with("2024-03-01"),
        "{profile}"
    );
}

#[tokio::test]
async fn health_answers_ok_with_counters() {
    let app = spawn_app().await;
    let health = json_ok(app.get("/health").await).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["events"], 0);
    assert_eq!(health["profiles_created"], 0);
    assert_eq!(json_ok(app.get("/ready").await).await["status"], "ready");

    app.ingest(&event(
        "h-1",
        "web",
        json!({ "email": "h1@example.com" }),
        Value::Null,
    ))
    .await;
    app.ingest(&event(
        "h-2",
        "web",
        json!({ "email": "h2@example.com" }),
        Value::Null,
    ))
    .await;
    let health = json_ok(app.get("/health").await).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["events"], 2);
    assert_eq!(health["profiles_created"], 2);
}

#[tokio::test]
async fn metrics_are_labelled_by_route_pattern_never_by_raw_path() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "m-1",
            "web",
            json!({ "email": "metrics.person@example.com" }),
            Value::Null,
        ))
        .await;
    app.profile(&id).await;
    app.lookup("email", "metrics.person@example.com").await;

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "content type {content_type}"
    );
    let text = resp.text().await.unwrap();

    assert!(text.contains("idgraph_http_requests_total"), "{text}");
    let profile_line = text
        .lines()
        .find(|l| {
            l.starts_with("idgraph_http_requests_total")
                && l.contains(r#"route="/v1/profiles/{id}""#)
        })
        .unwrap_or_else(|| panic!("no request counter for the profile route pattern:\n{text}"));
    assert!(profile_line.contains(r#"method="GET""#), "{profile_line}");
    assert!(profile_line.contains(r#"status="200""#), "{profile_line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("idgraph_http_requests_total")
                && l.contains(r#"route="/v1/events""#)),
        "{text}"
    );
    assert!(
        text.contains("idgraph_http_request_duration_seconds"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("idgraph_events_total")
            && l.contains(r#"outcome="accepted""#)
            && l.ends_with(" 1")),
        "{text}"
    );
    // Neither profile ids nor identifier values leak into labels.
    assert!(!text.contains(&id), "raw profile id in metrics:\n{text}");
    assert!(
        !text.contains("metrics.person"),
        "identifier value in metrics:\n{text}"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post_encoded(app: &crate::helpers::TestApp, body: Vec<u8>, ct: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/events"))
        .header("content-type", ct)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn gzip_and_ndjson_bodies_resolve_like_plain_json() {
    let app = crate::helpers::spawn_app_with(|s| s.server.max_body_bytes = 64 * 1024).await;
    let a = event(
        "gz-1",
        "web",
        json!({ "email": "gz@example.com", "cookie_id": "ck-gz" }),
        json!({ "first_name": "Gia" }),
    );
    let b = event(
        "gz-2",
        "crm",
        json!({ "email": "gz@example.com", "customer_id": "C-gz" }),
        json!({}),
    );
    // One gzip-compressed JSON event answers like a plain one.
    let one = post_encoded(&app, gzip(a.to_string().as_bytes()), "application/json").await;
    assert_eq!(json_ok(one).await["status"], "accepted");
    // NDJSON (plain and gzip): one event per line, answered as a batch.
    let ndjson = format!("{}\n\n{}\n", a, b);
    let plain = app
        .post_raw(ndjson.clone(), Some("application/x-ndjson"))
        .await;
    let plain = json_ok(plain).await;
    assert_eq!(
        (plain["accepted"].as_u64(), plain["duplicate"].as_u64()),
        (Some(1), Some(1)),
        "{plain}"
    );
    let again = post_encoded(&app, gzip(ndjson.as_bytes()), "application/x-ndjson").await;
    assert_eq!(json_ok(again).await["duplicate"], 2);
    // The events resolved into one profile holding all three identifiers.
    let p = json_ok(app.lookup("customer_id", "C-gz").await).await;
    assert_eq!(identifiers_of(&p, "cookie_id"), ["ck-gz"], "{p}");
    assert_eq!(
        p["profile_id"],
        json_ok(app.lookup("email", "gz@example.com").await).await["profile_id"]
    );

    // A bad line names its line number and stores nothing.
    let bad = format!(
        "{}\n{{oops\n",
        event(
            "gz-3",
            "web",
            json!({ "email": "three@example.com" }),
            json!({})
        )
    );
    let err = assert_error(
        app.post_raw(bad, Some("application/x-ndjson")).await,
        400,
        "invalid_json",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("line 2"), "{err}");
    assert_error(
        app.lookup("email", "three@example.com").await,
        404,
        "not_found",
    )
    .await;

    // A gzip bomb: 50 KB on the wire, 20 MB inflated, refused by max_body_bytes after
    // decompression; a body that is not gzip at all is a 400.
    let mut huge = a.to_string().into_bytes();
    huge.extend(std::iter::repeat_n(b' ', 20_000_000));
    let bomb = gzip(&huge);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let err = assert_error(
        post_encoded(&app, bomb, "application/json").await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("decompresses"),
        "{err}"
    );
    assert_error(
        post_encoded(&app, b"plain".to_vec(), "application/json").await,
        400,
        "invalid_body",
    )
    .await;
    assert_eq!(json_ok(app.get("/health").await).await["events"], 2);
}
