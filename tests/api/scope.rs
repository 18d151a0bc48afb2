//! Row-level scope and probing over HTTP: a key limited to some sources learns nothing of
//! the people outside them, through any route of the access table (the row-scope axis);
//! a hidden target and an absent one get the same answer (the oracle axis); roles shown
//! masked or pseudonymized values cannot confirm raw guesses.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use idgraph::governance::access::ROUTES;
use idgraph::governance::keys::{hash_key, KeySettings, Role};

use crate::helpers::{event, json_ok, key_of, spawn_app, spawn_app_with, TestApp};

const HIDDEN_EMAIL: &str = "hilda.hidden@example.com";
const HIDDEN_CUSTOMER: &str = "CUST-B1";
const HIDDEN_NAME: &str = "Hildegunde";
const ADDRESS_STREET: &str = "9 Scopeside Road";

/// The scoped keys (all limited to `pos`): name, role, unmask.
const SCOPED: [(&str, Role, bool); 6] = [
    ("pos-admin", Role::Admin, false),
    ("pos-service", Role::Service, false),
    ("pos-agent", Role::Agent, true),
    ("pos-agent-masked", Role::Agent, false),
    ("pos-analyst", Role::Analyst, false),
    ("pos-ingest", Role::Ingest, false),
];

fn scoped_key(name: &str) -> String {
    format!("idg_scoped_{name}")
}

async fn app_with_scoped_keys() -> TestApp {
    spawn_app_with(|s| {
        for (name, role, unmask) in SCOPED {
            s.auth.keys.push(KeySettings {
                name: name.into(),
                role,
                hash: hash_key(&scoped_key(name)),
                unmask,
                rate_per_second: 1_000_000.0,
                burst: 1_000_000,
                sources: vec!["pos".into()],
                tenant: None,
            });
        }
    })
    .await
}

/// Sends a request with `key`; the status and the body (JSON, or the text as a string).
async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client
        .request(method, app.url(path))
        .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Two people at one address. `hidden` holds CRM and web data only; `visible` holds POS
/// data. The hidden person later logged in on the visible one's tablet (a web event the
/// customer-id limit refused): the visible profile's history holds the conflict, its
/// tablet is shared with the hidden profile, and both form one household named after the
/// hidden person (the oldest member).
struct World {
    visible: String,
    hidden: String,
}

