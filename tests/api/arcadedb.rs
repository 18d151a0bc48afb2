//! The real ArcadeDB server (Bolt/openCypher) the Bolt-store tests run against.
//!
//! One server per test process, started on first use by the project's own script
//! (`scripts/arcadedb.sh start`, free loopback ports, a random root password) and stopped by
//! the script's watcher when this process exits. Each test gets its own database
//! (`scripts/arcadedb.sh create-db`), so tests stay independent and run in parallel. If the server
//! cannot be started the tests fail and say why; they are never skipped.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Connection details of a running ArcadeDB server (from the script's `env` file).
#[derive(Debug, Clone)]
pub struct Arcade {
    /// The directory the server was started in (its `env` file).
    pub dir: std::path::PathBuf,
    pub bolt_uri: String,
    pub user: String,
    pub password: String,
    pub http_port: u16,
}

static SHARED: OnceLock<Result<Arcade, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The server shared by this test process.
pub fn shared() -> &'static Arcade {
    let started = SHARED.get_or_init(|| {
        crate::jvm_server::sweep("arcadedb");
        let dir = std::env::temp_dir().join(format!("idgraph-arcadedb-{}", std::process::id()));
        start(&dir)
    });
    match started {
        Ok(a) => a,
        Err(e) => panic!("the ArcadeDB test server could not be started: {e}"),
    }
}

/// Starts a server with its data in `dir` (reusing the ports and password of an earlier
/// server in the same `dir`, so a restarted server is the same server to its clients).
pub fn start(dir: &Path) -> Result<Arcade, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = Command::new(repo().join("scripts/arcadedb.sh"));
    cmd.arg("start")
        .arg(dir)
        .env("ARCADEDB_WATCH_PID", std::process::id().to_string());
    if let Ok(earlier) = read_env(dir) {
        let bolt_port = earlier
            .bolt_uri
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        cmd.env("ARCADEDB_BOLT_PORT", bolt_port)
            .env("ARCADEDB_HTTP_PORT", earlier.http_port.to_string());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run scripts/arcadedb.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/arcadedb.sh start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    read_env(dir)
}

/// Stops the server running in `dir`.
pub fn stop(dir: &Path) {
    let out = Command::new(repo().join("scripts/arcadedb.sh"))
        .arg("stop")
        .arg(dir)
        .output()
        .expect("cannot run scripts/arcadedb.sh stop");
    crate::helpers::assert_succeeded(&out, "scripts/arcadedb.sh stop");
}

fn read_env(dir: &Path) -> Result<Arcade, String> {
    let path = dir.join("env");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let get = |name: &str| -> Result<String, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
            .ok_or_else(|| format!("{} has no {name}", path.display()))
    };
    Ok(Arcade {
        dir: dir.to_owned(),
        bolt_uri: get("ARCADEDB_BOLT_URI")?,
        user: get("ARCADEDB_USER")?,
        password: get("ARCADEDB_PASSWORD")?,
        http_port: get("ARCADEDB_HTTP_PORT")?
            .parse()
            .map_err(|e| format!("bad ARCADEDB_HTTP_PORT: {e}"))?,
    })
}

impl Arcade {
    /// Creates a new, empty database (with the project's script) and returns its name.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(repo().join("scripts/arcadedb.sh"))
            .args(["create-db"])
            .arg(&self.dir)
            .arg(&name)
            .output()
            .expect("cannot run scripts/arcadedb.sh create-db");
        crate::helpers::assert_succeeded(&out, &format!("creating ArcadeDB database {name}"));
        name
    }
}
