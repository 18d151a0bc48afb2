//! The real Neo4j 5 Community server the Bolt-store conformance suite also runs against.
//!
//! One server per test process, started on first use by the project's own script
//! (`scripts/neo4j.sh start`: the jars of neo4j-harness from Maven Central, Bolt on a free
//! loopback port, user `neo4j` with a fresh random password) and stopped by the script's watcher when this
//! process exits. Neo4j Community serves one user database, so the tests that use it take
//! turns: [`exclusive`] hands out the database emptied, and holds it until the guard is
//! dropped. If the server cannot be started the tests fail and say why; they are never
//! skipped.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();

#[derive(Clone)]
struct Server {
    uri: String,
    password: String,
}
static TURN: Mutex<()> = Mutex::new(());

/// The database of the shared server, held by one test at a time.
pub struct Neo4jTurn {
    pub bolt_uri: String,
    pub password: String,
    _turn: MutexGuard<'static, ()>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn start() -> Result<Server, String> {
    let dir = std::env::temp_dir().join(format!("idgraph-neo4j-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let out = Command::new(repo().join("scripts/neo4j.sh"))
        .arg("start")
        .arg(&dir)
        .env("NEO4J_WATCH_PID", std::process::id().to_string())
        .output()
        .map_err(|e| format!("cannot run scripts/neo4j.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/neo4j.sh start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let env = std::fs::read_to_string(dir.join("env")).map_err(|e| e.to_string())?;
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("scripts/neo4j.sh wrote no {name}"))
    };
    Ok(Server {
        uri: var("NEO4J_BOLT_URI")?,
        password: var("NEO4J_PASSWORD")?,
    })
}

/// Waits for this test's turn on the shared server, then empties its database (data only:
/// the schema is idempotent and applied again by the caller).
pub fn exclusive() -> Neo4jTurn {
    let server = match SHARED.get_or_init(start) {
        Ok(server) => server.clone(),
        Err(e) => panic!("the Neo4j test server could not be started: {e}"),
    };
    // A test that failed while holding its turn poisons the lock; the next one empties the
    // database anyway, so the poison carries no state.
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to empty the Neo4j database");
    runtime.block_on(async {
        let graph = neo4rs::Graph::new(&server.uri, "neo4j", &server.password)
            .await
            .expect("connect to the Neo4j test server");
        graph
            .run(neo4rs::query("MATCH (n) DETACH DELETE n"))
            .await
            .expect("empty the Neo4j database");
    });
    Neo4jTurn {
        bolt_uri: server.uri,
        password: server.password,
        _turn: turn,
    }
}
