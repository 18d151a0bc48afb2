//! `idgraph export` (the real binary) beside a running server: Parquet read back with the
//! parquet crate and JSON lines, checked against what the API answers; an incremental
//! run from the previous manifest's `through`; bad input named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::{Array, ListArray, RecordBatch, StringArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use crate::helpers::{event, idgraph_command, json_ok, spawn_app, TestApp};

fn export(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
    let out = idgraph_command()
        .arg("export")
        .args(args)
        .arg("--data-dir")
        .arg(app.data_dir())
        .output()
        .expect("run idgraph export");
    let manifest = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        manifest,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).expect("the Parquet file");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("a reader")
        .map(|b| b.expect("a record batch"))
        .collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let col = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("column {column}"));
    let array = col
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap_or_else(|| panic!("{column} is text"));
    (0..array.len())
        .map(|i| (!array.is_null(i)).then(|| array.value(i).to_owned()))
        .collect()
}

async fn people(app: &TestApp) -> (String, String) {
    let ann = app
        .ingest_pid(&event(
            "x-1",
            "crm",
            json!({"email": "ann@example.com", "customer_id": "c-ann"}),
            json!({"first_name": "Ann", "last_name": "Lee"}),
        ))
        .await;
    app.ingest(&event(
        "x-2",
        "web",
        json!({"email": "ann@example.com", "cookie_id": "ck-ann"}),
        json!({}),
    ))
    .await;
    let bob = app
        .ingest_pid(&event(
            "x-3",
            "pos",
            json!({"phone": "+14155550199"}),
            json!({"first_name": "Bob"}),
        ))
        .await;
    (ann, bob)
}

