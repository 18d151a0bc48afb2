//! The real Neo4j 5 Community server the Bolt-store conformance suite also runs against.
//!
//! One server per test process, started on first use by the project's own script
//! (`scripts/neo4j.sh start`: the jars of neo4j-harness from Maven Central, Bolt on a free
//! loopback port, user `neo4j` with a fresh random password; see `jvm_server.rs`). Neo4j
//! Community serves one user database, so the tests that use it take turns: [`exclusive`]
//! hands out the database emptied, and holds it until the guard is dropped.

use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::jvm_server;

static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());

#[derive(Clone)]
struct Server {
    uri: String,
    password: String,
}

/// The database of the shared server, held by one test at a time.
pub struct Neo4jTurn {
    pub bolt_uri: String,
    pub password: String,
    _turn: MutexGuard<'static, ()>,
}

fn start() -> Result<Server, String> {
    let env = jvm_server::start("neo4j", "NEO4J")?;
    Ok(Server {
        uri: jvm_server::var(&env, "NEO4J_BOLT_URI")?,
        password: jvm_server::var(&env, "NEO4J_PASSWORD")?,
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
