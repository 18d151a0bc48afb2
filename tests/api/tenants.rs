//! Tenants over HTTP: the operator's routes and their refusals, a tenant's own settings,
//! quotas (429 naming the quota), usage in the operator's view and `/metrics`, suspension
//! (403 naming it), keys created and revoked, deletion with all data (every file scanned),
//! and the registry across restarts of the real binary (a crashed deletion finished).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{event, files_holding, key_of, metric_sample, spawn_app_with, ServeProcess};

/// Sends `body` to `base + path` with `key`; the status, `Retry-After` and JSON answer.
async fn send(
    base: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client
        .request(method, format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.expect("body");
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn operator() -> String {
    key_of("test-operator")
}

const LENA: &str = "lena.loyal@acme.example";

fn acme_event(id: &str, n: usize) -> Value {
    event(
        id,
        "kiosk",
        json!({"email": format!("{n}.{LENA}"), "loyalty_id": format!("LOY-{n}")}),
        json!({"first_name": "Lena", "last_name": "Loyalheart"}),
    )
}

#[tokio::test]
async fn the_operator_creates_limits_suspends_and_deletes_a_tenant_with_its_data() {
    let app = spawn_app_with(|s| {
        s.backup.dir = Some(s.storage.data_dir.with_extension("backups"));
    })
    .await;
    let base = app.address.clone();
    let backups = app.data_dir().with_extension("backups");
    let op = operator();

    // Refusals name the problem, and create nothing.
    for (body, status, code, field) in [
        (
            json!({"id": "Acme Corp"}),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (
            json!({"id": "a".repeat(33)}),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (
            json!({"id": "../etc"}),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (json!({"id": "default"}), 409, "tenant_exists", None),
        (
            json!({"id": "acme", "settings": {"server": {"bind": "0.0.0.0:80"}}}),
            400,
            "invalid_parameter",
            Some("settings"),
        ),
        (
            json!({"id": "acme", "settings": {"matching": {"model": "/etc/passwd"}}}),
            400,
            "invalid_parameter",
            Some("settings"),
        ),
    ] {
        let (s, _, v) = send(&base, &op, Method::POST, "/v1/tenants", Some(body.clone())).await;
        assert_eq!(s.as_u16(), status, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{v}");
        }
    }
    let (_, _, list) = send(&base, &op, Method::GET, "/v1/tenants", None).await;
    assert_eq!(list["tenants"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["tenants"][0]["id"], "default");
    assert!(!app.data_dir().join("tenants/acme").exists());

    // A tenant with its own identifier kind and a daily quota.
    let (s, _, created) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants",
        Some(json!({"id": "acme", "quotas": {"events_per_day": 5},
                    "settings": {"identifiers": {"custom_kinds": ["loyalty_id"]},
                                 "sources": {"custom": ["kiosk"]}}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["admin_key"]["name"], "acme-admin");
    let acme = created["admin_key"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_eq!(created["tenant"]["status"], "active");
    assert!(
        created["tenant"]["usage"]["storage_bytes"].as_u64() > Some(0),
        "{created}"
    );
    let (s, _, v) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("tenant_exists"))
    );

    // The tenant's settings are its own: kiosk is a source there, not in the default.
    let (s, _, out) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/events",
        Some(acme_event("e1", 1)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let (s, _, v) = send(
        &base,
        &key_of("test-admin"),
        Method::POST,
        "/v1/events",
        Some(acme_event("e1", 1)),
    )
    .await;
    assert!(
        s.is_client_error(),
        "the default tenant has no kiosk source: {v}"
    );
    assert!(v.to_string().contains("unknown source"), "{v}");

    // The daily quota: 5 events, then 429 naming it; the default tenant is not limited.
    let batch: Vec<Value> = (2..=5).map(|n| acme_event(&format!("e{n}"), n)).collect();
    let (s, _, v) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/events",
        Some(Value::Array(batch)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, retry, v) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/events",
        Some(acme_event("e6", 6)),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded");
    assert_eq!(v["error"]["field"], "events_per_day");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("events_per_day (5)"),
        "{v}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=86_400).contains(&retry), "{retry}");
    let (s, _, v) = send(
        &base,
        &key_of("test-admin"),
        Method::POST,
        "/v1/events",
        Some(event(
            "d1",
            "web",
            json!({"cookie_id": "ck-default-1"}),
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The profiles quota: at the tenant's profile count, ingest is refused naming it.
    let (s, _, view) = send(
        &base,
        &op,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"quotas": {"profiles": 5}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["usage"]["profiles"], 5, "{view}");
    let (s, _, v) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/events",
        Some(acme_event("e7", 7)),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::TOO_MANY_REQUESTS, &json!("profiles")),
        "{v}"
    );
    let (s, _, _) = send(
        &base,
        &op,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"quotas": {}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/events",
        Some(acme_event("e7", 7)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Usage for cost allocation: the operator's view and /metrics agree.
    let (_, _, view) = send(&base, &op, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(view["usage"]["events_total"], 6, "{view}");
    assert_eq!(view["usage"]["events_today"], 6, "{view}");
    assert_eq!(view["usage"]["profiles"], 6, "{view}");
    let requests = view["usage"]["requests_total"].as_u64().expect("requests");
    assert!(requests >= 5, "{view}");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(
        metric_sample(&metrics, "idgraph_tenant_events_total{tenant=\"acme\"}"),
        Some(6.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(&metrics, "idgraph_tenant_profiles{tenant=\"acme\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric_sample(&metrics, "idgraph_tenant_events_total{tenant=\"default\"}"),
        Some(1.0)
    );
    assert!(
        metric_sample(&metrics, "idgraph_tenant_requests_total{tenant=\"acme\"}")
            >= Some(requests as f64)
    );

    // Roles stay apart: a tenant admin manages no tenant, the operator reads no data.
    let (s, _, v) = send(&base, &acme, Method::GET, "/v1/tenants", None).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (s, _, _) = send(&base, &op, Method::GET, "/v1/search?q=Lena", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A tenant key in a Segment body (unseen by the routing) is refused, nothing written.
    let mut seg = crate::segment::matrix_body("/v1/identify");
    seg["writeKey"] = json!(acme);
    let resp = reqwest::Client::new()
        .post(app.url("/v1/identify"))
        .json(&seg)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "tenant_key_not_in_header", "{v}");

    // /health's counts are the default tenant's: not for another tenant's key.
    let health = |key: String| {
        let url = app.url("/health");
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .expect("health");
            resp.json::<Value>().await.expect("json")
        }
    };
    assert!(health(key_of("test-admin")).await["events"].is_u64());
    assert_eq!(health(acme.clone()).await, json!({"status": "ok"}));

    // Keys: created for a role, names unique, revoked.
    let (s, _, k) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants/acme/keys",
        Some(json!({"name": "acme-agent", "role": "agent"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let agent = k["key"].as_str().expect("key").to_owned();
    let (s, _, found) = send(&base, &agent, Method::GET, "/v1/search?q=Loyalheart", None).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    for (body, field) in [
        (json!({"name": "acme-agent", "role": "agent"}), "name"),
        (json!({"name": "test-admin", "role": "admin"}), "name"),
        (json!({"name": "x", "role": "operator"}), "role"),
        (
            json!({"name": "y", "role": "service", "unmask": true}),
            "unmask",
        ),
    ] {
        let (s, _, v) = send(
            &base,
            &op,
            Method::POST,
            "/v1/tenants/acme/keys",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (s, _, _) = send(
        &base,
        &op,
        Method::DELETE,
        "/v1/tenants/acme/keys/acme-agent",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = send(&base, &agent, Method::GET, "/v1/search?q=Loyalheart", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Suspension: every key of the tenant gets 403 naming it; the default goes on.
    let (s, _, v) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants/acme/suspend",
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("reason"))
    );
    let (s, _, view) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants/acme/suspend",
        Some(json!({"reason": "invoice overdue"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "suspended");
    for path in ["/v1/search?q=Lena", "/v1/tenants", "/v1/config"] {
        let (s, _, v) = send(&base, &acme, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert_eq!(v["error"]["code"], "tenant_suspended");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("\"acme\" is suspended") && msg.contains("invoice overdue"),
            "{msg}"
        );
    }
    let (s, _, _) = send(
        &base,
        &key_of("test-admin"),
        Method::GET,
        "/v1/search?q=x",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants/default/suspend",
        Some(json!({"reason": "no"})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let (s, _, _) = send(&base, &op, Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(&base, &acme, Method::GET, "/v1/search?q=Lena", None).await;
    assert_eq!(s, StatusCode::OK);

    // A backup of the tenant lands under the backup directory's tenants/acme.
    let (s, _, b) = send(
        &base,
        &acme,
        Method::POST,
        "/v1/admin/backup",
        Some(json!({})),
    )
    .await;
    assert!(s.is_success(), "{b}");
    // The tenant's values are in its files (plain here: values are compressed in SST
    // files, so each needle is looked for, and at least one must be found).
    let needles = ["Loyalheart", "loyalheart", LENA, "LOY-3"];
    let held = |dir: &std::path::Path| !files_holding(dir, &needles).is_empty();
    assert!(
        held(&backups.join("tenants/acme")),
        "the backup holds the tenant's data"
    );
    assert!(
        held(&app.data_dir().join("tenants/acme")),
        "the store holds it"
    );

    // Deletion with all data: keys refused, files gone, not a byte of it anywhere.
    let (s, _, v) = send(&base, &op, Method::DELETE, "/v1/tenants/default", None).await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let (s, _, v) = send(&base, &op, Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["bytes_removed"].as_u64() > Some(0), "{v}");
    let (s, _, _) = send(&base, &acme, Method::GET, "/v1/search?q=Lena", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(&base, &op, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!app.data_dir().join("tenants/acme").exists());
    assert!(!backups.join("tenants/acme").exists());
    for dir in [app.data_dir().to_path_buf(), backups.clone()] {
        let left = files_holding(&dir, &needles);
        assert!(left.is_empty(), "still there: {left:?}");
    }
    // The id can be used again, for a new, empty tenant.
    let (s, _, again) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["tenant"]["usage"]["profiles"], 0, "{again}");
    // The default tenant's data is untouched.
    let (s, _, _) = send(
        &base,
        &key_of("test-service"),
        Method::GET,
        "/v1/lookup?kind=cookie_id&value=ck-default-1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn tenants_survive_a_restart_and_a_crashed_deletion_is_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::start(dir.path());
    let base = server.url("").trim_end_matches('/').to_owned();
    let op = operator();
    let mut keys = Vec::new();
    for id in ["brand-1", "brand-2"] {
        let (s, _, created) = send(
            &base,
            &op,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": id, "quotas": {"events_per_day": 100}})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let key = created["admin_key"]["key"]
            .as_str()
            .expect("key")
            .to_owned();
        let (s, _, v) = send(
            &base,
            &key,
            Method::POST,
            "/v1/events",
            Some(event(
                &format!("{id}-1"),
                "crm",
                json!({"customer_id": format!("{id}-C")}),
                json!({}),
            )),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        keys.push(key);
    }
    let (s, _, _) = send(
        &base,
        &op,
        Method::POST,
        "/v1/tenants/brand-1/suspend",
        Some(json!({"reason": "paused by contract"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(server.terminate().success());
    // A deletion that crashed after marking the tenant: the next start finishes it.
    let registry = dir.path().join("tenants/registry.json");
    let mut r: Value =
        serde_json::from_slice(&std::fs::read(&registry).expect("registry")).expect("json");
    for t in r["tenants"].as_array_mut().expect("tenants") {
        if t["id"] == "brand-2" {
            t["status"] = json!({"state": "deleting"});
        }
    }
    std::fs::write(&registry, serde_json::to_vec(&r).expect("json")).expect("write");

    let mut server = ServeProcess::start(dir.path());
    let base = server.url("").trim_end_matches('/').to_owned();
    let (s, _, v) = send(
        &base,
        &keys[0],
        Method::GET,
        "/v1/lookup?kind=customer_id&value=brand-1-C",
        None,
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("tenant_suspended")),
        "{v}"
    );
    let (s, _, _) = send(&base, &op, Method::POST, "/v1/tenants/brand-1/resume", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = send(
        &base,
        &keys[0],
        Method::GET,
        "/v1/lookup?kind=customer_id&value=brand-1-C",
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the tenant's data and key survive a restart: {v}"
    );
    let (_, _, view) = send(&base, &op, Method::GET, "/v1/tenants/brand-1", None).await;
    assert_eq!(
        view["usage"]["events_today"], 1,
        "the day's count survives: {view}"
    );
    assert_eq!(view["quotas"]["events_per_day"], 100);
    let (s, _, _) = send(
        &base,
        &keys[1],
        Method::GET,
        "/v1/lookup?kind=customer_id&value=brand-2-C",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!dir.path().join("tenants/brand-2").exists());
    let (_, _, list) = send(&base, &op, Method::GET, "/v1/tenants", None).await;
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["default", "brand-1"]);
    assert!(server.terminate().success());
}
