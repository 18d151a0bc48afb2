//! Errors: every bad request gets a 4xx with the stable JSON body
//! `{"error": {"code", "message", "field"?}}` naming the field; never a 500.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, json_ok, spawn_app, spawn_app_with};

fn valid() -> Value {
    event(
        "err-1",
        "web",
        json!({ "email": "ok@example.com" }),
        Value::Null,
    )
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app().await;
    for body in [
        "{\"event_id\": \"e1\",",
        "not json at all",
        "{'single': 'quotes'}",
        "",
    ] {
        let resp = app.post_raw(body, Some("application/json")).await;
        assert_error(resp, 400, "invalid_json").await;
    }
    // Nothing was stored.
    assert_eq!(json_ok(app.get("/health").await).await["events"], 0);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let mut cases: Vec<(Value, &str)> = Vec::new();

    let mut v = valid();
    v["identifiers"] = json!(42);
    cases.push((v, "identifiers"));

    let mut v = valid();
    v.as_object_mut().unwrap().remove("event_id");
    cases.push((v, "event_id"));

    let mut v = valid();
    v["event_id"] = json!(17);
    cases.push((v, "event_id"));

    let mut v = valid();
    v.as_object_mut().unwrap().remove("identifiers");
    cases.push((v, "identifiers"));

    let mut v = valid();
    v["traits"] = json!({ "birth_date": ["1990-01-01"] });
    cases.push((v, "traits.birth_date"));

    let mut v = valid();
    v["traits"] = json!({ "first_name": 12 });
    cases.push((v, "traits.first_name"));

    let mut v = valid();
    v["traits"] = json!({ "address": { "street": "1 Main St", "planet": "Mars" } });
    cases.push((v, "traits.address.planet"));

    let mut v = valid();
    v["traits"] = json!("tall");
    cases.push((v, "traits"));

    let mut v = valid();
    v["colour"] = json!("blue");
    cases.push((v, "colour"));

    let mut v = valid();
    v["source"] = json!("carrier_pigeon");
    cases.push((v, "source"));

    let mut v = valid();
    v["timestamp"] = json!("yesterday");
    cases.push((v, "timestamp"));

    let mut v = valid();
    v["timestamp"] = json!("2999-01-01T00:00:00Z");
    cases.push((v, "timestamp"));

    let mut v = valid();
    v["properties"] = json!([1, 2]);
    cases.push((v, "properties"));

    let mut v = valid();
    v["identifiers"] = json!({ "email": ["a@example.com", 5] });
    cases.push((v, "identifiers.email[1]"));

    for (body, field) in cases {
        let err = assert_error(app.post_events(&body).await, 422, "invalid_field").await;
        assert_eq!(err["field"], field, "body {body}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "the message names the field: {message}"
        );
    }
    assert_eq!(
        json_ok(app.get("/health").await).await["events"],
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn invalid_identifier_values_are_422_naming_the_identifier() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "email": "bob@" }), "identifiers.email"),
        (
            json!({ "email": "bob at example.com" }),
            "identifiers.email",
        ),
        (json!({ "email": "bob@localhost" }), "identifiers.email"),
        (json!({ "phone": "12" }), "identifiers.phone"),
        (json!({ "phone": "call me maybe" }), "identifiers.phone"),
        (
            json!({ "phone": "+1 415 234 567899999" }),
            "identifiers.phone",
        ),
        (
            json!({ "customer_id": "a\u{0007}b" }),
            "identifiers.customer_id",
        ),
        (
            json!({ "device_id": "x".repeat(300) }),
            "identifiers.device_id",
        ),
        (json!({ "passport": "X123" }), "identifiers.passport"),
        (json!({ "Email": "bob@example.com" }), "identifiers.Email"),
    ];
    for (identifiers, field) in cases {
        let body = event("bad-id", "web", identifiers.clone(), Value::Null);
        let err = assert_error(app.post_events(&body).await, 422, "invalid_field").await;
        assert_eq!(err["field"], field, "identifiers {identifiers}");
    }
    // Values are never echoed back (they may be personal data).
    let err = assert_error(
        app.post_events(&event(
            "bad-id",
            "web",
            json!({ "email": "secret.person@" }),
            Value::Null,
        ))
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert!(
        !err["message"].as_str().unwrap().contains("secret.person"),
        "{err}"
    );
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 2048).await;
    let big = event(
        "big-1",
        "web",
        json!({ "email": "big@example.com" }),
        json!({ "note": "x".repeat(4000) }),
    );
    assert_error(app.post_events(&big).await, 413, "payload_too_large").await;
    // A small event still goes through under the same limit.
    let small = json_ok(app.post_events(&valid()).await).await;
    assert_eq!(small["status"], "accepted");
    assert_error(
        app.lookup("email", "big@example.com").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_batch_over_max_batch_events_is_413() {
    let app = spawn_app_with(|s| s.server.max_batch_events = 3).await;
    let batch: Vec<Value> = (0..4)
        .map(|i| {
            event(
                &format!("mb-{i}"),
                "web",
                json!({ "cookie_id": format!("ck-{i}") }),
                Value::Null,
            )
        })
        .collect();
    assert_error(app.post_events(&json!(batch)).await, 413, "batch_too_large").await;
    assert_eq!(
        json_ok(app.get("/health").await).await["events"],
        0,
        "nothing of it was stored"
    );
    let ok = json_ok(app.post_events(&json!(batch[..3])).await).await;
    assert_eq!(ok["accepted"], 3, "{ok}");
}

#[tokio::test]
async fn an_empty_batch_is_400() {
    let app = spawn_app().await;
    assert_error(app.post_events(&json!([])).await, 400, "empty_batch").await;
}

#[tokio::test]
async fn a_body_that_is_not_an_event_is_422() {
    let app = spawn_app().await;
    for body in [json!(42), json!("event"), json!(null), json!(true)] {
        assert_error(app.post_events(&body).await, 422, "invalid_field").await;
    }
    // Batch items that are not objects are rejected one by one.
    let body = json_ok(app.post_events(&json!([valid(), 7])).await).await;
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(body["results"][1]["index"], 1);
}

#[tokio::test]
async fn a_non_json_content_type_is_415() {
    let app = spawn_app().await;
    let body = serde_json::to_string(&valid()).unwrap();
    assert_error(
        app.post_raw(body.clone(), Some("text/plain")).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert_error(
        app.post_raw(body.clone(), Some("application/x-www-form-urlencoded"))
            .await,
        415,
        "unsupported_media_type",
    )
    .await;
    // A type that merely contains "json" is not JSON.
    assert_error(
        app.post_raw(body.clone(), Some("text/notjson")).await,
        415,
        "unsupported_media_type",
    )
    .await;
    // An encoding the server does not inflate is refused, not misread.
    let resp = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    // JSON with parameters and a +json type are JSON.
    let ok = app
        .post_raw(body, Some("application/vnd.idgraph+json; charset=utf-8"))
        .await;
    assert_eq!(json_ok(ok).await["status"], "accepted");
    assert_eq!(json_ok(app.get("/health").await).await["events"], 1);
}

#[tokio::test]
async fn an_unknown_profile_is_404() {
    let app = spawn_app().await;
    for path in [
        "/v1/profiles/p_999999999999",
        "/v1/profiles/nobody",
        "/v1/profiles/p_999999999999/history",
        "/v1/profiles/p_999999999999/household",
        "/v1/profiles/p_999999999999/graph",
    ] {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
    let long = format!("/v1/profiles/{}", "p".repeat(300));
    assert_error(app.get(&long).await, 404, "not_found").await;
}

#[tokio::test]
async fn lookup_errors() {
    let app = spawn_app().await;
    app.ingest(&valid()).await;
    // Missing parameters.
    assert_error(app.get("/v1/lookup").await, 400, "invalid_query").await;
    assert_error(
        app.get_query("/v1/lookup", &[("kind", "email")]).await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get_query("/v1/lookup", &[("value", "ok@example.com")])
            .await,
        400,
        "invalid_query",
    )
    .await;
    // Unknown identifier.
    assert_error(
        app.lookup("email", "unknown@example.com").await,
        404,
        "not_found",
    )
    .await;
    // Invalid values and kinds name the parameter.
    let err = assert_error(app.lookup("phone", "12").await, 400, "invalid_parameter").await;
    assert_eq!(err["field"], "value");
    let err = assert_error(
        app.lookup("email", "not-an-email").await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "value");
    let err = assert_error(app.lookup("passport", "X1").await, 400, "invalid_parameter").await;
    assert_eq!(err["field"], "value");
}

#[tokio::test]
async fn view_parameters_are_bounded() {
    let app = spawn_app().await;
    let id = app.ingest_pid(&valid()).await;
    let graph = format!("/v1/profiles/{id}/graph");
    let err = assert_error(
        app.get(&format!("{graph}?depth=99")).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "depth");
    let err = assert_error(
        app.get(&format!("{graph}?limit=0")).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "limit");
    let err = assert_error(
        app.get(&format!("{graph}?limit=100000")).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "limit");
    assert_error(
        app.get(&format!("{graph}?depth=-1")).await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get(&format!("{graph}?depth=deep")).await,
        400,
        "invalid_query",
    )
    .await;
    let err = assert_error(
        app.get(&format!("/v1/profiles/{id}/history?limit=0")).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "limit");

    let explain = format!("/v1/profiles/{id}/explain");
    let err = assert_error(
        app.get_query(&explain, &[("a", "nocolon"), ("b", "email:ok@example.com")])
            .await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "a");
    let err = assert_error(
        app.get_query(
            &explain,
            &[("a", "email:ok@example.com"), ("b", "phone:12")],
        )
        .await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "b");
    assert_error(
        app.get_query(&explain, &[("a", "email:ok@example.com")])
            .await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_route_is_404_json() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/v1/nope",
        "/v2/profiles/p_000000000001",
        "/v1/profiles",
    ] {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
}

/// The README promises the JSON error shape for every error, including a known route
/// called with the wrong method.
#[tokio::test]
async fn a_wrong_method_is_405_with_the_json_error_shape() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/events"),
        (reqwest::Method::POST, "/v1/lookup"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 405, "{method} {path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
            panic!("{method} {path}: 405 body is not the JSON error shape: {text:?}")
        });
        assert!(body["error"]["code"].is_string(), "{method} {path}: {text}");
        assert!(
            body["error"]["message"].is_string(),
            "{method} {path}: {text}"
        );
    }
}

/// A spread of odd inputs: each one is a 4xx with the JSON error shape, never a 500, and
/// the server keeps answering afterwards.
#[tokio::test]
async fn odd_inputs_never_cause_a_500() {
    let app = spawn_app().await;
    let odd_events = [
        json!({ "event_id": "", "source": "web", "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "   ", "source": "web", "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "x".repeat(500), "source": "web", "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "e\u{0000}", "source": "web", "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "e", "source": "web", "identifiers": {} }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "email": [] } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "email": {"nested": 1} } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "phone": "☎☎☎☎☎☎☎☎☎☎" } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "phone": "+".repeat(39) } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "cookie_id": (0..33).map(|i| format!("c{i}")).collect::<Vec<_>>() } }),
        json!({ "event_id": "e", "source": "web", "timestamp": -5, "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "e", "source": "web", "timestamp": 1.5e300, "identifiers": { "email": "a@example.com" } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "email": "a@example.com" }, "traits": { "birth_date": {"y": 1990} } }),
        json!({ "event_id": "e", "source": "web", "identifiers": { "email": "a@example.com" }, "traits": { "bad name!": 1 } }),
    ];
    for body in odd_events {
        let resp = app.post_events(&body).await;
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {body}");
        let text = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{text}"
        );
    }
    for path in [
        "/v1/lookup?kind=&value=",
        "/v1/lookup?kind=email&value=%FF%FE",
        "/v1/profiles/%00",
        "/v1/profiles/..%2F..%2Fetc/graph",
        "/v1/households/hh_99999999999999999999999",
        "/v1/profiles/p_1/explain?a=:&b=:",
    ] {
        let resp = app.get(path).await;
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {path}");
        let text = resp.text().await.unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert!(v["error"]["code"].is_string(), "{path}: {text}");
    }
    let ok = json_ok(app.post_events(&valid()).await).await;
    assert_eq!(ok["status"], "accepted");
}

