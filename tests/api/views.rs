//! Analyst views over HTTP: devices, households, the Cytoscape graph and explain.

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, identifier_count, json_ok, spawn_app, TestApp};

/// Two customers of one family tablet. The first uses it (with a web cookie too); the
/// second, already known by an email, later logs in on the same tablet: one profile may
/// hold one customer id, so the tablet's link to the second customer is refused.
/// Returns (first, second) profile ids.
async fn family_tablet(app: &TestApp) -> (String, String) {
    let mut e1 = event(
        "d-1",
        "mobile",
        json!({ "customer_id": "C-1", "email": "mom@example.com", "device_id": "tab-1" }),
        Value::Null,
    );
    e1["properties"] = json!({ "platform": "iOS" });
    let first = app.ingest_pid(&e1).await;
    assert_eq!(
        app.ingest_pid(&event(
            "d-2",
            "web",
            json!({ "customer_id": "C-1", "cookie_id": "ck-mom" }),
            Value::Null
        ))
        .await,
        first
    );
    let second = app
        .ingest_pid(&event(
            "d-3",
            "crm",
            json!({ "customer_id": "C-2", "email": "kid@example.com" }),
            Value::Null,
        ))
        .await;
    assert_ne!(first, second);
    let outcome = app
        .ingest(&event(
            "d-4",
            "pos",
            json!({ "customer_id": "C-2", "device_id": "tab-1" }),
            Value::Null,
        ))
        .await;
    assert_eq!(outcome["profile_id"], second.as_str(), "{outcome}");
    assert_eq!(
        outcome["conflicts"],
        json!([{ "kind": "device_id", "rule": "max_per_profile:customer_id=1", "profile_id": first }]),
        "{outcome}"
    );
    assert_eq!(
        app.pid_of("device_id", "tab-1").await,
        first,
        "the tablet stays with its first user"
    );
    (first, second)
}

#[tokio::test]
async fn devices_view_lists_platform_and_who_else_uses_the_device() {
    let app = spawn_app().await;
    let (first, second) = family_tablet(&app).await;

    let body = json_ok(app.get(&format!("/v1/profiles/{first}/devices")).await).await;
    assert_eq!(body["profile_id"], first.as_str());
    let devices = body["devices"].as_array().expect("devices array");
    assert_eq!(devices.len(), 2, "{body}");
    let tablet = devices
        .iter()
        .find(|d| d["kind"] == "device_id")
        .unwrap_or_else(|| panic!("no device_id: {body}"));
    assert_eq!(tablet["value"], "tab-1");
    assert_eq!(
        tablet["platform"], "ios",
        "platform comes from properties.platform: {body}"
    );
    assert_eq!(tablet["shared_with"], json!([second]), "{body}");
    assert_eq!(tablet["event_count"], 2, "{body}");
    assert_eq!(tablet["sources"], json!(["mobile", "pos"]), "{body}");
    assert!(
        tablet["first_seen"].is_string() && tablet["last_seen"].is_string(),
        "{body}"
    );
    let cookie = devices
        .iter()
        .find(|d| d["kind"] == "cookie_id")
        .unwrap_or_else(|| panic!("no cookie_id: {body}"));
    assert_eq!(cookie["value"], "ck-mom");
    assert_eq!(cookie["platform"], "web", "{body}");
    assert_eq!(cookie["shared_with"], json!([]), "{body}");

    // The golden profile summarizes the same devices.
    let golden = app.profile(&first).await;
    let summary = golden["devices"]
        .as_array()
        .expect("devices in golden profile");
    assert_eq!(summary.len(), 2, "{golden}");
    assert!(
        summary
            .iter()
            .any(|d| d["value"] == "tab-1" && d["platform"] == "ios"),
        "{golden}"
    );

    // An absorbed or unknown id: the view follows aliases, unknown is 404.
    assert_error(
        app.get("/v1/profiles/p_999999999999/devices").await,
        404,
        "not_found",
    )
    .await;
}

/// Two people at one address written two ways; a third elsewhere. Returns the three ids.
async fn neighbours(app: &TestApp) -> (String, String, String) {
    let a = app
        .ingest_pid(&event(
            "hh-1",
            "crm",
            json!({ "customer_id": "H-1" }),
            json!({ "address": { "street": "12 Main Street", "city": "Springfield", "postal_code": "94107", "country": "US" } }),
        ))
        .await;
    let b = app
        .ingest_pid(&event(
            "hh-2",
            "pos",
            json!({ "customer_id": "H-2" }),
            json!({ "address": { "street": "12 MAIN ST.", "postal_code": " 94107", "country": "us" } }),
        ))
        .await;
    let c = app
        .ingest_pid(&event(
            "hh-3",
            "pos",
            json!({ "customer_id": "H-3" }),
            json!({ "address": { "street": "99 Elm Street", "postal_code": "94107", "country": "US" } }),
        ))
        .await;
    (a, b, c)
}