async fn world(app: &TestApp) -> World {
    let address = json!({"street": ADDRESS_STREET, "city": "Reno", "postal_code": "89501"});
    let hidden = app
        .ingest_pid(&event(
            "h1",
            "crm",
            json!({"customer_id": HIDDEN_CUSTOMER, "email": HIDDEN_EMAIL}),
            json!({"first_name": HIDDEN_NAME, "last_name": "Scopeside", "address": address}),
        ))
        .await;
    let visible = app
        .ingest_pid(&event(
            "v1",
            "pos",
            json!({"customer_id": "CUST-A1", "loyalty_id": "LOY-A1", "device_id": "tab-shared"}),
            json!({"first_name": "Vera", "last_name": "Scopeside", "address": address}),
        ))
        .await;
    let out = app
        .ingest(&event(
            "h2",
            "web",
            json!({"customer_id": HIDDEN_CUSTOMER, "device_id": "tab-shared"}),
            Value::Null,
        ))
        .await;
    assert_eq!(out["profile_id"], hidden.as_str(), "{out}");
    assert_eq!(out["conflicts"][0]["profile_id"], visible.as_str(), "{out}");
    // What an unscoped admin sees: every relation the scoped keys must not see.
    let history = json_ok(app.get(&format!("/v1/profiles/{visible}/history")).await).await;
    let text = history.to_string();
    assert!(
        text.contains(&format!("customer_id:{HIDDEN_CUSTOMER}")) && text.contains(&hidden),
        "the conflict names the other person for an unscoped key: {history}"
    );
    let devices = json_ok(app.get(&format!("/v1/profiles/{visible}/devices")).await).await;
    assert_eq!(
        devices["devices"][0]["shared_with"],
        json!([hidden]),
        "{devices}"
    );
    let household = json_ok(app.get(&format!("/v1/profiles/{visible}/household")).await).await;
    assert_eq!(
        household["household_id"],
        format!("hh_{}", &hidden[2..]),
        "{household}"
    );
    // Both searchable (the index commits every 200 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = json_ok(app.get("/v1/search?q=Scopeside").await).await;
        if found["total"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    World { visible, hidden }
}

/// The hidden person as any role could be shown them: profile and household ids, raw
/// values, masked and pseudonymized forms (read by the unscoped keys of each role).
async fn hidden_forms(app: &TestApp, w: &World) -> Vec<String> {
    let mut forms = vec![
        w.hidden.clone(),
        format!("hh_{}", &w.hidden[2..]),
        HIDDEN_EMAIL.to_owned(),
        HIDDEN_CUSTOMER.to_owned(),
        HIDDEN_NAME.to_owned(),
    ];
    for key in ["test-agent", "test-analyst"] {
        let (status, graph) = call(
            app,
            &key_of(key),
            Method::GET,
            &format!("/v1/profiles/{}/graph", w.hidden),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{graph}");
        for node in graph["elements"]["nodes"].as_array().into_iter().flatten() {
            if node["data"]["in_profile"] == true {
                let value = node["data"]["value"].as_str().expect("a value");
                forms.push(value.to_owned());
            }
        }
    }
    forms.sort();
    forms.dedup();
    assert!(
        forms.iter().any(|f| f.starts_with("ps_")) && forms.iter().any(|f| f.contains("***")),
        "pseudonyms and masked forms are collected: {forms:?}"
    );
    forms
}

/// The first identifier of `kind` in a profile's graph as `key` is shown it (`id`).
async fn shown_key(app: &TestApp, key: &str, pid: &str, kind: &str) -> String {
    let (status, graph) = call(
        app,
        key,
        Method::GET,
        &format!("/v1/profiles/{pid}/graph"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    graph["elements"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["data"]["kind"] == kind && n["data"]["in_profile"] == true)
        .and_then(|n| n["data"]["id"].as_str())
        .unwrap_or_else(|| panic!("no {kind} in {graph}"))
        .to_owned()
}

fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('+', "%2B")
        .replace('@', "%40")
        .replace(':', "%3A")
        .replace('*', "%2A")
        .replace(' ', "%20")
}

/// Every string in `v` (keys included).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => {
            for (k, child) in map {
                out.push(k.clone());
                strings(child, out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn a_scoped_key_sees_nothing_of_other_people_in_any_answer() {
    let app = app_with_scoped_keys().await;
    let w = world(&app).await;
    let forbidden = hidden_forms(&app, &w).await;
    // The unscoped admin reads the hidden profile: the audit log now names it.
    app.profile(&w.hidden).await;
    let v = &w.visible;
    for (name, role, _) in SCOPED {
        let key = scoped_key(name);
        for rule in ROUTES.iter().filter(|r| role.allows(r.permission)) {
            // (method, path, body, the status the request must get)
            let requests: Vec<(Method, String, Option<Value>, StatusCode)> = match rule.pattern {
                // A POS event reusing the hidden person's event id and email: a duplicate,
                // whose answer must not name the hidden profile.
                "/v1/events" => vec![(
                    Method::POST,
                    "/v1/events".into(),
                    Some(event(
                        "h1",
                        "pos",
                        json!({"email": HIDDEN_EMAIL}),
                        Value::Null,
                    )),
                    StatusCode::OK,
                )],
                "/v1/lookup" => vec![(
                    Method::GET,
                    "/v1/lookup?kind=loyalty_id&value=LOY-A1".into(),
                    None,
                    StatusCode::OK,
                )],
                "/v1/search" => vec![(
                    Method::GET,
                    "/v1/search?q=Scopeside".into(),
                    None,
                    StatusCode::OK,
                )],
                "/v1/profiles/{id}/explain" => {
                    // The two identifiers as this key is shown them.
                    let a = shown_key(&app, &key, v, "customer_id").await;
                    let b = shown_key(&app, &key, v, "device_id").await;
                    let path = format!("/v1/profiles/{v}/explain?a={}&b={}", enc(&a), enc(&b));
                    vec![(Method::GET, path, None, StatusCode::OK)]
                }
                "/v1/explain" => {
                    let a = shown_key(&app, &key, v, "customer_id").await;
                    vec![
                        (
                            Method::GET,
                            format!("/v1/explain?a={}&b=device_id%3Atab-shared", enc(&a)),
                            None,
                            StatusCode::OK,
                        ),
                        // A person outside the scope is as unknown as a stranger.
                        (
                            Method::GET,
                            format!("/v1/explain?a=device_id%3Atab-shared&b=customer_id%3A{HIDDEN_CUSTOMER}"),
                            None,
                            StatusCode::NOT_FOUND,
                        ),
                    ]
                }
                "/v1/households/{id}" => vec![(
                    Method::GET,
                    format!("/v1/households/hh_{}", &w.hidden[2..]),
                    None,
                    StatusCode::NOT_FOUND,
                )],
                // A hidden profile is as unknown as a stranger; a hidden identifier is not
                // in the visible profile.
                "/v1/profiles/merge" => vec![(
                    Method::POST,
                    "/v1/profiles/merge".into(),
                    Some(json!({"profiles": [v, w.hidden], "reason": "scope"})),
                    StatusCode::NOT_FOUND,
                )],
                "/v1/profiles/{id}/split" => vec![
                    (
                        Method::POST,
                        format!("/v1/profiles/{}/split", w.hidden),
                        Some(json!({"mode": "identifiers", "reason": "scope"})),
                        StatusCode::NOT_FOUND,
                    ),
                    (
                        Method::POST,
                        format!("/v1/profiles/{v}/split"),
                        Some(
                            json!({"groups": [[format!("customer_id:{HIDDEN_CUSTOMER}")]], "reason": "scope"}),
                        ),
                        StatusCode::UNPROCESSABLE_ENTITY,
                    ),
                ],
                "/v1/profiles/{id}/pins/{name}" if rule.method == "PUT" => vec![(
                    Method::PUT,
                    format!("/v1/profiles/{}/pins/first_name", w.hidden),
                    Some(json!({"value": "Scope", "reason": "scope"})),
                    StatusCode::NOT_FOUND,
                )],
                "/v1/profiles/{id}/pins/{name}" => vec![(
                    Method::DELETE,
                    format!("/v1/profiles/{}/pins/first_name?reason=scope", w.hidden),
                    None,
                    StatusCode::NOT_FOUND,
                )],
                // A Segment call comes from source web (mobile for screen): refused to a
                // pos-only key, before anything is stored.
                p if super::segment::is_segment_route(p) => vec![(
                    Method::POST,
                    p.to_owned(),
                    Some(super::segment::matrix_body(p)),
                    StatusCode::FORBIDDEN,
                )],
                p if p.starts_with("/v1/profiles/{id}") => vec![
                    (Method::GET, p.replace("{id}", v), None, StatusCode::OK),
                    (
                        Method::GET,
                        format!("{}?depth=3", p.replace("{id}", v)),
                        None,
                        StatusCode::OK,
                    ),
                ],
                // Writes that would touch the hidden person: refused as for absent ones,
                // and nothing changes.
                "/v1/links" => vec![(
                    Method::DELETE,
                    format!("/v1/links?a=device_id%3Atab-shared&b=customer_id%3A{HIDDEN_CUSTOMER}"),
                    None,
                    StatusCode::NOT_FOUND,
                )],
                "/v1/identifiers/{kind}/{value:.*}" => vec![(
                    Method::DELETE,
                    format!("/v1/identifiers/customer_id/{HIDDEN_CUSTOMER}"),
                    None,
                    StatusCode::NOT_FOUND,
                )],
                "/v1/erasure" => vec![
                    (
                        Method::POST,
                        "/v1/erasure".into(),
                        Some(json!({"identifier": format!("email:{HIDDEN_EMAIL}")})),
                        StatusCode::NOT_FOUND,
                    ),
                    (
                        Method::POST,
                        "/v1/erasure".into(),
                        Some(json!({"profile_id": w.hidden})),
                        StatusCode::NOT_FOUND,
                    ),
                ],
                "/v1/suppressions" => vec![(
                    Method::DELETE,
                    format!("/v1/suppressions?identifier=email%3A{}", enc(HIDDEN_EMAIL)),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                // The visible person's document, with the hidden person cut out of the
                // shared tablet's login and the refused link; the hidden person is as
                // unknown as a stranger, by identifier and by profile id.
                "/v1/subject-access" => vec![
                    (
                        Method::POST,
                        "/v1/subject-access".into(),
                        Some(json!({"profile_id": v})),
                        StatusCode::OK,
                    ),
                    (
                        Method::POST,
                        "/v1/subject-access".into(),
                        Some(json!({"identifier": format!("email:{HIDDEN_EMAIL}")})),
                        StatusCode::NOT_FOUND,
                    ),
                    (
                        Method::POST,
                        "/v1/subject-access".into(),
                        Some(json!({"profile_id": w.hidden})),
                        StatusCode::NOT_FOUND,
                    ),
                ],
                "/v1/audit" => vec![(
                    Method::GET,
                    "/v1/audit?limit=10000".into(),
                    None,
                    StatusCode::OK,
                )],
                "/v1/config" => vec![(Method::GET, "/v1/config".into(), None, StatusCode::OK)],
                // A backup holds every person: never for a scoped key.
                "/v1/admin/backup" => vec![(
                    Method::POST,
                    "/v1/admin/backup".into(),
                    Some(json!({"to": "/tmp/idgraph-scoped-backup-never-written"})),
                    StatusCode::FORBIDDEN,
                )],
                // A run covers every profile: never for a scoped key.
                "/v1/admin/reresolve" => vec![(
                    if rule.method == "POST" {
                        Method::POST
                    } else {
                        Method::GET
                    },
                    "/v1/admin/reresolve".into(),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                // Review items pair people of any source: never for a scoped key.
                "/v1/review" => vec![(
                    Method::GET,
                    "/v1/review".into(),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                "/v1/review/{seq}" => vec![(
                    Method::POST,
                    "/v1/review/1".into(),
                    Some(json!({"decision": "reject", "reason": "scope"})),
                    StatusCode::FORBIDDEN,
                )],
                "/v1/changes" => vec![(
                    Method::GET,
                    "/v1/changes?limit=1000".into(),
                    None,
                    StatusCode::OK,
                )],
                "/v1/exports/{kind}" => ["profiles", "identifiers", "graph", "changes"]
                    .iter()
                    .map(|k| {
                        (
                            Method::GET,
                            format!("/v1/exports/{k}"),
                            None,
                            StatusCode::OK,
                        )
                    })
                    .collect(),
                "/v1/webhooks" => vec![(Method::GET, "/v1/webhooks".into(), None, StatusCode::OK)],
                "/v1/webhooks/{name}/replay" => vec![(
                    Method::POST,
                    "/v1/webhooks/none/replay".into(),
                    Some(json!({"after": 0})),
                    StatusCode::NOT_FOUND,
                )],
                // Audiences and their destinations span every source: never for a scoped key.
                "/v1/destinations" | "/v1/destinations/{name}/resync" | "/v1/stats" => vec![(
                    Method::from_bytes(rule.method.as_bytes()).expect("a method"),
                    rule.pattern.replace("{name}", "none"),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                "/v1/audiences"
                | "/v1/audiences/{id}"
                | "/v1/audiences/{id}/members"
                | "/v1/audiences/{id}/destinations"
                | "/v1/audiences/estimate" => vec![(
                    Method::from_bytes(rule.method.as_bytes()).expect("a method"),
                    rule.pattern.replace("{id}", "any"),
                    match (rule.method, rule.pattern) {
                        ("POST", "/v1/audiences") => Some(
                            json!({"id": "any", "filter": "has(email)", "purpose": "analytics"}),
                        ),
                        ("POST", _) => {
                            Some(json!({"filter": "has(email)", "purpose": "analytics"}))
                        }
                        ("PUT", _) => Some(json!({"destinations": []})),
                        _ => None,
                    },
                    StatusCode::FORBIDDEN,
                )],
                // The replication log and snapshots hold everyone: never for a scoped key.
                "/v1/replication/log" => vec![(
                    Method::GET,
                    "/v1/replication/log?after=0".into(),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                "/v1/replication/snapshot" => vec![(
                    Method::GET,
                    "/v1/replication/snapshot".into(),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                "/v1/replication/snapshot/{id}/{file}" => vec![(
                    Method::GET,
                    "/v1/replication/snapshot/1/CURRENT".into(),
                    None,
                    StatusCode::FORBIDDEN,
                )],
                other => panic!("the row-scope axis has no request for {other}: add one"),
            };
            for (method, path, body, expected) in requests {
                let (status, answer) = call(&app, &key, method.clone(), &path, body.as_ref()).await;
                assert_eq!(status, expected, "{name} {method} {path}: {answer}");
                let mut seen = Vec::new();
                strings(&answer, &mut seen);
                for form in &forbidden {
                    assert!(
                        !seen.iter().any(|s| s.contains(form.as_str())),
                        "{name} {method} {path} shows {form} of a person outside its scope: {answer}"
                    );
                }
                if rule.pattern == "/v1/audit" {
                    let entries = answer["entries"].as_array().expect("entries");
                    assert!(
                        entries.iter().any(|e| e["profiles"] == json!([v])),
                        "the scoped admin still reads the entries of the people it sees: {answer}"
                    );
                }
            }
        }
    }
    // What the scoped keys see is redacted, not emptied.
    let (_, devices) = call(
        &app,
        &scoped_key("pos-agent"),
        Method::GET,
        &format!("/v1/profiles/{v}/devices"),
        None,
    )
    .await;
    assert_eq!(devices["devices"][0]["value"], "tab-shared", "{devices}");
    assert_eq!(devices["devices"][0]["shared_with"], json!([]), "{devices}");
    let (_, household) = call(
        &app,
        &scoped_key("pos-agent"),
        Method::GET,
        &format!("/v1/profiles/{v}/household"),
        None,
    )
    .await;
    assert_eq!(household["members"], json!([v]), "{household}");
    assert_eq!(household["bonds"], json!([]), "{household}");
    let (_, history) = call(
        &app,
        &scoped_key("pos-agent"),
        Method::GET,
        &format!("/v1/profiles/{v}/history"),
        None,
    )
    .await;
    assert!(
        history["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["kind"] == "created")),
        "{history}"
    );
    // The refused writes changed nothing: the hidden person is whole.
    let hidden = app.profile(&w.hidden).await;
    assert_eq!(
        hidden["identifiers"]["email"],
        json!([HIDDEN_EMAIL]),
        "{hidden}"
    );
    let devices = json_ok(app.get(&format!("/v1/profiles/{v}/devices")).await).await;
    assert_eq!(
        devices["devices"][0]["shared_with"],
        json!([w.hidden]),
        "{devices}"
    );
}

/// A request naming a hidden target and the same request naming an absent one.
struct Pair {
    method: Method,
    hidden: String,
    absent: String,
    hidden_body: Option<Value>,
    absent_body: Option<Value>,
}

fn get_pair(hidden: String, absent: String) -> Pair {
    Pair {
        method: Method::GET,
        hidden,
        absent,
        hidden_body: None,
        absent_body: None,
    }
}

/// The oracle axis's pairs for one route of the access table (every route is listed: one
/// without a person to name has none).
fn oracle_pairs(pattern: &str, h: &str, absent: &str) -> Vec<Pair> {
    let email = enc(HIDDEN_EMAIL);
    let profile = |view: &str| {
        get_pair(
            format!("/v1/profiles/{h}{view}"),
            format!("/v1/profiles/{absent}{view}"),
        )
    };
    match pattern {
        "/v1/profiles/{id}" => vec![profile("")],
        "/v1/profiles/{id}/devices" => vec![profile("/devices")],
        "/v1/profiles/{id}/household" => vec![profile("/household")],
        "/v1/profiles/{id}/graph" => vec![profile("/graph")],
        "/v1/profiles/{id}/history" => vec![profile("/history")],
        "/v1/profiles/{id}/values" => vec![profile("/values")],
        "/v1/profiles/{id}/pins/{name}" => vec![
            Pair {
                method: Method::PUT,
                hidden: format!("/v1/profiles/{h}/pins/first_name"),
                absent: format!("/v1/profiles/{absent}/pins/first_name"),
                hidden_body: Some(json!({"value": "Oracle", "reason": "oracle"})),
                absent_body: Some(json!({"value": "Oracle", "reason": "oracle"})),
            },
            Pair {
                method: Method::DELETE,
                ..get_pair(
                    format!("/v1/profiles/{h}/pins/first_name?reason=oracle"),
                    format!("/v1/profiles/{absent}/pins/first_name?reason=oracle"),
                )
            },
        ],
        "/v1/profiles/{id}/explain" => vec![get_pair(
            format!("/v1/profiles/{h}/explain?a=customer_id%3A{HIDDEN_CUSTOMER}&b=email%3A{email}"),
            format!("/v1/profiles/{absent}/explain?a=customer_id%3ANOPE-1&b=email%3Anobody%40example.com"),
        )],
        "/v1/explain" => vec![get_pair(
            format!("/v1/explain?a=customer_id%3A{HIDDEN_CUSTOMER}&b=email%3A{email}"),
            "/v1/explain?a=customer_id%3ANOPE-1&b=email%3Anobody%40example.com".into(),
        )],
        "/v1/households/{id}" => vec![get_pair(
            format!("/v1/households/hh_{}", &h[2..]),
            format!("/v1/households/hh_{}", &absent[2..]),
        )],
        "/v1/lookup" => vec![get_pair(
            format!("/v1/lookup?kind=email&value={email}"),
            "/v1/lookup?kind=email&value=nobody%40example.com".into(),
        )],
        "/v1/search" => vec![get_pair(
            format!("/v1/search?q={HIDDEN_NAME}"),
            "/v1/search?q=Zyzzogeton".into(),
        )],
        "/v1/links" => vec![Pair {
            method: Method::DELETE,
            ..get_pair(
                format!("/v1/links?a=customer_id%3A{HIDDEN_CUSTOMER}&b=email%3A{email}"),
                "/v1/links?a=customer_id%3ANOPE-1&b=email%3Anobody%40example.com".into(),
            )
        }],
        "/v1/identifiers/{kind}/{value:.*}" => vec![Pair {
            method: Method::DELETE,
            ..get_pair(
                format!("/v1/identifiers/email/{HIDDEN_EMAIL}"),
                "/v1/identifiers/email/nobody@example.com".into(),
            )
        }],
        "/v1/suppressions" => vec![Pair {
            method: Method::DELETE,
            ..get_pair(
                format!("/v1/suppressions?identifier=email%3A{email}"),
                "/v1/suppressions?identifier=email%3Anobody%40example.com".into(),
            )
        }],
        "/v1/profiles/merge" => vec![Pair {
            method: Method::POST,
            hidden: "/v1/profiles/merge".into(),
            absent: "/v1/profiles/merge".into(),
            hidden_body: Some(json!({"profiles": [h, "p_000000999998"], "reason": "oracle"})),
            absent_body: Some(json!({"profiles": [absent, "p_000000999998"], "reason": "oracle"})),
        }],
        "/v1/profiles/{id}/split" => vec![Pair {
            method: Method::POST,
            hidden: format!("/v1/profiles/{h}/split"),
            absent: format!("/v1/profiles/{absent}/split"),
            hidden_body: Some(json!({"mode": "identifiers", "reason": "oracle"})),
            absent_body: Some(json!({"mode": "identifiers", "reason": "oracle"})),
        }],
        "/v1/erasure" => vec![
            Pair {
                method: Method::POST,
                hidden: "/v1/erasure".into(),
                absent: "/v1/erasure".into(),
                hidden_body: Some(json!({"profile_id": h})),
                absent_body: Some(json!({"profile_id": absent})),
            },
            Pair {
                method: Method::POST,
                hidden: "/v1/erasure".into(),
                absent: "/v1/erasure".into(),
                hidden_body: Some(json!({"identifier": format!("email:{HIDDEN_EMAIL}")})),
                absent_body: Some(json!({"identifier": "email:nobody@example.com"})),
            },
        ],
        "/v1/subject-access" => vec![
            Pair {
                method: Method::POST,
                hidden: "/v1/subject-access".into(),
                absent: "/v1/subject-access".into(),
                hidden_body: Some(json!({"profile_id": h})),
                absent_body: Some(json!({"profile_id": absent})),
            },
            Pair {
                method: Method::POST,
                hidden: "/v1/subject-access".into(),
                absent: "/v1/subject-access".into(),
                hidden_body: Some(json!({"identifier": format!("email:{HIDDEN_EMAIL}")})),
                absent_body: Some(json!({"identifier": "email:nobody@example.com"})),
            },
        ],
        // Routes that name no person.
        "/v1/events"
        | "/v1/identify"
        | "/v1/track"
        | "/v1/page"
        | "/v1/screen"
        | "/v1/group"
        | "/v1/alias"
        | "/v1/batch"
        | "/v1/audit"
        | "/v1/config"
        | "/v1/admin/reresolve"
        | "/v1/admin/backup"
        | "/v1/changes"
        | "/v1/exports/{kind}"
        | "/v1/webhooks"
        | "/v1/webhooks/{name}/replay"
        | "/v1/replication/log"
        | "/v1/replication/snapshot"
        | "/v1/replication/snapshot/{id}/{file}"
        | "/v1/review"
        | "/v1/review/{seq}"
        | "/v1/audiences"
        | "/v1/audiences/estimate"
        | "/v1/audiences/{id}"
        | "/v1/audiences/{id}/members"
        | "/v1/audiences/{id}/destinations"
        | "/v1/destinations"
        | "/v1/destinations/{name}/resync"
        | "/v1/stats" => vec![],
        other => panic!("the oracle axis has no pair for route {other}: add one"),
    }
}

#[tokio::test]
async fn hidden_and_absent_targets_get_the_same_answer() {
    let app = app_with_scoped_keys().await;
    let w = world(&app).await;
    let absent = "p_000000999999";
    let mut compared = 0;
    for (name, role, _) in SCOPED {
        let key = scoped_key(name);
        for rule in ROUTES.iter().filter(|r| role.allows(r.permission)) {
            for pair in oracle_pairs(rule.pattern, &w.hidden, absent) {
                let (method, hidden, missing) = (&pair.method, &pair.hidden, &pair.absent);
                let (s1, mut a1) = call(
                    &app,
                    &key,
                    method.clone(),
                    hidden,
                    pair.hidden_body.as_ref(),
                )
                .await;
                let (s2, mut a2) = call(
                    &app,
                    &key,
                    method.clone(),
                    missing,
                    pair.absent_body.as_ref(),
                )
                .await;
                // A search echoes its own query: everything else must agree.
                for a in [&mut a1, &mut a2] {
                    if let Some(o) = a.as_object_mut() {
                        o.remove("query");
                    }
                }
                assert_eq!(
                    (s1, &a1),
                    (s2, &a2),
                    "{name}: {method} {hidden} and {missing} answer differently"
                );
                assert!(
                    [StatusCode::NOT_FOUND, StatusCode::FORBIDDEN].contains(&s1)
                        || (s1 == StatusCode::OK && a1["total"] == 0),
                    "{name} {method} {hidden}: {s1} {a1}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 35, "{compared} pairs compared");
    // Nothing was erased or unlinked.
    let hidden = app.profile(&w.hidden).await;
    assert_eq!(
        hidden["identifiers"]["email"],
        json!([HIDDEN_EMAIL]),
        "{hidden}"
    );
}

#[tokio::test]
async fn roles_shown_masked_values_cannot_probe_with_raw_ones() {
    let app = spawn_app().await;
    let email = "probe.target@example.com";
    let phone = "+14155550142";
    let pid = app
        .ingest_pid(&event(
            "p1",
            "crm",
            json!({"email": email, "phone": phone, "customer_id": "PROBE-1", "device_id": "dev-probe"}),
            json!({"first_name": "Prudence", "last_name": "Probewell"}),
        ))
        .await;
    let analyst = key_of("test-analyst");
    let agent = key_of("test-agent");
    // Explain with raw values: a right guess and a wrong one answer alike.
    for key in [&analyst, &agent] {
        let right = format!(
            "/v1/profiles/{pid}/explain?a=email%3A{}&b=customer_id%3APROBE-1",
            enc(email)
        );
        let wrong = format!(
            "/v1/profiles/{pid}/explain?a=email%3Anot.them%40example.com&b=customer_id%3APROBE-1"
        );
        let (s1, a1) = call(&app, key, Method::GET, &right, None).await;
        let (s2, a2) = call(&app, key, Method::GET, &wrong, None).await;
        assert_eq!((s1, &a1), (s2, &a2), "{key}: {a1} vs {a2}");
        assert_eq!(s1, StatusCode::NOT_FOUND, "{a1}");
    }
    // The forms they are shown work.
    for key in [&analyst, &agent] {
        let a = shown_key(&app, key, &pid, "email").await;
        let b = shown_key(&app, key, &pid, "phone").await;
        let path = format!("/v1/profiles/{pid}/explain?a={}&b={}", enc(&a), enc(&b));
        let (status, answer) = call(&app, key, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{key} {path}: {answer}");
        assert_eq!(answer["connected"], true, "{answer}");
        assert!(!answer.to_string().contains(email), "{answer}");
    }
    // A masked agent's search refuses raw emails and phones, right or wrong alike.
    for (right, wrong) in [
        (email.to_owned(), "not.them@example.com".to_owned()),
        ("(415) 555-0142".to_owned(), "(415) 555-0143".to_owned()),
    ] {
        let (s1, a1) = call(
            &app,
            &agent,
            Method::GET,
            &format!("/v1/search?q={}", enc(&right)),
            None,
        )
        .await;
        let (s2, a2) = call(
            &app,
            &agent,
            Method::GET,
            &format!("/v1/search?q={}", enc(&wrong)),
            None,
        )
        .await;
        assert_eq!(s1, StatusCode::BAD_REQUEST, "{a1}");
        assert_eq!(a1["error"]["code"], "masked_value", "{a1}");
        assert_eq!(a1["error"]["field"], "q", "{a1}");
        assert_eq!((s1, &a1), (s2, &a2));
    }
    // Lookups take raw values: only the roles that see them (service, admin) may call it.
    for (key, expected) in [
        (key_of("test-agent"), StatusCode::FORBIDDEN),
        (key_of("test-agent-unmasked"), StatusCode::FORBIDDEN),
        (key_of("test-analyst"), StatusCode::FORBIDDEN),
        (key_of("test-service"), StatusCode::OK),
        (key_of("test-admin"), StatusCode::OK),
    ] {
        let path = format!("/v1/lookup?kind=email&value={}", enc(email));
        let (status, answer) = call(&app, &key, Method::GET, &path, None).await;
        assert_eq!(status, expected, "{key}: {answer}");
    }
    // An unmasked agent sees raw values, so it may search by them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, found) = call(
            &app,
            &key_of("test-agent-unmasked"),
            Method::GET,
            &format!("/v1/search?q={}", enc(email)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        if found["total"] == 1 {
            assert_eq!(found["hits"][0]["profile_id"], pid.as_str());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
