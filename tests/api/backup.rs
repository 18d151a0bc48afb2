//! Backup and restore (`POST /v1/admin/backup`, `idgraph backup`, `idgraph restore`): a
//! backup taken while events keep coming in restores into a new directory whose server
//! answers every profile exactly as the source did; a second backup shares the first
//! one's files; an erasure made after a backup is re-applied by the restore; bad input
//! gets clear errors.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_succeeded, get_json, http_client, idgraph_command, json_ok, key_of,
    post_json, spawn_app, ServeProcess, TestApp,
};
use idgraph::store::rocks::RocksStore;
use idgraph::store::{GraphStore, ProfileId};

/// A person of the base data set: two events (web and crm) joined by the email.
fn person_events(i: usize) -> [Value; 2] {
    [
        json!({"event_id": format!("base-{i}-web"), "source": "web",
               "identifiers": {"email": format!("person{i}@example.com"), "cookie_id": format!("ck-{i}")},
               "traits": {"first_name": format!("Name{i}"), "last_name": "Backup"}}),
        json!({"event_id": format!("base-{i}-crm"), "source": "crm",
               "identifiers": {"email": format!("person{i}@example.com"), "customer_id": format!("cust-{i}")},
               "traits": {"city": "Lisbon"}}),
    ]
}

async fn ingest_people(app: &TestApp, range: std::ops::Range<usize>) {
    let events: Vec<Value> = range.flat_map(person_events).collect();
    for chunk in events.chunks(100) {
        let answer = json_ok(app.post_events(&json!(chunk)).await).await;
        for r in answer["results"].as_array().expect("results") {
            assert_eq!(r["status"], "accepted", "{answer}");
        }
    }
}

/// Every profile id of a store, read-only (a server may be running on it).
fn profile_ids(dir: &Path) -> Vec<ProfileId> {
    let store = RocksStore::open_read_only(dir, None).expect("open the store read-only");
    let mut out = Vec::new();
    let mut after: Option<ProfileId> = None;
    loop {
        let page = store.goldens_after(after.as_ref(), 500).expect("goldens");
        let Some(last) = page.last() else { break };
        after = Some(last.0.clone());
        out.extend(page.into_iter().map(|(id, _)| id));
    }
    out
}

