//! A real full disk under the running server: the data directory lives on its own small
//! tmpfs (mounted by the test, which needs root: the test suite and CI run as root), a
//! ballast file takes the rest of its space, and ingest runs until the disk is full.
//!
//! What must hold: the write that hits the full disk, and every write after it, answers
//! `507 storage_full` with `Retry-After` and stores nothing; `/ready` fails, naming the
//! cause; reads that cannot be audited are refused (`audit.on_failure = "refuse"`); once
//! space is freed the same process takes writes again by itself (no restart), the search
//! index catches up, and every acknowledged event is there, before and after a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{get_json, http_client, post_json, ServeProcess};

/// Size of the test's file system: room for the store's preallocated write-ahead log
/// (about 70 MB) and for RocksDB's recovery margin (it resumes once 64 MB are free).
const TMPFS_MB: u64 = 320;

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "mounting a {size_mb} MB tmpfs failed (the full-disk test needs root, as the test suite has in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` with a ballast file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    // The last megabyte may have gone in part: fill the remainder byte by byte.
    let small = [0u8; 4096];
    while f.write_all(&small).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.flush();
    path
}

/// A batch of 1,000 distinct people with long (but valid) traits: about 70 KB of
/// write-ahead log per batch once resolved.
fn batch(n: usize) -> Value {
    let events: Vec<Value> = (0..1000)
        .map(|i| {
            json!({
                "event_id": format!("full-{n}-{i}"),
                "source": "crm",
                "identifiers": {
                    "email": format!("person.{n}.{i}@full-disk.example.com"),
                    "customer_id": format!("FD-{n}-{i}"),
                },
                "traits": {
                    "first_name": format!("Firstname{i}{}", "x".repeat(150)),
                    "last_name": format!("Fulldisk{n}z{i}"),
                    "address": {"street": format!("{i} {} street", "long".repeat(35)),
                                "city": "c".repeat(150), "postal_code": "94107"},
                },
            })
        })
        .collect();
    Value::Array(events)
}

async fn ready(client: &reqwest::Client, server: &ServeProcess) -> (u16, Value) {
    get_json(client, &server.url("/ready")).await
}

async fn event_count(client: &reqwest::Client, server: &ServeProcess) -> u64 {
    let (status, health) = get_json(client, &server.url("/health")).await;
    assert_eq!(status, 200, "{health}");
    health["events"].as_u64().expect("events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_507_fails_readiness_and_recovers_by_itself() {
    let fs = Tmpfs::mount(TMPFS_MB);
    let data = fs.path().join("data");
    let mut server = ServeProcess::start(&data);
    let client = http_client();

    let first = json!({"event_id": "before-full", "source": "web",
        "identifiers": {"email": "before.full@example.com"}});
    let (status, body) = post_json(&client, &server.url("/v1/events"), &first).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ready(&client, &server).await;
    assert_eq!(status, 200, "{body}");

    let ballast = fill(fs.path());

    // Ingest until the disk refuses: the store's preallocated log takes the first
    // batches.
    let mut acknowledged = 1u64;
    let mut refused = None;
    for n in 0..400 {
        let resp = client
            .post(server.url("/v1/events"))
            .json(&batch(n))
            .send()
            .await
            .expect("POST /v1/events");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            assert_eq!(body["accepted"], 1000, "{n}: {body}");
            acknowledged += 1000;
            continue;
        }
        assert_eq!(status, 507, "batch {n}: {body}");
        assert_eq!(body["error"]["code"], "storage_full", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("disk") && message.contains("full"),
            "{body}"
        );
        assert!(
            retry_after
                .as_deref()
                .is_some_and(|s| s.parse::<u64>().is_ok()),
            "a 507 says when to retry: {retry_after:?}"
        );
        refused = Some(n);
        break;
    }
    let refused = refused.expect("the disk never filled up");

    // Writes keep failing, clearly, while the disk is full; readiness says why.
    let (status, body) = post_json(&client, &server.url("/v1/events"), &batch(refused)).await;
    assert_eq!(status, 507, "{body}");
    let (status, body) = ready(&client, &server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "storage_full", "{body}");
    // No read goes unaudited: the audit log is on the full disk too.
    let (status, body) = get_json(
        &client,
        &server.url("/v1/lookup?kind=email&value=before.full@example.com"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");

    // Space returns: the same process recovers by itself.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ready(&client, &server).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 60 s after space was freed: {body}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The refused batch was not stored in part: sent again, every event is new.
    let (status, body) = post_json(&client, &server.url("/v1/events"), &batch(refused)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1000, "{body}");
    assert_eq!(body["duplicate"], 0, "{body}");
    acknowledged += 1000;
    assert_eq!(event_count(&client, &server).await, acknowledged);
    let (status, body) = get_json(
        &client,
        &server.url("/v1/lookup?kind=email&value=before.full@example.com"),
    )
    .await;
    assert_eq!(status, 200, "reads are audited again: {body}");

    // The search index caught up: a person of the batch written after the recovery, and
    // one acknowledged just before the disk filled.
    for name in [format!("Fulldisk{refused}z7"), "Fulldisk0z7".to_owned()] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, found) = get_json(&client, &server.url(&format!("/v1/search?q={name}"))).await;
            let hits = found["hits"].as_array().cloned().unwrap_or_default();
            if hits
                .iter()
                .any(|h| h["profile"]["traits"]["last_name"] == name.as_str())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not searchable 30 s after recovery: {found}\n{}",
                server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The audit log has no torn line from the writes the full disk cut short.
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).expect("audit log");
    assert!(audit.lines().count() > 2, "{audit}");
    for line in audit.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "torn audit line: {line}"
        );
    }

    // Every acknowledged event survives a restart.
    server.terminate();
    let server = ServeProcess::start(&data);
    assert_eq!(event_count(&client, &server).await, acknowledged);
}
