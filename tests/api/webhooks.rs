//! Change-feed webhooks against a real receiver (`tests/support/webhook_receiver.py`,
//! Python's standard library over TLS with a throwaway CA) that verifies the signature as
//! the README tells users to, and fails on purpose: retried deliveries, a dead letter
//! visible in `/metrics` and `GET /v1/webhooks`, its replay, and ingest never waiting for
//! a destination that is down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{event, json_ok, spawn_app_with, test_certificates, TestApp};

pub(crate) const SECRET: &str = "whsec-0123456789abcdef";

pub(crate) struct Receiver {
    child: std::process::Child,
    dir: PathBuf,
    pub(crate) port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn receiver(dir: &Path, extra: &[&str]) -> Receiver {
    test_certificates(dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg(SECRET)
        .args(["--cert", "server.pem", "--key", "server.key"])
        .args(extra)
        .current_dir(dir)
        .spawn()
        .expect("python3 must be installed to run the webhook receiver");
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("port")) {
            break text.trim().parse().expect("the receiver writes its port");
        }
        assert!(
            Instant::now() < deadline,
            "the webhook receiver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Receiver {
        child,
        dir: dir.to_path_buf(),
        port,
    }
}

pub(crate) fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Receiver {
    /// Every record received, in arrival order.
    fn records(&self) -> Vec<Value> {
        lines(&self.dir.join("received.jsonl"))
            .into_iter()
            .flat_map(|r| r["body"]["changes"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Every accepted body, in arrival order.
    pub(crate) fn bodies(&self) -> Vec<Value> {
        lines(&self.dir.join("received.jsonl"))
            .into_iter()
            .map(|r| r["body"].clone())
            .collect()
    }

    pub(crate) fn statuses(&self) -> Vec<u64> {
        lines(&self.dir.join("attempts.jsonl"))
            .iter()
            .filter_map(|a| a["status"].as_u64())
            .collect()
    }
}

async fn feed(app: &TestApp) -> Vec<Value> {
    json_ok(app.get("/v1/changes?after=0&limit=1000").await).await["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn webhooks(app: &TestApp) -> Value {
    json_ok(app.get("/v1/webhooks").await).await["webhooks"][0].clone()
}

/// Polls `check` until it holds, for at most 60 s.
pub(crate) async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seq(r: &Value) -> u64 {
    r["seq"].as_u64().unwrap_or_default()
}

#[tokio::test]
async fn records_arrive_signed_in_order_and_a_failing_batch_is_retried_then_set_aside() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rx = receiver(
        dir.path(),
        &["--fail-first", "2", "--poison", "poison@example.com"],
    );
    let url = format!("https://127.0.0.1:{}/hooks/idgraph", rx.port);
    let ca = dir.path().join("ca.pem");
    let app = spawn_app_with(|s| {
        s.webhooks.push(idgraph::config::WebhookSettings {
            name: "crm".into(),
            url,
            secret: idgraph::config::Secret::new(SECRET),
            batch_size: 3,
            max_attempts: 3,
            ca_file: Some(ca),
            ..Default::default()
        });
    })
    .await;

    // Three people; the second one merges in two steps; one event carries the poison.
    for (i, ids) in [
        json!({"email": "ada@example.com"}),
        json!({"email": "bo@example.com"}),
        json!({"phone": "+14155550111"}),
        json!({"email": "bo@example.com", "phone": "+14155550111"}),
        json!({"email": "poison@example.com"}),
        json!({"email": "cy@example.com", "cookie_id": "ck-cy"}),
        json!({"email": "ada@example.com", "cookie_id": "ck-ada"}),
    ]
    .into_iter()
    .enumerate()
    {
        app.ingest(&event(&format!("wh-{i}"), "web", ids, json!({})))
            .await;
    }
    let all = feed(&app).await;
    let last = all.last().map(seq).expect("records");
    eventually("every batch is delivered or set aside", || {
        rx.records().iter().map(seq).max() == Some(last)
    })
    .await;
    let hook = webhooks(&app).await;
    assert_eq!(hook["delivered_through"], last, "{hook}");

    // Order: sequence numbers strictly increase; every record but the poisoned batch came.
    let got = rx.records();
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let dead = hook["dead_letters"].as_array().cloned().unwrap_or_default();
    assert_eq!(dead.len(), 1, "{hook}");
    let (first, lastd) = (
        dead[0]["first_seq"].as_u64().unwrap_or_default(),
        dead[0]["last_seq"].as_u64().unwrap_or_default(),
    );
    assert_eq!(dead[0]["attempts"], 3, "{hook}");
    assert_eq!(dead[0]["last_error"], "HTTP 500", "{hook}");
    for r in &all {
        let s = seq(r);
        let in_dead = (first..=lastd).contains(&s);
        assert_eq!(seqs.contains(&s), !in_dead, "record {r}");
    }
    assert!(
        all.iter()
            .any(|r| (first..=lastd).contains(&seq(r)) && r.to_string().contains("poison@")),
        "the dead letter is the poisoned batch"
    );
    // Per profile, records came in the order they happened.
    let mut by_profile: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &got {
        by_profile
            .entry(r["profile_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(seq(r));
    }
    assert!(by_profile
        .values()
        .all(|s| s.windows(2).all(|w| w[0] < w[1])));

    // Every attempt was signed correctly (the receiver answers 401 otherwise); the first
    // two failed on purpose and were retried.
    let statuses = rx.statuses();
    assert!(!statuses.contains(&401), "{statuses:?}");
    assert_eq!(&statuses[..2], &[503, 503], "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        3,
        "{statuses:?}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    for line in [
        "idgraph_webhook_failed_attempts_total{webhook=\"crm\"} 5",
        "idgraph_webhook_dead_letters{webhook=\"crm\"} 1",
        &format!(
            "idgraph_webhook_delivered_records_total{{webhook=\"crm\"}} {}",
            seqs.len()
        ),
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // The receiver is fixed; the admin replays from just before the dead letter.
    std::fs::write(dir.path().join("accept_poison"), b"").expect("write");
    let replayed = json_ok(
        app.client
            .post(app.url("/v1/webhooks/crm/replay"))
            .json(&json!({"after": first - 1}))
            .send()
            .await
            .expect("POST replay"),
    )
    .await;
    assert_eq!(replayed["dead_letters"], json!([]), "{replayed}");
    eventually("the replayed batch arrives", || {
        rx.records().iter().any(|r| seq(r) == first)
    })
    .await;
    let hook = webhooks(&app).await;
    assert_eq!(hook["dead_letters"], json!([]), "{hook}");
    let unknown = app
        .client
        .post(app.url("/v1/webhooks/nope/replay"))
        .json(&json!({"after": 0}))
        .send()
        .await
        .expect("POST replay");
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn a_destination_that_is_down_never_holds_up_ingest_and_loses_nothing() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let app = spawn_app_with(|s| {
        s.webhooks.push(idgraph::config::WebhookSettings {
            name: "down".into(),
            url: format!("http://127.0.0.1:{port}/x"),
            secret: idgraph::config::Secret::new(SECRET),
            max_attempts: 1_000,
            ..Default::default()
        });
    })
    .await;
    let start = json_ok(app.get("/v1/webhooks").await).await["webhooks"][0]["delivered_through"]
        .as_u64()
        .expect("a position");
    for i in 0..20 {
        let batch: Vec<Value> = (0..50)
            .map(|j| {
                event(
                    &format!("dn-{i}-{j}"),
                    "web",
                    json!({"cookie_id": format!("ck-dn-{i}-{j}")}),
                    json!({}),
                )
            })
            .collect();
        let resp = app.post_events(&Value::Array(batch)).await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    assert_eq!(feed(&app).await.len(), 1000);
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        metrics.contains("idgraph_webhook_failed_attempts_total{webhook=\"down\"}"),
        "{metrics}"
    );
    // Nothing was skipped: the destination still waits at its first record.
    let hook = webhooks(&app).await;
    assert_eq!(hook["delivered_through"], start, "{hook}");
    assert_eq!(hook["dead_letters"], json!([]), "{hook}");
}

#[tokio::test]
async fn a_bad_destination_stops_the_server_from_starting_with_its_name() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = idgraph::config::Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.webhooks.push(idgraph::config::WebhookSettings {
        name: "crm".into(),
        url: "http://hooks.example.com/x".into(),
        secret: idgraph::config::Secret::new(SECRET),
        ..Default::default()
    });
    let engine = std::sync::Arc::new(idgraph::engine::Engine::open(settings).expect("engine"));
    let err = idgraph::serve::Application::with_engine(engine, "127.0.0.1:0")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("webhooks[crm].url"), "{err}");
}

/// The position survives `kill -9`: records written while the destination was down are
/// delivered by the restarted server (a lost position would restart at the feed's end and
/// skip them), each at least once.
#[tokio::test]
async fn a_destination_resumes_from_its_saved_position_after_kill_9() {
    use crate::helpers::ServeProcess;
    let data = tempfile::tempdir().expect("a temporary directory");
    let first_dir = tempfile::tempdir().expect("a temporary directory");
    let second_dir = tempfile::tempdir().expect("a temporary directory");
    let env = |rx: &Receiver, dir: &Path| {
        vec![(
            "IDGRAPH_WEBHOOKS".to_owned(),
            format!(
                "[{{name=\"crm\",url=\"https://127.0.0.1:{}/h\",secret=\"{SECRET}\",batch_size=5,max_attempts=1000,ca_file=\"{}\"}}]",
                rx.port,
                dir.join("ca.pem").display()
            ),
        )]
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(crate::helpers::admin_headers())
        .build()
        .expect("client");
    let ingest = |base: String, prefix: &'static str| {
        let client = client.clone();
        async move {
            for i in 0..10 {
                let resp = client
                    .post(format!("{base}/v1/events"))
                    .json(&event(
                        &format!("{prefix}-{i}"),
                        "web",
                        json!({"cookie_id": format!("ck-{prefix}-{i}")}),
                        json!({}),
                    ))
                    .send()
                    .await
                    .expect("POST /v1/events");
                assert!(resp.status().is_success());
            }
        }
    };
    let feed_of = |base: String| {
        let client = client.clone();
        async move {
            let page: Value = client
                .get(format!("{base}/v1/changes?limit=1000"))
                .send()
                .await
                .expect("GET /v1/changes")
                .json()
                .await
                .expect("JSON");
            page["changes"].as_array().cloned().unwrap_or_default()
        }
    };

    let rx1 = receiver(first_dir.path(), &[]);
    let mut server = ServeProcess::start_with_env(data.path(), &env(&rx1, first_dir.path()));
    ingest(server.address.clone(), "one").await;
    let feed = feed_of(server.address.clone()).await;
    let last = feed.last().map(seq).expect("records");
    eventually("the first records arrive", || {
        rx1.records().iter().map(seq).max() == Some(last)
    })
    .await;
    // The destination goes down; ten more events; the server is killed.
    drop(rx1);
    ingest(server.address.clone(), "two").await;
    let feed = feed_of(server.address.clone()).await;
    let last = feed.last().map(seq).expect("records");
    server.kill();

    let rx2 = receiver(second_dir.path(), &[]);
    let server = ServeProcess::start_with_env(data.path(), &env(&rx2, second_dir.path()));
    eventually("the records written while it was down arrive", || {
        rx2.records().iter().map(seq).max() == Some(last)
    })
    .await;
    let mut got: Vec<u64> = lines(&first_dir.path().join("received.jsonl"))
        .iter()
        .chain(lines(&second_dir.path().join("received.jsonl")).iter())
        .flat_map(|r| r["body"]["changes"].as_array().cloned().unwrap_or_default())
        .map(|r| seq(&r))
        .collect();
    let delivered = got.len();
    got.sort_unstable();
    got.dedup();
    let want: Vec<u64> = feed.iter().map(seq).collect();
    assert_eq!(got, want, "every record, in the end");
    assert!(
        delivered - got.len() <= 5,
        "at most one batch again: {delivered} deliveries"
    );
    drop(server);
}

/// A destination gets only the change types it names, with values as its role is shown
/// them (an analyst destination: pseudonyms).
#[tokio::test]
async fn destinations_get_their_types_and_see_values_as_their_role() {
    let merges_dir = tempfile::tempdir().expect("a temporary directory");
    let analyst_dir = tempfile::tempdir().expect("a temporary directory");
    let merges = receiver(merges_dir.path(), &[]);
    let analyst = receiver(analyst_dir.path(), &[]);
    let hook = |name: &str, rx: &Receiver, dir: &Path| idgraph::config::WebhookSettings {
        name: name.into(),
        url: format!("https://127.0.0.1:{}/h", rx.port),
        secret: idgraph::config::Secret::new(SECRET),
        ca_file: Some(dir.join("ca.pem")),
        ..Default::default()
    };
    let app = spawn_app_with(|s| {
        s.webhooks.push(idgraph::config::WebhookSettings {
            types: vec!["profiles_merged".into()],
            ..hook("merges", &merges, merges_dir.path())
        });
        s.webhooks.push(idgraph::config::WebhookSettings {
            role: idgraph::governance::keys::Role::Analyst,
            ..hook("analytics", &analyst, analyst_dir.path())
        });
    })
    .await;
    for (i, ids) in [
        json!({"email": "dee@example.com"}),
        json!({"phone": "+14155550142"}),
        json!({"email": "dee@example.com", "phone": "+14155550142"}),
    ]
    .into_iter()
    .enumerate()
    {
        app.ingest(&event(&format!("ty-{i}"), "web", ids, json!({})))
            .await;
    }
    let all = feed(&app).await;
    let last = all.last().map(seq).expect("records");
    eventually("the analyst destination has everything", || {
        analyst.records().iter().map(seq).max() == Some(last)
    })
    .await;
    let merge_seq = all
        .iter()
        .find(|r| r["type"] == "profiles_merged")
        .map(seq)
        .expect("a merge");
    eventually("the merge arrives", || {
        merges.records().iter().any(|r| seq(r) == merge_seq)
    })
    .await;
    let got = merges.records();
    assert!(
        got.iter().all(|r| r["type"] == "profiles_merged"),
        "{got:?}"
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["identifiers"]["email"], json!(["dee@example.com"]));
    let text = serde_json::to_string(&analyst.records()).unwrap_or_default();
    assert!(
        !text.contains("dee@example.com") && !text.contains("14155550142"),
        "{text}"
    );
    assert!(text.contains("ps_"), "pseudonyms: {text}");
}
