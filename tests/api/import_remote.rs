//! `idgraph import` beside a running server (`--server URL --key K`), Parquet input with
//! the CSV column mapping, and `--source` as the default for events that name none.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{get_json, http_client, idgraph_command, test_keys_env, ServeProcess};
use idgraph::governance::keys::hash_key;

/// The test keys plus an ingest key limited to one request a second (burst 1), so a
/// multi-batch import meets real 429 answers with `Retry-After`.
fn keys_with_a_slow_ingest_key(slow: &str) -> (String, String) {
    let (name, list) = test_keys_env();
    let entry = format!(
        "{{name=\"slow\",role=\"ingest\",hash=\"{}\",rate_per_second=1.0,burst=1}}",
        hash_key(slow)
    );
    let list = format!("{},{entry}]", list.trim_end_matches(']'));
    (name, list)
}

fn import(file: &Path, args: &[&str]) -> std::process::Output {
    idgraph_command()
        .arg("import")
        .arg(file)
        .args(args)
        .output()
        .expect("run idgraph import")
}

fn summary(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn profile_of(base: &str, kind: &str, value: &str) -> Value {
    let (status, body) = get_json(
        &http_client(),
        &format!("{base}/v1/lookup?kind={kind}&value={value}"),
    )
    .await;
    assert_eq!(status, 200, "{kind}:{value}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_a_running_server_retries_429_and_keeps_each_events_source() {
    let tmp = TempDir::new().unwrap();
    let slow = "idg_test_slow_ingest_key";
    let mut server = ServeProcess::start_with_env(
        &tmp.path().join("data"),
        &[keys_with_a_slow_ingest_key(slow)],
    );

    // 2,300 events: three batches of at most 1,000; every 10th names its own source
    // (pos), the rest take --source web; two are invalid.
    let mut lines = Vec::new();
    for i in 0..2300 {
        let mut e = json!({
            "event_id": format!("r-{i}"),
            "identifiers": { "email": format!("person{i}@example.com"), "customer_id": format!("C-{i}") },
        });
        if i % 10 == 0 {
            e["source"] = json!("pos");
        }
        lines.push(e.to_string());
    }
    lines[7] =
        json!({ "event_id": "bad-1", "identifiers": { "email": "not-an-email" } }).to_string();
    lines[1500] = "{not json".into();
    let file = tmp.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let url = server.address.clone();
    let args = ["--server", &url, "--key", slow, "--source", "web", "--json"];
    // Two rejected rows fail the import by default, after the summary.
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            import(&file, &args)
        }
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 of 2300 records were rejected, more than --max-rejects 0"),
        "{stderr}"
    );
    let first = summary(&out);
    assert_eq!(first["accepted"], 2298, "{first}");
    assert_eq!(first["rejected"], 2, "{first}");
    // Burst 1 at one request a second: the later batches met 429 and were sent again.
    assert!(first["retries"].as_u64().unwrap() >= 1, "{first}");
    let reasons = first["reasons"].as_object().unwrap();
    assert!(
        reasons.keys().any(|k| k.starts_with("invalid JSON")),
        "{first}"
    );
    assert!(
        reasons
            .iter()
            .any(|(k, r)| k.contains("email") && r["first_records"] == json!([8])),
        "line numbers are reported: {first}"
    );

    // An event's own source is kept; --source fills in the others.
    let pos = profile_of(&url, "customer_id", "C-10").await;
    assert_eq!(pos["sources"], json!(["pos"]), "{pos}");
    let web = profile_of(&url, "customer_id", "C-11").await;
    assert_eq!(web["sources"], json!(["web"]), "{web}");

    // Again, allowing two rejects: everything is a duplicate and the command succeeds.
    let again = import(&file, &[&args[..], &["--max-rejects", "2"]].concat());
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again = summary(&again);
    assert_eq!(
        (again["duplicate"].as_u64(), again["accepted"].as_u64()),
        (Some(2298), Some(0)),
        "{again}"
    );

    // A wrong key stops at once with the server's reason; nothing is retried forever.
    let bad = import(
        &file,
        &["--server", &url, "--key", "idg_wrong", "--source", "web"],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("(401)"), "{err}");
    // No server there: retried for --retry-seconds, then one clear failure.
    let gone = import(
        &file,
        &[
            "--server",
            "http://127.0.0.1:9",
            "--key",
            slow,
            "--source",
            "web",
            "--retry-seconds",
            "1",
        ],
    );
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("kept refusing a batch"), "{err}");
    // --server and --data-dir together are refused by the argument parser.
    let both = import(&file, &["--server", &url, "--key", slow, "--data-dir", "x"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&both.stderr).contains("panicked"));
    server.terminate();
}

