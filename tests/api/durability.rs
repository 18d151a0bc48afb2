//! Durability of the real binary: a graceful restart keeps everything, and a SIGKILL in the
//! middle of ingest loses nothing that was acknowledged (a 2xx answer means synced to disk).
//!
//! These tests start `idgraph serve` as a child process on a loopback port chosen by the OS
//! (`--bind 127.0.0.1:0`) and read the `listening on http://...` line from its stdout.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{get_json, http_client as client, post_json, ServeProcess as Server};

async fn lookup(
    client: &reqwest::Client,
    server: &Server,
    kind: &str,
    value: &str,
) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(
        &server.url("/v1/lookup"),
        &[("kind", kind), ("value", value)],
    )
    .expect("lookup url");
    get_json(client, url.as_str()).await
}

/// Everything the restart test expects to survive, read over HTTP.
#[derive(Debug, PartialEq)]
struct Snapshot {
    profile: Value,
    absorbed_profile: Value,
    lookups: Vec<(String, Value)>,
    history: Value,
}

const RESTART_IDENTIFIERS: [(&str, &str); 4] = [
    ("email", "alice.restart@example.com"),
    ("cookie_id", "ck-restart-a"),
    ("device_id", "dev-restart-b"),
    ("cookie_id", "ck-restart-b"),
];

