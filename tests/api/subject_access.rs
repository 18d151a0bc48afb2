//! Subject access: `POST /v1/subject-access` answers everything held about one person
//! (checked against what was ingested: identifiers with sources, events, the merge,
//! consents, audiences) and nothing of anyone else, even where the graph joins them (a
//! refused link on a shared device); unknown and erased people are 404, bad bodies 400,
//! other roles 403; the audit trail names the person; `idgraph subject-access` on the
//! stopped store writes the same document and changes nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_succeeded, event, http_client, idgraph_command, json_ok, key_of,
    post_json, spawn_app, ServeProcess, TestApp,
};

const ANN_EMAIL: &str = "ann.quarrington@example.com";
const ANN_PHONE: &str = "+14155550123";
const ANN_CUSTOMER: &str = "C-ANN-1";
const ANN_COOKIE: &str = "ck-ann-1";
const ANN_DEVICE: &str = "dev-ann-tablet";
const BERT_EMAIL: &str = "bert.zyzzyva@example.net";
const BERT_CUSTOMER: &str = "C-BERT-9";
const BERT_COOKIE: &str = "ck-bert-2";

/// Ann's events (`evt-ann-*`); Bert's are `evt-bert-*`. `evt-bert-3` is Bert's login on
/// Ann's tablet: the customer-id limit refuses the link, so the event is Bert's but
/// carried Ann's device too.
const ANN_EVENTS: [&str; 6] = [
    "evt-ann-1",
    "evt-ann-2",
    "evt-ann-3",
    "evt-ann-4",
    "evt-ann-5",
    "evt-ann-6",
];
const SHARED_EVENT: &str = "evt-bert-3";

fn at(mut ev: Value, ts: &str) -> Value {
    ev["timestamp"] = json!(ts);
    ev
}

/// The events of both people, in order.
fn events() -> Vec<Value> {
    let mut a1 = event(
        "evt-ann-1",
        "crm",
        json!({"email": ANN_EMAIL, "customer_id": ANN_CUSTOMER}),
        json!({"first_name": "Annabel", "last_name": "Quarrington", "tier": "gold-aq"}),
    );
    a1["consent"] = json!({"marketing_email": "granted"});
    // A second profile at first (her phone), and a third (her cookie) merged into the
    // second by a visit carrying both: nothing shared with Ann's first profile yet.
    let mut a2 = event(
        "evt-ann-2",
        "web",
        json!({"phone": ANN_PHONE}),
        json!({"first_name": "Annie"}),
    );
    a2["consent"] = json!({"analytics": "denied"});
    let a5 = event(
        "evt-ann-5",
        "web",
        json!({"cookie_id": ANN_COOKIE}),
        Value::Null,
    );
    let a6 = event(
        "evt-ann-6",
        "web",
        json!({"cookie_id": ANN_COOKIE, "phone": ANN_PHONE}),
        Value::Null,
    );
    // The shared email and phone merge the two.
    let mut a3 = event(
        "evt-ann-3",
        "pos",
        json!({"email": ANN_EMAIL, "phone": ANN_PHONE}),
        Value::Null,
    );
    a3["type"] = json!("purchase");
    a3["properties"] = json!({"amount": 42.5, "store": "north-pier"});
    let a4 = event(
        "evt-ann-4",
        "pos",
        json!({"customer_id": ANN_CUSTOMER, "device_id": ANN_DEVICE}),
        Value::Null,
    );
    let mut b1 = event(
        "evt-bert-1",
        "crm",
        json!({"email": BERT_EMAIL, "customer_id": BERT_CUSTOMER}),
        json!({"first_name": "Bertrand", "last_name": "Zyzzyva", "tier": "platinum-bz"}),
    );
    b1["consent"] = json!({"marketing_email": "denied"});
    let b2 = event(
        "evt-bert-2",
        "web",
        json!({"email": BERT_EMAIL, "cookie_id": BERT_COOKIE}),
        Value::Null,
    );
    let b3 = event(
        SHARED_EVENT,
        "web",
        json!({"customer_id": BERT_CUSTOMER, "device_id": ANN_DEVICE}),
        json!({"last_name": "Zyzzyva"}),
    );
    vec![
        at(a1, "2026-01-01T10:00:00Z"),
        at(a2, "2026-01-02T10:00:00Z"),
        at(a5, "2026-01-02T11:00:00Z"),
        at(a6, "2026-01-02T12:00:00Z"),
        at(a3, "2026-01-03T10:00:00Z"),
        at(a4, "2026-01-04T10:00:00Z"),
        at(b1, "2026-01-05T10:00:00Z"),
        at(b2, "2026-01-06T10:00:00Z"),
        at(b3, "2026-01-07T10:00:00Z"),
    ]
}