/// Impossible, mistyped and out-of-range birth dates do not cost the event: the value is
/// kept as written in `birth_date_raw`, the outcome names the trait as ignored, and a
/// plausible historical date (1850) is a birth date.
#[tokio::test]
async fn implausible_birth_dates_are_kept_as_written_not_refused() {
    let app = spawn_app().await;
    for (i, (written, kept)) in [
        ("1990-02-30", None),
        ("31/12/1990", None),
        ("2990-01-01", None),
        ("1850-06-01", Some("1850-06-01")),
        ("19561109", Some("1956-11-09")),
    ]
    .into_iter()
    .enumerate()
    {
        let outcome = json_ok(
            app.post_events(&json!({
                "event_id": format!("bd-{i}"), "source": "web",
                "identifiers": { "email": format!("bd{i}@example.com") },
                "traits": { "birth_date": written },
            }))
            .await,
        )
        .await;
        assert_eq!(outcome["status"], "accepted", "{written}: {outcome}");
        let id = outcome["profile_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let profile = json_ok(app.get(&format!("/v1/profiles/{id}")).await).await;
        match kept {
            Some(date) => {
                assert_eq!(profile["traits"]["birth_date"], date, "{profile}");
                assert!(outcome.get("ignored").is_none(), "{outcome}");
            }
            None => {
                assert!(profile["traits"].get("birth_date").is_none(), "{profile}");
                assert_eq!(
                    profile["traits"]["extra"]["birth_date_raw"], written,
                    "{profile}"
                );
                assert_eq!(
                    outcome["ignored"],
                    json!([{"field": "traits.birth_date", "reason": "invalid_date"}]),
                    "{outcome}"
                );
            }
        }
    }
}

/// Only application/json and `+json` types are JSON; a missing content type is refused
/// like text/plain, on /v1/events and on the routes that take a typed JSON body alike.
#[tokio::test]
async fn json_routes_take_json_media_types_only() {
    let app = spawn_app().await;
    let body = serde_json::to_string(&valid()).unwrap();
    for ct in [Some("text/notjson"), Some("text/json"), None] {
        assert_error(
            app.post_raw(body.clone(), ct).await,
            415,
            "unsupported_media_type",
        )
        .await;
    }
    assert_eq!(json_ok(app.get("/health").await).await["events"], 0);
    let ok = app
        .post_raw(
            body,
            Some("application/vnd.idgraph.event+json; charset=utf-8"),
        )
        .await;
    assert_eq!(ok.status(), 200, "{:?}", ok.text().await);

    // /v1/erasure: a wrong or missing content type is 415, a body over its limit is 413.
    let erasure = app.url("/v1/erasure");
    let ident = r#"{"identifier":"email:a@example.com"}"#;
    for ct in [Some("text/plain"), None] {
        let mut req = app.client.post(&erasure).body(ident);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_error(req.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
    let big = format!(
        r#"{{"identifier":"email:{}@example.com"}}"#,
        "a".repeat(70 * 1024)
    );
    let resp = app
        .client
        .post(&erasure)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;
}

/// A 404's message says "not found" once, after a noun ("no suppression list without a
/// secret not found" was one).
#[tokio::test]
async fn not_found_messages_do_not_repeat_themselves() {
    let app = spawn_app().await;
    let mut messages = Vec::new();
    for path in [
        "/v1/profiles/p_999999999999",
        "/v1/households/hh_999999999999",
        "/v1/lookup?kind=email&value=nobody@example.com",
        "/v1/nothing",
    ] {
        let e = assert_error(app.get(path).await, 404, "not_found").await;
        messages.push(
            e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let e = assert_error(
        app.delete("/v1/suppressions?identifier=email:nobody@example.com")
            .await,
        404,
        "not_found",
    )
    .await;
    messages.push(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    for m in &messages {
        assert!(m.matches("not found").count() <= 1, "{m}");
        assert!(!m.contains("does not exist not found"), "{m}");
        assert!(!m.starts_with("no ") || !m.ends_with("not found"), "{m}");
    }
}

/// Sends a request head and the first bytes of a body over a raw connection, then
/// `after` (more bytes with pauses, or nothing: a stall); returns everything the server
/// wrote until it closed the connection (or 20 s passed).
async fn raw_post(
    address: &str,
    path: &str,
    body: &[u8],
    sent_first: usize,
    pauses: &[(u64, usize)],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        crate::helpers::key_of("test-admin"),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(&body[..sent_first]).await.expect("write");
    let mut at = sent_first;
    for (ms, n) in pauses {
        tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
        let end = (at + n).min(body.len());
        conn.write_all(&body[at..end]).await.expect("write");
        at = end;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        conn.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_and_a_slow_moving_one_is_served() {
    let app = spawn_app_with(|s| s.server.body_idle_timeout_seconds = 1).await;
    let ev = serde_json::to_vec(&event(
        "stall-1",
        "web",
        json!({"email": "stall@example.com"}),
        Value::Null,
    ))
    .expect("json");

    // Ten bytes, then nothing: the raw ingest route and a JSON-extractor route.
    let started = std::time::Instant::now();
    let answer = raw_post(&app.address, "/v1/events", &ev, 10, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "answered, and the connection closed"
    );
    let erasure = br#"{"identifier": "email:stall@example.com"}"#;
    let answer = raw_post(&app.address, "/v1/erasure", erasure, 5, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_error(
        app.lookup("email", "stall@example.com").await,
        404,
        "not_found",
    )
    .await;

    // A body that keeps coming, with gaps shorter than the limit, is read whole.
    let steps: Vec<(u64, usize)> = (0..6).map(|_| (400, ev.len() / 6 + 1)).collect();
    let answer = raw_post(&app.address, "/v1/events", &ev, 1, &steps).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\""), "{answer}");
    json_ok(app.lookup("email", "stall@example.com").await).await;
}

/// Sends `request` as raw bytes and returns the status line and the JSON body of the
/// answer (the connection is closed by the server after these errors).
async fn raw_exchange(address: &str, request: &[u8]) -> (String, Value, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect");
    // The server may answer (and close) before it has read everything.
    let _ = conn.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json, head.to_ascii_lowercase())
}

/// Requests the HTTP layer refuses before any route runs answer in the same JSON error
/// shape as every route (actix-http patched, see vendor/actix-http/IDGRAPH-PATCH.md).
#[tokio::test]
async fn http_layer_errors_have_the_json_error_shape() {
    let app = spawn_app().await;
    let long_uri = format!(
        "GET /v1/lookup?kind=email&value={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let big_head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(140_000)
    );
    let mut bad_bytes = b"GET /v1/profiles/".to_vec();
    bad_bytes.extend_from_slice(&[0xff, 0xfe]);
    bad_bytes.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    for (request, status, code) in [
        (long_uri.into_bytes(), "414", "uri_too_long"),
        (big_head.into_bytes(), "431", "headers_too_large"),
        (bad_bytes, "400", "malformed_request"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            "400",
            "malformed_request",
        ),
    ] {
        let (line, body, head) = raw_exchange(&app.address, &request).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{code}: {line}"
        );
        assert!(
            head.contains("content-type: application/json"),
            "{code}: {head}"
        );
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // The server goes on serving.
    assert_eq!(app.get("/health").await.status(), 200);
}
