//! The Bolt store beyond the shared conformance suite: the profile cache in front of the
//! graph database, the real binary serving HTTP over ArcadeDB (schema apply, the graph
//! going down and coming back), and configuration errors.

use std::time::Duration;

use serde_json::{json, Value};

use idgraph::config::Settings;
use idgraph::engine::Engine;

use crate::arcadedb;
use crate::conformance::bolt_settings;
use crate::helpers::{
    get_json as get, http_client as client, idgraph_command, post_json as post, ServeProcess,
};

fn ingest(engine: &Engine, events: &[Value]) {
    let normalized = events
        .iter()
        .map(|e| engine.validate(e).expect("valid test event"))
        .collect();
    engine.ingest(normalized).expect("ingest");
}

fn pid(engine: &Engine, kind: &str, value: &str) -> String {
    engine.lookup(kind, value).expect("lookup")["profile_id"]
        .as_str()
        .expect("profile_id")
        .to_owned()
}

/// Two idgraph data directories over one graph database: each cache is rebuilt when it is
/// not at the graph's last commit, so neither serves what the other changed stale.
#[test]
fn profile_cache_is_rebuilt_when_behind_the_graph() {
    let server = arcadedb::shared();
    let database = server.create_database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let settings = |dir: &std::path::Path| {
        let mut s = Settings::default();
        s.storage.data_dir = dir.to_owned();
        bolt_settings(&mut s, server, &database);
        s
    };
    let first = {
        let a = Engine::open(settings(dir_a.path())).unwrap();
        ingest(
            &a,
            &[
                json!({"event_id": "c1", "source": "web", "identifiers": {"email": "cache@example.com", "cookie_id": "ck-c"}}),
            ],
        );
        pid(&a, "email", "cache@example.com")
    };
    {
        // A fresh data directory: its cache is filled from the graph before serving.
        let b = Engine::open(settings(dir_b.path())).unwrap();
        assert_eq!(pid(&b, "cookie_id", "ck-c"), first);
        ingest(
            &b,
            &[
                json!({"event_id": "c2", "source": "crm", "identifiers": {"cookie_id": "ck-c", "phone": "+14155550199"}}),
            ],
        );
    }
    // A's cache is one commit behind the graph now: rebuilt at open, so B's write shows.
    let a = Engine::open(settings(dir_a.path())).unwrap();
    assert_eq!(pid(&a, "phone", "+14155550199"), first);
    assert_eq!(a.profile(&first).unwrap()["event_count"], json!(2));
}