/// What belongs to Bert alone (never in Ann's document).
fn berts(bert_pid: &str) -> Vec<String> {
    [
        BERT_EMAIL,
        BERT_CUSTOMER,
        BERT_COOKIE,
        "Bertrand",
        "Zyzzyva",
        "platinum-bz",
        "evt-bert-1",
        "evt-bert-2",
        bert_pid,
    ]
    .map(String::from)
    .to_vec()
}

/// What belongs to Ann alone (never in Bert's document).
fn anns(ann_pids: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        ANN_EMAIL,
        "4155550123",
        ANN_CUSTOMER,
        ANN_COOKIE,
        ANN_DEVICE,
        "Annabel",
        "Annie",
        "Quarrington",
        "gold-aq",
        "north-pier",
    ]
    .map(String::from)
    .to_vec();
    v.extend(ANN_EVENTS.map(String::from));
    v.extend(ann_pids.iter().cloned());
    v
}

/// Every string in `v`, object keys included.
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

fn assert_none_of(doc: &Value, forbidden: &[String], whose: &str) {
    let text = doc.to_string();
    let mut seen = Vec::new();
    strings(doc, &mut seen);
    for f in forbidden {
        assert!(
            !text.contains(f.as_str()) && !seen.iter().any(|s| s.contains(f.as_str())),
            "{whose}'s document holds {f}, which is another person's: {doc:#}"
        );
    }
}

async fn request(app: &TestApp, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url("/v1/subject-access")).json(body);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.send().await.expect("POST /v1/subject-access")
}

