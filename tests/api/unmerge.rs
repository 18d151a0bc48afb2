//! Unmerge over HTTP: deleting a link or an identifier splits a profile exactly along the
//! remaining graph; a later event re-linking the parts merges them again.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, identifiers_of, json_ok, spawn_app, TestApp};

const X: (&str, &str) = ("email", "x@example.com");
const Y: (&str, &str) = ("device_id", "dev-y");
const Z: (&str, &str) = ("cookie_id", "ck-z");

fn key((kind, value): (&str, &str)) -> String {
    format!("{kind}:{value}")
}

/// x-y in one event, y-z in another: one profile (x = email, y = device, z = cookie).
async fn chain(app: &TestApp) -> String {
    let p = app
        .ingest_pid(&event(
            "u-1",
            "web",
            json!({ X.0: X.1, Y.0: Y.1 }),
            json!({ "first_name": "Xena" }),
        ))
        .await;
    let p2 = app
        .ingest_pid(&event(
            "u-2",
            "mobile",
            json!({ Y.0: Y.1, Z.0: Z.1 }),
            json!({ "last_name": "Zed" }),
        ))
        .await;
    assert_eq!(p, p2, "the chain must be one profile");
    for (kind, value) in [X, Y, Z] {
        assert_eq!(app.pid_of(kind, value).await, p);
    }
    p
}

