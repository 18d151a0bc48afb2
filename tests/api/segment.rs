//! The Segment-compatible tracking API (`/v1/identify` ... `/v1/batch`): each call type
//! resolves like the native event it maps to, batches, gzip (and gzip bombs bounded by
//! `server.max_body_bytes`), `messageId` idempotency, writeKey auth, Segment's error
//! shape, RudderStack's variant and the configurable mapping.

use std::io::Write;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::helpers::{event, json_ok, key_of, spawn_app, spawn_app_with, TestApp};

const ROUTES: [&str; 7] = [
    "/v1/identify",
    "/v1/track",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
];

/// Whether `pattern` is one of the Segment routes (for the authorization matrix).
pub fn is_segment_route(pattern: &str) -> bool {
    ROUTES.contains(&pattern)
}

/// A valid body for Segment route `pattern` naming only a cookie id (for the matrix).
pub fn matrix_body(pattern: &str) -> Value {
    let msg = json!({"anonymousId": "ck-matrix-seg", "event": "Matrix", "groupId": "g-matrix",
                     "previousId": "ck-matrix-prev", "userId": "matrix-seg-user"});
    match pattern {
        "/v1/batch" => json!({"batch": [{"type": "track", "event": "Matrix",
                                         "anonymousId": "ck-matrix-seg"}]}),
        _ => msg,
    }
}

/// A client that sends no key of its own.
fn bare() -> reqwest::Client {
    reqwest::Client::new()
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

async fn seg_post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    bare()
        .post(app.url(path))
        .header("Authorization", basic(&key_of("test-ingest")))
        .json(body)
        .send()
        .await
        .expect("POST failed")
}

/// Asserts Segment's success answer; returns the body.
async fn seg_ok(resp: reqwest::Response) -> Value {
    let body = json_ok(resp).await;
    assert_eq!(body["success"], true, "{body}");
    body
}

/// Asserts an error in Segment's shape (`success: false`, `message`) that also carries
/// idgraph's `error` object with `code`; returns the body.
async fn seg_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "{text}");
    let body: Value = serde_json::from_str(&text).expect("error body is JSON");
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"]["message"], body["message"], "{body}");
    body
}

async fn golden_of(app: &TestApp, kind: &str, value: &str) -> Value {
    let pid = app.pid_of(kind, value).await;
    app.profile(&pid).await
}

