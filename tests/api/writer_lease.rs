//! One writer per graph database, proved with real `idgraph serve` processes on one real
//! Neo4j graph: a second process is refused at start-up naming the holder; a process that
//! was paused past its lease while another took the graph over writes nothing more (503
//! `not_the_writer`, `/ready` 503); a clean stop releases the lease at once; a process
//! restarted on its own data directory after `kill -9` takes its lease straight back.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{get_json, http_client, idgraph_command, post_json, ServeProcess};
use crate::neo4j;

/// The settings of a server on the test Neo4j graph, with its lease length.
fn graph_env(turn: &neo4j::Neo4jTurn, lease_seconds: u64) -> Vec<(String, String)> {
    [
        ("IDGRAPH_GRAPH__STORE", "bolt".to_owned()),
        ("IDGRAPH_GRAPH__BOLT__URI", turn.bolt_uri.clone()),
        ("IDGRAPH_GRAPH__BOLT__USER", "neo4j".to_owned()),
        ("IDGRAPH_GRAPH__BOLT__PASSWORD", turn.password.clone()),
        ("IDGRAPH_GRAPH__BOLT__DATABASE", "neo4j".to_owned()),
        ("IDGRAPH_GRAPH__LEASE_SECONDS", lease_seconds.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs `idgraph serve` expecting it to refuse to start; returns what it printed on stderr.
/// Fails if it starts listening instead.
fn refused_serve(data_dir: &std::path::Path, env: &[(String, String)]) -> String {
    let mut child = idgraph_command()
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start idgraph");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a second writer kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !status.success(),
        "a second writer must not start: {stdout}"
    );
    assert!(!stdout.contains("listening on"), "{stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn event(id: &str, email: &str) -> Value {
    json!({
        "event_id": id, "source": "crm", "timestamp": "2024-05-01T10:00:00Z",
        "identifiers": { "email": email },
        "traits": { "first_name": "Lease" }
    })
}

async fn ingest(
    client: &reqwest::Client,
    server: &ServeProcess,
    id: &str,
    email: &str,
) -> (u16, Value) {
    post_json(client, &server.url("/v1/events"), &event(id, email)).await
}

async fn lookup(client: &reqwest::Client, server: &ServeProcess, email: &str) -> u16 {
    let url = reqwest::Url::parse_with_params(
        &server.url("/v1/lookup"),
        &[("kind", "email"), ("value", email)],
    )
    .expect("lookup url");
    get_json(client, url.as_str()).await.0
}

fn signal(server: &ServeProcess, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([name, &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {name}");
}

#[test]
fn one_writer_per_graph_database() {
    // The turn is taken outside the runtime (emptying the graph blocks on its own one).
    let turn = neo4j::exclusive();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(two_writers(turn));
}

async fn two_writers(turn: neo4j::Neo4jTurn) {
    let client = http_client();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // A takes the graph and writes.
    let mut a = ServeProcess::start_with_env(dir_a.path(), &graph_env(&turn, 3));
    let (status, body) = ingest(&client, &a, "a-1", "a1@example.com").await;
    assert_eq!(status, 200, "{body}");

    // B, on another data directory, is refused while A's lease runs, naming A.
    let err = refused_serve(dir_b.path(), &graph_env(&turn, 30));
    assert!(
        err.contains("another idgraph process writes this graph"),
        "{err}"
    );
    assert!(
        err.contains(&dir_a.path().display().to_string()),
        "names the holder: {err}"
    );
    assert!(err.contains(&format!("pid {}", a.child.id())), "{err}");
    assert_eq!(
        lookup(&client, &a, "a1@example.com").await,
        200,
        "A still serves"
    );

    // A is paused past its lease (3 s); B takes the graph over and writes.
    signal(&a, "-STOP");
    std::thread::sleep(Duration::from_secs(5));
    let mut b = ServeProcess::start_with_env(dir_b.path(), &graph_env(&turn, 30));
    signal(&a, "-CONT");
    let (status, body) = ingest(&client, &b, "b-1", "b1@example.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        lookup(&client, &b, "a1@example.com").await,
        200,
        "B sees A's writes"
    );

    // A, awake again, writes nothing: its write is refused whole, and it is not ready.
    let (status, body) = ingest(&client, &a, "a-2", "a2@example.com").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_the_writer", "{body}");
    let (status, ready) = get_json(&client, &a.url("/ready")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "not_the_writer", "{ready}");
    assert_eq!(
        lookup(&client, &b, "a2@example.com").await,
        404,
        "nothing of A's refused write is in the graph"
    );
    let (status, body) = ingest(&client, &a, "a-3", "a3@example.com").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (503, json!("not_the_writer")),
        "stays fenced"
    );
    a.terminate();

    // A clean stop releases the lease: C on A's directory starts at once, although B's
    // 30 s lease was renewed moments ago.
    b.terminate();
    let mut c = ServeProcess::start_with_env(dir_a.path(), &graph_env(&turn, 30));
    let (status, body) = ingest(&client, &c, "c-1", "c1@example.com").await;
    assert_eq!(status, 200, "{body}");

    // After kill -9 the lease stays C's for 30 s: another directory is refused, while C's
    // own directory takes it straight back.
    c.kill();
    let err = refused_serve(dir_b.path(), &graph_env(&turn, 30));
    assert!(
        err.contains("another idgraph process writes this graph"),
        "{err}"
    );
    let d = ServeProcess::start_with_env(dir_a.path(), &graph_env(&turn, 30));
    for email in ["a1@example.com", "b1@example.com", "c1@example.com"] {
        assert_eq!(lookup(&client, &d, email).await, 200, "{email}");
    }
    assert_eq!(lookup(&client, &d, "a2@example.com").await, 404);
    let (status, body) = ingest(&client, &d, "d-1", "d1@example.com").await;
    assert_eq!(status, 200, "{body}");
}
