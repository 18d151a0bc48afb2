//! A steward's manual merge and split: recorded with the key's name and reason, reversible,
//! respecting deterministic rules unless overridden, remembered (later events do not
//! re-merge a split silently), and bad requests named with nothing half-applied.

use serde_json::{json, Value};

use crate::helpers::{event, json_ok, post_json, spawn_app, TestApp};

async fn merge(app: &TestApp, body: Value) -> (u16, Value) {
    post_json(&app.client, &app.url("/v1/profiles/merge"), &body).await
}

async fn split(app: &TestApp, pid: &str, body: Value) -> (u16, Value) {
    post_json(
        &app.client,
        &app.url(&format!("/v1/profiles/{pid}/split")),
        &body,
    )
    .await
}

async fn history(app: &TestApp, pid: &str) -> Vec<Value> {
    json_ok(app.get(&format!("/v1/profiles/{pid}/history")).await).await["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn profile(app: &TestApp, pid: &str) -> Value {
    json_ok(app.get(&format!("/v1/profiles/{pid}")).await).await
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_manual_merge_is_recorded_undone_by_a_split_and_the_split_is_remembered() {
    let app = spawn_app().await;
    app.ingest(&event(
        "e1",
        "crm",
        json!({"email": "ann@example.com"}),
        json!({"first_name": "Ann"}),
    ))
    .await;
    app.ingest(&event(
        "e2",
        "pos",
        json!({"phone": "+16175550100"}),
        json!({"last_name": "Lee"}),
    ))
    .await;
    let a = app.pid_of("email", "ann@example.com").await;
    let b = app.pid_of("phone", "+16175550100").await;
    assert_ne!(a, b);

    let (status, merged) = merge(
        &app,
        json!({"profiles": [b, a], "reason": "same customer, confirmed by phone"}),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    // The oldest profile survives whatever the order named.
    assert_eq!(merged["profile_id"], a.as_str(), "{merged}");
    assert_eq!(merged["absorbed"], json!([b]), "{merged}");
    assert_eq!(app.pid_of("phone", "+16175550100").await, a);
    let p = profile(&app, &a).await;
    assert_eq!(p["traits"]["first_name"], "Ann", "{p}");
    assert_eq!(p["traits"]["last_name"], "Lee", "{p}");
    let entry = history(&app, &a)
        .await
        .into_iter()
        .find(|h| h["kind"] == "merged" && h["rule"] == "steward")
        .expect("the steward's merge is in history");
    assert_eq!(entry["steward"]["actor"], "test-admin", "{entry}");
    assert_eq!(
        entry["steward"]["reason"], "same customer, confirmed by phone",
        "{entry}"
    );
    assert!(
        entry["event_id"]
            .as_str()
            .is_some_and(|e| e.starts_with("steward-merge:")),
        "{entry}"
    );

    // The merge's answer says how to undo it.
    assert_eq!(merged["undo"], json!([["phone:+16175550100"]]), "{merged}");
    let (status, undone) = split(
        &app,
        &a,
        json!({"groups": merged["undo"], "reason": "merged by mistake"}),
    )
    .await;
    assert_eq!(status, 200, "{undone}");
    assert_eq!(undone["profiles"].as_array().map(Vec::len), Some(2));
    assert_eq!(undone["links_cut"], 1, "{undone}");
    let (a2, b2) = (
        app.pid_of("email", "ann@example.com").await,
        app.pid_of("phone", "+16175550100").await,
    );
    assert_ne!(a2, b2);
    assert_eq!(a2, a, "the part with the email keeps the id");
    // Each part's traits come from its own events again.
    assert!(profile(&app, &a2).await["traits"]
        .get("last_name")
        .is_none());
    assert_eq!(profile(&app, &b2).await["traits"]["last_name"], "Lee");
    let entry = history(&app, &a)
        .await
        .into_iter()
        .find(|h| h["kind"] == "split" && h["rule"] == "steward_split")
        .expect("the steward's split is in history");
    assert_eq!(entry["steward"]["reason"], "merged by mistake", "{entry}");

    // Remembered: an event carrying both does not silently merge them again.
    let outcome = app
        .ingest(&event(
            "e3",
            "web",
            json!({"email": "ann@example.com", "phone": "+16175550100"}),
            Value::Null,
        ))
        .await;
    assert_eq!(
        outcome["conflicts"][0]["rule"], "steward_split",
        "{outcome}"
    );
    assert_ne!(
        app.pid_of("email", "ann@example.com").await,
        app.pid_of("phone", "+16175550100").await
    );

    // A steward's merge undoes the split: the cut link comes back, no conflict after it.
    let (status, again) = merge(
        &app,
        json!({"profiles": [a2, b2], "reason": "they are one after all"}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let outcome = app
        .ingest(&event(
            "e4",
            "web",
            json!({"email": "ann@example.com", "phone": "+16175550100"}),
            Value::Null,
        ))
        .await;
    assert!(outcome.get("conflicts").is_none(), "{outcome}");
    assert_eq!(
        app.pid_of("email", "ann@example.com").await,
        app.pid_of("phone", "+16175550100").await
    );
}

#[tokio::test]
async fn merges_respect_rules_and_splits_cut_event_links_only_when_overridden() {
    let app = spawn_app().await;
    app.ingest(&event(
        "c1",
        "crm",
        json!({"customer_id": "C-1", "email": "bo@example.com"}),
        Value::Null,
    ))
    .await;
    app.ingest(&event(
        "c2",
        "crm",
        json!({"customer_id": "C-2", "phone": "+16175550177"}),
        Value::Null,
    ))
    .await;
    let one = app.pid_of("customer_id", "C-1").await;
    let two = app.pid_of("customer_id", "C-2").await;

    // Two customer ids in one profile break max_per_profile:customer_id=1.
    let (status, refused) = merge(&app, json!({"profiles": [one, two], "reason": "dupe"})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(error_code(&refused), "rule_conflict");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_per_profile:customer_id=1")),
        "{refused}"
    );
    assert_ne!(
        app.pid_of("customer_id", "C-2").await,
        one,
        "nothing merged"
    );
    let (status, forced) = merge(
        &app,
        json!({"profiles": [one, two], "reason": "CRM duplicate",
               "override": ["max_per_profile:customer_id=1"]}),
    )
    .await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(
        forced["overridden"],
        json!(["max_per_profile:customer_id=1"])
    );
    assert_eq!(app.pid_of("phone", "+16175550177").await, one);
    let entry = history(&app, &one)
        .await
        .into_iter()
        .find(|h| h["rule"] == "steward")
        .expect("merge recorded");
    assert_eq!(
        entry["steward"]["overrides"],
        json!(["max_per_profile:customer_id=1"])
    );

    // Components: the parts events connected, so the steward's link is cut, no override.
    let (status, parts) = split(
        &app,
        &one,
        json!({"mode": "components", "reason": "undo the CRM merge"}),
    )
    .await;
    assert_eq!(status, 200, "{parts}");
    assert_eq!(
        parts["profiles"].as_array().map(Vec::len),
        Some(2),
        "{parts}"
    );
    assert_eq!(app.pid_of("email", "bo@example.com").await, one);
    assert_ne!(app.pid_of("phone", "+16175550177").await, one);
    // Now one part per event: components has nothing left to split.
    let (status, nothing) = split(&app, &one, json!({"mode": "components", "reason": "x"})).await;
    assert_eq!(status, 422, "{nothing}");
    assert_eq!(error_code(&nothing), "nothing_to_split");

    // Single identifiers: cutting the link event c1 made needs an explicit override.
    let (status, refused) = split(&app, &one, json!({"mode": "identifiers", "reason": "x"})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(error_code(&refused), "rule_conflict");
    assert_eq!(
        app.pid_of("email", "bo@example.com").await,
        app.pid_of("customer_id", "C-1").await,
        "nothing split"
    );
    let (status, alone) = split(
        &app,
        &one,
        json!({"mode": "identifiers", "reason": "shared inbox", "override": ["shared_identifier"]}),
    )
    .await;
    assert_eq!(status, 200, "{alone}");
    assert_ne!(
        app.pid_of("email", "bo@example.com").await,
        app.pid_of("customer_id", "C-1").await
    );
}

#[tokio::test]
async fn a_group_that_falls_apart_is_kept_together_by_the_steward() {
    let app = spawn_app().await;
    // email-phone and email-cookie: phone and cookie meet only through the email.
    app.ingest(&event(
        "g1",
        "crm",
        json!({"email": "cy@example.com", "phone": "+16175550123"}),
        Value::Null,
    ))
    .await;
    app.ingest(&event(
        "g2",
        "web",
        json!({"email": "cy@example.com", "cookie_id": "ck-77"}),
        Value::Null,
    ))
    .await;
    let pid = app.pid_of("email", "cy@example.com").await;
    let (status, out) = split(
        &app,
        &pid,
        json!({"groups": [["phone:+16175550123", "cookie_id:ck-77"]],
               "reason": "the partner's phone and laptop", "override": ["shared_identifier"]}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["links_cut"], 2, "{out}");
    assert_eq!(out["links_added"], 1, "{out}");
    let moved = app.pid_of("phone", "+16175550123").await;
    assert_ne!(moved, pid);
    assert_eq!(app.pid_of("cookie_id", "ck-77").await, moved);
    assert_eq!(app.pid_of("email", "cy@example.com").await, pid);

    // Moving the email out of {email, phone, device} (phone and device meet only through
    // the email): the rest stays together, under the profile's id.
    for (id, ids) in [
        (
            "g3",
            json!({"email": "di@example.com", "phone": "+16175550124"}),
        ),
        (
            "g4",
            json!({"email": "di@example.com", "device_id": "dev-di"}),
        ),
    ] {
        app.ingest(&event(id, "crm", ids, Value::Null)).await;
    }
    let pid = app.pid_of("email", "di@example.com").await;
    let (status, out) = split(
        &app,
        &pid,
        json!({"groups": [["email:di@example.com"]], "reason": "a shared inbox",
               "override": ["shared_identifier"]}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["profiles"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["links_added"], 1, "{out}");
    assert_eq!(app.pid_of("phone", "+16175550124").await, pid);
    assert_eq!(app.pid_of("device_id", "dev-di").await, pid);
    assert_ne!(app.pid_of("email", "di@example.com").await, pid);
}

#[tokio::test]
async fn bad_merge_and_split_requests_are_named_and_change_nothing() {
    let app = spawn_app().await;
    for (id, ids) in [
        (
            "b1",
            json!({"email": "di@example.com", "phone": "+16175550140"}),
        ),
        ("b2", json!({"email": "ed@example.com"})),
        ("b3", json!({"email": "fay@example.com"})),
    ] {
        app.ingest(&event(id, "crm", ids, Value::Null)).await;
    }
    let di = app.pid_of("email", "di@example.com").await;
    let ed = app.pid_of("email", "ed@example.com").await;
    let fay = app.pid_of("email", "fay@example.com").await;
    let (status, _) = merge(&app, json!({"profiles": [ed, fay], "reason": "dupe"})).await;
    assert_eq!(status, 200);

    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"profiles": [di], "reason": "x"}),
            400,
            "invalid_parameter",
            "profiles",
        ),
        (
            json!({"profiles": [di, di], "reason": "x"}),
            400,
            "invalid_parameter",
            "profiles[1]",
        ),
        (
            json!({"profiles": [di, ed], "reason": "  "}),
            400,
            "invalid_parameter",
            "reason",
        ),
        (
            json!({"profiles": [di, "p_000000999999"], "reason": "x"}),
            404,
            "not_found",
            "profiles[1]",
        ),
        (
            json!({"profiles": [di, fay], "reason": "x"}),
            409,
            "profile_merged",
            "",
        ),
        (
            json!({"profiles": [di, ed], "reason": "x", "override": [""]}),
            400,
            "invalid_parameter",
            "override[0]",
        ),
        (
            json!({"profiles": [di, ed], "reason": "x", "extra": 1}),
            400,
            "invalid_json",
            "",
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = merge(&app, body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert_eq!(error_code(&answer), code, "{body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
        }
    }
    let (_, absorbed) = merge(&app, json!({"profiles": [di, fay], "reason": "x"})).await;
    assert!(
        absorbed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&ed)),
        "the survivor is named: {absorbed}"
    );

    let split_cases: Vec<(String, Value, u16, &str, &str)> = vec![
        (
            "p_000000999999".into(),
            json!({"mode": "identifiers", "reason": "x"}),
            404,
            "not_found",
            "",
        ),
        (
            fay.clone(),
            json!({"mode": "identifiers", "reason": "x"}),
            409,
            "profile_merged",
            "",
        ),
        (
            di.clone(),
            json!({"groups": [], "reason": "x"}),
            400,
            "invalid_parameter",
            "groups",
        ),
        (
            di.clone(),
            json!({"groups": [[]], "reason": "x"}),
            400,
            "invalid_parameter",
            "groups[0]",
        ),
        (
            di.clone(),
            json!({"groups": [["email:ed@example.com"]], "reason": "x"}),
            422,
            "not_in_profile",
            "groups[0][0]",
        ),
        (
            di.clone(),
            json!({"groups": [["phone:+16175550140"], ["phone:+16175550140"]], "reason": "x"}),
            422,
            "overlapping_groups",
            "groups[1][0]",
        ),
        (
            di.clone(),
            json!({"groups": [["email:di@example.com", "phone:+16175550140"]], "reason": "x"}),
            422,
            "nothing_to_split",
            "groups",
        ),
        (
            di.clone(),
            json!({"groups": [["nonsense"]], "reason": "x"}),
            400,
            "invalid_parameter",
            "groups[0][0]",
        ),
        (
            di.clone(),
            json!({"mode": "halves", "reason": "x"}),
            400,
            "invalid_parameter",
            "mode",
        ),
        (
            di.clone(),
            json!({"mode": "identifiers", "groups": [["email:di@example.com"]], "reason": "x"}),
            400,
            "invalid_parameter",
            "groups",
        ),
        (
            di.clone(),
            json!({"reason": "x"}),
            400,
            "invalid_parameter",
            "groups",
        ),
        (
            di.clone(),
            json!({"mode": "identifiers"}),
            400,
            "invalid_json",
            "",
        ),
    ];
    for (pid, body, status, code, field) in split_cases {
        let (got, answer) = split(&app, &pid, body.clone()).await;
        assert_eq!(got, status, "{pid} {body} -> {answer}");
        assert_eq!(error_code(&answer), code, "{pid} {body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
        }
    }
    // Nothing was half-applied.
    assert_eq!(app.pid_of("phone", "+16175550140").await, di);
    assert_eq!(app.pid_of("email", "fay@example.com").await, ed);
    assert_eq!(
        history(&app, &di)
            .await
            .iter()
            .filter(|h| h.get("steward").is_some())
            .count(),
        0
    );
}

#[tokio::test]
async fn matching_does_not_re_merge_what_a_steward_split() {
    let app = crate::helpers::spawn_app_with(|s| s.matching.enabled = true).await;
    let person = json!({"first_name": "Greta", "last_name": "Lindqvist",
                        "birth_date": "1975-03-09", "address": {"city": "Boston"}});
    app.ingest(&event(
        "m1",
        "crm",
        json!({"phone": "+16175550201"}),
        person.clone(),
    ))
    .await;
    let merged = app
        .ingest(&event(
            "m2",
            "pos",
            json!({"phone": "+16175550202"}),
            person.clone(),
        ))
        .await;
    assert!(
        merged.get("probable").is_some(),
        "a probable match: {merged}"
    );
    let pid = app.pid_of("phone", "+16175550201").await;

    // The probable link is the only one between the two phones: no override needed.
    let (status, out) = split(&app, &pid, json!({"mode": "components", "reason": "twins"})).await;
    assert_eq!(status, 200, "{out}");
    assert!(out.get("overridden").is_none(), "{out}");
    let other = app.pid_of("phone", "+16175550202").await;
    assert_ne!(other, pid);

    // The same person again under a new email with the second phone: matching finds the
    // first phone's record but records a conflict instead of merging.
    let again = app
        .ingest(&event(
            "m3",
            "pos",
            json!({"email": "greta@example.com", "phone": "+16175550202"}),
            person,
        ))
        .await;
    assert!(again.get("probable").is_none(), "{again}");
    assert!(
        again["conflicts"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["rule"] == "steward_split")),
        "{again}"
    );
    assert_ne!(
        app.pid_of("phone", "+16175550201").await,
        app.pid_of("phone", "+16175550202").await
    );
    let queue = json_ok(app.get("/v1/review").await).await;
    assert_eq!(queue["items"], json!([]), "not queued for review: {queue}");
}

#[tokio::test]
async fn every_value_keeps_its_sources_and_a_steward_can_pin_one() {
    let app = spawn_app().await;
    let at = |mut ev: Value, ts: &str| {
        ev["timestamp"] = json!(ts);
        ev
    };
    app.ingest(&at(
        event(
            "v1",
            "web",
            json!({"email": "hal@example.com"}),
            json!({"first_name": "Hal"}),
        ),
        "2026-01-01T00:00:00Z",
    ))
    .await;
    app.ingest(&at(
        event(
            "v2",
            "crm",
            json!({"email": "hal@example.com"}),
            json!({"first_name": "Harold"}),
        ),
        "2026-01-02T00:00:00Z",
    ))
    .await;
    app.ingest(&at(
        event(
            "v3",
            "web",
            json!({"email": "hal@example.com"}),
            json!({"first_name": "Hal"}),
        ),
        "2026-01-03T00:00:00Z",
    ))
    .await;
    let pid = app.pid_of("email", "hal@example.com").await;
    let values = json_ok(app.get(&format!("/v1/profiles/{pid}/values")).await).await;
    let first = values["traits"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "first_name"))
        .cloned()
        .expect("first_name in values");
    // Names survive by source priority: crm's Harold wins, from event v2.
    assert_eq!(first["strategy"], "source_priority", "{first}");
    assert_eq!(first["chosen"], "Harold", "{first}");
    assert_eq!(first["chosen_by"], "survivorship");
    assert_eq!(first["winner"]["event_id"], "v2", "{first}");
    assert_eq!(first["winner"]["sources"], json!(["crm"]));
    let hal = first["values"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["value"] == "Hal"))
        .cloned()
        .expect("Hal kept");
    assert_eq!(hal["count"], 2, "{hal}");
    assert_eq!(hal["sources"], json!(["web"]));
    assert_eq!(hal["first_seen"], "2026-01-01T00:00:00.000Z", "{hal}");
    assert_eq!(hal["last_seen"], "2026-01-03T00:00:00.000Z", "{hal}");
    assert_eq!(hal["event_id"], "v3");
    assert_eq!(hal["chosen"], false);

    // A steward pins Hal: the golden profile shows it, recorded with the reason.
    let pin_url = app.url(&format!("/v1/profiles/{pid}/pins/first_name"));
    let resp = app
        .client
        .put(&pin_url)
        .json(&json!({"value": "  Hal ", "reason": "goes by Hal"}))
        .send()
        .await
        .expect("PUT pin");
    assert_eq!(resp.status(), 200);
    let pinned = resp.json::<Value>().await.expect("json");
    let first = &pinned["traits"][0];
    assert_eq!(first["chosen"], "Hal", "normalized like ingest: {pinned}");
    assert_eq!(first["chosen_by"], "pin");
    assert_eq!(first["pinned"]["actor"], "test-admin");
    assert_eq!(profile(&app, &pid).await["traits"]["first_name"], "Hal");
    // New events do not move a pinned value.
    app.ingest(&event(
        "v4",
        "crm",
        json!({"email": "hal@example.com"}),
        json!({"first_name": "Harry"}),
    ))
    .await;
    assert_eq!(profile(&app, &pid).await["traits"]["first_name"], "Hal");
    let entry = history(&app, &pid)
        .await
        .into_iter()
        .find(|h| h["kind"] == "pinned")
        .expect("the pin is in history");
    assert_eq!(entry["steward"]["reason"], "goes by Hal", "{entry}");

    // Bad pins are named and change nothing.
    for (body, field) in [
        (json!({"value": null, "reason": "x"}), "value"),
        (json!({"value": 7, "reason": "x"}), "value"),
        (json!({"value": "Hal", "reason": ""}), "reason"),
    ] {
        let resp = app
            .client
            .put(&pin_url)
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert_eq!(resp.status(), 400, "{body}");
        let answer = resp.json::<Value>().await.expect("json");
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let resp = app
        .client
        .put(app.url(&format!("/v1/profiles/{pid}/pins/birth_date")))
        .json(&json!({"value": "1999-02-30", "reason": "x"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 400, "an impossible date is not pinned");
    let resp = app
        .client
        .put(app.url(&format!("/v1/profiles/{pid}/pins/bad%20name")))
        .json(&json!({"value": "x", "reason": "x"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 400);

    // Unpinned: survivorship decides again (crm's latest name now).
    let resp = app
        .client
        .delete(&pin_url)
        .query(&[("reason", "asked to use the legal name")])
        .send()
        .await
        .expect("DELETE pin");
    assert_eq!(resp.status(), 200);
    assert_ne!(profile(&app, &pid).await["traits"]["first_name"], "Hal");
    let resp = app
        .client
        .delete(&pin_url)
        .query(&[("reason", "again")])
        .send()
        .await
        .expect("DELETE pin");
    assert_eq!(resp.status(), 404, "nothing pinned any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_survivorship_re_resolves_every_profile_in_the_background() {
    use crate::helpers::{get_json, http_client, ServeProcess};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = ServeProcess::start(&data);
    let client = http_client();
    let base = server.address.clone();
    const PEOPLE: usize = 40;
    let mut events = Vec::new();
    for i in 0..PEOPLE {
        events.push(json!({"event_id": format!("rr-crm-{i}"), "source": "crm",
            "timestamp": "2026-01-01T00:00:00Z",
            "identifiers": {"email": format!("rr{i}@example.com")},
            "traits": {"first_name": format!("Harold{i}")}}));
        events.push(json!({"event_id": format!("rr-web-{i}"), "source": "web",
            "timestamp": "2026-02-01T00:00:00Z",
            "identifiers": {"email": format!("rr{i}@example.com")},
            "traits": {"first_name": format!("Hal{i}")}}));
    }
    let (status, body) = post_json(&client, &format!("{base}/v1/events"), &json!(events)).await;
    assert_eq!(status, 200, "{body}");
    let name_of = |i: usize| {
        let client = client.clone();
        let url = format!("{base}/v1/lookup?kind=email&value=rr{i}%40example.com");
        async move { get_json(&client, &url).await.1["traits"]["first_name"].clone() }
    };
    // Names survive by source priority: crm's, although web's is newer.
    assert_eq!(name_of(3).await, "Harold3");
    assert!(server.terminate().success());

    // Names by recency now: the server re-renders every profile by itself.
    let env = [(
        "IDGRAPH_SURVIVORSHIP__TRAITS__FIRST_NAME".to_owned(),
        "most_recent".to_owned(),
    )];
    let mut server = ServeProcess::start_with_env(&data, &env);
    let base = server.address.clone();
    let url = format!("{base}/v1/admin/reresolve");
    let mut progress = Value::Null;
    for _ in 0..600 {
        progress = get_json(&client, &url).await.1;
        if progress["state"] == "done" || progress["state"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["trigger"], "settings_changed", "{progress}");
    assert_eq!(progress["profiles_done"], PEOPLE, "{progress}");
    assert_eq!(progress["profiles_total"], PEOPLE, "{progress}");
    for i in 0..PEOPLE {
        let (_, p) = get_json(
            &client,
            &format!("{base}/v1/lookup?kind=email&value=rr{i}%40example.com"),
        )
        .await;
        assert_eq!(p["traits"]["first_name"], format!("Hal{i}"), "{p}");
    }
    // Search follows the new golden values (the index catches up asynchronously).
    let mut found = Value::Null;
    for _ in 0..200 {
        found = get_json(&client, &format!("{base}/v1/search?q=Hal7"))
            .await
            .1;
        if found["total"] != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found.to_string().contains("rr7@example.com"), "{found}");
    let (_, metrics) = (
        200,
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text"),
    );
    assert!(
        metrics.contains(&format!(
            "idgraph_reresolve_profiles{{what=\"done\"}} {PEOPLE}"
        )),
        "{metrics}"
    );

    // The command line runs one on the live server and reports it.
    let out = crate::helpers::idgraph_command()
        .args(["reresolve", "--server", &base, "--key"])
        .arg(crate::helpers::key_of("test-admin"))
        .output()
        .expect("run idgraph reresolve");
    crate::helpers::assert_succeeded(&out, "idgraph reresolve --server");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{PEOPLE} profiles re-rendered")),
        "{stdout}"
    );
    // A wrong key is refused with the server's reason, and the command fails.
    let out = crate::helpers::idgraph_command()
        .args(["reresolve", "--server", &base, "--key", "idg_wrong"])
        .output()
        .expect("run idgraph reresolve");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_matching_threshold_matches_existing_records_again() {
    use crate::helpers::{get_json, http_client, ServeProcess};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let on = ("IDGRAPH_MATCHING__ENABLED".to_owned(), "true".to_owned());
    let mut server = ServeProcess::start_with_env(&data, std::slice::from_ref(&on));
    let client = http_client();
    let base = server.address.clone();
    // The same person in two cities: about 0.88 with the built-in model, under 0.9.
    let person = |city: &str| {
        json!({"first_name": "Anna", "last_name": "Kowalski", "birth_date": "1980-01-01",
               "address": {"city": city}})
    };
    let events = json!([
        {"event_id": "t1", "source": "crm", "identifiers": {"phone": "+16175550111"},
         "traits": person("Boston")},
        {"event_id": "t2", "source": "pos", "identifiers": {"phone": "+16175550112"},
         "traits": person("Denver")},
    ]);
    let (status, body) = post_json(&client, &format!("{base}/v1/events"), &events).await;
    assert_eq!(status, 200, "{body}");
    let pid = |base: String, phone: &'static str| {
        let client = client.clone();
        async move {
            get_json(
                &client,
                &format!("{base}/v1/lookup?kind=phone&value=%2B{phone}"),
            )
            .await
            .1["profile_id"]
                .clone()
        }
    };
    assert_ne!(
        pid(base.clone(), "16175550111").await,
        pid(base.clone(), "16175550112").await
    );
    assert!(server.terminate().success());

    // A lower threshold: the server matches the stored records again by itself.
    let env = [
        on,
        ("IDGRAPH_MATCHING__THRESHOLD".to_owned(), "0.8".to_owned()),
    ];
    let mut server = ServeProcess::start_with_env(&data, &env);
    let base = server.address.clone();
    let mut progress = Value::Null;
    for _ in 0..600 {
        progress = get_json(&client, &format!("{base}/v1/admin/reresolve"))
            .await
            .1;
        if progress["state"] == "done" || progress["state"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["rematch"], true, "{progress}");
    let merged = pid(base.clone(), "16175550111").await;
    assert_eq!(merged, pid(base.clone(), "16175550112").await);
    let (_, history) = get_json(
        &client,
        &format!(
            "{base}/v1/profiles/{}/history",
            merged.as_str().unwrap_or_default()
        ),
    )
    .await;
    assert!(
        history.to_string().contains("reresolve:"),
        "the merge names the re-resolve: {history}"
    );
    assert!(server.terminate().success());
}