/// The Segment calls of one person's journey, and the native events they stand for.
fn journey() -> (Vec<(&'static str, Value)>, Vec<Value>) {
    let t = "2026-03-01T10:00:00.000Z";
    let calls = vec![
        (
            "/v1/page",
            json!({"messageId": "m-page", "anonymousId": "anon-1", "name": "Home",
                   "timestamp": t, "context": {"ip": "10.0.0.1"}}),
        ),
        (
            "/v1/track",
            json!({"messageId": "m-track", "anonymousId": "anon-1", "event": "Signed Up",
                   "properties": {"plan": "pro"}, "timestamp": t,
                   "context": {"traits": {"phone": "+1 415 555 0100"}}}),
        ),
        (
            "/v1/identify",
            json!({"messageId": "m-identify", "userId": "user-1", "anonymousId": "anon-1",
                   "timestamp": t,
                   "traits": {"email": "Ann.Lee@Example.com", "firstName": "Ann",
                              "lastName": "Lee", "plan": "pro",
                              "address": {"street": "1 Main St", "city": "Boston",
                                          "postalCode": "02110", "state": "MA"}},
                   "context": {"device": {"id": "dev-1"}}}),
        ),
        (
            "/v1/screen",
            json!({"messageId": "m-screen", "userId": "user-1", "name": "Settings",
                   "timestamp": t, "context": {"device": {"advertisingId": "adv-1"}}}),
        ),
        (
            "/v1/group",
            json!({"messageId": "m-group", "userId": "user-1", "groupId": "acme",
                   "traits": {"name": "Acme Inc", "employees": 40}, "timestamp": t}),
        ),
        (
            "/v1/alias",
            json!({"messageId": "m-alias", "previousId": "anon-0", "userId": "user-1",
                   "timestamp": t}),
        ),
    ];
    let native = |id: &str, source: &str, ty: &str, ids: Value, traits: Value| {
        let mut e = event(id, source, ids, traits);
        e["type"] = json!(ty);
        e["timestamp"] = json!(t);
        e
    };
    let events = vec![
        native(
            "m-page",
            "web",
            "page",
            json!({"cookie_id": "anon-1"}),
            Value::Null,
        ),
        native(
            "m-track",
            "web",
            "track",
            json!({"cookie_id": "anon-1", "phone": "+1 415 555 0100"}),
            Value::Null,
        ),
        native(
            "m-identify",
            "web",
            "identify",
            json!({"customer_id": "user-1", "cookie_id": "anon-1", "device_id": "dev-1",
                   "email": "Ann.Lee@Example.com"}),
            json!({"first_name": "Ann", "last_name": "Lee", "plan": "pro",
                   "address": {"street": "1 Main St", "city": "Boston",
                               "postal_code": "02110", "region": "MA"}}),
        ),
        native(
            "m-screen",
            "mobile",
            "screen",
            json!({"customer_id": "user-1", "device_id": "adv-1"}),
            Value::Null,
        ),
        native(
            "m-group",
            "web",
            "group",
            json!({"customer_id": "user-1"}),
            Value::Null,
        ),
        native(
            "m-alias",
            "web",
            "alias",
            json!({"customer_id": "user-1", "cookie_id": "anon-0"}),
            Value::Null,
        ),
    ];
    (calls, events)
}

/// What must agree between a profile made by Segment calls and one made by native events.
fn comparable(golden: &Value) -> Value {
    json!({
        "identifiers": golden["identifiers"],
        "traits": golden["traits"],
        "sources": golden["sources"],
    })
}

#[tokio::test]
async fn every_call_type_resolves_exactly_like_its_native_event() {
    let seg = spawn_app().await;
    let native = spawn_app().await;
    let (calls, events) = journey();
    for (path, body) in &calls {
        let out = seg_ok(seg_post(&seg, path, body).await).await;
        assert_eq!(out["accepted"], 1, "{path}: {out}");
    }
    for e in &events {
        native.ingest(e).await;
    }
    let a = golden_of(&seg, "customer_id", "user-1").await;
    let b = golden_of(&native, "customer_id", "user-1").await;
    assert_eq!(comparable(&a), comparable(&b));
    // And what that is: one person holding every identifier, traits renamed.
    let ids = &a["identifiers"];
    for (kind, value) in [
        ("customer_id", "user-1"),
        ("cookie_id", "anon-1"),
        ("cookie_id", "anon-0"),
        ("device_id", "dev-1"),
        ("device_id", "adv-1"),
        ("email", "ann.lee@example.com"),
        ("phone", "+14155550100"),
    ] {
        assert!(
            ids[kind]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == value)),
            "{kind}:{value} missing from {ids}"
        );
    }
    assert_eq!(a["traits"]["first_name"], "Ann", "{a}");
    assert_eq!(a["traits"]["last_name"], "Lee", "{a}");
    // The company's traits of the group call are not the person's.
    assert!(a["traits"].get("employees").is_none(), "{a}");
    // alias linked the earlier anonymous id.
    assert_eq!(
        seg.pid_of("cookie_id", "anon-0").await,
        seg.pid_of("customer_id", "user-1").await
    );
}

