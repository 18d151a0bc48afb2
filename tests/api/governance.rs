//! Governance over HTTP: the authorization matrix (every route x every role, no key, a bad
//! key), masking and pseudonymization with no personal value leaking, rate limits, the
//! audit trail, and a log canary on the real binary.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    event, http_client, json_ok, key_of, spawn_app, spawn_app_with, ServeProcess, TestApp,
    TEST_KEYS,
};

const EMAIL: &str = "canary.person@example.com";
const PHONE: &str = "+14155550199";
const PHONE_DIGITS: &str = "4155550199";
const BIRTH: &str = "1971-02-03";
const STREET: &str = "77 Canarywharf Lane";
const POSTCODE: &str = "94110";
const CUSTOMER: &str = "CANARY-C-77";

fn canary_event(id: &str) -> Value {
    event(
        id,
        "crm",
        json!({"email": EMAIL, "phone": PHONE, "customer_id": CUSTOMER, "device_id": "dev-canary-1"}),
        json!({"first_name": "Ottoline", "last_name": "Quibble", "birth_date": BIRTH,
               "address": {"street": STREET, "city": "San Francisco", "postal_code": POSTCODE}}),
    )
}

/// Sends a request with `key` (or none).
async fn call(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client.request(method, app.url(path));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Roles allowed, from the route table (`governance::access::ROUTES`).
    roles: Vec<&'static str>,
}