fn restore(from: &Path, to: &Path, at: Option<&str>) -> std::process::Output {
    let mut cmd = idgraph_command();
    cmd.arg("restore")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(to);
    if let Some(at) = at {
        cmd.args(["--at", at]);
    }
    cmd.output().expect("run idgraph restore")
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn backup_via_api(app: &TestApp, to: &Path) -> Value {
    json_ok(
        app.client
            .post(app.url("/v1/admin/backup"))
            .json(&json!({"to": to}))
            .send()
            .await
            .expect("POST /v1/admin/backup"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_ingest_restores_every_profile_as_the_source_had_it() {
    let app = spawn_app().await;
    ingest_people(&app, 0..150).await;
    let backups = tempfile::tempdir().expect("tempdir");
    let backup_dir = backups.path().join("nightly");

    // Events keep coming while the backup runs: each one a new person (fresh identifiers),
    // so a profile's answer never changes after it is created and the source's answers now
    // are its answers at the backup point.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let client = app.client.clone();
        let url = app.url("/v1/events");
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let ev = json!({"event_id": format!("live-{n}"), "source": "web",
                    "identifiers": {"email": format!("live{n}@example.com"), "cookie_id": format!("live-ck-{n}")},
                    "traits": {"first_name": format!("Live{n}")}});
                let resp = client.post(&url).json(&ev).send().await.expect("post");
                assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
                acked.lock().unwrap().push(n);
                n += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let acked_before: Vec<usize> = acked.lock().unwrap().clone();
    let record = backup_via_api(&app, &backup_dir).await;
    // And after it: none of these may be in the backup's answers unless written before it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the ingest task");
    assert_eq!(record["id"], 1, "{record}");
    assert!(record["bytes"].as_u64().unwrap() > 0, "{record}");
    assert!(
        acked.lock().unwrap().len() > acked_before.len(),
        "ingest went on during and after the backup"
    );

    let restored_root = tempfile::tempdir().expect("tempdir");
    let restored = restored_root.path().join("data");
    let out = restore(&backup_dir, &restored, None);
    assert_succeeded(&out, "idgraph restore");
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("restore prints JSON");
    assert_eq!(outcome["backup"]["id"], 1, "{outcome}");
    assert_eq!(outcome["erasures_reapplied"], 0, "{outcome}");
    // The search index was rebuilt from the restored store, not copied.
    assert!(restored.join("search").is_dir());
    assert!(restored.join("governance.secret").is_file());

    let mut server = ServeProcess::start(&restored);
    let client = http_client();
    let source_ids = profile_ids(app.data_dir());
    let restored_ids = profile_ids(&restored);
    assert_eq!(
        outcome["profiles_indexed"].as_u64().unwrap() as usize,
        restored_ids.len()
    );
    let source_set: BTreeSet<&ProfileId> = source_ids.iter().collect();
    // Every base person and every event acknowledged before the backup started.
    assert!(
        restored_ids.len() >= 150 + acked_before.len(),
        "{}",
        restored_ids.len()
    );
    assert!(
        restored_ids.len() < source_ids.len(),
        "events after the backup are not in it"
    );
    for id in &restored_ids {
        assert!(
            source_set.contains(id),
            "{id} is not a profile of the source"
        );
        let (status, there) = get_json(&client, &server.url(&format!("/v1/profiles/{id}"))).await;
        assert_eq!(status, 200, "{there}");
        let here = app.profile(id.as_str()).await;
        assert_eq!(there, here, "profile {id} differs after the restore");
    }
    for n in &acked_before {
        let (status, _) = get_json(
            &client,
            &server.url(&format!("/v1/lookup?kind=email&value=live{n}@example.com")),
        )
        .await;
        assert_eq!(
            status, 200,
            "live{n}, acknowledged before the backup, is missing"
        );
    }
    // Search answers from the rebuilt index.
    let (status, found) = get_json(&client, &server.url("/v1/search?q=Name7%20Backup")).await;
    assert_eq!(status, 200, "{found}");
    assert!(found.to_string().contains("Name7"), "{found}");
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_incremental_and_an_erasure_after_a_backup_is_reapplied_on_restore() {
    let app = spawn_app().await;
    ingest_people(&app, 0..400).await;
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().join("b");
    let first = backup_via_api(&app, &dir).await;
    ingest_people(&app, 400..405).await;

    // The second one through the CLI against the running server.
    let out = idgraph_command()
        .args([
            "backup",
            "--server",
            &app.address,
            "--key",
            &key_of("test-admin"),
            "--to",
        ])
        .arg(&dir)
        .output()
        .expect("run idgraph backup");
    assert_succeeded(&out, "idgraph backup --server");
    let second: Value = serde_json::from_slice(&out.stdout).expect("backup prints JSON");
    assert_eq!(second["id"], 2, "{second}");
    // It shares the first one's files: it added far fewer bytes than it uses.
    let (new2, bytes2, new1) = (
        second["new_bytes"].as_u64().unwrap(),
        second["bytes"].as_u64().unwrap(),
        first["new_bytes"].as_u64().unwrap(),
    );
    assert!(new2 < bytes2, "second backup copied everything: {second}");
    assert!(new2 < new1, "second {second} vs first {first}");
    let files_of = |id: u32| -> BTreeSet<String> {
        std::fs::read_to_string(dir.join("store/meta").join(id.to_string()))
            .expect("backup meta file")
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|f| f.starts_with("shared"))
            .map(str::to_owned)
            .collect()
    };
    let shared: Vec<_> = files_of(1).intersection(&files_of(2)).cloned().collect();
    assert!(!shared.is_empty(), "the two backups share no file");

    // After both backups, person 3 is erased.
    let (status, erased) = post_json(
        &app.client,
        &app.url("/v1/erasure"),
        &json!({"identifier": "email:person3@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{erased}");
    let journal = std::fs::read_to_string(dir.join("suppressions.jsonl")).expect("journal");
    assert_eq!(journal.lines().count(), 1, "{journal}");
    assert!(
        !journal.contains("person3"),
        "the journal holds hashes, never values"
    );

    let root = tempfile::tempdir().expect("tempdir");
    for (at, expect_id) in [(None, 2), (first["at"].as_str(), 1)] {
        let restored = root.path().join(format!("r{expect_id}"));
        let out = restore(&dir, &restored, at);
        assert_succeeded(&out, "idgraph restore");
        let outcome: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(outcome["backup"]["id"], expect_id, "{outcome}");
        assert_eq!(outcome["erasures_reapplied"], 1, "{outcome}");
        let mut server = ServeProcess::start(&restored);
        let client = http_client();
        for (kind, value) in [
            ("email", "person3@example.com"),
            ("customer_id", "cust-3"),
            ("cookie_id", "ck-3"),
        ] {
            let (status, body) = get_json(
                &client,
                &server.url(&format!("/v1/lookup?kind={kind}&value={value}")),
            )
            .await;
            assert_eq!(status, 404, "{kind} of the erased person is back: {body}");
        }
        // The suppression list came back too: the person cannot be re-created.
        let (status, err) = post_json(
            &client,
            &server.url("/v1/events"),
            &json!({"event_id": "again-3", "source": "web", "identifiers": {"email": "person3@example.com"}}),
        )
        .await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["code"], "suppressed", "{err}");
        // Everyone else is there.
        let (status, _) = get_json(
            &client,
            &server.url("/v1/lookup?kind=email&value=person2%40example.com"),
        )
        .await;
        assert_eq!(status, 200);
        let (status, found) = get_json(&client, &server.url("/v1/search?q=Name3%20Backup")).await;
        assert_eq!(status, 200);
        assert!(!found.to_string().contains("Name3\""), "{found}");
        assert!(server.terminate().success());
        let expected = if expect_id == 2 { 404 } else { 399 };
        assert_eq!(profile_ids(&restored).len(), expected);
    }

    // A stopped store is backed up directly.
    let restored = root.path().join("r2");
    let out = idgraph_command()
        .args(["backup", "--data-dir"])
        .arg(&restored)
        .arg("--to")
        .arg(root.path().join("offline"))
        .output()
        .expect("run idgraph backup");
    assert_succeeded(&out, "idgraph backup --data-dir");
}

#[tokio::test]
async fn bad_backup_and_restore_input_gets_clear_errors() {
    let app = spawn_app().await;
    ingest_people(&app, 0..3).await;
    let root = tempfile::tempdir().expect("tempdir");

    // The route: a relative path, a path inside the data directory, bad JSON, no path.
    let post = |body: &'static str| {
        app.client
            .post(app.url("/v1/admin/backup"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let err = assert_error(
        post(r#"{"to": "relative/dir"}"#).await.unwrap(),
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(err["field"], "to");
    let err = assert_error(post("{}").await.unwrap(), 400, "invalid_parameter").await;
    assert!(
        err["message"].as_str().unwrap().contains("backup.dir"),
        "{err}"
    );
    assert_error(post(r#"{"to": 5}"#).await.unwrap(), 400, "invalid_json").await;
    assert_error(
        post(r#"{"dir": "/tmp/x"}"#).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        post(r#"{"to": "/tmp/../etc"}"#).await.unwrap(),
        400,
        "invalid_parameter",
    )
    .await;
    let inside = app.data_dir().join("backups");
    let resp = app
        .client
        .post(app.url("/v1/admin/backup"))
        .json(&json!({"to": inside}))
        .send()
        .await
        .unwrap();
    let err = assert_error(resp, 400, "invalid_parameter").await;
    assert!(
        err["message"].as_str().unwrap().contains("data directory"),
        "{err}"
    );
    assert!(!inside.exists());
    // Not an admin.
    let resp = app
        .client
        .post(app.url("/v1/admin/backup"))
        .bearer_auth(key_of("test-service"))
        .json(&json!({"to": root.path().join("x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!root.path().join("x").exists());

    // The CLI on a data directory a server holds: one sentence.
    let out = idgraph_command()
        .args(["backup", "--data-dir"])
        .arg(app.data_dir())
        .arg("--to")
        .arg(root.path().join("y"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("in use"), "{}", stderr_of(&out));

    let dir = root.path().join("b");
    let record = backup_via_api(&app, &dir).await;

    // Restore: a missing backup directory, a directory that holds no backup, a target
    // that is not empty, --at before the first backup, --at that is not a time.
    let target = root.path().join("t");
    let out = restore(&root.path().join("missing"), &target, None);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("does not exist"),
        "{}",
        stderr_of(&out)
    );
    let out = restore(app.data_dir(), &target, None);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("holds no idgraph backup"),
        "{}",
        stderr_of(&out)
    );
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let out = restore(&dir, &target, None);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("is not empty"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        std::fs::read_to_string(target.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        1,
        "nothing was written"
    );
    let empty = root.path().join("e");
    let out = restore(&dir, &empty, Some("2001-01-01T00:00:00Z"));
    assert!(!out.status.success());
    let msg = stderr_of(&out);
    assert!(msg.contains("at or before"), "{msg}");
    assert!(msg.contains(record["at"].as_str().unwrap()), "{msg}");
    assert!(!empty.exists(), "nothing was written");
    let out = restore(&dir, &empty, Some("yesterday"));
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("RFC 3339"), "{}", stderr_of(&out));
}
