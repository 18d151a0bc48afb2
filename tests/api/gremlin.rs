//! The real Apache TinkerPop Gremlin Server (TinkerGraph with transactions) the Gremlin
//! store's conformance suite runs against.
//!
//! One server per test process, started on first use by the project's own script
//! (`scripts/gremlin.sh start`: gremlin-server and tinkergraph-gremlin from Maven Central,
//! WebSocket on a free loopback port, user `idgraph` with a fresh random password; see
//! `jvm_server.rs`). The server holds one graph, so the tests that use it take turns:
//! [`exclusive`] hands out the graph emptied, and holds it until the guard is dropped.

use std::sync::{Mutex, MutexGuard, OnceLock};

use gremlin_client::aio::{AsyncTerminator, GremlinClient};
use gremlin_client::process::traversal::{Bytecode, GraphTraversal, TraversalBuilder};
use gremlin_client::{ConnectionOptions, GValue, GraphSON};

use crate::jvm_server;

static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());

#[derive(Clone)]
pub struct Server {
    pub uri: String,
    pub user: String,
    pub password: String,
}

/// The graph of the shared server, held by one test at a time.
pub struct GremlinTurn {
    pub server: Server,
    _turn: MutexGuard<'static, ()>,
}

fn start() -> Result<Server, String> {
    let env = jvm_server::start("gremlin", "GREMLIN")?;
    Ok(Server {
        uri: jvm_server::var(&env, "GREMLIN_URI")?,
        user: jvm_server::var(&env, "GREMLIN_USER")?,
        password: jvm_server::var(&env, "GREMLIN_PASSWORD")?,
    })
}

/// Runs one bytecode traversal of `steps` (name, string arguments) on the server.
pub fn run(server: &Server, steps: &[(&str, &[&str])]) -> Vec<GValue> {
    let port: u16 = server
        .uri
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the Gremlin URI");
    let options = ConnectionOptions::builder()
        .host("127.0.0.1")
        .port(port)
        .pool_size(1)
        .serializer(GraphSON::V3)
        .deserializer(GraphSON::V3)
        .credentials(&server.user, &server.password)
        .build();
    let mut bytecode = Bytecode::new();
    for (name, args) in steps {
        let args = args
            .iter()
            .map(|a| GValue::String((*a).to_owned()))
            .collect();
        bytecode.add_step((*name).to_owned(), args);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the Gremlin client")
        .block_on(async {
            let client = GremlinClient::connect(options)
                .await
                .expect("connect to the Gremlin test server");
            let t: GraphTraversal<GValue, GValue, AsyncTerminator> = GraphTraversal::new(
                AsyncTerminator::new(client),
                TraversalBuilder::new(bytecode),
            );
            t.to_list()
                .await
                .expect("run a traversal on the Gremlin test server")
        })
}

/// Waits for this test's turn on the shared server, then empties its graph.
pub fn exclusive() -> GremlinTurn {
    let server = match SHARED.get_or_init(start) {
        Ok(server) => server.clone(),
        Err(e) => panic!("the Gremlin test server could not be started: {e}"),
    };
    // A poisoned turn carries no state: the graph is emptied anyway.
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    run(&server, &[("V", &[]), ("drop", &[])]);
    GremlinTurn {
        server,
        _turn: turn,
    }
}

/// What the real binary says when the Gremlin server cannot be used: the setting named for
/// a bad URI, the credentials named for a wrong password, "cannot reach" for a closed port;
/// never a hang.
mod startup_errors {
    use crate::helpers::idgraph_command;

    fn profile_with(env: &[(&str, &str)]) -> String {
        let data = tempfile::tempdir().expect("data dir");
        let mut cmd = idgraph_command();
        cmd.args(["profile", "email:a@example.com", "--data-dir"])
            .arg(data.path())
            .env("IDGRAPH_GRAPH__STORE", "gremlin")
            .env("IDGRAPH_GRAPH__GREMLIN__TIMEOUT_MS", "5000");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run idgraph");
        assert!(!out.status.success(), "must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn a_bad_uri_names_the_setting() {
        let err = profile_with(&[("IDGRAPH_GRAPH__GREMLIN__URI", "http://127.0.0.1:1/gremlin")]);
        assert!(err.contains("graph.gremlin.uri"), "{err}");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let uri = format!("ws://127.0.0.1:{port}/gremlin");
        let err = profile_with(&[("IDGRAPH_GRAPH__GREMLIN__URI", &uri)]);
        assert!(
            err.contains("cannot reach") || err.contains("no answer"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_password_names_the_credentials() {
        let held = super::exclusive();
        let err = profile_with(&[
            ("IDGRAPH_GRAPH__GREMLIN__URI", &held.server.uri),
            ("IDGRAPH_GRAPH__GREMLIN__USER", &held.server.user),
            ("IDGRAPH_GRAPH__GREMLIN__PASSWORD", "not-the-password"),
        ]);
        assert!(err.contains("credentials"), "{err}");
        assert!(!err.contains("not-the-password"), "{err}");
    }
}

/// `graph.gremlin.auth = "aws_iam"`: the real binary reaches the real Gremlin Server through
/// its signing relay (`store::gremlin::iam`), and everything (SASL included) passes
/// through it: ingest, lookup, and the graph written. Gremlin Server does not check SigV4
/// (only Neptune does); the relay's signature is checked in its unit tests.
#[test]
fn the_store_works_through_the_neptune_iam_relay() {
    use crate::helpers::{get_json, http_client, post_json, ServeProcess};
    let held = exclusive();
    let data = tempfile::tempdir().expect("data dir");
    let env: Vec<(String, String)> = [
        ("IDGRAPH_GRAPH__STORE", "gremlin"),
        ("IDGRAPH_GRAPH__GREMLIN__URI", held.server.uri.as_str()),
        ("IDGRAPH_GRAPH__GREMLIN__USER", held.server.user.as_str()),
        (
            "IDGRAPH_GRAPH__GREMLIN__PASSWORD",
            held.server.password.as_str(),
        ),
        ("IDGRAPH_GRAPH__GREMLIN__AUTH", "aws_iam"),
        ("IDGRAPH_GRAPH__GREMLIN__AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("RUST_LOG", "warn,idgraph::store::gremlin::iam=info"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let server = ServeProcess::start_with_env(data.path(), &env);
    assert!(
        server.stderr().contains("Neptune IAM signing relay"),
        "{}",
        server.stderr()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = http_client();
        let event = serde_json::json!({
            "event_id": "iam-1", "source": "crm", "timestamp": "2024-05-01T10:00:00Z",
            "identifiers": { "email": "iam@example.com", "customer_id": "C-IAM" }
        });
        let (status, body) = post_json(&client, &server.url("/v1/events"), &event).await;
        assert_eq!(status, 200, "{body}; stderr: {}", server.stderr());
        let (status, profile) = get_json(
            &client,
            &server.url("/v1/lookup?kind=customer_id&value=C-IAM"),
        )
        .await;
        assert_eq!(status, 200, "{profile}");
        assert_eq!(crate::helpers::identifier_count(&profile), 2, "{profile}");
    });
    // The identifier vertices are in the server's graph, written through the relay.
    let found = run(
        &held.server,
        &[("V", &["i:email:iam@example.com"]), ("count", &[])],
    );
    assert_eq!(found.len(), 1);
    assert!(
        matches!(found[0], GValue::Int64(1) | GValue::Int32(1)),
        "{found:?}"
    );
}