async fn document(app: &TestApp, body: Value) -> Value {
    json_ok(request(app, None, &body).await).await
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// The document without its generation time.
fn timeless(mut doc: Value) -> Value {
    doc.as_object_mut()
        .expect("an object")
        .remove("generated_at")
        .expect("generated_at");
    doc
}

#[tokio::test]
async fn the_document_holds_everything_of_the_person_and_nothing_of_anyone_else() {
    let app = spawn_app().await;
    let mut outcomes = Vec::new();
    for ev in events() {
        outcomes.push(app.ingest(&ev).await);
    }
    // Ann's second event made its own profile, merged away by the third; her cookie's
    // profile was merged into that one before (an id merged away twice).
    let absorbed = outcomes[1]["profile_id"].as_str().expect("pid").to_owned();
    let twice = outcomes[2]["profile_id"].as_str().expect("pid").to_owned();
    assert_eq!(
        outcomes[3]["profile_id"],
        absorbed.as_str(),
        "{}",
        outcomes[3]
    );
    let ann = app.pid_of("email", ANN_EMAIL).await;
    let bert = app.pid_of("email", BERT_EMAIL).await;
    assert_ne!(absorbed, ann);
    assert_eq!(app.pid_of("phone", ANN_PHONE).await, ann);
    assert_eq!(app.pid_of("device_id", ANN_DEVICE).await, ann);
    assert_eq!(outcomes[8]["profile_id"], bert.as_str(), "{}", outcomes[8]);
    assert_eq!(
        outcomes[8]["conflicts"][0]["profile_id"],
        ann.as_str(),
        "the shared tablet's link is refused: {}",
        outcomes[8]
    );
    // An audience over marketing consent: Ann is a member, Bert matched without consent.
    let resp = app
        .client
        .post(app.url("/v1/audiences"))
        .json(&json!({"id": "crm-marketing", "filter": "has(customer_id)", "purpose": "marketing_email"}))
        .send()
        .await
        .expect("POST /v1/audiences");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut ready = false;
    for _ in 0..300 {
        let v = json_ok(app.get("/v1/audiences/crm-marketing").await).await;
        if v["status"] == "ready" {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the audience never became ready");

    let doc = document(&app, json!({"identifier": format!("email:{ANN_EMAIL}")})).await;
    assert_eq!(doc["format"], "idgraph.subject_access", "{doc}");
    assert_eq!(doc["format_version"], 1);
    assert!(doc["generated_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(doc["profile_id"], ann.as_str());
    assert_eq!(
        strs(&doc["merged_ids"]),
        BTreeSet::from([absorbed.clone(), twice.clone()])
    );

    // The golden profile, unmasked.
    let p = &doc["profile"];
    assert_eq!(p["profile_id"], ann.as_str(), "{p}");
    assert_eq!(p["identifiers"]["email"], json!([ANN_EMAIL]), "{p}");
    assert_eq!(p["traits"]["last_name"], "Quarrington", "{p}");
    assert!(p.get("household_id").is_none(), "{p}");

    // Every identifier, with its sources and dates.
    let idents = doc["identifiers"].as_array().expect("identifiers");
    let got: BTreeSet<(String, String)> = idents
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or_default().to_owned(),
                i["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("email", ANN_EMAIL),
        ("phone", ANN_PHONE),
        ("customer_id", ANN_CUSTOMER),
        ("cookie_id", ANN_COOKIE),
        ("device_id", ANN_DEVICE),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // Derived hashed forms (email_sha256, phone_sha256) are the person's identifiers too.
    assert!(got.is_superset(&want), "{got:?}");
    assert!(
        got.iter()
            .all(|(k, _)| want.iter().any(|(w, _)| w == k) || k.ends_with("_sha256")),
        "{got:?}"
    );
    let email = idents
        .iter()
        .find(|i| i["kind"] == "email")
        .expect("the email");
    assert_eq!(
        strs(&email["sources"]),
        BTreeSet::from(["crm".into(), "pos".into()])
    );
    assert_eq!(email["first_seen"], "2026-01-01T10:00:00.000Z", "{email}");
    assert_eq!(email["last_seen"], "2026-01-03T10:00:00.000Z", "{email}");
    assert_eq!(email["event_count"], 2);
    let device = idents
        .iter()
        .find(|i| i["kind"] == "device_id")
        .expect("the device");
    assert_eq!(device["last_seen"], "2026-01-07T10:00:00.000Z", "{device}");

    // Every event: Ann's own whole, and Bert's login on her tablet without its payload or
    // Bert's identifier.
    let events = doc["events"].as_array().expect("events");
    let ids: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let mut want: BTreeSet<&str> = ANN_EVENTS.into_iter().collect();
    want.insert(SHARED_EVENT);
    assert_eq!(ids, want, "{doc:#}");
    let purchase = events
        .iter()
        .find(|e| e["event_id"] == "evt-ann-3")
        .expect("evt-ann-3");
    assert_eq!(purchase["event_type"], "purchase");
    assert_eq!(purchase["source"], "pos");
    assert_eq!(purchase["properties"]["amount"], 42.5);
    assert_eq!(purchase["shared"], false);
    let first = events
        .iter()
        .find(|e| e["event_id"] == "evt-ann-1")
        .expect("evt-ann-1");
    assert_eq!(first["traits"]["first_name"], "Annabel");
    let shared = events
        .iter()
        .find(|e| e["event_id"] == SHARED_EVENT)
        .expect("shared");
    assert_eq!(shared["shared"], true, "{shared}");
    assert_eq!(
        shared["identifiers"],
        json!([format!("device_id:{ANN_DEVICE}")])
    );
    assert_eq!(shared["traits"], json!({}), "{shared}");

    // Every observed trait value with its source.
    let traits = doc["traits"].as_array().expect("traits");
    let first_name = traits
        .iter()
        .find(|t| t["name"] == "first_name")
        .expect("first_name");
    let values: BTreeSet<String> = first_name["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["value"].as_str().map(String::from))
        .collect();
    assert_eq!(values, BTreeSet::from(["Annabel".into(), "Annie".into()]));

    // The merge through the shared identifier, with its rule and event.
    let history = doc["history"].as_array().expect("history");
    let merge = history
        .iter()
        .find(|h| h["kind"] == "merged" && h["event_id"] == "evt-ann-3")
        .unwrap_or_else(|| panic!("no merge in {history:?}"));
    assert_eq!(merge["event_id"], "evt-ann-3", "{merge}");
    assert_eq!(merge["absorbed"], json!([absorbed]), "{merge}");
    assert!(
        merge["rule"].as_str().is_some_and(|r| !r.is_empty()),
        "{merge}"
    );
    let created = history
        .iter()
        .find(|h| h["kind"] == "created" && h["profiles"] == json!([twice]))
        .unwrap_or_else(|| panic!("no creation of {twice} in {history:?}"));
    assert_eq!(created["event_id"], "evt-ann-5", "{created}");
    assert!(
        history
            .iter()
            .any(|h| h["kind"] == "merged" && h["absorbed"] == json!([twice])),
        "{history:?}"
    );
    let conflict = history
        .iter()
        .find(|h| h["kind"] == "conflict")
        .unwrap_or_else(|| panic!("no refused link in {history:?}"));
    assert_eq!(conflict["profiles"], json!([ann]), "{conflict}");
    // The links between her identifiers; the refused one's other end withheld.
    let links = doc["links"].as_array().expect("links");
    assert!(links.iter().any(|l| l["status"] == "active"), "{links:?}");
    let refused = links
        .iter()
        .find(|l| l["status"] == "refused")
        .unwrap_or_else(|| panic!("no refused link in {links:?}"));
    assert!(
        refused["a"].is_null() || refused["b"].is_null(),
        "{refused}"
    );

    // Consents with source and time, and every statement.
    let c = &doc["consents"];
    assert_eq!(c["marketing_email"]["current"]["state"], "granted", "{c}");
    assert_eq!(c["marketing_email"]["current"]["source"], "crm");
    assert_eq!(
        c["marketing_email"]["current"]["at"],
        "2026-01-01T10:00:00.000Z"
    );
    assert_eq!(
        c["marketing_email"]["statements"][0]["event_id"],
        "evt-ann-1"
    );
    assert_eq!(c["analytics"]["current"]["state"], "denied", "{c}");
    assert_eq!(c["analytics"]["current"]["source"], "web");
    // The audience.
    assert_eq!(
        doc["audiences"],
        json!([{"id": "crm-marketing", "member": true, "purpose": "marketing_email", "description": null}]),
        "{doc}"
    );

    // Nothing of Bert, anywhere.
    assert_none_of(&doc, &berts(&bert), "Ann");

    // The same document by the object form, by profile id and by the id merged away.
    for body in [
        json!({"identifier": {"kind": "email", "value": ANN_EMAIL.to_uppercase()}}),
        json!({"profile_id": ann}),
        json!({"profile_id": absorbed}),
        json!({"profile_id": twice}),
        json!({"identifier": format!("phone:{ANN_PHONE}"), "profile_id": null}),
    ] {
        let again = document(&app, body.clone()).await;
        assert_eq!(timeless(again), timeless(doc.clone()), "{body}");
    }

    // Bert's document: his, with Ann's tablet cut out of the shared login.
    let bdoc = document(&app, json!({"profile_id": bert})).await;
    let bids: BTreeSet<&str> = bdoc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(
        bids,
        BTreeSet::from(["evt-bert-1", "evt-bert-2", SHARED_EVENT]),
        "{bdoc:#}"
    );
    assert_eq!(
        bdoc["audiences"][0]["member"], false,
        "matched, but no marketing consent: {bdoc}"
    );
    assert_eq!(
        bdoc["consents"]["marketing_email"]["current"]["state"],
        "denied"
    );
    assert_none_of(
        &bdoc,
        &anns(&[ann.clone(), absorbed.clone(), twice.clone()]),
        "Bert",
    );

    // The audit trail names the person's profile ids, never a value.
    let audit = json_ok(app.get("/v1/audit?route=/v1/subject-access").await).await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["status"] == 200
            && e["key"] == "test-admin"
            && e["method"] == "POST"
            && strs(&e["profiles"])
                == BTreeSet::from([ann.clone(), absorbed.clone(), twice.clone()])),
        "{audit}"
    );
    assert!(!audit.to_string().contains(ANN_EMAIL), "{audit}");

    // Nothing stored changed: the golden profile is as it was.
    assert_eq!(
        app.profile(&ann).await["identifiers"],
        doc["profile"]["identifiers"]
    );

    // Erased: as unknown as a stranger.
    json_ok(
        app.client
            .post(app.url("/v1/erasure"))
            .json(&json!({"profile_id": bert}))
            .send()
            .await
            .expect("erasure"),
    )
    .await;
    assert_error(
        request(
            &app,
            None,
            &json!({"identifier": format!("email:{BERT_EMAIL}")}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        request(&app, None, &json!({"profile_id": bert})).await,
        404,
        "not_found",
    )
    .await;
    // Ann's document now holds nothing that the erasure removed.
    let after = document(&app, json!({"profile_id": ann})).await;
    assert_none_of(&after, &berts(&bert), "Ann");
}

#[tokio::test]
async fn unknown_people_are_404_bad_bodies_400_and_other_roles_403() {
    let app = spawn_app().await;
    app.ingest(&event(
        "evt-1",
        "crm",
        json!({"email": ANN_EMAIL}),
        json!({"first_name": "Annabel"}),
    ))
    .await;
    for body in [
        json!({"identifier": "email:nobody@example.com"}),
        json!({"identifier": {"kind": "customer_id", "value": "NOPE"}}),
        json!({"profile_id": "p_000000999999"}),
    ] {
        let err = assert_error(request(&app, None, &body).await, 404, "not_found").await;
        assert!(!err.to_string().contains("nobody"), "{err}");
    }
    // (body, the field the error names)
    for (body, field) in [
        (json!({}), Some("identifier")),
        (
            json!({"identifier": null, "profile_id": null}),
            Some("identifier"),
        ),
        (
            json!({"identifier": format!("email:{ANN_EMAIL}"), "profile_id": "p_000000000001"}),
            Some("profile_id"),
        ),
        (
            json!({"identifier": "email:a@b.c", "reason": "x"}),
            Some("reason"),
        ),
        (json!({"identifier": 5}), Some("identifier")),
        (json!({"identifier": "no-colon-here"}), Some("identifier")),
        (json!({"identifier": "shoe_size:44"}), Some("identifier")),
        (
            json!({"identifier": "email:not-an-email"}),
            Some("identifier"),
        ),
        (
            json!({"identifier": {"kind": "email"}}),
            Some("identifier.value"),
        ),
        (
            json!({"identifier": {"value": "x"}}),
            Some("identifier.kind"),
        ),
        (
            json!({"identifier": {"kind": "email", "value": ANN_EMAIL, "x": 1}}),
            Some("identifier.x"),
        ),
        (json!({"profile_id": 7}), Some("profile_id")),
        (json!([]), None),
        (json!("email:a@b.c"), None),
    ] {
        let err = assert_error(request(&app, None, &body).await, 400, "invalid_parameter").await;
        if let Some(f) = field {
            assert_eq!(err["field"], f, "{body}: {err}");
        }
        assert!(
            !err.to_string().contains(ANN_EMAIL),
            "values are not echoed: {err}"
        );
    }
    let resp = app
        .client
        .post(app.url("/v1/subject-access"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_error(resp, 400, "invalid_json").await;

    let body = json!({"identifier": format!("email:{ANN_EMAIL}")});
    for name in [
        "test-analyst",
        "test-agent",
        "test-agent-unmasked",
        "test-service",
        "test-ingest",
    ] {
        let err = assert_error(
            request(&app, Some(&key_of(name)), &body).await,
            403,
            "forbidden",
        )
        .await;
        assert!(!err.to_string().contains("Annabel"), "{err}");
    }
    let resp = app
        .client
        .get(app.url("/v1/subject-access"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    json_ok(request(&app, Some(&key_of("test-admin")), &body).await).await;
}

/// Names and sizes of every file under `dir` (what a write would change).
fn files(dir: &std::path::Path) -> BTreeSet<(String, u64, std::time::SystemTime)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert((
                    entry.path().display().to_string(),
                    meta.len(),
                    meta.modified().expect("mtime"),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_the_same_document_from_the_stopped_store() {
    let tmp = tempfile::TempDir::new().expect("tmp");
    let data = tmp.path().join("data");
    let mut server = ServeProcess::start(&data);
    let c = http_client();
    for ev in events() {
        let (status, out) = post_json(&c, &server.url("/v1/events"), &ev).await;
        assert_eq!(status, 200, "{out}");
    }
    let (status, served) = post_json(
        &c,
        &server.url("/v1/subject-access"),
        &json!({"identifier": format!("email:{ANN_EMAIL}")}),
    )
    .await;
    assert_eq!(status, 200, "{served}");
    let absorbed = served["merged_ids"][0].as_str().expect("merged").to_owned();
    let served_text = c
        .post(server.url("/v1/subject-access"))
        .json(&json!({"profile_id": absorbed}))
        .send()
        .await
        .expect("POST")
        .text()
        .await
        .expect("body");
    assert!(server.terminate().success(), "{}", server.stderr());

    let before = files(&data);
    let out_file = tmp.path().join("ann.json");
    let run = |args: &[&str]| {
        idgraph_command()
            .arg("subject-access")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("idgraph subject-access")
    };
    let out = run(&[
        "--identifier",
        &format!("email:{ANN_EMAIL}"),
        "--out",
        out_file.to_str().expect("utf-8"),
    ]);
    assert_succeeded(&out, "subject-access --identifier");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(ANN_EMAIL),
        "no value in the output: {stderr}"
    );
    let written = std::fs::read_to_string(&out_file).expect("the document");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    // Byte for byte the served document, but for the time it was generated.
    let doc: Value = serde_json::from_str(&written).expect("JSON");
    let stamp = |v: &Value| v["generated_at"].as_str().expect("generated_at").to_owned();
    assert_eq!(
        written.replace(&stamp(&doc), "T"),
        served_text.replace(
            &stamp(&serde_json::from_str(&served_text).expect("JSON")),
            "T"
        )
    );
    assert_eq!(timeless(doc.clone()), timeless(served.clone()));
    assert_eq!(doc["events"].as_array().map(Vec::len), Some(7), "{doc}");

    // By profile id (the one merged away) into an existing file: refused, then --force.
    let out = run(&[
        "--profile-id",
        &absorbed,
        "--out",
        out_file.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = run(&[
        "--profile-id",
        &absorbed,
        "--out",
        out_file.to_str().expect("utf-8"),
        "--force",
    ]);
    assert_succeeded(&out, "subject-access --profile-id --force");
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("doc")).expect("JSON");
    assert_eq!(timeless(again), timeless(served));

    // Bad input: clear errors, no file.
    let missing = tmp.path().join("none.json");
    let m = missing.to_str().expect("utf-8");
    for (args, needle) in [
        (
            vec!["--identifier", "email:nobody@example.com", "--out", m],
            "not found",
        ),
        (
            vec!["--profile-id", "p_000000999999", "--out", m],
            "not found",
        ),
        (vec!["--identifier", "nocolon", "--out", m], "kind:value"),
        (
            vec!["--identifier", "shoe_size:44", "--out", m],
            "unknown identifier kind",
        ),
        (
            vec![
                "--identifier",
                "email:x@example.com",
                "--profile-id",
                "p_1",
                "--out",
                m,
            ],
            "cannot be used with",
        ),
        (vec!["--out", m], "required"),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("nobody@"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?}");
    }
    let out = idgraph_command()
        .args([
            "subject-access",
            "--profile-id",
            "p_1",
            "--out",
            m,
            "--data-dir",
        ])
        .arg(tmp.path().join("no-such-dir"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    // The store is untouched.
    assert_eq!(files(&data), before, "the CLI changed the data directory");
}