#[tokio::test]
async fn batch_with_shared_context_and_write_key_in_the_body() {
    let app = spawn_app().await;
    let body = json!({
        "writeKey": key_of("test-ingest"),
        "context": {"device": {"id": "dev-b"}},
        "sentAt": "2026-03-01T10:00:01.000Z",
        "batch": [
            {"type": "identify", "messageId": "b-1", "userId": "user-b",
             "traits": {"email": "b@example.com"}},
            {"type": "track", "messageId": "b-2", "anonymousId": "anon-b", "event": "Viewed",
             "context": {"traits": {"email": "b@example.com"}}},
            {"type": "page", "messageId": "b-3", "anonymousId": "anon-b", "name": "Pricing"}
        ]
    });
    let out = seg_ok(
        bare()
            .post(app.url("/v1/batch"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out["accepted"], 3, "{out}");
    let g = golden_of(&app, "email", "b@example.com").await;
    assert_eq!(g["identifiers"]["customer_id"], json!(["user-b"]), "{g}");
    assert_eq!(g["identifiers"]["cookie_id"], json!(["anon-b"]), "{g}");
    // The batch's context reached every message.
    assert_eq!(g["identifiers"]["device_id"], json!(["dev-b"]), "{g}");
}

#[tokio::test]
async fn message_id_is_the_idempotency_key() {
    let app = spawn_app().await;
    let msg = json!({"messageId": "dup-1", "userId": "user-d", "traits": {"plan": "a"}});
    let first = seg_ok(seg_post(&app, "/v1/identify", &msg).await).await;
    assert_eq!(
        (first["accepted"].clone(), first["duplicate"].clone()),
        (json!(1), json!(0))
    );
    // The SDK retries the same message (and a batch repeats it): not stored twice.
    let again = seg_ok(seg_post(&app, "/v1/identify", &msg).await).await;
    assert_eq!(
        (again["accepted"].clone(), again["duplicate"].clone()),
        (json!(0), json!(1))
    );
    let batch = json!({"batch": [{"type": "identify", "messageId": "dup-1", "userId": "user-d",
                                  "traits": {"plan": "a"}}]});
    let third = seg_ok(seg_post(&app, "/v1/batch", &batch).await).await;
    assert_eq!(third["duplicate"], 1, "{third}");
    // The same id as a native event is the same event.
    let native = json_ok(
        app.post_events(&event(
            "dup-1",
            "web",
            json!({"customer_id": "user-d"}),
            Value::Null,
        ))
        .await,
    )
    .await;
    assert_eq!(native["status"], "duplicate", "{native}");
    // A message without messageId: an identical retry is still one event.
    let anon = json!({"anonymousId": "anon-noid", "event": "Clicked"});
    seg_ok(seg_post(&app, "/v1/track", &anon).await).await;
    let retry = seg_ok(seg_post(&app, "/v1/track", &anon).await).await;
    assert_eq!(retry["duplicate"], 1, "{retry}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[tokio::test]
async fn gzip_bodies_and_gzip_bombs_bounded_after_decompression() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 64 * 1024).await;
    let body = json!({"batch": [{"type": "identify", "messageId": "gz-1", "userId": "user-gz",
                                 "traits": {"firstName": "Zip"}}]});
    let post = |bytes: Vec<u8>| {
        bare()
            .post(app.url("/v1/batch"))
            .header("Authorization", basic(&key_of("test-ingest")))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(bytes)
            .send()
    };
    let out = seg_ok(
        post(gzip(&serde_json::to_vec(&body).unwrap()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out["accepted"], 1, "{out}");
    assert_eq!(
        golden_of(&app, "customer_id", "user-gz").await["traits"]["first_name"],
        "Zip"
    );
    // 10 MB of JSON whitespace in ~10 KB of gzip: under the limit as sent, over it decoded.
    let mut bomb_json = b"{\"batch\": [".to_vec();
    bomb_json.extend(vec![b' '; 10 * 1024 * 1024]);
    bomb_json.extend(b"]}");
    let bomb = gzip(&bomb_json);
    assert!(bomb.len() < 64 * 1024, "the bomb is {} bytes", bomb.len());
    seg_error(post(bomb).await.unwrap(), 413, "payload_too_large").await;
    // Not gzip at all.
    seg_error(post(b"plain".to_vec()).await.unwrap(), 400, "invalid_body").await;
    // The server is fine afterwards.
    app.pid_of("customer_id", "user-gz").await;
}

#[tokio::test]
async fn write_keys_bad_unknown_and_without_ingest_are_refused_in_segment_shape() {
    let app = spawn_app().await;
    let msg = json!({"userId": "user-k", "event": "X"});
    // Bad writeKey as Basic user, in the body, and none at all.
    let r = bare()
        .post(app.url("/v1/track"))
        .header("Authorization", basic("idg_wrong"))
        .json(&msg)
        .send()
        .await
        .unwrap();
    seg_error(r, 401, "unauthenticated").await;
    let mut with_key = msg.clone();
    with_key["writeKey"] = json!("idg_wrong");
    let r = bare()
        .post(app.url("/v1/track"))
        .json(&with_key)
        .send()
        .await
        .unwrap();
    seg_error(r, 401, "unauthenticated").await;
    let r = bare()
        .post(app.url("/v1/track"))
        .json(&msg)
        .send()
        .await
        .unwrap();
    seg_error(r, 401, "unauthenticated").await;
    // A real key whose role may not ingest.
    let r = bare()
        .post(app.url("/v1/track"))
        .header("Authorization", basic(&key_of("test-analyst")))
        .json(&msg)
        .send()
        .await
        .unwrap();
    seg_error(r, 403, "forbidden").await;
    assert_eq!(
        app.lookup("customer_id", "user-k").await.status(),
        StatusCode::NOT_FOUND
    );
    // idgraph's own header works too.
    let r = bare()
        .post(app.url("/v1/track"))
        .bearer_auth(key_of("test-ingest"))
        .json(&msg)
        .send()
        .await
        .unwrap();
    seg_ok(r).await;
}

#[tokio::test]
async fn an_unknown_type_or_bad_message_refuses_the_whole_batch() {
    let app = spawn_app().await;
    let batch = json!({"batch": [
        {"type": "identify", "messageId": "u-1", "userId": "user-u"},
        {"type": "purchase", "messageId": "u-2", "userId": "user-u"}
    ]});
    let body = seg_error(
        seg_post(&app, "/v1/batch", &batch).await,
        400,
        "unknown_type",
    )
    .await;
    assert_eq!(body["error"]["field"], "batch[1].type", "{body}");
    // Nothing of it was stored.
    assert_eq!(
        app.lookup("customer_id", "user-u").await.status(),
        StatusCode::NOT_FOUND
    );
    // Errors name the message and the Segment field, never the value.
    let batch = json!({"batch": [
        {"type": "identify", "userId": "user-u", "traits": {"email": "not-an-email"}}
    ]});
    let body = seg_error(
        seg_post(&app, "/v1/batch", &batch).await,
        400,
        "invalid_field",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("batch[0].traits.email"), "{body}");
    assert!(!message.contains("not-an-email"), "{body}");
    // No userId nor anonymousId; a track without event; an alias without previousId.
    for (path, msg) in [
        ("/v1/identify", json!({"traits": {"plan": "x"}})),
        ("/v1/track", json!({"userId": "user-u"})),
        ("/v1/alias", json!({"userId": "user-u"})),
        ("/v1/group", json!({"userId": "user-u"})),
    ] {
        seg_error(seg_post(&app, path, &msg).await, 400, "invalid_field").await;
    }
    // Not JSON; not an object; a batch that is not a list.
    let r = bare()
        .post(app.url("/v1/identify"))
        .header("Authorization", basic(&key_of("test-ingest")))
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    seg_error(r, 400, "invalid_json").await;
    seg_error(
        seg_post(&app, "/v1/batch", &json!({"batch": {"type": "identify"}})).await,
        400,
        "invalid_field",
    )
    .await;
    seg_error(
        seg_post(&app, "/v1/track", &json!([1, 2])).await,
        400,
        "invalid_field",
    )
    .await;
    assert_eq!(
        app.lookup("customer_id", "user-u").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn rudderstack_variant_is_accepted() {
    let app = spawn_app().await;
    // What rudder-sdk-node sends: rudderId, channel, originalTimestamp, context.library.
    let batch = json!({"batch": [{
        "type": "identify", "messageId": "r-1", "rudderId": "rid-1", "channel": "server",
        "anonymousId": "anon-r", "userId": "user-r",
        "originalTimestamp": "2026-02-01T00:00:00.000Z", "sentAt": "2026-02-01T00:00:01.000Z",
        "context": {"library": {"name": "@rudderstack/rudder-sdk-node", "version": "3.0.0"},
                    "traits": {"email": "r@example.com"}},
        "traits": {"firstName": "Rudy"},
        "integrations": {"All": true}
    }]});
    seg_ok(seg_post(&app, "/v1/batch", &batch).await).await;
    let g = golden_of(&app, "email", "r@example.com").await;
    assert_eq!(g["identifiers"]["customer_id"], json!(["user-r"]), "{g}");
    assert_eq!(g["traits"]["first_name"], "Rudy", "{g}");
}

#[tokio::test]
async fn the_mapping_is_configurable() {
    let app = spawn_app_with(|s| {
        s.identifiers.custom_kinds.push("crm_id".into());
        s.sources.custom.push("segment".into());
        s.segment.user_id_kind = "loyalty_id".into();
        s.segment.anonymous_id_kind = "device_id".into();
        s.segment
            .identifier_traits
            .insert("crmId".into(), "crm_id".into());
        s.segment
            .trait_names
            .insert("tier".into(), "loyalty_tier".into());
        s.segment.source = "segment".into();
    })
    .await;
    let msg = json!({"userId": "L-77", "anonymousId": "anon-c",
                     "traits": {"crmId": "C-9", "tier": "gold"}});
    seg_ok(seg_post(&app, "/v1/identify", &msg).await).await;
    let g = golden_of(&app, "crm_id", "C-9").await;
    assert_eq!(g["identifiers"]["loyalty_id"], json!(["L-77"]), "{g}");
    assert_eq!(g["identifiers"]["device_id"], json!(["anon-c"]), "{g}");
    assert!(g["identifiers"].get("customer_id").is_none(), "{g}");
    assert_eq!(g["traits"]["extra"]["loyalty_tier"], "gold", "{g}");
    assert!(g["traits"]["extra"].get("crmId").is_none(), "{g}");
    assert_eq!(g["sources"], json!(["segment"]), "{g}");
}

/// Runs an official SDK's script (see `tests/fixtures/segment/`) against `app`.
async fn run_sdk(program: String, args: Vec<String>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fixtures/segment");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} (install the SDKs: ./scripts/segment-sdks.sh): {e}")
            })
    })
    .await
    .expect("SDK task");
    assert!(
        out.status.success(),
        "the SDK run failed ({}); are the SDKs installed (./scripts/segment-sdks.sh)?\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The native events equivalent to the calls of `send.mjs` / `send.py` for `prefix`.
fn sdk_native_events(prefix: &str, with_screen: bool) -> Vec<Value> {
    let (user, anon) = (format!("{prefix}-user"), format!("{prefix}-anon"));
    let mut events = vec![
        event(
            &format!("{prefix}-n1"),
            "web",
            json!({"customer_id": user, "cookie_id": anon, "email": format!("{prefix}@example.com")}),
            json!({"first_name": "Sdk", "last_name": prefix, "plan": "pro"}),
        ),
        event(
            &format!("{prefix}-n2"),
            "web",
            json!({"cookie_id": anon, "device_id": format!("{prefix}-device")}),
            Value::Null,
        ),
        event(
            &format!("{prefix}-n3"),
            "web",
            json!({"customer_id": user}),
            Value::Null,
        ),
        event(
            &format!("{prefix}-n5"),
            "web",
            json!({"customer_id": user}),
            Value::Null,
        ),
        event(
            &format!("{prefix}-n6"),
            "web",
            json!({"customer_id": user, "cookie_id": format!("{prefix}-prev")}),
            Value::Null,
        ),
    ];
    if with_screen {
        events.push(event(
            &format!("{prefix}-n4"),
            "mobile",
            json!({"customer_id": user}),
            Value::Null,
        ));
    }
    events
}

async fn assert_sdk_resolved_like_native(app: &TestApp, prefix: &str, with_screen: bool) {
    let native = spawn_app().await;
    for e in sdk_native_events(prefix, with_screen) {
        native.ingest(&e).await;
    }
    let user = format!("{prefix}-user");
    let got = golden_of(app, "customer_id", &user).await;
    let want = golden_of(&native, "customer_id", &user).await;
    assert_eq!(comparable(&got), comparable(&want));
    assert_eq!(
        got["identifiers"]["email"],
        json!([format!("{prefix}@example.com")]),
        "{got}"
    );
    assert_eq!(got["traits"]["first_name"], "Sdk", "{got}");
}

#[tokio::test]
async fn official_segment_node_sdk() {
    let app = spawn_app().await;
    run_sdk(
        "node".into(),
        vec![
            "send.mjs".into(),
            "segment".into(),
            app.url(""),
            key_of("test-ingest"),
            "sdknode".into(),
        ],
    )
    .await;
    assert_sdk_resolved_like_native(&app, "sdknode", true).await;
}

#[tokio::test]
async fn official_segment_python_library() {
    let app = spawn_app().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".cache/segment-venv/bin/python");
    run_sdk(
        python.display().to_string(),
        vec![
            "send.py".into(),
            app.url(""),
            key_of("test-ingest"),
            "sdkpy".into(),
        ],
    )
    .await;
    assert_sdk_resolved_like_native(&app, "sdkpy", true).await;
}

#[tokio::test]
async fn rudderstack_node_sdk() {
    let app = spawn_app().await;
    run_sdk(
        "node".into(),
        vec![
            "send.mjs".into(),
            "rudder".into(),
            app.url(""),
            key_of("test-ingest"),
            "sdkrudder".into(),
        ],
    )
    .await;
    assert_sdk_resolved_like_native(&app, "sdkrudder", false).await;
}

#[tokio::test]
async fn an_sdk_with_a_bad_write_key_fails_without_retrying_forever() {
    let app = spawn_app().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fixtures/segment");
    let url = app.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(["send.mjs", "segment", url.as_str(), "idg_wrong", "sdkbad"])
            .current_dir(&dir)
            .output()
            .expect("node")
    })
    .await
    .expect("SDK task");
    // The SDK reports the refusal and ends (its retries are for 429 and 5xx only).
    assert!(!out.status.success(), "a bad writeKey was not reported");
    assert_eq!(
        app.lookup("customer_id", "sdkbad-user").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Segment's consent management (`context.consent.categoryPreferences`) becomes consent
/// statements through `segment.consent_categories`; a later call withdraws; a category
/// that is not true/false is refused naming it, and nothing is stored.
#[tokio::test]
async fn consent_category_preferences_become_consent_statements() {
    let app = spawn_app().await;
    let call = |id: &str, t: &str, ads: Value| {
        json!({"messageId": id, "userId": "cons-1", "timestamp": t,
               "traits": {"email": "cons@example.com"},
               "context": {"consent": {"categoryPreferences": {
                   "Advertising": ads, "Analytics": true, "C0004": false}}}})
    };
    seg_ok(
        seg_post(
            &app,
            "/v1/identify",
            &call("c-1", "2026-03-01T10:00:00Z", json!(true)),
        )
        .await,
    )
    .await;
    let g = golden_of(&app, "email", "cons@example.com").await;
    assert_eq!(g["consents"]["advertising"]["state"], "granted", "{g}");
    assert_eq!(g["consents"]["analytics"]["state"], "granted", "{g}");
    assert_eq!(g["consents"]["advertising"]["source"], "web", "{g}");
    assert_eq!(
        g["consents"].as_object().map(|c| c.len()),
        Some(2),
        "unmapped categories are ignored: {g}"
    );
    seg_ok(
        seg_post(
            &app,
            "/v1/identify",
            &call("c-2", "2026-03-02T10:00:00Z", json!(false)),
        )
        .await,
    )
    .await;
    let g = golden_of(&app, "email", "cons@example.com").await;
    assert_eq!(g["consents"]["advertising"]["state"], "denied", "{g}");
    let body = seg_error(
        seg_post(
            &app,
            "/v1/identify",
            &call("c-3", "2026-03-03T10:00:00Z", json!("yes")),
        )
        .await,
        400,
        "invalid_field",
    )
    .await;
    assert_eq!(
        body["error"]["field"], "context.consent.categoryPreferences.Advertising",
        "{body}"
    );
    let g = golden_of(&app, "email", "cons@example.com").await;
    assert_eq!(g["consents"]["advertising"]["state"], "denied", "{g}");
}
