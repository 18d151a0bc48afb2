//! Operations: `/metrics` families after real traffic (resolution counts, search index,
//! RocksDB, process, build), and request ids (generated, echoed, invalid ones replaced,
//! named in the JSON log of a spawned server).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{
    event, http_client, json_ok, metric_sample as sample, metrics_text, spawn_app, ServeProcess,
};

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_resolution_search_store_process_and_build_families() {
    let app = spawn_app().await;
    // Two profiles, then an event joining them (a merge).
    let first = app
        .ingest_pid(&event(
            "op-1",
            "web",
            json!({ "email": "ops@example.com", "device_id": "dev-ops" }),
            Value::Null,
        ))
        .await;
    let second = app
        .ingest_pid(&event(
            "op-2",
            "pos",
            json!({ "cookie_id": "ck-ops" }),
            Value::Null,
        ))
        .await;
    assert_ne!(first, second);
    let merged = app
        .ingest(&event(
            "op-3",
            "crm",
            json!({ "email": "ops@example.com", "cookie_id": "ck-ops" }),
            Value::Null,
        ))
        .await;
    assert_eq!(merged["merged"], json!([second]), "{merged}");
    // A second customer id on a known email: a conflict.
    app.ingest(&event(
        "op-4",
        "crm",
        json!({ "customer_id": "C-ops-1", "email": "shared-ops@example.com" }),
        Value::Null,
    ))
    .await;
    let refused = app
        .ingest(&event(
            "op-5",
            "crm",
            json!({ "customer_id": "C-ops-2", "email": "shared-ops@example.com" }),
            Value::Null,
        ))
        .await;
    assert!(
        refused["conflicts"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{refused}"
    );
    // Deleting the link email - device splits the first profile.
    let split = json_ok(
        app.delete_link("email:ops@example.com", "device_id:dev-ops")
            .await,
    )
    .await;
    assert_eq!(split["split"], true, "{split}");

    // The profiles as the API sees them: every identifier ingested, looked up.
    let mut profiles = BTreeSet::new();
    for (kind, value) in [
        ("email", "ops@example.com"),
        ("device_id", "dev-ops"),
        ("cookie_id", "ck-ops"),
        ("customer_id", "C-ops-1"),
        ("customer_id", "C-ops-2"),
        ("email", "shared-ops@example.com"),
    ] {
        profiles.insert(app.pid_of(kind, value).await);
    }

    // The search index catches up in the background: wait until nothing lags.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics_text(&app.client, &app.address).await;
        if sample(&text, "idgraph_search_lag_commits") == Some(0.0)
            && sample(&text, "idgraph_search_documents") == Some(profiles.len() as f64)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the search index did not catch up ({} profiles by the API):\n{text}",
            profiles.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Resolution counts since start.
    assert_eq!(
        must(&text, r#"idgraph_resolution_total{kind="merge"}"#),
        1.0
    );
    assert_eq!(
        must(&text, r#"idgraph_resolution_total{kind="split"}"#),
        1.0
    );
    assert!(must(&text, r#"idgraph_resolution_total{kind="conflict"}"#) >= 1.0);
    let created = must(&text, r#"idgraph_resolution_total{kind="profile_created"}"#);
    // op-1, op-2, op-4 and the conflicting op-5 each start a profile (the split's part
    // is recorded as a split, not a creation).
    assert!(
        (3.0..=5.0).contains(&created),
        "profiles created {created}:\n{text}"
    );
    // The search index holds one document per profile the API answers with.
    assert_eq!(
        must(&text, "idgraph_search_documents"),
        profiles.len() as f64
    );

    // RocksDB: writes went through the WAL; lookups went through the block cache or
    // the memtables (ratio within 0..=1).
    assert!(
        must(&text, "idgraph_rocksdb_wal_bytes_total") > 0.0,
        "{text}"
    );
    let ratio = must(&text, "idgraph_rocksdb_block_cache_hit_ratio");
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert!(must(&text, "idgraph_rocksdb_pending_compaction_bytes") >= 0.0);
    // Background work, present (bench-http's settled phases wait for both at 0).
    for jobs in [
        "idgraph_rocksdb_running_jobs",
        "idgraph_rocksdb_waiting_jobs",
    ] {
        assert!(must(&text, jobs) >= 0.0, "{jobs}");
    }
    assert!(
        must(&text, "idgraph_rocksdb_memtable_bytes") > 0.0,
        "{text}"
    );
    assert!(must(&text, r#"idgraph_rocksdb_estimated_keys{cf="identifiers"}"#) >= 6.0);
    // Table-file bytes for every column family (0 while its writes are in memtables).
    for cf in idgraph::store::rocks::ALL_CFS {
        assert!(must(&text, &format!(r#"idgraph_rocksdb_sst_bytes{{cf="{cf}"}}"#)) >= 0.0);
    }
    must(&text, "idgraph_rocksdb_block_cache_hits_total");
    must(&text, "idgraph_rocksdb_block_cache_misses_total");

    // The process.
    assert!(must(&text, "process_resident_memory_bytes") > 1e6, "{text}");
    assert!(must(&text, "process_open_fds") > 3.0, "{text}");
    // Whole seconds of CPU (the collector rounds down): present, not negative.
    assert!(must(&text, "process_cpu_seconds_total") >= 0.0, "{text}");
    let started = must(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started > now - 3600.0 && started <= now + 1.0,
        "start {started}, now {now}"
    );

    // The build.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with("idgraph_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.ends_with(" 1")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_valid_ones_echoed_invalid_ones_replaced() {
    let app = spawn_app().await;
    let c = http_client();
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().expect("ASCII id").to_owned())
            .unwrap_or_else(|| panic!("no X-Request-Id on {} {}", r.url(), r.status()))
    };
    let generated = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());

    // None sent: one is generated, a different one each time.
    let a = id_of(&c.get(app.url("/health")).send().await.expect("health"));
    let b = id_of(&c.get(app.url("/health")).send().await.expect("health"));
    assert!(generated(&a) && generated(&b), "{a} {b}");
    assert_ne!(a, b);

    // A valid one is echoed, on success and on errors (404, 401 from the auth layer).
    for path in ["/health", "/no-such-route", "/v1/lookup?kind=email&value=x"] {
        let r = c
            .get(app.url(path))
            .header("X-Request-Id", "client-req_42.a:b")
            .send()
            .await
            .expect("get");
        assert_eq!(id_of(&r), "client-req_42.a:b", "{path} {}", r.status());
    }

    // Invalid ones (bad characters, too long) are replaced by a generated id.
    for bad in ["has space", "semi;colon", "\"quoted\"", &"x".repeat(129)] {
        let r = c
            .get(app.url("/health"))
            .header("X-Request-Id", bad)
            .send()
            .await
            .expect("get");
        let got = id_of(&r);
        assert!(generated(&got), "{bad:?} gave {got:?}");
    }
    // At the length limit it is kept.
    let longest = "y".repeat(128);
    let r = c
        .get(app.url("/health"))
        .header("X-Request-Id", &longest)
        .send()
        .await
        .expect("get");
    assert_eq!(id_of(&r), longest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_in_the_json_log_lines_of_the_request() {
    let tmp = TempDir::new().expect("temp dir");
    let env: Vec<(String, String)> = [
        ("IDGRAPH_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,tantivy=warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let server = ServeProcess::start_with_env(&tmp.path().join("data"), &env);
    let c = http_client();
    let r = c
        .get(server.url("/v1/lookup"))
        .query(&[("kind", "email"), ("value", "nobody@example.com")])
        .header("X-Request-Id", "log-me-7")
        .header(
            "Authorization",
            format!("Bearer {}", crate::helpers::key_of("test-admin")),
        )
        .send()
        .await
        .expect("lookup");
    assert_eq!(r.headers()["x-request-id"], "log-me-7");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = server.stderr();
        let line = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == "log-me-7");
        if let Some(v) = line {
            assert_eq!(v["fields"]["message"], "request served", "{v}");
            assert_eq!(v["span"]["route"], "/v1/lookup", "{v}");
            assert_eq!(v["fields"]["status"], r.status().as_u16(), "{v}");
            // The raw path and query (an email here) never reach the log.
            assert!(!logs.contains("nobody@example.com"), "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line names request id log-me-7:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The live profile and identifier gauges equal what the store holds after every kind
/// of write: new people, merges, a split, an identifier deleted, an erasure, a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_profile_and_identifier_gauges_match_the_store_after_every_kind_of_write() {
    let app = spawn_app().await;
    let truth = |dir: &std::path::Path| {
        let store =
            idgraph::store::rocks::RocksStore::open_read_only(dir, None).expect("read-only");
        let (mut profiles, mut identifiers) = (0.0, 0.0);
        for (cf, k, _) in store.dump().expect("dump") {
            match cf {
                "identifiers" => identifiers += 1.0,
                "profiles" if k.starts_with(b"s\0") => profiles += 1.0,
                _ => {}
            }
        }
        (profiles, identifiers)
    };
    let check = |step: &'static str| {
        let app = &app;
        async move {
            let text = metrics_text(&app.client, &app.address).await;
            let gauges = (
                must(&text, "idgraph_profiles"),
                must(&text, "idgraph_identifiers"),
            );
            assert_eq!(gauges, truth(app.data_dir()), "after {step}");
            gauges
        }
    };
    assert_eq!(check("start").await, (0.0, 0.0));

    for i in 0..6 {
        app.ingest(&event(
            &format!("lg-{i}"),
            "crm",
            json!({"email": format!("live{i}@example.com"), "phone": format!("+1415555{:04}", 100 + i)}),
            Value::Null,
        ))
        .await;
    }
    assert_eq!(check("six people").await, (6.0, 12.0));

    // One event joins 0 and 1, another joins 2 and 3 and brings a new cookie.
    app.ingest(&event(
        "lg-m1",
        "web",
        json!({"email": "live0@example.com", "customer_id": "C-live-1", "phone": "+14155550101"}),
        Value::Null,
    ))
    .await;
    app.ingest(&event(
        "lg-m2",
        "web",
        json!({"email": "live2@example.com", "phone": "+14155550103", "cookie_id": "ck-live"}),
        Value::Null,
    ))
    .await;
    assert_eq!(check("two merges").await, (4.0, 14.0));

    // Undo the first merge: delete whichever links its event made.
    let mut deleted = 0;
    for (a, b) in [
        ("email:live0@example.com", "customer_id:C-live-1"),
        ("customer_id:C-live-1", "phone:+14155550101"),
        ("email:live0@example.com", "phone:+14155550101"),
    ] {
        let resp = app.delete_link(a, b).await;
        match resp.status().as_u16() {
            200 => deleted += 1,
            404 => {}
            other => panic!("{other}: {}", resp.text().await.unwrap_or_default()),
        }
    }
    assert!(deleted > 0, "the merge made a link");
    assert_ne!(
        app.pid_of("email", "live0@example.com").await,
        app.pid_of("email", "live1@example.com").await,
        "split"
    );
    check("a split").await;

    let resp = app.delete("/v1/identifiers/cookie_id/ck-live").await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    check("an identifier deleted").await;

    let pid = app.pid_of("email", "live5@example.com").await;
    let resp = app
        .client
        .post(app.url("/v1/erasure"))
        .json(&json!({"profile_id": pid}))
        .send()
        .await
        .expect("erasure");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let after = check("an erasure").await;

    // Kept across a restart of the same data directory.
    let dir = TempDir::new().expect("temporary directory");
    let copy = dir.path().join("data");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(app.data_dir())
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let server = ServeProcess::start(&copy);
    let text = metrics_text(&http_client(), &server.address).await;
    assert_eq!(
        (
            must(&text, "idgraph_profiles"),
            must(&text, "idgraph_identifiers")
        ),
        after
    );
}
