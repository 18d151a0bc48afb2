//! The change feed over HTTP (`GET /v1/changes`): a record for every kind of change, in
//! commit order, paged and filtered; long polling; masking by role; erasure removing
//! every value of the person from the feed; retention answering 410.

use std::collections::BTreeSet;

use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, event, identifiers_of, json_ok, key_of, spawn_app, spawn_app_with, TestApp,
};

/// Every record after `after`, following `next` page by page (`limit` a page).
async fn all_changes(app: &TestApp, after: u64, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let page = json_ok(
            app.get_query(
                "/v1/changes",
                &[("after", &after.to_string()), ("limit", &limit.to_string())],
            )
            .await,
        )
        .await;
        let records = page["changes"].as_array().cloned().unwrap_or_default();
        let next = page["next"].as_u64().expect("next is a number");
        if records.is_empty() {
            assert_eq!(next, after, "an empty page keeps the position: {page}");
            return out;
        }
        assert!(next > after, "{page}");
        after = next;
        out.extend(records);
    }
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

#[tokio::test]
async fn every_change_to_the_graph_is_a_record_in_commit_order() {
    let app = spawn_app().await;
    let a = app
        .ingest_pid(&event(
            "c-1",
            "web",
            json!({"email": "ann@example.com", "cookie_id": "ck-ann"}),
            json!({"first_name": "Ann"}),
        ))
        .await;
    let b = app
        .ingest_pid(&event(
            "c-2",
            "pos",
            json!({"phone": "+14155550100", "customer_id": "cust-ann"}),
            json!({"last_name": "Lee"}),
        ))
        .await;
    assert_ne!(a, b);
    // A new identifier for A, and a changed trait.
    app.ingest(&event(
        "c-3",
        "web",
        json!({"email": "ann@example.com", "device_id": "dev-ann"}),
        json!({"first_name": "Anne"}),
    ))
    .await;
    // An event carrying both: the younger profile is absorbed into the older.
    let merged = app
        .ingest_pid(&event(
            "c-4",
            "crm",
            json!({"cookie_id": "ck-ann", "customer_id": "cust-ann"}),
            json!({}),
        ))
        .await;
    assert_eq!(merged, a);
    // A steward removes an identifier, then a link (which splits the profile).
    json_ok(app.delete("/v1/identifiers/device_id/dev-ann").await).await;
    let split = json_ok(
        app.delete_link("cookie_id:ck-ann", "customer_id:cust-ann")
            .await,
    )
    .await;
    assert_eq!(split["split"], true, "{split}");

    let records = all_changes(&app, 0, 2).await;
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), records.len());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {seqs:?}"
    );

    let created = of_type(&records, "profile_created");
    assert_eq!(created.len(), 2, "{records:?}");
    assert_eq!(created[0]["profile_id"], a.as_str());
    assert_eq!(identifiers_of(created[0], "email"), ["ann@example.com"]);
    assert_eq!(created[0]["event_id"], "c-1");
    assert_eq!(created[1]["profile_id"], b.as_str());

    let added = of_type(&records, "identifiers_added");
    assert!(
        added
            .iter()
            .any(|r| r["profile_id"] == a.as_str() && identifiers_of(r, "device_id") == ["dev-ann"]),
        "{added:?}"
    );
    // The merge brought B's identifiers to A.
    assert!(
        added
            .iter()
            .any(|r| r["profile_id"] == a.as_str()
                && identifiers_of(r, "customer_id") == ["cust-ann"]),
        "{added:?}"
    );

    let golden = of_type(&records, "golden_changed");
    assert!(
        golden.iter().any(|r| r["profile_id"] == a.as_str()
            && r["fields"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("first_name")))),
        "{golden:?}"
    );
    // Traits are named, never their values.
    let text = serde_json::to_string(&records).unwrap_or_default();
    assert!(
        !text.contains("Anne") && !text.contains("\"Lee\""),
        "{text}"
    );

    let merges = of_type(&records, "profiles_merged");
    assert_eq!(merges.len(), 1, "{records:?}");
    assert_eq!(merges[0]["survivor"], a.as_str());
    assert_eq!(merges[0]["absorbed"], json!([b]));
    assert_eq!(merges[0]["match_type"], "deterministic");
    assert_eq!(merges[0]["event_id"], "c-4");
    assert!(merges[0]["rule"].is_string());

    let removed = of_type(&records, "identifier_removed");
    assert_eq!(removed.len(), 1, "{records:?}");
    assert_eq!(identifiers_of(removed[0], "device_id"), ["dev-ann"]);

    assert_eq!(of_type(&records, "link_removed").len(), 1, "{records:?}");
    let splits = of_type(&records, "profile_split");
    assert_eq!(splits.len(), 1, "{records:?}");
    let parts = splits[0]["parts"].as_array().cloned().unwrap_or_default();
    assert_eq!(parts.len(), 2, "{:?}", splits[0]);
    let all_part_values: BTreeSet<String> = parts
        .iter()
        .flat_map(|p| {
            p["identifiers"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    for v in ["ann@example.com", "ck-ann", "+14155550100", "cust-ann"] {
        assert!(all_part_values.contains(v), "{v} in no part: {parts:?}");
    }

    // Filtering by type, and paging on from `next`.
    let page = json_ok(
        app.get_query("/v1/changes", &[("types", "profiles_merged,profile_split")])
            .await,
    )
    .await;
    let kinds: Vec<&str> = page["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["profiles_merged", "profile_split"], "{page}");
    let last = seqs.last().copied().unwrap_or_default();
    let rest = json_ok(
        app.get_query("/v1/changes", &[("after", &last.to_string())])
            .await,
    )
    .await;
    assert_eq!(rest["changes"], json!([]), "{rest}");
    assert_eq!(rest["next"], last);
}

#[tokio::test]
async fn a_long_poll_answers_when_a_change_arrives() {
    let app = spawn_app().await;
    app.ingest(&event(
        "w-0",
        "web",
        json!({"cookie_id": "ck-w0"}),
        json!({}),
    ))
    .await;
    let start = all_changes(&app, 0, 100).await;
    let after = start
        .last()
        .and_then(|r| r["seq"].as_u64())
        .expect("a record");
    let url = app.url(&format!("/v1/changes?after={after}&wait=30"));
    let client = app.client.clone();
    let waiting = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.ingest(&event(
        "w-1",
        "web",
        json!({"cookie_id": "ck-w1"}),
        json!({}),
    ))
    .await;
    let resp = waiting
        .await
        .expect("the request task")
        .expect("the request");
    let page = json_ok(resp).await;
    let records = page["changes"].as_array().cloned().unwrap_or_default();
    assert!(
        !records.is_empty(),
        "the wait ended without the new record: {page}"
    );
    assert_eq!(records[0]["type"], "profile_created");
    assert_eq!(identifiers_of(&records[0], "cookie_id"), ["ck-w1"]);
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=-1", "after"),
        ("wait=61", "wait"),
        ("types=profile_merged", "types"),
        ("types=,", "types"),
    ] {
        let body = assert_error(
            app.get(&format!("/v1/changes?{query}")).await,
            400,
            "invalid_parameter",
        )
        .await;
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn roles_see_the_feed_as_they_see_profiles() {
    let app = spawn_app().await;
    app.ingest(&event(
        "r-1",
        "web",
        json!({"email": "rita@example.com", "customer_id": "cust-rita"}),
        json!({}),
    ))
    .await;
    let get = |name: &'static str| {
        let client = app.client.clone();
        let url = app.url("/v1/changes");
        async move {
            client
                .get(url)
                .header(AUTHORIZATION, format!("Bearer {}", key_of(name)))
                .send()
                .await
                .expect("GET /v1/changes")
        }
    };
    let service = json_ok(get("test-service").await).await.to_string();
    assert!(service.contains("rita@example.com"), "{service}");
    let analyst = json_ok(get("test-analyst").await).await.to_string();
    assert!(
        !analyst.contains("rita@example.com") && !analyst.contains("cust-rita"),
        "{analyst}"
    );
    assert!(analyst.contains("ps_"), "pseudonyms: {analyst}");
    for name in ["test-agent", "test-ingest"] {
        assert_error(get(name).await, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn an_erasure_removes_the_persons_values_from_every_record() {
    let app = spawn_app().await;
    let person = app
        .ingest_pid(&event(
            "e-1",
            "web",
            json!({"email": "erin@example.com", "cookie_id": "ck-erin"}),
            json!({"first_name": "Erin"}),
        ))
        .await;
    let other = app
        .ingest_pid(&event(
            "e-2",
            "pos",
            json!({"phone": "+14155550177"}),
            json!({}),
        ))
        .await;
    // The other profile merges in (its phone is now the person's), and an identifier of
    // the person is removed by a steward before the erasure.
    app.ingest(&event(
        "e-3",
        "pos",
        json!({"phone": "+14155550177", "email": "erin@example.com", "device_id": "dev-erin"}),
        json!({}),
    ))
    .await;
    json_ok(app.delete("/v1/identifiers/device_id/dev-erin").await).await;
    let before = serde_json::to_string(&all_changes(&app, 0, 1000).await).unwrap_or_default();
    for v in ["erin@example.com", "ck-erin", "14155550177", "dev-erin"] {
        assert!(before.contains(v), "{v} is in the feed before: {before}");
    }

    // Ingest keeps running beside the erasure (busy groups).
    let busy = {
        let client = app.client.clone();
        let url = app.url("/v1/events");
        tokio::spawn(async move {
            for i in 0..40 {
                let batch: Vec<Value> = (0..25)
                    .map(|j| {
                        event(
                            &format!("busy-{i}-{j}"),
                            "web",
                            json!({"cookie_id": format!("ck-busy-{i}-{j}")}),
                            json!({}),
                        )
                    })
                    .collect();
                let _ = client.post(&url).json(&batch).send().await;
            }
        })
    };
    let erased = json_ok(
        app.client
            .post(app.url("/v1/erasure"))
            .json(&json!({"identifier": "email:erin@example.com"}))
            .send()
            .await
            .expect("POST /v1/erasure"),
    )
    .await;
    assert!(erased.to_string().contains(&person), "{erased}");
    busy.await.expect("the ingest task");

    let records = all_changes(&app, 0, 1000).await;
    for v in ["erin@example.com", "ck-erin", "14155550177", "dev-erin"] {
        let holding: Vec<&Value> = records
            .iter()
            .filter(|r| r.to_string().contains(v))
            .collect();
        assert!(holding.is_empty(), "{v} is still in the feed: {holding:?}");
    }
    let erasures = of_type(&records, "person_erased");
    assert_eq!(erasures.len(), 1, "{records:?}");
    let ids: BTreeSet<&str> = erasures[0]["erased"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        ids.contains(person.as_str()) && ids.contains(other.as_str()),
        "{ids:?}"
    );
    // The earlier records stay (ids, types, rules), marked redacted.
    let created = of_type(&records, "profile_created");
    let first = created
        .iter()
        .find(|r| r["profile_id"] == person.as_str())
        .expect("the person's creation record stays");
    assert_eq!(first["redacted"], true, "{first}");
    assert!(first.get("identifiers").is_none(), "{first}");
}

#[tokio::test]
async fn retention_removes_old_records_and_a_reader_behind_it_gets_410() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.ingest(&event(
            &format!("t-{i}"),
            "web",
            json!({"cookie_id": format!("ck-t{i}")}),
            json!({}),
        ))
        .await;
    }
    let records = all_changes(&app, 0, 100).await;
    assert_eq!(records.len(), 3, "{records:?}");
    // Everything written before "now + 1 ms" is past retention.
    let store = app.engine.store();
    let removed = store
        .prune_changes(idgraph::engine::now_ms() + 1, 2)
        .expect("prune");
    assert_eq!(removed, 2, "at most the batch asked for");
    let through = records[1]["seq"].as_u64().expect("seq");
    let body = assert_error(app.get("/v1/changes?after=0").await, 410, "changes_expired").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&through.to_string())),
        "{body}"
    );
    let page = json_ok(app.get(&format!("/v1/changes?after={through}")).await).await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["changes"][0], records[2]);
}

#[tokio::test]
async fn a_disabled_feed_writes_nothing_and_answers_404() {
    let app = spawn_app_with(|s| s.feed.enabled = false).await;
    app.ingest(&event(
        "d-1",
        "web",
        json!({"cookie_id": "ck-d1"}),
        json!({}),
    ))
    .await;
    assert_error(app.get("/v1/changes").await, 404, "feed_disabled").await;
    let kept = app.engine.store().changes_after(0, 10).expect("read");
    assert!(kept.is_empty(), "{kept:?}");
}