#[tokio::test]
async fn a_shared_address_written_differently_makes_a_household() {
    let app = spawn_app().await;
    let (a, b, c) = neighbours(&app).await;

    let hh = json_ok(app.get(&format!("/v1/profiles/{a}/household")).await).await;
    assert_eq!(hh["members"], json!([a, b]), "{hh}");
    assert_eq!(
        hh["bonds"],
        json!([{ "type": "shared_address", "a": a, "b": b }]),
        "{hh}"
    );
    assert_eq!(hh["truncated"], false);
    let hid = hh["household_id"]
        .as_str()
        .expect("household_id")
        .to_owned();
    assert!(hid.starts_with("hh_"), "{hh}");

    // Same household seen from the other member and by its id.
    let from_b = json_ok(app.get(&format!("/v1/profiles/{b}/household")).await).await;
    assert_eq!(from_b["household_id"], hid.as_str());
    assert_eq!(from_b["members"], json!([a, b]));
    let by_id = json_ok(app.get(&format!("/v1/households/{hid}")).await).await;
    assert_eq!(by_id["household_id"], hid.as_str());
    assert_eq!(by_id["members"], json!([a, b]));
    assert_eq!(by_id["bonds"], hh["bonds"]);

    // Golden profiles carry the household id; a person alone has none.
    assert_eq!(app.profile(&a).await["household_id"], hid.as_str());
    assert_eq!(app.profile(&b).await["household_id"], hid.as_str());
    let alone = app.profile(&c).await;
    assert!(alone["household_id"].is_null(), "{alone}");
    let own = json_ok(app.get(&format!("/v1/profiles/{c}/household")).await).await;
    assert_eq!(own["members"], json!([c]), "{own}");
    assert_eq!(own["bonds"], json!([]), "{own}");
    // A one-person "household" is not a household: it has no id, and the id its member's
    // sequence number would give is not answered either.
    assert!(own["household_id"].is_null(), "{own}");
    let lone_id = c.replace("p_", "hh_");
    assert_error(
        app.get(&format!("/v1/households/{lone_id}")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/v1/households/hh_999999999999").await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/v1/households/not-a-household").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn moving_out_leaves_the_household() {
    let app = spawn_app().await;
    let (a, b, _) = neighbours(&app).await;
    let mut moved = event(
        "hh-4",
        "crm",
        json!({ "customer_id": "H-2" }),
        json!({ "address": { "street": "1 Far Away Road", "postal_code": "10001", "country": "US" } }),
    );
    // Later than the first address, so it is the surviving (most recent) one.
    moved["timestamp"] = json!(chrono_now_plus_minutes(1));
    app.ingest(&moved).await;
    let hh = json_ok(app.get(&format!("/v1/profiles/{a}/household")).await).await;
    assert_eq!(hh["members"], json!([a]), "{hh}");
    assert!(app.profile(&b).await["household_id"].is_null());
}

fn chrono_now_plus_minutes(m: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(m)).to_rfc3339()
}

#[tokio::test]
async fn a_shared_device_bonds_a_household() {
    let app = spawn_app().await;
    let (first, second) = family_tablet(&app).await;
    let hh = json_ok(app.get(&format!("/v1/profiles/{first}/household")).await).await;
    assert_eq!(hh["members"], json!([first, second]), "{hh}");
    assert_eq!(
        hh["bonds"],
        json!([{ "type": "shared_device", "a": first, "b": second, "device": "device_id:tab-1" }]),
        "{hh}"
    );
    let hid = hh["household_id"].as_str().unwrap();
    assert_eq!(app.profile(&first).await["household_id"], hid);
    let by_id = json_ok(app.get(&format!("/v1/households/{hid}")).await).await;
    assert_eq!(by_id["members"], json!([first, second]), "{by_id}");
}

/// A household is symmetric: the second user of the tablet is in the same household,
/// whichever member is asked.
#[tokio::test]
async fn a_shared_device_household_is_the_same_from_either_member() {
    let app = spawn_app().await;
    let (first, second) = family_tablet(&app).await;
    let from_first = json_ok(app.get(&format!("/v1/profiles/{first}/household")).await).await;
    let from_second = json_ok(app.get(&format!("/v1/profiles/{second}/household")).await).await;
    assert_eq!(
        from_second["members"],
        json!([first, second]),
        "{from_second}"
    );
    assert_eq!(from_second["household_id"], from_first["household_id"]);
    assert_eq!(from_second["bonds"], from_first["bonds"]);
    assert_eq!(
        app.profile(&second).await["household_id"],
        from_first["household_id"]
    );
}

#[tokio::test]
async fn graph_shows_the_profile_and_its_refused_neighbours() {
    let app = spawn_app().await;
    let (first, second) = family_tablet(&app).await;
    let golden = app.profile(&first).await;
    let own = identifier_count(&golden);
    assert_eq!(own, 4, "{golden}");

    let g0 = json_ok(
        app.get(&format!("/v1/profiles/{first}/graph?depth=0"))
            .await,
    )
    .await;
    assert_eq!(g0["profile_id"], first.as_str());
    assert_eq!(g0["truncated"], false);
    let nodes = g0["elements"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), own, "{g0}");
    assert!(
        nodes
            .iter()
            .all(|n| n["data"]["in_profile"] == true && n["data"]["profile_id"] == first.as_str()),
        "{g0}"
    );
    let ids: Vec<&str> = nodes
        .iter()
        .map(|n| n["data"]["id"].as_str().unwrap())
        .collect();
    for k in [
        "customer_id:C-1",
        "email:mom@example.com",
        "device_id:tab-1",
        "cookie_id:ck-mom",
    ] {
        assert!(ids.contains(&k), "{k} missing: {g0}");
    }
    let edges = g0["elements"]["edges"].as_array().expect("edges");
    assert_eq!(
        edges.len(),
        3,
        "the anchor customer id links the three others: {g0}"
    );
    for e in edges {
        let d = &e["data"];
        assert_eq!(d["status"], "active", "{g0}");
        assert!(
            ids.contains(&d["source"].as_str().unwrap())
                && ids.contains(&d["target"].as_str().unwrap())
        );
        assert!(d["count"].as_u64().unwrap() >= 1);
        assert!(!d["event_ids"].as_array().unwrap().is_empty());
    }

    let g1 = json_ok(
        app.get(&format!("/v1/profiles/{first}/graph?depth=1"))
            .await,
    )
    .await;
    let nodes = g1["elements"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), own + 1, "{g1}");
    let outsider = nodes
        .iter()
        .find(|n| n["data"]["id"] == "customer_id:C-2")
        .unwrap_or_else(|| panic!("the refused neighbour is missing at depth 1: {g1}"));
    assert_eq!(outsider["data"]["in_profile"], false);
    assert_eq!(outsider["data"]["profile_id"], second.as_str());
    let refused = g1["elements"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["status"] == "refused")
        .unwrap_or_else(|| panic!("no refused edge: {g1}"));
    assert_eq!(refused["data"]["rule"], "max_per_profile:customer_id=1");
    let ends = [
        refused["data"]["source"].as_str().unwrap(),
        refused["data"]["target"].as_str().unwrap(),
    ];
    assert!(
        ends.contains(&"customer_id:C-2") && ends.contains(&"device_id:tab-1"),
        "{refused}"
    );
    assert_eq!(refused["data"]["event_ids"], json!(["d-4"]));
}