/// A concrete request for every route of the access table (the single source of truth:
/// a route added to it without a request here fails the matrix).
fn routes(pid: &str, hh: &str) -> Vec<Route> {
    use idgraph::governance::access::ROUTES;
    use idgraph::governance::keys::Role;
    let enc = |s: &str| {
        s.replace('+', "%2B")
            .replace('@', "%40")
            .replace(':', "%3A")
    };
    ROUTES
        .iter()
        .map(|rule| {
            let (path, body) = match rule.pattern {
                "/v1/events" => (
                    "/v1/events".to_owned(),
                    Some(event(
                        "matrix-1",
                        "web",
                        json!({"cookie_id": "ck-matrix"}),
                        json!({}),
                    )),
                ),
                p if super::segment::is_segment_route(p) => {
                    (p.to_owned(), Some(super::segment::matrix_body(p)))
                }
                "/v1/lookup" => (format!("/v1/lookup?kind=email&value={}", enc(EMAIL)), None),
                "/v1/profiles/{id}" => (format!("/v1/profiles/{pid}"), None),
                "/v1/search" => ("/v1/search?q=Quibble".to_owned(), None),
                "/v1/profiles/{id}/devices" => (format!("/v1/profiles/{pid}/devices"), None),
                "/v1/profiles/{id}/household" => (format!("/v1/profiles/{pid}/household"), None),
                "/v1/households/{id}" => (format!("/v1/households/{hh}"), None),
                "/v1/profiles/{id}/graph" => (format!("/v1/profiles/{pid}/graph"), None),
                "/v1/profiles/{id}/explain" => (
                    format!(
                        "/v1/profiles/{pid}/explain?a=customer_id%3A{CUSTOMER}&b=device_id%3Adev-canary-1"
                    ),
                    None,
                ),
                "/v1/profiles/{id}/history" => (format!("/v1/profiles/{pid}/history"), None),
                "/v1/explain" => (
                    format!("/v1/explain?a=customer_id%3A{CUSTOMER}&b=cookie_id%3Ack-matrix"),
                    None,
                ),
                "/v1/changes" => ("/v1/changes?after=0&limit=1000".to_owned(), None),
                // Defining the same audience again is idempotent (200), so every allowed
                // role succeeds.
                "/v1/audiences" if rule.method == "POST" => (
                    "/v1/audiences".to_owned(),
                    Some(json!({"id": "matrix", "filter": "has(customer_id)", "purpose": "analytics"})),
                ),
                "/v1/audiences" => ("/v1/audiences".to_owned(), None),
                "/v1/audiences/estimate" => (
                    "/v1/audiences/estimate".to_owned(),
                    Some(json!({"filter": "has(customer_id)", "purpose": "analytics"})),
                ),
                "/v1/audiences/{id}" if rule.method == "DELETE" => {
                    ("/v1/audiences/none".to_owned(), None)
                }
                "/v1/audiences/{id}" => ("/v1/audiences/matrix".to_owned(), None),
                "/v1/audiences/{id}/members" => ("/v1/audiences/matrix/members".to_owned(), None),
                // No such audience: allowed roles get 404.
                "/v1/audiences/{id}/destinations" => (
                    "/v1/audiences/none/destinations".to_owned(),
                    Some(json!({"destinations": []})),
                ),
                "/v1/exports/{kind}" => ("/v1/exports/profiles".to_owned(), None),
                "/v1/links" => (
                    "/v1/links?a=cookie_id%3Anone-1&b=cookie_id%3Anone-2".to_owned(),
                    None,
                ),
                "/v1/identifiers/{kind}/{value:.*}" => {
                    ("/v1/identifiers/cookie_id/none-3".to_owned(), None)
                }
                // Targets that do not exist: the matrix must not erase its own fixture.
                "/v1/erasure" => (
                    "/v1/erasure".to_owned(),
                    Some(json!({"identifier": "cookie_id:none-4"})),
                ),
                "/v1/suppressions" => (
                    "/v1/suppressions?identifier=cookie_id%3Anone-5".to_owned(),
                    None,
                ),
                // The canary's whole document for the admin (a read: nothing changes).
                "/v1/subject-access" => (
                    "/v1/subject-access".to_owned(),
                    Some(json!({"identifier": format!("email:{EMAIL}")})),
                ),
                "/v1/audit" => ("/v1/audit".to_owned(), None),
                "/v1/review" => ("/v1/review".to_owned(), None),
                // No such item: the admin gets 404, and nothing is decided.
                "/v1/review/{seq}" => (
                    "/v1/review/999999".to_owned(),
                    Some(json!({"decision": "reject", "reason": "matrix"})),
                ),
                // Profiles that do not exist: the admin gets 404, and nothing changes.
                "/v1/profiles/merge" => (
                    "/v1/profiles/merge".to_owned(),
                    Some(json!({"profiles": ["p_000000999998", "p_000000999999"], "reason": "matrix"})),
                ),
                "/v1/profiles/{id}/split" => (
                    "/v1/profiles/p_000000999999/split".to_owned(),
                    Some(json!({"mode": "identifiers", "reason": "matrix"})),
                ),
                "/v1/profiles/{id}/values" => (format!("/v1/profiles/{pid}/values"), None),
                // One route, two methods: PUT pins a value on a profile that does not exist
                // (404); DELETE lifts a pin that does not exist on the canary (404).
                "/v1/profiles/{id}/pins/{name}" if rule.method == "PUT" => (
                    "/v1/profiles/p_000000999999/pins/first_name".to_owned(),
                    Some(json!({"value": "Matrix", "reason": "matrix"})),
                ),
                "/v1/profiles/{id}/pins/{name}" => (
                    format!("/v1/profiles/{pid}/pins/first_name?reason=matrix"),
                    None,
                ),
                "/v1/config" => ("/v1/config".to_owned(), None),
                // Re-renders the matrix's few profiles (or answers the running run).
                // Into the server's backup.dir.
                "/v1/admin/backup" => ("/v1/admin/backup".to_owned(), Some(json!({}))),
                "/v1/admin/reresolve" => ("/v1/admin/reresolve".to_owned(), None),
                "/v1/webhooks" => ("/v1/webhooks".to_owned(), None),
                "/v1/destinations" => ("/v1/destinations".to_owned(), None),
                "/v1/stats" => ("/v1/stats".to_owned(), None),
                // No destination is configured: the name is not found.
                "/v1/destinations/{name}/resync" => {
                    ("/v1/destinations/none/resync".to_owned(), None)
                }
                // No webhook is configured: the name is not found.
                "/v1/webhooks/{name}/replay" => (
                    "/v1/webhooks/none/replay".to_owned(),
                    Some(json!({"after": 0})),
                ),
                // Replication is off in the matrix's server: the admin gets 404.
                "/v1/replication/log" => ("/v1/replication/log?after=0".to_owned(), None),
                "/v1/replication/snapshot" => ("/v1/replication/snapshot".to_owned(), None),
                "/v1/replication/snapshot/{id}/{file}" => {
                    ("/v1/replication/snapshot/1/CURRENT".to_owned(), None)
                }
                // The operator's routes: one tenant created, the others name a tenant
                // that does not exist (404).
                "/v1/tenants" if rule.method == "POST" => (
                    "/v1/tenants".to_owned(),
                    Some(json!({"id": "matrix"})),
                ),
                "/v1/tenants" => ("/v1/tenants".to_owned(), None),
                "/v1/tenants/{id}" if rule.method == "PATCH" => (
                    "/v1/tenants/none".to_owned(),
                    Some(json!({"quotas": {"events_per_day": 10}})),
                ),
                "/v1/tenants/{id}" => ("/v1/tenants/none".to_owned(), None),
                "/v1/tenants/{id}/suspend" => (
                    "/v1/tenants/none/suspend".to_owned(),
                    Some(json!({"reason": "matrix"})),
                ),
                "/v1/tenants/{id}/resume" => ("/v1/tenants/none/resume".to_owned(), None),
                "/v1/tenants/{id}/keys" => (
                    "/v1/tenants/none/keys".to_owned(),
                    Some(json!({"name": "matrix-key", "role": "agent"})),
                ),
                "/v1/tenants/{id}/keys/{name}" => {
                    ("/v1/tenants/none/keys/matrix-key".to_owned(), None)
                }
                other => panic!("the matrix has no request for route {other}: add one"),
            };
            Route {
                method: Method::from_bytes(rule.method.as_bytes()).expect("an HTTP method"),
                path,
                body,
                roles: Role::ALL
                    .into_iter()
                    .filter(|r| r.allows(rule.permission))
                    .map(Role::name)
                    .collect(),
            }
        })
        .collect()
}