#[tokio::test]
async fn full_and_incremental_exports_match_what_the_api_serves() {
    let app = spawn_app().await;
    let (ann, bob) = people(&app).await;
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().join("full");
    let dir_s = dir.to_string_lossy().into_owned();

    // Profiles as Parquet, while the server runs.
    let (ok, manifest, err) = export(&app, &["profiles", "--format", "parquet", "--out", &dir_s]);
    assert!(ok, "{err}");
    assert_eq!(manifest["rows"], 2, "{manifest}");
    let through = manifest["through"].as_u64().expect("through");
    let got = batches(&dir.join("profiles.parquet"));
    let mut ids = BTreeSet::new();
    for b in &got {
        let pid = strings(b, "profile_id");
        let first = strings(b, "first_name");
        let idents = strings(b, "identifiers_json");
        let counts = b
            .column_by_name("event_count")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .expect("event_count is an integer");
        let sources = b
            .column_by_name("sources")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>().cloned())
            .expect("sources is a list");
        for i in 0..b.num_rows() {
            let id = pid[i].clone().expect("an id");
            let api = app.profile(&id).await;
            assert_eq!(first[i].as_deref(), api["traits"]["first_name"].as_str());
            let idents: Value =
                serde_json::from_str(idents[i].as_deref().unwrap_or("null")).expect("JSON");
            assert_eq!(idents, api["identifiers"], "{id}");
            assert_eq!(counts.value(i), api["event_count"].as_u64().unwrap_or(0));
            let listed = sources.value(i);
            let listed = listed
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings");
            assert_eq!(
                listed.len(),
                api["sources"].as_array().map(Vec::len).unwrap_or(0)
            );
            ids.insert(id);
        }
    }
    assert_eq!(ids, BTreeSet::from([ann.clone(), bob.clone()]));

    // Identifiers as JSON lines: every identifier maps to the profile a lookup finds.
    let (ok, manifest, err) = export(&app, &["identifiers", "--format", "jsonl", "--out", &dir_s]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(dir.join("identifiers.jsonl")).expect("the file");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert_eq!(manifest["rows"], 4);
    for r in &rows {
        let (kind, value) = (
            r["kind"].as_str().unwrap_or(""),
            r["value"].as_str().unwrap_or(""),
        );
        assert_eq!(
            app.pid_of(kind, value).await,
            r["profile_id"].as_str().unwrap_or("")
        );
    }

    // The graph: Ann's three identifiers, two links; and the changes, as /v1/changes.
    let (ok, manifest, err) = export(&app, &["graph", "--format", "parquet", "--out", &dir_s]);
    assert!(ok, "{err}");
    assert_eq!(manifest["rows"], 2, "{manifest}");
    let edges = batches(&dir.join("graph.parquet"));
    let statuses: Vec<Option<String>> = edges.iter().flat_map(|b| strings(b, "status")).collect();
    assert!(
        statuses.iter().all(|s| s.as_deref() == Some("active")),
        "{statuses:?}"
    );
    let (ok, manifest, err) = export(&app, &["changes", "--format", "jsonl", "--out", &dir_s]);
    assert!(ok, "{err}");
    let feed = json_ok(app.get("/v1/changes?limit=1000").await).await;
    let exported: Vec<Value> = std::fs::read_to_string(dir.join("changes.jsonl"))
        .expect("the file")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .map(|r| serde_json::from_str(r["record_json"].as_str().unwrap_or("null")).expect("JSON"))
        .collect();
    assert_eq!(Value::Array(exported), feed["changes"], "{manifest}");

    // Refuses to overwrite without --force.
    let (ok, _, err) = export(&app, &["profiles", "--format", "parquet", "--out", &dir_s]);
    assert!(!ok && err.contains("profiles.parquet exists"), "{err}");

    // Incremental: Bob merges into Ann and Cy arrives; only what changed is exported.
    app.ingest(&event(
        "x-4",
        "pos",
        json!({"phone": "+14155550199", "email": "ann@example.com"}),
        json!({}),
    ))
    .await;
    let cy = app
        .ingest_pid(&event(
            "x-5",
            "web",
            json!({"cookie_id": "ck-cy"}),
            json!({}),
        ))
        .await;
    let inc = out.path().join("inc").to_string_lossy().into_owned();
    let since = through.to_string();
    let (ok, manifest, err) = export(
        &app,
        &[
            "profiles", "--format", "jsonl", "--out", &inc, "--since", &since,
        ],
    );
    assert!(ok, "{err}");
    let rows: Vec<Value> = std::fs::read_to_string(Path::new(&inc).join("profiles.jsonl"))
        .expect("the file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let got: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|r| (r["profile_id"].as_str().unwrap_or("").to_owned(), r))
        .collect();
    let survivor = app.pid_of("phone", "+14155550199").await;
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([survivor.clone(), cy]),
        "{manifest}"
    );
    let absorbed = if survivor == ann { &bob } else { &ann };
    assert_eq!(manifest["gone_profiles"], json!([absorbed]), "{manifest}");
    assert!(manifest["through"].as_u64() > Some(through), "{manifest}");
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = idgraph_command()
        .args(["export", "profiles", "--out"])
        .arg(dir.path().join("o"))
        .arg("--data-dir")
        .arg(dir.path().join("missing"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = idgraph_command()
        .args(["export", "people", "--out", "x"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("profiles, identifiers, graph, changes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn export_lines(app: &TestApp, key: &str, path: &str) -> (u16, Option<String>, Vec<Value>) {
    let resp = app
        .client
        .get(app.url(path))
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", crate::helpers::key_of(key)),
        )
        .send()
        .await
        .expect("GET an export");
    let status = resp.status().as_u16();
    let through = resp
        .headers()
        .get("Idgraph-Through")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let rows = if status == 200 {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    } else {
        vec![json!(text)]
    };
    (status, through, rows)
}

#[tokio::test]
async fn the_api_streams_exports_masked_for_the_callers_role() {
    let app = spawn_app().await;
    let (ann, _) = people(&app).await;
    let (status, through, rows) =
        export_lines(&app, "test-service", "/v1/exports/identifiers").await;
    assert_eq!(status, 200, "{rows:?}");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter().any(|r| r["value"] == "ann@example.com"),
        "{rows:?}"
    );
    let (_, _, profiles) = export_lines(&app, "test-admin", "/v1/exports/profiles").await;
    assert_eq!(profiles.len(), 2);
    let served = app.profile(&ann).await;
    let exported = profiles
        .iter()
        .find(|p| p["profile_id"] == ann.as_str())
        .expect("Ann's profile");
    assert_eq!(exported["identifiers"], served["identifiers"]);
    assert_eq!(exported["traits"], served["traits"]);

    // Analysts get pseudonyms, never the values.
    for kind in ["profiles", "identifiers", "graph", "changes"] {
        let (status, _, rows) =
            export_lines(&app, "test-analyst", &format!("/v1/exports/{kind}")).await;
        assert_eq!(status, 200, "{kind}: {rows:?}");
        assert!(!rows.is_empty(), "{kind}");
        let text = serde_json::to_string(&rows).unwrap_or_default();
        for raw in ["ann@example.com", "c-ann", "14155550199", "ck-ann"] {
            assert!(!text.contains(raw), "{kind}: {raw} in {text}");
        }
    }

    // Incremental from the header's position: only what changed since.
    let since = through.expect("the Idgraph-Through header");
    let cy = app
        .ingest_pid(&event(
            "x-9",
            "web",
            json!({"cookie_id": "ck-cy2"}),
            json!({}),
        ))
        .await;
    let (_, _, rows) = export_lines(
        &app,
        "test-admin",
        &format!("/v1/exports/profiles?since={since}"),
    )
    .await;
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["profile_id"].as_str())
        .collect();
    assert_eq!(ids, [cy.as_str()], "{rows:?}");

    for (path, status) in [
        ("/v1/exports/people", 404),
        ("/v1/exports/profiles?since=x", 400),
    ] {
        let (got, _, body) = export_lines(&app, "test-admin", path).await;
        assert_eq!(got, status, "{path}: {body:?}");
    }
    let (got, _, _) = export_lines(&app, "test-agent", "/v1/exports/profiles").await;
    assert_eq!(got, 403);
}
