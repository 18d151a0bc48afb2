//! Propensity scores (`idgraph score train`): on a generated history whose purchases follow
//! a signal recency and frequency do not show (a `tier` trait, past amounts), the model
//! beats the recency/frequency baseline on the held-out month; scores land on consenting
//! profiles only (the others are counted), re-runs are idempotent, scores go through a
//! running server too, and bad input fails clearly.

use std::path::Path;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{
    assert_succeeded, get_json, http_client, idgraph_command, key_of, post_json, ServeProcess,
};
use idgraph::scoring::generate::{generate, Generated};

/// Generates `people` people (seed 7, with consent) and imports them into `data`.
fn store_with(people: usize, data: &Path, tmp: &Path) -> Generated {
    let g = generate(people, 7, true);
    let file = tmp.join("events.jsonl");
    let lines: Vec<String> = g.events.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = idgraph_command()
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(data)
        .arg("--json")
        .output()
        .unwrap();
    assert_succeeded(&out, "idgraph import");
    g
}

fn score(data: &Path, extra: &[&str]) -> std::process::Output {
    idgraph_command()
        .args(["score", "train", "--label", "purchase", "--horizon", "30d"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

fn report(out: &std::process::Output) -> Value {
    assert_succeeded(out, "idgraph score train");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn profile(data: &Path, identifier: &str) -> Value {
    let out = idgraph_command()
        .args(["profile", identifier, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert_succeeded(&out, "idgraph profile");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn without_consent(g: &Generated) -> u64 {
    g.people.iter().filter(|p| p.consent != Some(true)).count() as u64
}

fn assert_sane_quality(q: &Value) {
    let auc = q["auc"].as_f64().unwrap();
    let brier = q["brier"].as_f64().unwrap();
    let ece = q["ece"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "{q}");
    assert!((0.0..0.25).contains(&brier), "{q}");
    assert!((0.0..0.2).contains(&ece), "{q}");
    let bins = q["reliability"].as_array().unwrap();
    assert_eq!(bins.len(), 10, "{q}");
    let total: u64 = bins.iter().map(|b| b["profiles"].as_u64().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn score_train_beats_the_baseline_and_writes_scores_to_consenting_profiles_only() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let g = store_with(1200, &data, tmp.path());

    let r = report(&score(&data, &[]));
    let (model, baseline) = (&r["model"]["auc"], &r["baseline"]["auc"]);
    let (model, baseline) = (model.as_f64().unwrap(), baseline.as_f64().unwrap());
    eprintln!("held-out AUC: model {model:.3}, baseline {baseline:.3}");
    assert!(model > 0.7, "{r}");
    assert!(
        model > baseline + 0.05,
        "the model must clearly beat recency/frequency: {r}"
    );
    assert_sane_quality(&r["model"]);
    assert_sane_quality(&r["baseline"]);
    for split in ["train", "test"] {
        let s = &r[split];
        assert!(s["positives"].as_u64().unwrap() > 20, "{split}: {r}");
        assert!(
            s["positives"].as_u64() < s["profiles"].as_u64(),
            "{split}: {r}"
        );
    }
    // One profile per generated person; those without granted analytics consent are
    // left out of training and scoring, and counted.
    assert_eq!(r["profiles"], 1200, "{r}");
    assert_eq!(
        r["without_consent"].as_u64(),
        Some(without_consent(&g)),
        "{r}"
    );
    assert_eq!(
        r["scored"].as_u64().unwrap() + without_consent(&g),
        1200,
        "{r}"
    );
    assert_eq!(r["written"]["accepted"], r["scored"], "{r}");
    assert_eq!(r["written"]["rejected"], 0, "{r}");
    let version = r["model_version"].as_str().unwrap().to_owned();
    assert!(version.starts_with("purchase-"), "{version}");
    let file = r["model_file"].as_str().unwrap();
    assert!(file.ends_with("models/score-purchase.json"), "{file}");
    let saved: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(saved["version"], version.as_str());
    assert_eq!(
        saved["model"]["weights"].as_array().unwrap().len(),
        saved["spec"]["names"].as_array().unwrap().len()
    );

    // The golden profiles carry the score (a trait with model version and time) when
    // consent was granted, and none otherwise.
    let granted = g.people.iter().find(|p| p.consent == Some(true)).unwrap();
    let p = profile(&data, &format!("email:{}", granted.email));
    let s = &p["traits"]["extra"]["score"];
    let value = s["value"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&value), "{p}");
    assert_eq!(s["model"], version.as_str(), "{p}");
    assert_eq!(s["label"], "purchase");
    assert_eq!(s["horizon"], "30d");
    assert!(s["scored_at"].as_str().is_some(), "{p}");
    for refused in [Some(false), None] {
        let person = g.people.iter().find(|p| p.consent == refused).unwrap();
        let p = profile(&data, &format!("email:{}", person.email));
        assert!(
            p["traits"]["extra"].get("score").is_none(),
            "consent {refused:?}: {p}"
        );
    }

    // The same history again: the same model version, every score event a duplicate.
    let again = report(&score(&data, &[]));
    assert_eq!(again["model_version"], version.as_str(), "{again}");
    assert_eq!(again["model"]["auc"], r["model"]["auc"]);
    assert_eq!(again["written"]["accepted"], 0, "{again}");
    assert_eq!(again["written"]["duplicate"], r["scored"], "{again}");

    // The readable report.
    let out = score(&data, &["--dry-run", "--format", "text"]);
    assert_succeeded(&out, "score --format text");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["AUC", "baseline", "reliability", &version] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_train_writes_through_a_running_server() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let g = store_with(400, &data, tmp.path());
    let server = ServeProcess::start(&data);

    // The store is the server's: writing without --server is refused with a hint.
    let out = score(&data, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--server"), "{err}");

    // No key in the named variable: refused before any work.
    let out = score(
        &data,
        &["--server", &server.address, "--key-env", "SCORE_TEST_KEY"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SCORE_TEST_KEY"), "{err}");

    let out = idgraph_command()
        .args(["score", "train", "--label", "purchase", "--horizon", "30d"])
        .arg("--data-dir")
        .arg(&data)
        .args(["--server", &server.address, "--key-env", "SCORE_TEST_KEY"])
        .env("SCORE_TEST_KEY", key_of("test-ingest"))
        .output()
        .unwrap();
    let r = report(&out);
    assert_eq!(r["written"]["accepted"], r["scored"], "{r}");
    let person = g.people.iter().find(|p| p.consent == Some(true)).unwrap();
    let (status, p) = get_json(
        &http_client(),
        &server.url(&format!("/v1/lookup?kind=email&value={}", person.email)),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let s = &p["traits"]["extra"]["score"];
    assert_eq!(s["model"], r["model_version"], "{p}");
    assert!(
        (0.0..=1.0).contains(&s["value"].as_f64().unwrap_or(-1.0)),
        "{p}"
    );

    // An audience uses the score: its members are consenting profiles scored over 0.7.
    let c = http_client();
    let (status, body) = post_json(
        &c,
        &server.url("/v1/audiences"),
        &json!({ "id": "likely-buyers", "filter": "score > 0.7", "purpose": "analytics" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut ready = Value::Null;
    for _ in 0..300 {
        let (_, v) = get_json(&c, &server.url("/v1/audiences/likely-buyers")).await;
        if v["status"] == "ready" {
            ready = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let size = ready["size"]
        .as_u64()
        .unwrap_or_else(|| panic!("never ready: {ready}"));
    let (status, page) = get_json(
        &c,
        &server.url("/v1/audiences/likely-buyers/members?limit=1000"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let members = page["members"].as_array().cloned().unwrap_or_default();
    assert!(size > 0 && members.len() as u64 == size, "{ready} {page}");
    for m in &members {
        let v = m["traits"]["extra"]["score"]["value"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(v > 0.7, "{m}");
        assert_eq!(m["consents"]["analytics"]["state"], "granted", "{m}");
    }
}

#[test]
fn score_train_refuses_bad_input_clearly() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    store_with(150, &data, tmp.path());
    let fails = |args: &[&str], data: &Path, needle: &str| {
        let out = idgraph_command()
            .args(["score", "train"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    // A period needs its unit.
    fails(
        &["--label", "purchase", "--horizon", "30"],
        &data,
        "--horizon",
    );
    // A type no event has.
    fails(
        &["--label", "subscription", "--horizon", "30d"],
        &data,
        "no stored event has type \"subscription\"",
    );
    // A type that exists, but never in the held-out month (identify events only come in
    // the first 120 days): no positives, named.
    fails(
        &["--label", "identify", "--horizon", "30d"],
        &data,
        "has no positive examples",
    );
    // A horizon longer than the history: no split.
    fails(
        &["--label", "purchase", "--horizon", "400d"],
        &data,
        "split has no profiles",
    );
    fails(
        &["--label", "purchase", "--purpose", "nonsense"],
        &data,
        "not a configured consent purpose",
    );
    fails(
        &["--label", "purchase"],
        &tmp.path().join("missing"),
        "does not exist",
    );
}