#[tokio::test]
async fn graph_limit_bounds_the_nodes_and_says_truncated() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "g-1",
            "web",
            json!({ "email": "many@example.com", "cookie_id": ["c1", "c2", "c3", "c4", "c5"] }),
            Value::Null,
        ))
        .await;
    let full = json_ok(app.get(&format!("/v1/profiles/{id}/graph")).await).await;
    assert_eq!(
        full["elements"]["nodes"].as_array().unwrap().len(),
        6,
        "{full}"
    );
    assert_eq!(full["truncated"], false);

    let cut = json_ok(
        app.get(&format!("/v1/profiles/{id}/graph?depth=1&limit=3"))
            .await,
    )
    .await;
    let nodes = cut["elements"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{cut}");
    assert_eq!(cut["truncated"], true, "{cut}");
    // Edges only join nodes that are shown.
    let shown: Vec<&str> = nodes
        .iter()
        .map(|n| n["data"]["id"].as_str().unwrap())
        .collect();
    for e in cut["elements"]["edges"].as_array().unwrap() {
        assert!(
            shown.contains(&e["data"]["source"].as_str().unwrap()),
            "{cut}"
        );
        assert!(
            shown.contains(&e["data"]["target"].as_str().unwrap()),
            "{cut}"
        );
    }
}