#[tokio::test]
async fn deleting_the_bridging_link_splits_the_profile() {
    let app = spawn_app().await;
    let p = chain(&app).await;

    let out = json_ok(app.delete_link(&key(X), &key(Y)).await).await;
    assert_eq!(out["split"], true, "{out}");
    assert_eq!(out["profile_id"], p.as_str(), "{out}");
    let parts = out["profiles"].as_array().expect("profiles array");
    assert_eq!(parts.len(), 2, "{out}");
    assert_eq!(
        parts[0],
        p.as_str(),
        "the part with the highest-priority identifier keeps the id"
    );
    let other = parts[1].as_str().unwrap().to_owned();
    assert_ne!(other, p);

    // Lookups right after the answer see the split.
    assert_eq!(app.pid_of(X.0, X.1).await, p);
    assert_eq!(app.pid_of(Y.0, Y.1).await, other);
    assert_eq!(app.pid_of(Z.0, Z.1).await, other);

    // Each part holds exactly its identifiers and is rebuilt from its own events.
    let kept = app.profile(&p).await;
    assert_eq!(identifiers_of(&kept, "email"), ["x@example.com"]);
    assert!(identifiers_of(&kept, "device_id").is_empty(), "{kept}");
    assert!(identifiers_of(&kept, "cookie_id").is_empty(), "{kept}");
    assert_eq!(kept["event_count"], 1, "{kept}");
    assert_eq!(kept["traits"]["first_name"], "Xena", "{kept}");
    assert!(kept["traits"].get("last_name").is_none(), "{kept}");
    let split_off = app.profile(&other).await;
    assert_eq!(identifiers_of(&split_off, "device_id"), ["dev-y"]);
    assert_eq!(identifiers_of(&split_off, "cookie_id"), ["ck-z"]);
    assert!(
        identifiers_of(&split_off, "email").is_empty(),
        "{split_off}"
    );
    assert_eq!(split_off["event_count"], 1, "{split_off}");
    assert_eq!(split_off["traits"]["last_name"], "Zed", "{split_off}");

    // History shows the deleted link and the split, with the manual rule.
    let history = json_ok(app.get(&format!("/v1/profiles/{p}/history")).await).await;
    let entries = history["history"].as_array().unwrap();
    let split = entries
        .iter()
        .find(|h| h["kind"] == "split")
        .unwrap_or_else(|| panic!("no split entry: {history}"));
    assert_eq!(split["profiles"], json!([p, other]), "{history}");
    assert!(
        split["rule"]
            .as_str()
            .unwrap()
            .starts_with("manual_unmerge"),
        "{history}"
    );
    assert!(
        entries.iter().any(|h| h["kind"] == "link_deleted"),
        "{history}"
    );
    let other_history = json_ok(app.get(&format!("/v1/profiles/{other}/history")).await).await;
    assert!(
        other_history["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "split"),
        "{other_history}"
    );

    // The link is gone: deleting it again is a 404.
    assert_error(app.delete_link(&key(X), &key(Y)).await, 404, "not_found").await;
}

#[tokio::test]
async fn deleting_a_link_of_a_triangle_does_not_split() {
    let app = spawn_app().await;
    let p = chain(&app).await;
    app.ingest(&event(
        "u-3",
        "web",
        json!({ X.0: X.1, Z.0: Z.1 }),
        Value::Null,
    ))
    .await;

    // Identifiers are normalized like ingest: the email may be typed in any case.
    let out = json_ok(app.delete_link("email:X@Example.com", &key(Y)).await).await;
    assert_eq!(out["split"], false, "{out}");
    assert_eq!(out["profile_id"], p.as_str());
    assert_eq!(out["profiles"], json!([p]));
    for (kind, value) in [X, Y, Z] {
        assert_eq!(app.pid_of(kind, value).await, p);
    }
    let golden = app.profile(&p).await;
    assert_eq!(golden["event_count"], 3, "{golden}");
}

#[tokio::test]
async fn deleting_the_bridging_identifier_splits_the_profile() {
    let app = spawn_app().await;
    let p = chain(&app).await;

    let out = json_ok(
        app.delete(&format!("/v1/identifiers/{}/{}", Y.0, Y.1))
            .await,
    )
    .await;
    assert_eq!(out["split"], true, "{out}");
    assert_eq!(out["profile_id"], p.as_str());
    let parts = out["profiles"].as_array().expect("profiles array");
    assert_eq!(parts.len(), 2, "{out}");

    let px = app.pid_of(X.0, X.1).await;
    let pz = app.pid_of(Z.0, Z.1).await;
    assert_ne!(px, pz);
    assert_eq!(px, p);
    assert_eq!(json!([px, pz]), out["profiles"]);
    assert_error(app.lookup(Y.0, Y.1).await, 404, "not_found").await;
    for id in [&px, &pz] {
        let golden = app.profile(id).await;
        assert!(
            identifiers_of(&golden, "device_id").is_empty(),
            "deleted identifier still there: {golden}"
        );
    }
    let history = json_ok(app.get(&format!("/v1/profiles/{p}/history")).await).await;
    let entries = history["history"].as_array().unwrap();
    assert!(
        entries.iter().any(|h| h["kind"] == "identifier_deleted"),
        "{history}"
    );
    assert!(entries.iter().any(|h| h["kind"] == "split"), "{history}");

    // Deleting it again: it is gone.
    assert_error(
        app.delete(&format!("/v1/identifiers/{}/{}", Y.0, Y.1))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn unknown_links_and_identifiers_are_404() {
    let app = spawn_app().await;
    chain(&app).await;
    // Neither identifier exists.
    assert_error(
        app.delete_link("email:nobody@example.com", "device_id:nothing")
            .await,
        404,
        "not_found",
    )
    .await;
    // Both exist, but were never linked directly.
    assert_error(app.delete_link(&key(X), &key(Z)).await, 404, "not_found").await;
    assert_error(
        app.delete("/v1/identifiers/device_id/no-such-device").await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.delete("/v1/identifiers/email/nobody@example.com").await,
        404,
        "not_found",
    )
    .await;
    // Nothing changed.
    let p = app.pid_of(X.0, X.1).await;
    assert_eq!(app.pid_of(Z.0, Z.1).await, p);
}

#[tokio::test]
async fn bad_unmerge_parameters_are_400() {
    let app = spawn_app().await;
    chain(&app).await;
    let err = assert_error(
        app.delete_link("nocolon", &key(Y)).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "a");
    let err = assert_error(
        app.delete_link(&key(X), "email:not-an-email").await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "b");
    let err = assert_error(
        app.delete_link(&key(X), "passport:123").await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "b");
    assert_error(
        app.delete_link(&key(X), &key(X)).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_error(
        app.delete("/v1/links?a=email:x@example.com").await,
        400,
        "invalid_query",
    )
    .await;
    let err = assert_error(
        app.delete("/v1/identifiers/passport/123").await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "value");
    // Still one profile.
    let p = app.pid_of(X.0, X.1).await;
    assert_eq!(app.pid_of(Z.0, Z.1).await, p);
}

#[tokio::test]
async fn re_adding_the_link_merges_the_parts_again() {
    let app = spawn_app().await;
    let p = chain(&app).await;
    let out = json_ok(app.delete_link(&key(X), &key(Y)).await).await;
    assert_eq!(out["split"], true, "{out}");
    let other = out["profiles"][1].as_str().unwrap().to_owned();

    let outcome = app
        .ingest(&event(
            "u-4",
            "crm",
            json!({ X.0: X.1, Y.0: Y.1 }),
            Value::Null,
        ))
        .await;
    assert_eq!(outcome["profile_id"], p.as_str(), "{outcome}");
    assert_eq!(outcome["merged"], json!([other]), "{outcome}");
    for (kind, value) in [X, Y, Z] {
        assert_eq!(app.pid_of(kind, value).await, p);
    }
    let golden = app.profile(&p).await;
    assert_eq!(golden["event_count"], 3, "{golden}");
    assert_eq!(golden["traits"]["first_name"], "Xena");
    assert_eq!(golden["traits"]["last_name"], "Zed");
    // The split-off id now resolves to the survivor.
    assert_eq!(app.profile(&other).await["profile_id"], p.as_str());
}
