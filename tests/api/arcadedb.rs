//! The real ArcadeDB server (Bolt/openCypher) the Bolt-store tests run against.
//!
//! One server per test process, started on first use by the project's own script
//! (`scripts/arcadedb.sh start`, free loopback ports, a random root password) and stopped by
//! the script's watcher when this process exits. Each test gets its own database, created
//! over ArcadeDB's HTTP API, so tests stay independent and run in parallel. If the server
//! cannot be started the tests fail and say why; they are never skipped.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Connection details of a running ArcadeDB server (from the script's `env` file).
#[derive(Debug, Clone)]
pub struct Arcade {
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
    assert!(
        out.status.success(),
        "scripts/arcadedb.sh stop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        bolt_uri: get("ARCADEDB_BOLT_URI")?,
        user: get("ARCADEDB_USER")?,
        password: get("ARCADEDB_PASSWORD")?,
        http_port: get("ARCADEDB_HTTP_PORT")?
            .parse()
            .map_err(|e| format!("bad ARCADEDB_HTTP_PORT: {e}"))?,
    })
}

impl Arcade {
    /// Creates a new, empty database and returns its name.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let body = format!(r#"{{"command":"create database {name}"}}"#);
        let (status, response) = self.http_post("/api/v1/server", &body);
        assert_eq!(
            status, 200,
            "ArcadeDB refused to create database {name}: {response}"
        );
        name
    }

    /// A minimal HTTP/1.1 POST with basic auth (no HTTP client needed for two calls).
    fn http_post(&self, path: &str, body: &str) -> (u16, String) {
        use base64_lite::encode;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.http_port))
            .expect("cannot connect to ArcadeDB's HTTP port");
        let auth = encode(format!("{}:{}", self.user, self.password).as_bytes());
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("cannot send to ArcadeDB");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("cannot read ArcadeDB's answer");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }
}

/// Base64 (standard alphabet, padded) for the basic-auth header.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"root:pw"), "cm9vdDpwdw==");
    }
}
