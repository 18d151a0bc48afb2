//! Read replicas with the real binary: a writer (`replication.enabled`) and replicas
//! (`idgraph replica --follow`) as separate processes on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::encryption::{borrowed, enc_env, kek_file, refused_run};
use crate::helpers::{
    admin_headers, assert_succeeded, event, idgraph_command, key_of, metrics_text, ServeProcess,
};

fn client() -> reqwest::Client {
    // No idle connections kept: the test idles past the servers' keep-alive (a writer's
    // graceful stop) and a replica swaps servers on a snapshot.
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .default_headers(admin_headers())
        .build()
        .expect("client")
}

fn writer_env(backlog_mb: u32) -> Vec<(String, String)> {
    vec![
        ("IDGRAPH_REPLICATION__ENABLED".into(), "true".into()),
        (
            "IDGRAPH_REPLICATION__BACKLOG_MB".into(),
            backlog_mb.to_string(),
        ),
    ]
}

fn replica(writer: &ServeProcess, dir: &Path, max_lag: u64) -> ServeProcess {
    replica_with(writer, dir, max_lag, &[])
}

/// The environment of a replica: the writer's admin key, then `extra`.
fn replica_env(max_lag: u64, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("IDGRAPH_REPLICA__KEY".into(), key_of("test-admin")),
        (
            "IDGRAPH_REPLICA__MAX_LAG_SECONDS".into(),
            max_lag.to_string(),
        ),
    ];
    env.extend_from_slice(extra);
    env
}

fn replica_with(
    writer: &ServeProcess,
    dir: &Path,
    max_lag: u64,
    extra: &[(String, String)],
) -> ServeProcess {
    ServeProcess::start_args(
        &["replica", "--follow", &writer.address],
        dir,
        &replica_env(max_lag, extra),
    )
}

