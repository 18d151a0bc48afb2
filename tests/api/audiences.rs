//! Audiences over HTTP: definition (filter errors with their position, unknown fields,
//! purposes), membership kept current by events, merges, splits, erasure and consent,
//! with enter/exit records on the change feed; incremental membership equal to a full
//! recomputation after a random sequence of changes; members masked by role; estimates
//! and size history.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

use crate::helpers::{assert_error, event, json_ok, key_of, spawn_app, TestApp};

async fn define(app: &TestApp, id: &str, filter: &str, purpose: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/v1/audiences"))
        .json(&json!({ "id": id, "filter": filter, "purpose": purpose }))
        .send()
        .await
        .expect("POST /v1/audiences");
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    wait_ready(app, id).await
}

async fn wait_ready(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let v = json_ok(app.get(&format!("/v1/audiences/{id}")).await).await;
        if v["status"] == "ready" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("audience {id} never became ready");
}

/// Every member's profile id, following `next_after`.
async fn members(app: &TestApp, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("limit", "7".to_owned())];
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = json_ok(
            app.get_query(&format!("/v1/audiences/{id}/members"), &q)
                .await,
        )
        .await;
        for m in page["members"].as_array().cloned().unwrap_or_default() {
            let pid = m["profile_id"].as_str().unwrap_or_default().to_owned();
            assert!(
                m["audiences"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == id)),
                "a member's golden profile names the audience: {m}"
            );
            out.insert(pid);
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => return out,
        }
    }
}

/// Members as the change feed's enter/exit records of `id` leave them.
async fn replayed(app: &TestApp, id: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut after = 0u64;
    loop {
        let page = json_ok(
            app.get_query(
                "/v1/changes",
                &[
                    ("after", &after.to_string()),
                    ("types", "audience_entered,audience_exited"),
                    ("limit", "1000"),
                ],
            )
            .await,
        )
        .await;
        let records = page["changes"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            return set;
        }
        for r in records.iter().filter(|r| r["audience"] == id) {
            let pid = r["profile_id"].as_str().unwrap_or_default().to_owned();
            match r["type"].as_str() {
                Some("audience_entered") => assert!(set.insert(pid), "entered twice: {r}"),
                _ => assert!(set.remove(&pid), "exited without entering: {r}"),
            }
        }
        after = page["next"].as_u64().unwrap_or(after);
    }
}

fn person(id: &str, email: &str, tier: &str, city: &str, consent: &str) -> Value {
    let mut ev = event(
        id,
        "crm",
        json!({ "email": email }),
        json!({ "tier": tier, "address": { "city": city } }),
    );
    ev["consent"] = json!({ "marketing_email": consent });
    ev
}

fn purchase(id: &str, email: &str, amount: f64) -> Value {
    let mut ev = event(id, "pos", json!({ "email": email }), Value::Null);
    ev["type"] = json!("purchase");
    ev["properties"] = json!({ "amount": amount });
    ev
}