fn bolt_env(server: &arcadedb::Arcade, database: &str) -> Vec<(String, String)> {
    [
        ("IDGRAPH_GRAPH__STORE", "bolt"),
        ("IDGRAPH_GRAPH__BOLT__URI", server.bolt_uri.as_str()),
        ("IDGRAPH_GRAPH__BOLT__USER", server.user.as_str()),
        ("IDGRAPH_GRAPH__BOLT__PASSWORD", server.password.as_str()),
        ("IDGRAPH_GRAPH__BOLT__DATABASE", database),
        ("IDGRAPH_GRAPH__BOLT__FLAVOUR", "arcadedb"),
        ("IDGRAPH_GRAPH__BOLT__TIMEOUT_MS", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The real binary configured for Bolt, over HTTP, against its own ArcadeDB server:
/// `schema apply` (twice), ingest and lookups; with the graph database stopped, writes get
/// 503 naming the cause and lookups are served from the profile cache; once the database is
/// back the server reconnects by itself and nothing acknowledged was lost. The password
/// never appears in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_bolt_survives_the_graph_database_going_down() {
    let graph_dir = tempfile::tempdir().unwrap();
    let server = arcadedb::start(graph_dir.path()).expect("start a dedicated ArcadeDB");
    let env = bolt_env(&server, "identity");

    for _ in 0..2 {
        let out = idgraph_command()
            .args(["schema", "apply"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        crate::helpers::assert_succeeded(&out, "schema apply");
        assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));
    }

    let data = tempfile::tempdir().unwrap();
    let idgraph = ServeProcess::start_with_env(data.path(), &env);
    let http = client();
    let events = |from: usize, to: usize| -> Value {
        (from..to)
            .map(|i| json!({"event_id": format!("e2e-{i}"), "source": "web",
                            "identifiers": {"email": format!("p{i}@example.com"), "cookie_id": format!("ck-{}", i / 2)}}))
            .collect()
    };
    let (status, body) = post(&http, &idgraph.url("/v1/events"), &events(0, 10)).await;
    assert_eq!(status, 200, "{body}");
    let lookup = |v: &str| idgraph.url(&format!("/v1/lookup?kind=email&value={v}"));
    let (status, before) = get(&http, &lookup("p0@example.com")).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        before["identifiers"]["email"].as_array().unwrap().len(),
        2,
        "p0 and p1 share a cookie: {before}"
    );
    let (status, graph) = get(
        &http,
        &idgraph.url(&format!(
            "/v1/profiles/{}/graph",
            before["profile_id"].as_str().unwrap()
        )),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(graph["elements"]["nodes"].as_array().unwrap().len(), 3);

    // The graph database goes down.
    arcadedb::stop(graph_dir.path());
    let (status, body) = post(&http, &idgraph.url("/v1/events"), &events(10, 12)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("graph"),
        "the error names the graph store: {body}"
    );
    let (status, cached) = get(&http, &lookup("p0@example.com")).await;
    assert_eq!(
        status, 200,
        "lookups are served from the profile cache: {cached}"
    );
    assert_eq!(cached, before);
    // Alive but degraded; not ready for writes.
    let (status, health) = get(&http, &idgraph.url("/health")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["graph_store"], "unavailable", "{health}");
    let (status, ready) = get(&http, &idgraph.url("/ready")).await;
    assert_eq!(status, 503, "{ready}");

    // It comes back on the same address; idgraph reconnects without a restart.
    let again = arcadedb::start(graph_dir.path()).expect("restart ArcadeDB");
    assert_eq!(
        again.bolt_uri, server.bolt_uri,
        "restarted on the same port"
    );
    let mut status = 0;
    for _ in 0..40 {
        let (s, _) = post(&http, &idgraph.url("/v1/events"), &events(10, 12)).await;
        status = s;
        if s == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status, 200, "writes work again after the database is back");
    let (status, ready) = get(&http, &idgraph.url("/ready")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(get(&http, &idgraph.url("/health")).await.1["status"], "ok");
    for i in 0..12 {
        let (s, body) = get(&http, &lookup(&format!("p{i}@example.com"))).await;
        assert_eq!(s, 200, "p{i}: {body}");
    }
    let logs = idgraph.stderr();
    assert!(
        !logs.contains(&server.password),
        "the Bolt password leaked into the logs"
    );
}

/// A bad Bolt URI is refused at start-up with a message naming the setting.
#[test]
fn a_bad_bolt_uri_is_refused_naming_the_setting() {
    let data = tempfile::tempdir().unwrap();
    let out = idgraph_command()
        .args(["profile", "email:a@example.com", "--data-dir"])
        .arg(data.path())
        .env("IDGRAPH_GRAPH__STORE", "bolt")
        .env("IDGRAPH_GRAPH__BOLT__URI", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("graph.bolt.uri"), "{err}");
}

/// Nothing listening at the Bolt address: a clear "unavailable" error, not a hang.
#[test]
fn an_unreachable_graph_database_fails_fast_and_clearly() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = idgraph_command()
        .args(["profile", "email:a@example.com", "--data-dir"])
        .arg(data.path())
        .env("IDGRAPH_GRAPH__STORE", "bolt")
        .env(
            "IDGRAPH_GRAPH__BOLT__URI",
            format!("bolt://127.0.0.1:{port}"),
        )
        .env("IDGRAPH_GRAPH__BOLT__TIMEOUT_MS", "3000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("graph"), "{err}");
}

/// A TLS proxy (Python's `ssl`, `tests/support/tls_proxy.py`) in front of a Bolt port, with
/// a certificate for 127.0.0.1 signed by a throwaway CA made with `openssl`.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
    ca: std::path::PathBuf,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_proxy(dir: &std::path::Path, bolt_uri: &str) -> TlsProxy {
    use std::io::BufRead;
    crate::helpers::test_certificates(dir);
    let target = bolt_uri.rsplit(':').next().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_proxy.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args([target, "server.pem", "server.key"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the TLS proxy");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the proxy prints its port");
    TlsProxy {
        child,
        port,
        ca: dir.join("ca.pem"),
    }
}

/// `bolt+s://` works: through a TLS endpoint whose certificate is signed by a CA idgraph is
/// told to trust (`graph.bolt.ca_cert`), everything works; without it, the certificate is
/// refused and the error says the graph database is unreachable rather than connecting in
/// clear.
#[test]
fn bolt_over_tls_verifies_the_server_certificate() {
    let server = arcadedb::shared();
    let database = server.create_database();
    let certs = tempfile::tempdir().unwrap();
    let proxy = tls_proxy(certs.path(), &server.bolt_uri);
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = data.path().to_owned();
    bolt_settings(&mut settings, server, &database);
    settings.graph.bolt.uri = format!("bolt+s://127.0.0.1:{}", proxy.port);
    settings.graph.bolt.timeout_ms = 5_000;

    let untrusted = Engine::open(settings.clone());
    let err = untrusted
        .err()
        .expect("an unknown CA must be refused")
        .to_string();
    assert!(
        err.contains("certificate"),
        "the error names the cause: {err}"
    );

    settings.graph.bolt.ca_cert = Some(proxy.ca.clone());
    let engine = Engine::open(settings).expect("open over TLS with the CA trusted");
    ingest(
        &engine,
        &[
            json!({"event_id": "tls1", "source": "web", "identifiers": {"email": "tls@example.com", "cookie_id": "ck-tls"}}),
        ],
    );
    assert_eq!(
        pid(&engine, "cookie_id", "ck-tls"),
        pid(&engine, "email", "tls@example.com")
    );
    assert!(engine
        .store()
        .node(&Engine::key("email", "tls@example.com"))
        .unwrap()
        .is_some());
}