/// The personal values a role may not see in any answer.
fn forbidden_values(role: &str, unmasked: bool) -> Vec<&'static str> {
    match (role, unmasked) {
        ("agent", false) => vec![EMAIL, PHONE_DIGITS, BIRTH, STREET, POSTCODE],
        ("analyst", _) => vec![
            EMAIL,
            PHONE_DIGITS,
            BIRTH,
            STREET,
            POSTCODE,
            CUSTOMER,
            "dev-canary-1",
        ],
        _ => vec![],
    }
}

#[tokio::test]
async fn every_route_checks_the_role_and_no_masked_value_leaks() {
    // Besides the test keys, one key per role scoped to the `pos` source: the canary
    // profile (crm data only) is outside its scope.
    let app = spawn_app_with(|s| {
        // Every route is called without a key: the matrix wants each one's 401, not the
        // throttle of repeated failures (tested on its own below).
        s.auth.failed_auth_per_minute = 0;
        // Where the admin's backup goes (a sibling of the data directory, removed below).
        s.backup.dir = Some(s.storage.data_dir.with_extension("backups"));
        for (name, role, unmask) in TEST_KEYS {
            if role == idgraph::governance::keys::Role::Operator {
                continue; // an operator key reads no profiles: it cannot be scoped
            }
            s.auth.keys.push(idgraph::governance::keys::KeySettings {
                name: format!("scoped-{name}"),
                role,
                hash: idgraph::governance::keys::hash_key(&format!("idg_scoped-{name}")),
                unmask,
                rate_per_second: 1_000_000.0,
                burst: 1_000_000,
                sources: vec!["pos".into()],
                tenant: None,
            });
        }
    })
    .await;
    let out = app.ingest(&canary_event("canary-1")).await;
    let pid = out["profile_id"].as_str().expect("profile id").to_owned();
    let profile = app.profile(&pid).await;
    let hh = format!("hh_{}", &pid[2..]);
    assert!(profile["household_id"].is_null() || profile["household_id"].is_string());

    for route in routes(&pid, &hh) {
        // No key, and a key that is not configured: 401 with a Bearer challenge.
        for key in [None, Some("idg_not_a_configured_key")] {
            let (status, body) = call(
                &app,
                key,
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {} with {key:?}: {body}",
                route.method,
                route.path
            );
            assert!(body.contains("unauthenticated"), "{body}");
        }
        for (name, role, unmask) in TEST_KEYS {
            let role = role.name();
            let key = key_of(name);
            let (status, body) = call(
                &app,
                Some(&key),
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            )
            .await;
            let allowed = route.roles.contains(&role);
            if !allowed {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} on {} {}: {body}",
                    route.method,
                    route.path
                );
                assert!(body.contains("forbidden"), "{body}");
                continue;
            }
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name} on {}: {body}",
                route.path
            );
            assert_ne!(
                status,
                StatusCode::FORBIDDEN,
                "{name} on {}: {body}",
                route.path
            );
            assert!(
                status.is_success() || status == StatusCode::NOT_FOUND,
                "{name} on {} {}: {status} {body}",
                route.method,
                route.path
            );
            for value in forbidden_values(role, unmask) {
                assert!(
                    !body.contains(value),
                    "{name} saw {value} in {} {}: {body}",
                    route.method,
                    route.path
                );
            }
        }
    }

    // The same routes with keys scoped away from the canary profile: not a trace of it.
    for route in routes(&pid, &hh) {
        for (name, role, _) in TEST_KEYS {
            if role == idgraph::governance::keys::Role::Operator {
                continue;
            }
            let role = role.name();
            let key = format!("idg_scoped-{name}");
            let (status, body) = call(
                &app,
                Some(&key),
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            )
            .await;
            let allowed = route.roles.contains(&role);
            let expected = match (allowed, route.method.as_str(), route.path.as_str()) {
                (false, _, _) => StatusCode::FORBIDDEN,
                // A web event from a pos-only key.
                (true, "POST", "/v1/events") => StatusCode::FORBIDDEN,
                // Segment calls come from source web (mobile for screen), not pos.
                (true, "POST", p) if super::segment::is_segment_route(p) => StatusCode::FORBIDDEN,
                // Suppressions belong to no source: never lifted with a scoped key; the
                // replication log and snapshots hold everyone; review items pair people of
                // any source.
                (true, _, p)
                    if p.starts_with("/v1/suppressions")
                        || p.starts_with("/v1/replication")
                        || p.starts_with("/v1/review")
                        || p.starts_with("/v1/audiences")
                        || p.starts_with("/v1/destinations")
                        || p.starts_with("/v1/stats")
                        || p.starts_with("/v1/admin") =>
                {
                    StatusCode::FORBIDDEN
                }
                (true, _, p)
                    if p.starts_with("/v1/search")
                        || p.starts_with("/v1/changes")
                        || p.starts_with("/v1/exports")
                        || p.starts_with("/v1/audit")
                        || p == "/v1/webhooks"
                        || p.starts_with("/v1/config") =>
                {
                    StatusCode::OK
                }
                (true, _, _) => StatusCode::NOT_FOUND,
            };
            assert_eq!(
                status, expected,
                "scoped {name} on {} {}: {body}",
                route.method, route.path
            );
            for value in [
                EMAIL,
                PHONE_DIGITS,
                BIRTH,
                STREET,
                POSTCODE,
                CUSTOMER,
                "dev-canary-1",
                "Quibble",
            ] {
                // (A search echoes its own query, which is the caller's input.)
                if route.path.contains(value) {
                    continue;
                }
                assert!(
                    !body.contains(value),
                    "scoped {name} saw {value} in {}: {body}",
                    route.path
                );
            }
            if route.path.starts_with("/v1/search") && status == StatusCode::OK {
                assert!(body.contains("\"total\":0"), "the count is scoped: {body}");
            }
            if route.path.starts_with("/v1/exports") && status == StatusCode::OK {
                assert!(body.is_empty(), "the export is scoped: {body}");
            }
            if route.path.starts_with("/v1/changes") && status == StatusCode::OK {
                assert!(
                    body.contains("\"changes\":[]"),
                    "the feed is scoped: {body}"
                );
            }
        }
    }

    // What each role sees of the profile.
    let (_, agent) = call(
        &app,
        Some(&key_of("test-agent")),
        Method::GET,
        &format!("/v1/profiles/{pid}"),
        None,
    )
    .await;
    let agent: Value = serde_json::from_str(&agent).expect("json");
    assert_eq!(
        agent["identifiers"]["email"][0], "c***@example.com",
        "{agent}"
    );
    assert_eq!(
        agent["identifiers"]["phone"][0], "+1 *** *** 0199",
        "{agent}"
    );
    assert_eq!(
        agent["traits"]["last_name"], "Quibble",
        "names stay readable"
    );
    let (_, unmasked) = call(
        &app,
        Some(&key_of("test-agent-unmasked")),
        Method::GET,
        &format!("/v1/profiles/{pid}"),
        None,
    )
    .await;
    assert!(
        unmasked.contains(EMAIL) && unmasked.contains(STREET),
        "{unmasked}"
    );
    let (_, graph) = call(
        &app,
        Some(&key_of("test-analyst")),
        Method::GET,
        &format!("/v1/profiles/{pid}/graph"),
        None,
    )
    .await;
    let graph: Value = serde_json::from_str(&graph).expect("json");
    let nodes: Vec<&Value> = graph["elements"]["nodes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    assert_eq!(
        nodes.len(),
        4,
        "the analyst sees the graph's shape: {graph}"
    );
    assert!(
        nodes.iter().all(|n| n["data"]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("ps_"))),
        "{graph}"
    );

    // An agent explains two masked identifiers exactly as the console shows them.
    let masked_email = agent["identifiers"]["email"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!(
        "/v1/profiles/{pid}/explain?a=email%3A{}&b=device_id%3Adev-canary-1",
        masked_email.replace('@', "%40").replace('*', "%2A")
    );
    let (status, body) = call(&app, Some(&key_of("test-agent")), Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"connected\":true"), "{body}");
    assert!(!body.contains(EMAIL), "{body}");

    // The admin's backup was written into backup.dir; the scoped admin's was refused.
    let backups = app.data_dir().with_extension("backups");
    assert!(
        backups.join("store").is_dir(),
        "no backup in {}",
        backups.display()
    );
    std::fs::remove_dir_all(&backups).expect("remove the matrix's backups");
}