async fn snapshot(
    client: &reqwest::Client,
    server: &Server,
    survivor: &str,
    absorbed: &str,
) -> Snapshot {
    let (status, profile) =
        get_json(client, &server.url(&format!("/v1/profiles/{survivor}"))).await;
    assert_eq!(status, 200, "GET profile {survivor}: {profile}");
    let (status, absorbed_profile) =
        get_json(client, &server.url(&format!("/v1/profiles/{absorbed}"))).await;
    assert_eq!(
        status, 200,
        "GET absorbed profile {absorbed}: {absorbed_profile}"
    );
    let mut lookups = Vec::new();
    for (kind, value) in RESTART_IDENTIFIERS {
        let (status, body) = lookup(client, server, kind, value).await;
        assert_eq!(status, 200, "lookup {kind}: {body}");
        lookups.push((kind.to_owned(), body));
    }
    let (status, history) = get_json(
        client,
        &server.url(&format!("/v1/profiles/{survivor}/history")),
    )
    .await;
    assert_eq!(status, 200, "GET history: {history}");
    Snapshot {
        profile,
        absorbed_profile,
        lookups,
        history,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_profiles_lookups_aliases_and_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client();
    let events = json!([
        {
            "event_id": "restart-1", "source": "crm", "timestamp": "2024-03-01T10:00:00Z",
            "identifiers": { "email": "alice.restart@example.com", "cookie_id": "ck-restart-a" },
            "traits": { "first_name": "Alice", "last_name": "Restart" }
        },
        {
            "event_id": "restart-2", "source": "mobile", "timestamp": "2024-03-02T10:00:00Z",
            "identifiers": { "device_id": "dev-restart-b", "cookie_id": "ck-restart-b" }
        },
        {
            "event_id": "restart-3", "source": "web", "timestamp": "2024-03-03T10:00:00Z",
            "identifiers": { "cookie_id": "ck-restart-a", "device_id": "dev-restart-b" },
            "properties": { "platform": "ios" }
        }
    ]);

    let mut server = Server::start(dir.path());
    let events_url = server.url("/v1/events");
    let mut outcomes = Vec::new();
    // One request per event so that the third one merges two committed profiles.
    for event in events.as_array().unwrap() {
        let (status, body) = post_json(&client, &events_url, event).await;
        assert_eq!(status, 200, "ingest {event}: {body}");
        assert_eq!(body["status"], "accepted", "{body}");
        outcomes.push(body);
    }
    let survivor = outcomes[0]["profile_id"]
        .as_str()
        .expect("profile_id")
        .to_owned();
    let absorbed = outcomes[1]["profile_id"]
        .as_str()
        .expect("profile_id")
        .to_owned();
    assert_ne!(
        survivor, absorbed,
        "the first two events share no identifier"
    );
    assert_eq!(
        outcomes[2]["profile_id"],
        json!(survivor),
        "the oldest profile survives: {}",
        outcomes[2]
    );
    assert_eq!(outcomes[2]["merged"], json!([absorbed]), "{}", outcomes[2]);

    let before = snapshot(&client, &server, &survivor, &absorbed).await;
    assert_eq!(before.profile["profile_id"], json!(survivor));
    assert_eq!(
        before.absorbed_profile["profile_id"],
        json!(survivor),
        "absorbed ids resolve to the survivor"
    );
    assert_eq!(before.profile["merged_ids"], json!([absorbed]));
    assert_eq!(before.profile["event_count"], json!(3));
    for (kind, body) in &before.lookups {
        assert_eq!(
            body["profile_id"],
            json!(survivor),
            "lookup {kind} before restart"
        );
    }
    let merges: Vec<&Value> = before.history["history"]
        .as_array()
        .expect("history array")
        .iter()
        .filter(|h| h["kind"] == "merged")
        .collect();
    assert_eq!(merges.len(), 1, "one merge in history: {}", before.history);
    assert_eq!(merges[0]["survivor"], json!(survivor));
    assert_eq!(merges[0]["absorbed"], json!([absorbed]));
    assert_eq!(merges[0]["event_id"], json!("restart-3"));

    let status = server.terminate();
    assert!(
        status.success(),
        "graceful stop after SIGTERM should exit 0, got {status:?}"
    );

    let mut server = Server::start(dir.path());
    let after = snapshot(&client, &server, &survivor, &absorbed).await;
    assert_eq!(after, before, "state read back after a restart differs");

    // Re-sending the same events is recognised: the event index survived.
    let (status, body) = post_json(&client, &server.url("/v1/events"), &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["duplicate"],
        json!(3),
        "re-sent events after restart: {body}"
    );
    assert_eq!(body["accepted"], json!(0), "{body}");

    // Counters survived too: a new person gets a fresh profile id, not a reused one.
    let fresh = json!({
        "event_id": "restart-4", "source": "web",
        "identifiers": { "cookie_id": "ck-restart-new" }
    });
    let (status, body) = post_json(&client, &server.url("/v1/events"), &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    let new_id = body["profile_id"].as_str().expect("profile_id");
    assert_ne!(new_id, survivor, "profile id reused after restart");
    assert_ne!(new_id, absorbed, "profile id reused after restart");

    let status = server.terminate();
    assert!(
        status.success(),
        "graceful stop after SIGTERM should exit 0, got {status:?}"
    );
}

/// A stop request sent the moment the server prints `listening on` (as an orchestrator
/// may) stops it gracefully: the handlers are installed before the announcement, so the
/// signal is neither lost (the server would run on) nor fatal (it would die uncleanly).
#[test]
fn a_stop_request_sent_as_the_server_comes_up_stops_it_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (round, signal) in ["TERM", "INT", "TERM", "INT"].into_iter().enumerate() {
        let mut server = Server::start(dir.path());
        let status = server.stop_with(signal);
        // The exited child's last lines may still be in the pipe to the reader thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.stderr().contains("store closed") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stderr = server.stderr();
        assert!(
            status.success(),
            "round {round}: SIG{signal} at start-up should exit 0, got {status:?}; stderr:\n{stderr}"
        );
        for step in ["shutdown signal received", "store closed"] {
            assert!(
                stderr.contains(step),
                "round {round}: SIG{signal} at start-up: no {step:?} in stderr:\n{stderr}"
            );
        }
    }
}

/// Events per batch in the crash test.
const CRASH_BATCH: usize = 50;
/// Upper bound of batches the client sends.
const CRASH_MAX_BATCHES: usize = 400;
/// The client never runs longer than this.
const CRASH_MAX_CLIENT_TIME: Duration = Duration::from_secs(3);
/// The server is killed once this many batches are acknowledged (well before the bounds).
const KILL_AFTER_BATCHES: usize = 20;

/// Batch `b` of the crash test: unique event ids, two cookies per device so that events
/// merge pairwise inside each batch.
fn crash_batch(b: usize) -> Vec<Value> {
    (0..CRASH_BATCH)
        .map(|i| {
            json!({
                "event_id": format!("crash-{b}-{i}"),
                "source": "web",
                "identifiers": {
                    "cookie_id": format!("ck-crash-{b}-{i}"),
                    "device_id": format!("dev-crash-{b}-{}", i / 2),
                },
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let events_url = server.url("/v1/events");
    let acked_count = Arc::new(AtomicUsize::new(0));
    let client_done = Arc::new(AtomicBool::new(false));

    // The client: posts batches until the server goes away or a bound is reached.
    let writer = {
        let acked_count = acked_count.clone();
        let client_done = client_done.clone();
        let client = client();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut acked: Vec<usize> = Vec::new();
            let mut failure = None;
            for b in 0..CRASH_MAX_BATCHES {
                if started.elapsed() > CRASH_MAX_CLIENT_TIME {
                    break;
                }
                let batch = Value::Array(crash_batch(b));
                match client.post(&events_url).json(&batch).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        // The status line alone is the acknowledgement; the body must still
                        // confirm every event was taken.
                        match resp.json::<Value>().await {
                            Ok(body) => {
                                assert_eq!(
                                    body["accepted"],
                                    json!(CRASH_BATCH),
                                    "batch {b}: {body}"
                                );
                                acked.push(b);
                                acked_count.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                failure = Some(format!("batch {b}: body cut off: {e}"));
                                break;
                            }
                        }
                    }
                    Ok(resp) => panic!("batch {b}: unexpected status {}", resp.status()),
                    Err(e) => {
                        failure = Some(format!("batch {b}: {e}"));
                        break;
                    }
                }
            }
            client_done.store(true, Ordering::SeqCst);
            (acked, failure)
        })
    };

    // The killer: SIGKILL as soon as enough batches are acknowledged (or, on a slow machine,
    // halfway through the client's time budget), while the client is still running.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let n = acked_count.load(Ordering::SeqCst);
        if n >= KILL_AFTER_BATCHES || (n >= 1 && started.elapsed() >= CRASH_MAX_CLIENT_TIME / 2) {
            break;
        }
        assert!(
            !client_done.load(Ordering::SeqCst),
            "the client stopped before the kill; stderr:\n{}",
            server.stderr()
        );
        assert!(
            Instant::now() < deadline,
            "no batch acknowledged within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed_while_running = !client_done.load(Ordering::SeqCst);
    server.kill();
    let (acked, failure) = writer.await.expect("client task");
    assert!(
        killed_while_running,
        "the server must be killed while the client is still ingesting"
    );
    assert!(
        failure.is_some(),
        "the client should have seen the server die mid-loop (acked {} batches)",
        acked.len()
    );
    assert!(!acked.is_empty());
    drop(server);

    // Restart on the same data directory: every acknowledged event must be there.
    let mut server = Server::start(dir.path());
    let client = client();
    for &b in &acked {
        let batch = crash_batch(b);
        let (status, body) =
            post_json(&client, &server.url("/v1/events"), &Value::Array(batch)).await;
        assert_eq!(status, 200, "re-send batch {b}: {body}");
        assert_eq!(
            body["duplicate"],
            json!(CRASH_BATCH),
            "acknowledged batch {b} was not fully stored before the crash: {body}"
        );
        assert_eq!(body["accepted"], json!(0), "batch {b}: {body}");
    }
    // The batch in flight at the kill was never acknowledged: it may be lost, but one
    // request is one atomic write, so it is stored entirely or not at all.
    let in_flight = acked.last().map_or(0, |b| b + 1);
    let (status, body) = post_json(
        &client,
        &server.url("/v1/events"),
        &Value::Array(crash_batch(in_flight)),
    )
    .await;
    assert_eq!(status, 200, "re-send in-flight batch {in_flight}: {body}");
    let stored = body["duplicate"].as_u64().expect("duplicate count");
    assert!(
        stored == 0 || stored == CRASH_BATCH as u64,
        "in-flight batch {in_flight} was stored partially ({stored} of {CRASH_BATCH} events): {body}"
    );
    for &b in &acked {
        for pair in 0..CRASH_BATCH / 2 {
            let mut pids = Vec::new();
            for i in [2 * pair, 2 * pair + 1] {
                let value = format!("ck-crash-{b}-{i}");
                let (status, body) = lookup(&client, &server, "cookie_id", &value).await;
                assert_eq!(
                    status, 200,
                    "lookup of acknowledged {value} after crash: {body}"
                );
                pids.push(body["profile_id"].clone());
            }
            assert_eq!(
                pids[0], pids[1],
                "acknowledged merge of batch {b} pair {pair} lost"
            );
            let device = format!("dev-crash-{b}-{pair}");
            let (status, body) = lookup(&client, &server, "device_id", &device).await;
            assert_eq!(status, 200, "lookup of acknowledged {device}: {body}");
            assert_eq!(body["profile_id"], pids[0], "{device}");
        }
    }
    let status = server.terminate();
    assert!(
        status.success(),
        "graceful stop after SIGTERM should exit 0, got {status:?}"
    );
}