#[tokio::test]
async fn explain_shows_the_path_and_the_provenance_of_each_edge() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "x-1",
            "web",
            json!({ "customer_id": "C-9", "email": "path@example.com" }),
            Value::Null,
        ))
        .await;
    app.ingest(&event(
        "x-2",
        "mobile",
        json!({ "customer_id": "C-9", "device_id": "dev-9" }),
        Value::Null,
    ))
    .await;
    app.ingest(&event(
        "x-3",
        "pos",
        json!({ "customer_id": "C-9", "device_id": "dev-9" }),
        Value::Null,
    ))
    .await;

    let body = json_ok(
        app.get_query(
            &format!("/v1/profiles/{id}/explain"),
            &[("a", "email:Path@Example.com"), ("b", "device_id:dev-9")],
        )
        .await,
    )
    .await;
    assert_eq!(body["profile_id"], id.as_str());
    assert_eq!(
        body["a"], "email:path@example.com",
        "a is normalized: {body}"
    );
    assert_eq!(body["b"], "device_id:dev-9");
    assert_eq!(body["connected"], true);
    assert_eq!(body["hops"], 2, "{body}");
    assert_eq!(
        body["path"],
        json!([
            "email:path@example.com",
            "customer_id:C-9",
            "device_id:dev-9"
        ]),
        "{body}"
    );
    let edges = body["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["from"], "email:path@example.com");
    assert_eq!(edges[0]["to"], "customer_id:C-9");
    assert_eq!(edges[0]["event_ids"], json!(["x-1"]));
    assert_eq!(edges[0]["sources"], json!(["web"]));
    assert_eq!(edges[0]["count"], 1);
    assert_eq!(edges[0]["status"], "active");
    assert_eq!(edges[1]["from"], "customer_id:C-9");
    assert_eq!(edges[1]["to"], "device_id:dev-9");
    assert_eq!(edges[1]["event_ids"], json!(["x-2", "x-3"]));
    assert_eq!(edges[1]["sources"], json!(["mobile", "pos"]));
    assert_eq!(edges[1]["count"], 2);
    for e in edges {
        assert!(
            e["first_seen"].is_string() && e["last_seen"].is_string(),
            "{e}"
        );
    }
}

#[tokio::test]
async fn explain_for_an_identifier_outside_the_profile_is_404() {
    let app = spawn_app().await;
    let id = app
        .ingest_pid(&event(
            "x-1",
            "web",
            json!({ "customer_id": "C-9", "email": "in@example.com" }),
            Value::Null,
        ))
        .await;
    app.ingest(&event(
        "x-2",
        "web",
        json!({ "email": "elsewhere@example.com" }),
        Value::Null,
    ))
    .await;
    let path = format!("/v1/profiles/{id}/explain");
    // Exists nowhere.
    let q = [("a", "email:nobody@example.com"), ("b", "customer_id:C-9")];
    assert_error(app.get_query(&path, &q).await, 404, "not_found").await;
    // Exists, in another profile.
    let q = [
        ("a", "customer_id:C-9"),
        ("b", "email:elsewhere@example.com"),
    ];
    assert_error(app.get_query(&path, &q).await, 404, "not_found").await;
    // Unknown profile.
    let q = [("a", "customer_id:C-9"), ("b", "email:in@example.com")];
    assert_error(
        app.get_query("/v1/profiles/p_999999999999/explain", &q)
            .await,
        404,
        "not_found",
    )
    .await;
}

/// A person alone at an address is served as stored, with no household; when someone
/// moves in, both are served with their household id at once (the move-in's write turns
/// the first person's cached copy to "compute the household").
#[tokio::test]
async fn a_person_alone_gains_a_household_when_someone_moves_in() {
    let app = spawn_app().await;
    let address = json!({ "street": "7 Quiet Lane", "postal_code": "94110", "country": "US" });
    let first = app
        .ingest_pid(&event(
            "alone-1",
            "crm",
            json!({ "customer_id": "ALONE-1", "email": "first.alone@example.com" }),
            json!({ "address": address }),
        ))
        .await;
    let before = json_ok(app.lookup("email", "first.alone@example.com").await).await;
    assert!(before["household_id"].is_null(), "{before}");
    let second = app
        .ingest_pid(&event(
            "alone-2",
            "pos",
            json!({ "customer_id": "ALONE-2" }),
            json!({ "address": address }),
        ))
        .await;
    let hid = format!("hh_{}", &first[2..]);
    let after = json_ok(app.lookup("email", "first.alone@example.com").await).await;
    assert_eq!(after["household_id"], hid.as_str(), "{after}");
    assert_eq!(app.profile(&second).await["household_id"], hid.as_str());
}