#[tokio::test]
async fn the_configuration_is_shown_to_admins_without_secrets() {
    let app = spawn_app_with(|s| {
        s.auth.secret = idgraph::config::Secret::new("a-very-secret-governance-key");
        s.graph.bolt.password = idgraph::config::Secret::new("graph-db-password");
    })
    .await;
    let config = json_ok(app.get("/v1/config").await).await;
    let text = config.to_string();
    assert!(
        !text.contains("a-very-secret-governance-key") && !text.contains("graph-db-password"),
        "{text}"
    );
    assert_eq!(config["auth"]["secret"], "***");
    assert_eq!(config["rules"]["limits"]["customer_id"], 1);
}

#[tokio::test]
async fn health_is_open_metrics_optionally_protected() {
    let app = spawn_app_with(|s| s.auth.protect_metrics = true).await;
    let (status, health) = call(&app, None, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    // Liveness is public, the counts are not: no key, or a wrong one, gets the status only.
    let json = |text: String| serde_json::from_str::<Value>(&text).unwrap();
    assert_eq!(json(health), serde_json::json!({ "status": "ok" }));
    let (_, health) = call(&app, Some("idg_wrong"), Method::GET, "/health", None).await;
    assert_eq!(json(health), serde_json::json!({ "status": "ok" }));
    let (_, health) = call(
        &app,
        Some(&key_of("test-ingest")),
        Method::GET,
        "/health",
        None,
    )
    .await;
    let health = json(health);
    assert_eq!(health["events"], 0, "{health}");
    assert_eq!(health["profiles_created"], 0, "{health}");
    let (status, _) = call(&app, None, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app,
        Some(&key_of("test-ingest")),
        Method::GET,
        "/metrics",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        for k in &mut s.auth.keys {
            if k.name == "test-service" {
                k.rate_per_second = 0.2;
                k.burst = 2;
            }
        }
    })
    .await;
    app.ingest(&canary_event("rate-1")).await;
    let path = "/v1/lookup?kind=customer_id&value=CANARY-C-77";
    let key = key_of("test-service");
    for _ in 0..2 {
        let (status, body) = call(&app, Some(&key), Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = client
        .get(app.url(path))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds");
    assert!((1..=5).contains(&retry), "{retry}");
    // Other keys are not affected.
    let (status, _) = call(&app, Some(&key_of("test-admin")), Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_audit_trail_records_who_read_which_profile_without_values() {
    let app = spawn_app().await;
    let pid = app.ingest(&canary_event("audit-1")).await["profile_id"]
        .as_str()
        .expect("pid")
        .to_owned();
    // Wait until the profile is searchable (the index commits every 200 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = json_ok(app.get("/v1/search?q=Quibble").await).await;
        if found["total"].as_u64() == Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not searchable: {found}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let agent = key_of("test-agent");
    let (status, _) = call(
        &app,
        Some(&agent),
        Method::GET,
        &format!("/v1/profiles/{pid}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &app,
        Some(&agent),
        Method::GET,
        "/v1/search?q=Quibble",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, Some(&agent), Method::GET, "/v1/audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &app,
        None,
        Method::GET,
        &format!("/v1/lookup?kind=email&value={EMAIL}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let audit = json_ok(app.get("/v1/audit?key=test-agent").await).await;
    let entries = audit["entries"].as_array().expect("entries");
    let routes: Vec<(&str, u64)> = entries
        .iter()
        .map(|e| (e["route"].as_str().unwrap(), e["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        routes,
        [
            ("/v1/profiles/{id}", 200),
            ("/v1/search", 200),
            ("/v1/audit", 403)
        ],
        "{audit}"
    );
    assert_eq!(entries[0]["profiles"], json!([pid]), "{audit}");
    assert_eq!(
        entries[1]["profiles"],
        json!([pid]),
        "search hits are audited: {audit}"
    );
    assert_eq!(entries[0]["role"], "agent");
    let by_profile = json_ok(app.get(&format!("/v1/audit?profile={pid}")).await).await;
    assert!(by_profile["entries"].as_array().unwrap().len() >= 2);
    let refused = json_ok(app.get("/v1/audit?key=-").await).await;
    assert_eq!(refused["entries"][0]["status"], 401, "{refused}");

    let resp = app.get("/v1/audit?format=jsonl").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("jsonl");
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).expect("each line is a JSON entry");
        assert!(e["seq"].as_u64().unwrap() > 0);
    }
    for value in [EMAIL, PHONE_DIGITS, BIRTH, STREET, CUSTOMER, "Quibble"] {
        assert!(
            !text.contains(value),
            "the audit trail holds {value}: {text}"
        );
    }
    let err = app.get("/v1/audit?format=xml").await;
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

/// The real binary at debug log level, fed canary values through every path that touches
/// them (ingest, a rejected event, lookups, search, views, errors): none reaches the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_value_reaches_the_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server =
        ServeProcess::start_with_env(dir.path(), &[("RUST_LOG".into(), "debug".into())]);
    let client = http_client();
    let base = server.address.clone();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/v1/events");
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert!(post(canary_event("log-1")).await.is_success());
    let bad = event(
        "log-2",
        "crm",
        json!({"email": "canary-broken@@example..com"}),
        json!({"first_name": "Canarybroken"}),
    );
    assert_eq!(post(bad).await.as_u16(), 422);
    for path in [
        format!("/v1/lookup?kind=email&value={EMAIL}"),
        format!("/v1/lookup?kind=phone&value={PHONE}"),
        "/v1/lookup?kind=email&value=canary-missing@example.com".to_owned(),
        "/v1/search?q=Quibble%20canary.person".to_owned(),
        format!("/v1/identifiers/email/{EMAIL}"),
    ] {
        let _ = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
    }
    let unauth = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let _ = unauth
        .get(format!("{base}/v1/lookup?kind=email&value={EMAIL}"))
        .header("authorization", "Bearer idg_canary_secret_key")
        .send()
        .await;
    server.terminate();
    let logs = server.stderr();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "the server logged at debug level: {logs}"
    );
    for value in [
        EMAIL,
        PHONE_DIGITS,
        BIRTH,
        STREET,
        CUSTOMER,
        "Quibble",
        "Canarybroken",
        "canary-broken",
        "canary-missing",
        "idg_canary_secret_key",
        &key_of("test-admin"),
    ] {
        assert!(!logs.contains(value), "{value} reached the logs:\n{logs}");
    }
}

/// Row-level scope: a key limited to the `pos` source sees only profiles holding POS data,
/// in search counts too, and may only send POS events.
#[tokio::test]
async fn a_scoped_key_never_sees_profiles_outside_its_sources() {
    use idgraph::governance::keys::{hash_key, KeySettings, Role};
    let scoped = |name: &str, role: Role| KeySettings {
        name: name.into(),
        role,
        hash: hash_key(&format!("idg_{name}")),
        unmask: role == Role::Agent,
        rate_per_second: 1000.0,
        burst: 1000,
        sources: vec!["pos".into()],
        tenant: None,
    };
    let app = spawn_app_with(|s| {
        s.auth.keys.push(scoped("scoped-agent", Role::Agent));
        s.auth.keys.push(scoped("scoped-ingest", Role::Ingest));
        s.auth.keys.push(scoped("scoped-service", Role::Service));
    })
    .await;
    let address = json!({"street": "5 Scope Street", "city": "Reno", "postal_code": "89501"});
    let outside = app
        .ingest_pid(&event(
            "sc1",
            "crm",
            json!({"customer_id": "SC-OUT"}),
            json!({"first_name": "Olga", "last_name": "Scopefamily", "address": address}),
        ))
        .await;
    let inside = app
        .ingest_pid(&event(
            "sc2",
            "pos",
            json!({"loyalty_id": "SC-IN"}),
            json!({"first_name": "Ivan", "last_name": "Scopefamily", "address": address}),
        ))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let all = json_ok(app.get("/v1/search?q=Scopefamily").await).await;
        if all["total"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not searchable: {all}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let key = "idg_scoped-agent";
    let get = |path: String| {
        let app = &app;
        async move { call(app, Some(key), Method::GET, &path, None).await }
    };
    assert_eq!(
        get(format!("/v1/profiles/{outside}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(format!("/v1/profiles/{inside}")).await.0,
        StatusCode::OK
    );
    // Lookups are for services (the agent role may not call them at all).
    let (status, _) = call(
        &app,
        Some("idg_scoped-service"),
        Method::GET,
        "/v1/lookup?kind=customer_id&value=SC-OUT",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        get("/v1/lookup?kind=customer_id&value=SC-OUT".into())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    for view in ["devices", "graph", "history", "household"] {
        assert_eq!(
            get(format!("/v1/profiles/{outside}/{view}")).await.0,
            StatusCode::NOT_FOUND,
            "{view}"
        );
    }
    let (status, found) = get("/v1/search?q=Scopefamily".into()).await;
    assert_eq!(status, StatusCode::OK);
    let found: Value = serde_json::from_str(&found).expect("json");
    assert_eq!(found["total"], 1, "counts are scoped too: {found}");
    assert_eq!(found["hits"][0]["profile_id"], inside.as_str());
    let (status, household) = get(format!("/v1/profiles/{inside}/household")).await;
    assert_eq!(status, StatusCode::OK, "{household}");
    assert!(!household.contains(&outside), "{household}");
    let all = json_ok(app.get(&format!("/v1/profiles/{inside}/household")).await).await;
    assert!(
        all.to_string().contains(&outside),
        "the admin sees both members: {all}"
    );

    let ingest = "idg_scoped-ingest";
    let (status, body) = call(
        &app,
        Some(ingest),
        Method::POST,
        "/v1/events",
        Some(&event(
            "sc3",
            "crm",
            json!({"cookie_id": "ck-sc"}),
            json!({}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("source_not_allowed"), "{body}");
    let (status, body) = call(
        &app,
        Some(ingest),
        Method::POST,
        "/v1/events",
        Some(&event(
            "sc4",
            "pos",
            json!({"cookie_id": "ck-sc"}),
            json!({}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A read whose audit entry cannot be written (the audit log on a full disk: `/dev/full`)
/// is refused with 503 `audit_unavailable` and none of the data, unless the operator set
/// `audit.on_failure = "serve"`. Ingest is not audited and keeps working.
#[tokio::test]
async fn a_read_that_cannot_be_audited_is_refused_unless_configured_to_serve() {
    use idgraph::config::AuditFailure;
    for (policy, expected) in [
        (AuditFailure::Refuse, StatusCode::SERVICE_UNAVAILABLE),
        (AuditFailure::Serve, StatusCode::OK),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.jsonl")).expect("symlink");
        let data = dir.path().to_path_buf();
        let app = spawn_app_with(|s| {
            s.storage.data_dir = data;
            s.audit.on_failure = policy;
        })
        .await;
        let pid = app.ingest_pid(&canary_event("full-1")).await;
        let resp = app.get(&format!("/v1/profiles/{pid}")).await;
        assert_eq!(resp.status(), expected, "{policy:?}");
        let retry = resp.headers().get("retry-after").cloned();
        let body = resp.text().await.expect("body");
        if expected == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body.contains("audit_unavailable"), "{body}");
            assert!(!body.contains(EMAIL) && !body.contains(&pid), "{body}");
            assert!(retry.is_some(), "a Retry-After header");
        } else {
            assert!(body.contains(EMAIL), "{body}");
        }
        // A request without a key is refused as always.
        let (status, _) = call(
            &app,
            None,
            Method::GET,
            &format!("/v1/profiles/{pid}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

/// A client that keeps presenting no valid key is slowed down (429 with Retry-After past
/// `auth.failed_auth_per_minute`), audited as refused, while a valid key from the same
/// address keeps working.
#[tokio::test]
async fn repeated_failed_authentication_is_throttled_per_client_and_valid_keys_still_work() {
    let app = spawn_app_with(|s| s.auth.failed_auth_per_minute = 4).await;
    let stranger = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let lookup = app.url("/v1/lookup?kind=email&value=x%40example.com");
    for i in 0..4 {
        let resp = stranger
            .get(&lookup)
            .bearer_auth("idg_not_a_key")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    let resp = stranger
        .get(&lookup)
        .bearer_auth("idg_still_not_a_key")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After in seconds");
    assert!(
        (1..=15).contains(&retry),
        "4 a minute: one more within 15 s, got {retry}"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "too_many_failed_authentications",
        "{body}"
    );
    // No key at all counts the same.
    let resp = stranger.get(&lookup).send().await.expect("request");
    assert_eq!(resp.status(), 429);

    // The valid key from the same address is not held back.
    let resp = app.get("/v1/lookup?kind=email&value=x%40example.com").await;
    assert_eq!(resp.status(), 404, "a valid key is answered normally");

    let audit = json_ok(app.get("/v1/audit?route=/v1/lookup").await).await;
    let refused = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["status"] == 429 && e["key"] == "-")
        .count();
    assert_eq!(refused, 2, "{audit}");
}

/// The tenant axis of the authorization matrix: every route, every role, a key of one
/// tenant against the data of another: no answer holds any of the other tenant's values,
/// its search total and export are empty, and an absent-here identifier gets the answer
/// of one that exists nowhere. Both ways: the default tenant's keys against tenant B's
/// canary, and B's keys against the default tenant's person.
#[tokio::test]
async fn a_key_of_one_tenant_never_reveals_another_tenants_data() {
    let app = spawn_app_with(|s| {
        s.auth.failed_auth_per_minute = 0;
        s.backup.dir = Some(s.storage.data_dir.with_extension("backups"));
    })
    .await;
    let (status, body) = call(
        &app,
        Some(&key_of("test-operator")),
        Method::POST,
        "/v1/tenants",
        Some(&json!({"id": "tenant-b"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut b_keys: Vec<(String, &str, String)> = Vec::new();
    for (role, unmask) in [
        ("admin", false),
        ("ingest", false),
        ("service", false),
        ("agent", false),
        ("agent", true),
        ("analyst", false),
    ] {
        let name = format!("b-{role}{}", if unmask { "-unmasked" } else { "" });
        let (status, body) = call(
            &app,
            Some(&key_of("test-operator")),
            Method::POST,
            "/v1/tenants/tenant-b/keys",
            Some(&json!({"name": name, "role": role, "unmask": unmask,
                         "rate_per_second": 1_000_000.0, "burst": 1_000_000})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        b_keys.push((name, role, v["key"].as_str().expect("key").to_owned()));
    }
    let b_admin = b_keys[0].2.clone();

    // The default tenant (A) holds its own person; tenant B holds the canary.
    const A_EMAIL: &str = "adelind.fernsby@tenant-a.example";
    const A_CUSTOMER: &str = "TENANT-A-C-1";
    let a_person = event(
        "a-person-1",
        "crm",
        json!({"email": A_EMAIL, "phone": "+14155550142", "customer_id": A_CUSTOMER}),
        json!({"first_name": "Adelind", "last_name": "Fernsby", "birth_date": "1980-06-07",
               "address": {"street": "12 Elsewhere Road", "city": "San Francisco", "postal_code": "94110"}}),
    );
    let pid_a = app.ingest(&a_person).await["profile_id"]
        .as_str()
        .expect("pid")
        .to_owned();
    let a_values = [
        A_EMAIL,
        A_CUSTOMER,
        "4155550142",
        "Adelind",
        "Fernsby",
        "1980-06-07",
        "12 Elsewhere Road",
    ];
    let (status, out) = call(
        &app,
        Some(&b_admin),
        Method::POST,
        "/v1/events",
        Some(&canary_event("canary-1")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let out: Value = serde_json::from_str(&out).expect("json");
    let pid_b = out["profile_id"].as_str().expect("pid").to_owned();
    let hh_b = format!("hh_{}", &pid_b[2..]);
    let hh_a = format!("hh_{}", &pid_a[2..]);
    let canary_values = [
        EMAIL,
        PHONE_DIGITS,
        BIRTH,
        STREET,
        CUSTOMER,
        "dev-canary-1",
        "Quibble",
        "Ottoline",
    ];
    // Both tenants' people are searchable in their own tenant before the matrix runs.
    for (key, q) in [
        (b_admin.as_str(), "Quibble"),
        (&key_of("test-admin"), "Fernsby"),
    ] {
        let mut found = false;
        for _ in 0..100 {
            let (_, body) = call(
                &app,
                Some(key),
                Method::GET,
                &format!("/v1/search?q={q}"),
                None,
            )
            .await;
            if body.contains("\"total\":1") {
                found = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(found, "{q} is searchable in its own tenant");
    }

    // Every route, every role of A, against B's canary.
    let mut calls = 0;
    for route in routes(&pid_b, &hh_b) {
        for (name, role, _) in TEST_KEYS {
            let (status, body) = call(
                &app,
                Some(&key_of(name)),
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            )
            .await;
            calls += 1;
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{name} on {}: {body}",
                route.path
            );
            if !route.roles.contains(&role.name()) {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} on {}: {body}",
                    route.path
                );
            }
            let sent = format!(
                "{}{}",
                route.path,
                route
                    .body
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default()
            );
            for value in canary_values {
                // (An answer may echo the caller's own input, e.g. a search query.)
                if sent.contains(value) {
                    continue;
                }
                assert!(
                    !body.contains(value),
                    "{name} of the default tenant saw tenant B's {value} in {} {}: {body}",
                    route.method,
                    route.path
                );
            }
            if route.path.starts_with("/v1/search") && status == StatusCode::OK {
                assert!(
                    body.contains("\"total\":0"),
                    "B's people are not counted: {body}"
                );
            }
        }
    }
    assert!(calls > 300, "{calls}");
    // A's lookup of B's canary is the answer to an identifier no tenant holds.
    let never = "never.seen@example.com";
    for (kind, b_value, absent) in [
        ("email", EMAIL, never),
        ("customer_id", CUSTOMER, "NEVER-1"),
    ] {
        let enc = |s: &str| s.replace('@', "%40");
        let (s1, b1) = call(
            &app,
            Some(&key_of("test-service")),
            Method::GET,
            &format!("/v1/lookup?kind={kind}&value={}", enc(b_value)),
            None,
        )
        .await;
        let (s2, b2) = call(
            &app,
            Some(&key_of("test-service")),
            Method::GET,
            &format!("/v1/lookup?kind={kind}&value={}", enc(absent)),
            None,
        )
        .await;
        assert_eq!(
            (s1, &b1),
            (s2, &b2),
            "B's identifier answers like one that exists nowhere"
        );
        assert_eq!(s1, StatusCode::NOT_FOUND);
    }
    let (s1, b1) = call(
        &app,
        Some(&key_of("test-admin")),
        Method::POST,
        "/v1/subject-access",
        Some(&json!({"identifier": format!("email:{EMAIL}")})),
    )
    .await;
    let (s2, b2) = call(
        &app,
        Some(&key_of("test-admin")),
        Method::POST,
        "/v1/subject-access",
        Some(&json!({"identifier": format!("email:{never}")})),
    )
    .await;
    assert_eq!((s1, b1), (s2, b2));
    // A's export holds A's people only: as many as A's store counts, A's person among them.
    let (_, export) = call(
        &app,
        Some(&key_of("test-admin")),
        Method::GET,
        "/v1/exports/profiles",
        None,
    )
    .await;
    let a_profiles = app.engine.store().counters().expect("counters").profiles;
    assert_eq!(export.lines().count() as u64, a_profiles, "{export}");
    assert!(export.contains(A_EMAIL), "{export}");

    // Every route, every role of B, against A's person.
    for route in routes(&pid_a, &hh_a) {
        for (name, role, key) in &b_keys {
            let (status, body) = call(
                &app,
                Some(key),
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            )
            .await;
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{name} on {}: {body}",
                route.path
            );
            let allowed = route.roles.contains(role);
            if allowed {
                assert!(
                    status.is_success() || status == StatusCode::NOT_FOUND,
                    "tenant B's {name} on {} {}: {status} {body}",
                    route.method,
                    route.path
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} on {}: {body}",
                    route.path
                );
            }
            for value in a_values {
                assert!(
                    !body.contains(value),
                    "tenant B's {name} saw the default tenant's {value} in {} {}: {body}",
                    route.method,
                    route.path
                );
            }
        }
    }
    let (_, found) = call(
        &app,
        Some(&b_admin),
        Method::GET,
        "/v1/search?q=Fernsby",
        None,
    )
    .await;
    assert!(found.contains("\"total\":0"), "{found}");

    // Each tenant's data is intact after the other's keys called every route.
    let (status, body) = call(
        &app,
        Some(&b_keys[2].2),
        Method::GET,
        &format!("/v1/lookup?kind=customer_id&value={CUSTOMER}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&pid_b));
    let (status, body) = call(
        &app,
        Some(&key_of("test-service")),
        Method::GET,
        &format!("/v1/lookup?kind=customer_id&value={A_CUSTOMER}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&pid_a));
}