async fn get(c: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let resp = c
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(c: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = c
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Events of person `p`: two sources, so each person is a merge of two profiles.
fn person_events(p: usize, round: &str) -> Vec<Value> {
    vec![
        event(
            &format!("{round}-{p}-a"),
            "web",
            json!({"email": format!("person{p}@replica.example"), "cookie_id": format!("ck-{round}-{p}")}),
            json!({"first_name": format!("Name{p}"), "last_name": "Replica"}),
        ),
        event(
            &format!("{round}-{p}-b"),
            "crm",
            json!({"phone": format!("+1415555{:04}", p % 10_000), "customer_id": format!("crm-{p}")}),
            json!({"city": "Springfield"}),
        ),
        event(
            &format!("{round}-{p}-c"),
            "pos",
            json!({"email": format!("person{p}@replica.example"), "phone": format!("+1415555{:04}", p % 10_000)}),
            json!({}),
        ),
    ]
}

async fn ingest(c: &reqwest::Client, base: &str, persons: std::ops::Range<usize>, round: &str) {
    let batch: Vec<Value> = persons.flat_map(|p| person_events(p, round)).collect();
    for chunk in batch.chunks(300) {
        let (status, body) = post(c, base, "/v1/events", &Value::Array(chunk.to_vec())).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A search answer without relevance scores, hits in profile-id order: scores follow the
/// index's segment history (deleted documents count in BM25 statistics until merged),
/// which differs between a writer and a replica that rebuilt its index.
fn unscored(mut v: Value) -> Value {
    if let Some(hits) = v["hits"].as_array_mut() {
        for h in hits.iter_mut() {
            if let Some(h) = h.as_object_mut() {
                h.remove("score");
            }
        }
        hits.sort_by_key(|h| h["profile_id"].as_str().unwrap_or_default().to_owned());
    }
    v
}

/// Waits until the replica holds the writer's last write group and its search index
/// answers what the writer's does.
async fn caught_up(c: &reqwest::Client, writer: &str, replica: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut searches = (Value::Null, Value::Null);
    loop {
        let (_, w) = get(c, writer, "/health").await;
        let (status, r) = get(c, replica, "/ready").await;
        let (_, rh) = get(c, replica, "/health").await;
        let same = status == 200
            && r["position"] == r["writer_position"]
            && rh["events"] == w["events"]
            && rh["profiles_created"] == w["profiles_created"];
        if same {
            // The index holds every profile the writer's does (ties make the hits of a
            // common word differ in order: their number is what is compared).
            let (_, ws) = get(c, writer, "/v1/search?q=Replica&limit=1").await;
            let (_, rs) = get(c, replica, "/v1/search?q=Replica&limit=1").await;
            if ws["total"] == rs["total"] && ws["total"].as_u64().is_some() {
                return;
            }
            searches = (ws, rs);
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: writer {w}, replica {r} {rh}; searches {} vs {}",
            searches.0,
            searches.1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every read route, for a sample of people: the replica answers exactly what the writer
/// answers.
async fn same_answers(c: &reqwest::Client, writer: &str, replica: &str, persons: &[usize]) {
    let mut paths = vec!["/v1/changes?limit=1000".to_owned()];
    for p in persons {
        paths.push(format!("/v1/search?q=Name{p}"));
        paths.push(format!(
            "/v1/lookup?kind=email&value=person{p}@replica.example"
        ));
        paths.push(format!("/v1/lookup?kind=customer_id&value=crm-{p}"));
        let (status, profile) = get(
            c,
            writer,
            &format!("/v1/lookup?kind=customer_id&value=crm-{p}"),
        )
        .await;
        if status == 200 {
            let id = profile["profile_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for view in ["", "/graph", "/history", "/devices", "/household"] {
                paths.push(format!("/v1/profiles/{id}{view}"));
            }
            paths.push(format!(
                "/v1/profiles/{id}/explain?a=customer_id:crm-{p}&b=cookie_id:ck-r1-{p}"
            ));
        }
    }
    for path in paths {
        // Both search indexes commit within a second of a write: searches get a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (ws, w) = get(c, writer, &path).await;
            let (rs, r) = get(c, replica, &path).await;
            let (w, r) = if path.starts_with("/v1/search") {
                ((ws, unscored(w)), (rs, unscored(r)))
            } else {
                ((ws, w), (rs, r))
            };
            if w == r || !path.starts_with("/v1/search") || Instant::now() > deadline {
                assert_eq!(w, r, "{path}: the replica answers what the writer answers");
                // Not two equal errors: everyone but the erased person (3) is there.
                let erased = path.contains("person3@") || path.ends_with("=crm-3");
                if !erased && !path.contains("/explain") {
                    assert_eq!(w.0, 200, "{path}: {}", w.1);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Files under `dir` (recursively) holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    all_files(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .map(|p| p.display().to_string())
        .collect()
}

/// One writer, two replicas, under ingest with merges, a split and an erasure: once
/// caught up, both answer every read exactly as the writer does, the erased values are in
/// none of their files, writes are refused naming the writer, and a restarted replica
/// resumes from its own store (no new snapshot).
#[tokio::test]
async fn two_replicas_answer_what_the_writer_answers_under_ingest() {
    let c = client();
    let (wd, r1d, r2d) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let writer = ServeProcess::start_with_env(wd.path(), &writer_env(256));
    let w = writer.address.clone();
    // Data before the replicas exist: they start from a snapshot.
    ingest(&c, &w, 0..100, "r1").await;
    let mut r1 = replica(&writer, r1d.path(), 10);
    let r2 = replica(&writer, r2d.path(), 10);

    // Ingest goes on while a link is deleted (a split) and a person is erased.
    let load = {
        let (c, w) = (c.clone(), w.clone());
        tokio::spawn(async move {
            for round in 0..10 {
                let start = 100 + round * 40;
                ingest(&c, &w, start..start + 40, "r1").await;
            }
        })
    };
    let split = c
        .delete(format!("{w}/v1/links"))
        .query(&[
            ("a", "email:person7@replica.example"),
            ("b", "cookie_id:ck-r1-7"),
        ])
        .send()
        .await
        .expect("DELETE /v1/links");
    assert_eq!(split.status(), 200, "the link is deleted");
    let (status, erased) = post(
        &c,
        &w,
        "/v1/erasure",
        &json!({"identifier": "email:person3@replica.example"}),
    )
    .await;
    assert_eq!(status, 200, "{erased}");
    load.await.expect("the ingest task");

    for r in [&r1.address, &r2.address] {
        caught_up(&c, &w, r).await;
    }
    // The erased person's values are in no file of either replica (nor the writer).
    for dir in [r1d.path(), r2d.path(), wd.path()] {
        for needle in [&b"person3@replica.example"[..], b"crm-3\"", b"14155550003"] {
            let holding = files_holding(dir, needle);
            assert!(
                holding.is_empty(),
                "{:?} still in {holding:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    let sample: Vec<usize> = vec![0, 3, 7, 42, 99, 100, 250, 499];
    for r in [&r1.address, &r2.address] {
        same_answers(&c, &w, r, &sample).await;
    }

    // Writes are refused, naming the writer.
    let (status, body) = post(
        &c,
        &r2.address,
        "/v1/events",
        &event("nope", "web", json!({"cookie_id": "ck-nope"}), json!({})),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "read_only_replica");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains(&w));

    // A restarted replica resumes from its own store: no snapshot, and it catches up with
    // what the writer took meanwhile.
    r1.terminate();
    ingest(&c, &w, 500..560, "r1").await;
    let r1 = replica(&writer, r1d.path(), 10);
    caught_up(&c, &w, &r1.address).await;
    same_answers(&c, &w, &r1.address, &[0, 520, 559]).await;
    let metrics = metrics_text(&c, &r1.address).await;
    assert!(
        metrics.contains("idgraph_replica_snapshots_total 0"),
        "{metrics}"
    );
    drop(r2);
}

/// The profiles of a server's dashboard snapshot, once it has one.
async fn snapshot_profiles(c: &reqwest::Client, base: &str) -> Option<u64> {
    let (status, stats) = get(c, base, "/v1/stats").await;
    assert_eq!(status, 200, "GET /v1/stats: {stats}");
    stats["snapshot"]["profiles"].as_u64()
}

/// A replica's dashboard follows the writer: the groups it applies (which pass no commit
/// listener) make its snapshot stale, and its next pass counts the writer's new profiles.
#[tokio::test]
async fn a_replicas_dashboard_is_passed_again_after_the_writers_groups() {
    let c = client();
    let (wd, rd) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let often = (
        "IDGRAPH_SERVER__STATS_REFRESH_SECONDS".to_owned(),
        "1".to_owned(),
    );
    let mut wenv = writer_env(64);
    wenv.push(often.clone());
    let writer = ServeProcess::start_with_env(wd.path(), &wenv);
    let w = writer.address.clone();
    ingest(&c, &w, 0..20, "dash").await;
    let r = replica_with(&writer, rd.path(), 10, &[often]);
    for (round, persons) in [(1, 20), (2, 50)] {
        if round == 2 {
            ingest(&c, &w, 20..50, "dash").await;
        }
        caught_up(&c, &w, &r.address).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (wp, rp) = (
                snapshot_profiles(&c, &w).await,
                snapshot_profiles(&c, &r.address).await,
            );
            if wp == Some(persons) && rp == Some(persons) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {persons} profiles expected; the writer's snapshot has {wp:?}, the replica's {rp:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A replica further behind than the writer's backlog starts again from a snapshot and
/// then answers what the writer answers; while the writer is down its lag grows and
/// `/ready` says so (reads go on).
#[tokio::test]
async fn a_replica_too_far_behind_starts_again_from_a_snapshot() {
    let c = client();
    let (wd, rd) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // A 1 MiB backlog: a few hundred events' groups.
    let mut writer = ServeProcess::start_with_env(wd.path(), &writer_env(1));
    let w = writer.address.clone();
    ingest(&c, &w, 0..30, "r1").await;
    let mut r = replica(&writer, rd.path(), 1);
    caught_up(&c, &w, &r.address).await;
    r.terminate();
    for round in 0..8 {
        ingest(&c, &w, 30 + round * 100..130 + round * 100, "r1").await;
    }
    let mut r = replica(&writer, rd.path(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Ok(Some(status)) = r.child.try_wait() {
        panic!("the replica exited ({status}): {}", r.stderr());
    }
    caught_up(&c, &w, &r.address).await;
    same_answers(&c, &w, &r.address, &[1, 29, 500, 829]).await;
    let metrics = metrics_text(&c, &r.address).await;
    assert!(
        metrics.contains("idgraph_replica_snapshots_total 1"),
        "a new snapshot: {metrics}"
    );

    // The writer goes away: the replica keeps serving reads, and /ready names the lag.
    writer.terminate();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = r.child.try_wait() {
            panic!("the replica exited ({status}): {}", r.stderr());
        }
        let (status, body) = get(&c, &r.address, "/ready").await;
        if status == 503 {
            assert_eq!(body["reason"], "replica_lag", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never reported the lag: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = get(&c, &r.address, "/v1/lookup?kind=customer_id&value=crm-1").await;
    assert_eq!(status, 200, "reads go on without the writer");
}

/// Every file under `dir` (recursively), as paths.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// An encrypted writer's replica: the snapshot brings the writer's wrapped data key, and a
/// replica with the writer's key-encryption key follows it (snapshot, then the log) and
/// answers what the writer answers, while no file of its store holds a personal value in
/// plaintext (its search index holds words, as the writer's does). A replica with
/// encryption off or another KEK stops with a configuration error before it fetches the
/// store, and so does an encrypted replica of a plaintext writer. After `keys rotate-kek`
/// on the replica's store, the old KEK no longer opens it and the new one does.
#[tokio::test]
async fn an_encrypted_writers_replica_unwraps_its_data_key_and_holds_no_plaintext() {
    let c = client();
    let root = tempfile::tempdir().expect("dir");
    let kek = kek_file(root.path(), "kek", 0x61);
    let wrong = kek_file(root.path(), "wrong", 0x62);
    let (wd, rd) = (root.path().join("writer"), root.path().join("replica"));
    let mut env = writer_env(256);
    env.extend(enc_env(&kek));
    let writer = ServeProcess::start_with_env(&wd, &env);
    let w = writer.address.clone();
    ingest(&c, &w, 0..60, "r1").await;

    // Refused, naming the setting, before any file of the store is fetched.
    let follow = ["replica", "--follow", w.as_str()];
    for (extra, says) in [
        (Vec::new(), "encryption.enabled = true"),
        (enc_env(&wrong), "wrong key-encryption key"),
    ] {
        let dir = root.path().join("refused");
        let err = refused_run(&follow, &dir, &borrowed(&replica_env(10, &extra)));
        assert!(err.contains(says), "{err}");
        let fetched: Vec<_> = all_files(&dir)
            .into_iter()
            .filter(|p| !p.ends_with(idgraph::crypto::DATA_KEY_FILE))
            .collect();
        assert!(fetched.is_empty(), "nothing of the store: {fetched:?}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    let mut r = replica_with(&writer, &rd, 10, &enc_env(&kek));
    caught_up(&c, &w, &r.address).await;
    // Groups after the snapshot come through the log, sealed as the writer sealed them.
    ingest(&c, &w, 60..120, "r1").await;
    caught_up(&c, &w, &r.address).await;
    same_answers(&c, &w, &r.address, &[0, 5, 59, 60, 119]).await;
    let current = rd.join("current");
    assert!(current.join(idgraph::crypto::DATA_KEY_FILE).is_file());
    let search = current.join("search");
    for needle in [
        &b"person5@replica.example"[..],
        b"person77@replica.example",
        b"+14155550077",
        b"crm-77",
        b"Name77",
    ] {
        let holding: Vec<String> = files_holding(&rd, needle)
            .into_iter()
            .filter(|p| !Path::new(p).starts_with(&search))
            .collect();
        assert!(
            holding.is_empty(),
            "{:?} in plaintext in {holding:?}",
            String::from_utf8_lossy(needle)
        );
    }

    // The KEK rotated on the replica's store: the old KEK is refused, the new one follows
    // on from the replica's own store.
    r.terminate();
    let new = kek_file(root.path(), "new", 0x63);
    let out = idgraph_command()
        .args(["keys", "rotate-kek", "--data-dir"])
        .arg(&current)
        .arg("--new-file")
        .arg(&new)
        .envs(enc_env(&kek))
        .output()
        .expect("run rotate-kek");
    assert_succeeded(&out, "idgraph keys rotate-kek on a replica");
    let err = refused_run(&follow, &rd, &borrowed(&replica_env(10, &enc_env(&kek))));
    assert!(err.contains("wrong key-encryption key"), "{err}");
    ingest(&c, &w, 120..140, "r1").await;
    let r = replica_with(&writer, &rd, 10, &enc_env(&new));
    caught_up(&c, &w, &r.address).await;
    same_answers(&c, &w, &r.address, &[7, 130]).await;
    let metrics = metrics_text(&c, &r.address).await;
    assert!(
        metrics.contains("idgraph_replica_snapshots_total 0"),
        "{metrics}"
    );

    // An encrypted replica of a plaintext writer.
    let plain = ServeProcess::start_with_env(&root.path().join("plain"), &writer_env(16));
    ingest(&c, &plain.address, 0..5, "r1").await;
    let dir = root.path().join("refused");
    let err = refused_run(
        &["replica", "--follow", &plain.address],
        &dir,
        &borrowed(&replica_env(10, &enc_env(&kek))),
    );
    assert!(err.contains("encryption.enabled = false"), "{err}");
    assert!(all_files(&dir).is_empty(), "nothing fetched");
}