#[tokio::test]
async fn membership_follows_events_consent_merges_splits_and_erasure() {
    let app = spawn_app().await;
    app.ingest(&person(
        "a1",
        "ann@example.com",
        "gold",
        "Chicago",
        "granted",
    ))
    .await;
    app.ingest(&purchase("a2", "ann@example.com", 30.0)).await;
    app.ingest(&person(
        "b1",
        "bob@example.com",
        "gold",
        "Chicago",
        "denied",
    ))
    .await;
    app.ingest(&purchase("b2", "bob@example.com", 80.0)).await;
    app.ingest(&person(
        "c1",
        "cy@example.com",
        "silver",
        "Chicago",
        "granted",
    ))
    .await;
    app.ingest(&purchase("c2", "cy@example.com", 10.0)).await;
    app.ingest(&person(
        "d1",
        "di@example.com",
        "gold",
        "Chicago",
        "granted",
    ))
    .await;

    let filter =
        r#"trait.tier = "gold" and trait.address.city = "Chicago" and count(purchase, 30d) >= 1"#;
    let v = define(&app, "gold-chicago", filter, "marketing_email").await;
    let ann = app.pid_of("email", "ann@example.com").await;
    assert_eq!(
        members(&app, "gold-chicago").await,
        BTreeSet::from([ann.clone()])
    );
    assert_eq!(v["size"], 1, "{v}");
    assert_eq!(
        v["excluded_no_consent"], 1,
        "bob matched without consent: {v}"
    );
    assert!(
        !v["size_history"].as_array().is_some_and(Vec::is_empty),
        "{v}"
    );

    // Di buys: she enters in the same write.
    app.ingest(&purchase("d2", "di@example.com", 5.0)).await;
    let di = app.pid_of("email", "di@example.com").await;
    assert_eq!(
        members(&app, "gold-chicago").await,
        BTreeSet::from([ann.clone(), di.clone()])
    );
    // Ann withdraws consent: she leaves, and is counted as left out.
    let mut withdraw = event(
        "a3",
        "web",
        json!({ "email": "ann@example.com" }),
        Value::Null,
    );
    withdraw["consent"] = json!({ "marketing_email": "denied" });
    app.ingest(&withdraw).await;
    assert_eq!(
        members(&app, "gold-chicago").await,
        BTreeSet::from([di.clone()])
    );
    let v = json_ok(app.get("/v1/audiences/gold-chicago").await).await;
    assert_eq!(
        (v["size"].as_u64(), v["excluded_no_consent"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );

    // Cy (silver) and Di merge through a shared phone: the merged profile is Di's (older
    // profile survives), tier chosen by survivorship; whoever is absorbed exits.
    let mut link = event(
        "m1",
        "crm",
        json!({ "email": "cy@example.com", "phone": "+14155550100" }),
        Value::Null,
    );
    link["timestamp"] = json!("2020-01-01T00:00:00Z");
    app.ingest(&link).await;
    app.ingest(&event(
        "m2",
        "crm",
        json!({ "email": "di@example.com", "phone": "+14155550100" }),
        Value::Null,
    ))
    .await;
    let merged = app.pid_of("email", "di@example.com").await;
    assert_eq!(merged, app.pid_of("email", "cy@example.com").await);
    let now = members(&app, "gold-chicago").await;
    let p = app.profile(&merged).await;
    let expect_member = p["traits"]["extra"]["tier"] == "gold";
    assert_eq!(now.contains(&merged), expect_member, "{p}");
    assert!(now.len() <= 1, "{now:?}");

    // Split them again: each part is evaluated on its own events.
    assert_eq!(
        app.delete_link("email:di@example.com", "phone:+14155550100")
            .await
            .status()
            .as_u16(),
        200
    );
    let di_after = app.pid_of("email", "di@example.com").await;
    let cy_after = app.pid_of("email", "cy@example.com").await;
    assert_ne!(di_after, cy_after);
    let now = members(&app, "gold-chicago").await;
    assert!(
        now.contains(&di_after),
        "Di (gold, bought, consent) is back in: {now:?}"
    );
    assert!(!now.contains(&cy_after), "Cy is silver: {now:?}");

    // Erasure: Di leaves.
    let resp = app
        .client
        .post(app.url("/v1/erasure"))
        .json(&json!({ "identifier": "email:di@example.com" }))
        .send()
        .await
        .expect("POST /v1/erasure");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    assert!(members(&app, "gold-chicago").await.is_empty());
    let v = json_ok(app.get("/v1/audiences/gold-chicago").await).await;
    assert_eq!(v["size"], 0, "{v}");

    // The feed's enter/exit records replay to the current membership, at every step.
    assert_eq!(replayed(&app, "gold-chicago").await, BTreeSet::new());
    // No record of an audience carries personal values.
    let page = json_ok(
        app.get_query(
            "/v1/changes",
            &[("types", "audience_entered,audience_exited")],
        )
        .await,
    )
    .await;
    let text = page.to_string();
    assert!(
        !text.contains("example.com") && !text.contains("Chicago"),
        "{text}"
    );
    assert!(
        page["changes"].as_array().is_some_and(|a| a.len() >= 4),
        "{page}"
    );
}

/// A random sequence of events (traits, consent, purchases), merges, splits and
/// erasures; then the incrementally kept membership must equal a full recomputation (a
/// second audience with the same filter defined afterwards, computed over every profile)
/// and the feed's replay.
#[tokio::test]
async fn incremental_membership_equals_a_full_recomputation() {
    let app = spawn_app().await;
    let filter = r#"(trait.tier in ("gold", "platinum") or sum(purchase, amount) > 100) and count(purchase) >= 1 and has(email)"#;
    define(&app, "live", filter, "marketing_email").await;
    let mut rng = SmallRng::seed_from_u64(20261205);
    let people = 24;
    let email = |i: usize| format!("p{i}@example.com");
    let phone = |i: usize| format!("+1415555{:04}", 1000 + i);
    let mut erased: BTreeSet<usize> = BTreeSet::new();
    let mut links: Vec<(usize, usize)> = Vec::new();
    for step in 0..220 {
        let i = rng.gen_range(0..people);
        if erased.contains(&i) {
            continue;
        }
        let id = format!("r{step}");
        match rng.gen_range(0..100) {
            0..=29 => {
                let tier = ["gold", "silver", "platinum", "bronze"][rng.gen_range(0..4)];
                let consent = if rng.gen_bool(0.7) {
                    "granted"
                } else {
                    "denied"
                };
                let mut ev = event(
                    &id,
                    "crm",
                    json!({ "email": email(i), "phone": phone(i) }),
                    json!({ "tier": tier }),
                );
                ev["consent"] = json!({ "marketing_email": consent });
                app.ingest(&ev).await;
            }
            30..=59 => {
                let mut ev = purchase(&id, &email(i), rng.gen_range(1..80) as f64);
                ev["identifiers"] = json!({ "email": email(i) });
                app.ingest(&ev).await;
            }
            60..=74 => {
                // Person i's email seen with person j's phone: a merge.
                let j = rng.gen_range(0..people);
                if i == j || erased.contains(&j) {
                    continue;
                }
                let ev = event(
                    &id,
                    "web",
                    json!({ "email": email(i), "phone": phone(j) }),
                    Value::Null,
                );
                app.ingest(&ev).await;
                links.push((i, j));
            }
            75..=89 => {
                // Undo a merge: delete the link (a split when it held the profile together).
                if links.is_empty() {
                    continue;
                }
                let (a, b) = links.remove(rng.gen_range(0..links.len()));
                if erased.contains(&a) || erased.contains(&b) {
                    continue;
                }
                let resp = app
                    .delete_link(
                        &format!("email:{}", email(a)),
                        &format!("phone:{}", phone(b)),
                    )
                    .await;
                assert!(
                    [200, 404].contains(&resp.status().as_u16()),
                    "{:?}",
                    resp.text().await
                );
            }
            _ => {
                let resp = app
                    .client
                    .post(app.url("/v1/erasure"))
                    .json(&json!({ "identifier": format!("email:{}", email(i)) }))
                    .send()
                    .await
                    .expect("POST /v1/erasure");
                if resp.status().as_u16() == 200 {
                    // Everyone merged with i went too: stop using them.
                    let pid_gone: Vec<usize> = (0..people).collect();
                    for k in pid_gone {
                        if app.lookup("email", &email(k)).await.status().as_u16() == 404 {
                            erased.insert(k);
                        }
                    }
                }
            }
        }
    }
    let incremental = members(&app, "live").await;
    define(&app, "full", filter, "marketing_email").await;
    let full = members(&app, "full").await;
    assert_eq!(
        incremental, full,
        "incremental membership differs from a full recomputation"
    );
    assert!(!full.is_empty(), "the sequence left some members");
    assert_eq!(
        replayed(&app, "live").await,
        incremental,
        "the feed replays to the members"
    );
    let live = json_ok(app.get("/v1/audiences/live").await).await;
    let recomputed = json_ok(app.get("/v1/audiences/full").await).await;
    assert_eq!(live["size"], recomputed["size"], "{live} {recomputed}");
    assert_eq!(
        live["excluded_no_consent"], recomputed["excluded_no_consent"],
        "{live} {recomputed}"
    );
    assert_eq!(live["size"].as_u64(), Some(incremental.len() as u64));
}

#[tokio::test]
async fn bad_definitions_are_refused_with_the_position_and_nothing_is_stored() {
    let app = spawn_app().await;
    let post = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/audiences"))
                .json(&body)
                .send()
                .await
                .expect("POST /v1/audiences")
        }
    };
    let cases = [
        (r#"trait.tier = "gold" and"#, 23usize),
        ("count(purchase, 30d) > \"many\"", 23),
        ("has(fax)", 4),
        ("{{7*7}}", 0),
        ("${jndi:ldap://x}", 0),
        ("sum(purchase, price) > 1", 14),
    ];
    for (filter, position) in cases {
        let body = assert_error(
            post(json!({ "id": "x", "filter": filter, "purpose": "marketing_email" })).await,
            400,
            "invalid_filter",
        )
        .await;
        assert_eq!(body["position"], position, "{filter}: {body}");
        assert_eq!(body["field"], "filter");
    }
    assert_error(
        post(json!({ "id": "x", "filter": "has(email)", "purpose": "telepathy" })).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_error(
        post(json!({ "id": "x", "filter": "has(email)", "purpose": "analytics", "colour": 1 }))
            .await,
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        post(json!({ "id": "Bad Id", "filter": "has(email)", "purpose": "analytics" })).await,
        400,
        "invalid_parameter",
    )
    .await;
    let list = json_ok(app.get("/v1/audiences").await).await;
    assert_eq!(list["audiences"], json!([]), "nothing stored: {list}");

    define(&app, "x", "has(email)", "analytics").await;
    assert_error(
        post(json!({ "id": "x", "filter": "has(phone)", "purpose": "analytics" })).await,
        409,
        "audience_exists",
    )
    .await;
    assert_error(app.get("/v1/audiences/nope").await, 404, "not_found").await;
    assert_error(
        app.get("/v1/audiences/x/members?limit=0").await,
        400,
        "invalid_parameter",
    )
    .await;
    // Deleting: members leave with exit records, then it is gone.
    app.ingest(&person("e1", "eve@example.com", "gold", "Oslo", "granted"))
        .await;
    let resp = app.delete("/v1/audiences/x").await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_error(app.get("/v1/audiences/x").await, 404, "not_found").await;
}

#[tokio::test]
async fn estimates_and_members_masked_by_role() {
    let app = spawn_app().await;
    for i in 0..10 {
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        let consent = if i < 8 { "granted" } else { "denied" };
        app.ingest(&person(
            &format!("p{i}"),
            &format!("u{i}@example.com"),
            tier,
            "Rome",
            consent,
        ))
        .await;
    }
    let est = json_ok(
        app.client
            .post(app.url("/v1/audiences/estimate"))
            .json(&json!({ "filter": "trait.tier = \"gold\"", "purpose": "marketing_email" }))
            .send()
            .await
            .expect("estimate"),
    )
    .await;
    assert_eq!(est["matched"], 4, "{est}");
    assert_eq!(est["excluded_no_consent"], 1, "{est}");
    assert_eq!(est["exact"], true, "{est}");
    assert_eq!(est["estimate"], 4, "{est}");
    let bad = assert_error(
        app.client
            .post(app.url("/v1/audiences/estimate"))
            .json(&json!({ "filter": "trait.tier = ", "purpose": "marketing_email" }))
            .send()
            .await
            .expect("estimate"),
        400,
        "invalid_filter",
    )
    .await;
    assert_eq!(bad["position"], 13, "{bad}");

    define(&app, "gold", "trait.tier = \"gold\"", "marketing_email").await;
    // An analyst sees members pseudonymized; an agent may not use audiences at all.
    let analyst = app
        .client
        .get(app.url("/v1/audiences/gold/members"))
        .header(AUTHORIZATION, format!("Bearer {}", key_of("test-analyst")))
        .send()
        .await
        .expect("members");
    let page = json_ok(analyst).await;
    let text = page.to_string();
    assert_eq!(page["members"].as_array().map(Vec::len), Some(4), "{page}");
    assert!(
        !text.contains("@example.com"),
        "analysts see no raw emails: {text}"
    );
    let agent = app
        .client
        .get(app.url("/v1/audiences/gold/members"))
        .header(AUTHORIZATION, format!("Bearer {}", key_of("test-agent")))
        .send()
        .await
        .expect("members");
    assert_eq!(agent.status().as_u16(), 403);
    // The members' golden profiles list the audience; others do not.
    let by_email: BTreeMap<String, Value> = {
        let mut m = BTreeMap::new();
        for i in [0, 1] {
            let pid = app.pid_of("email", &format!("u{i}@example.com")).await;
            m.insert(format!("u{i}"), app.profile(&pid).await);
        }
        m
    };
    assert_eq!(by_email["u0"]["audiences"], json!(["gold"]));
    assert!(
        by_email["u1"].get("audiences").is_none(),
        "{}",
        by_email["u1"]
    );
}