const MAPPING: &str = r#"
record_id = "rec_id"
id_prefix = "pq-"
source = "channel"
[identifiers]
email = "email"
[traits]
first_name = "given_name"
"#;

/// The same rows as CSV and as Parquet (one null cell each in `channel` and
/// `given_name`).
fn rows() -> Vec<[Option<&'static str>; 4]> {
    vec![
        [Some("1"), Some("ann@example.com"), Some("Ann"), Some("pos")],
        [Some("2"), Some("ann@example.com"), None, None],
        [Some("3"), Some("bo@example.com"), Some("Bo"), Some("crm")],
        [None, Some("nobody@example.com"), Some("No"), Some("crm")],
    ]
}

fn write_parquet(path: &Path) {
    let cols = ["rec_id", "email", "given_name", "channel"];
    let arrays: Vec<(&str, ArrayRef)> = cols
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: StringArray = rows().iter().map(|r| r[i]).collect();
            (*name, Arc::new(values) as ArrayRef)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn write_csv(path: &Path) {
    let mut text = String::from("rec_id,email,given_name,channel\n");
    for r in rows() {
        let cells: Vec<&str> = r.iter().map(|c| c.unwrap_or("")).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn parquet_imports_through_the_csv_mapping_with_the_same_result() {
    let tmp = TempDir::new().unwrap();
    let mapping = tmp.path().join("map.toml");
    std::fs::write(&mapping, MAPPING).unwrap();
    let (csv, pq) = (tmp.path().join("rows.csv"), tmp.path().join("rows.parquet"));
    write_csv(&csv);
    write_parquet(&pq);
    let mut profiles = Vec::new();
    for (file, data) in [(&csv, "data-csv"), (&pq, "data-pq")] {
        let data = tmp.path().join(data);
        let args = [
            "--mapping",
            mapping.to_str().unwrap(),
            "--source",
            "web",
            "--json",
            "--max-rejects",
            "1",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        let out = import(file, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = summary(&out);
        assert_eq!(
            (s["accepted"].as_u64(), s["rejected"].as_u64()),
            (Some(3), Some(1)),
            "{s}"
        );
        assert!(
            s["reasons"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.contains("missing record id")),
            "{s}"
        );
        let show = idgraph_command()
            .args([
                "profile",
                "email:ann@example.com",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            show.status.success(),
            "{}",
            String::from_utf8_lossy(&show.stderr)
        );
        let p: Value = serde_json::from_slice(&show.stdout).unwrap();
        // Row 1 names its source (pos); row 2's is null, so --source (web) applies.
        assert_eq!(p["sources"], json!(["pos", "web"]), "{p}");
        assert_eq!(p["traits"]["first_name"], "Ann", "{p}");
        profiles.push(p);
    }
    // CSV and Parquet give the same golden profile.
    let strip = |p: &Value| {
        let mut p = p.clone();
        for k in ["first_seen", "last_seen"] {
            if let Some(o) = p.as_object_mut() {
                o.remove(k);
            }
        }
        p
    };
    assert_eq!(strip(&profiles[0]), strip(&profiles[1]));
    // A file that is not Parquet gets one clear error.
    let fake = tmp.path().join("fake.parquet");
    std::fs::write(&fake, "rec_id,email\n").unwrap();
    let out = import(
        &fake,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            "--source",
            "web",
            "--data-dir",
            tmp.path().join("d3").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a readable Parquet file"), "{err}");
}
