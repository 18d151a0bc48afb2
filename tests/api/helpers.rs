//! Test harness: starts the real actix-web application on a random loopback port over a
//! fresh temporary data directory, plus small request and assertion helpers.

use std::sync::Arc;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use idgraph::config::Settings;
use idgraph::engine::Engine;
use idgraph::governance::keys::{hash_key, KeySettings, Role};
use idgraph::serve::Application;

/// A running server and a client for it. The data directory lives as long as this value.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    /// The engine behind the server (for tests that reach past HTTP, e.g. retention).
    pub engine: Arc<Engine>,
    _dir: TempDir,
}

/// Starts the server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The test keys: one per role (`test-<role>`), plus an unmasked agent; each key is
/// `idg_test_<name>`. Rates are high enough never to limit a test that does not mean to.
pub const TEST_KEYS: [(&str, Role, bool); 7] = [
    ("test-admin", Role::Admin, false),
    ("test-ingest", Role::Ingest, false),
    ("test-service", Role::Service, false),
    ("test-agent", Role::Agent, false),
    ("test-agent-unmasked", Role::Agent, true),
    ("test-analyst", Role::Analyst, false),
    ("test-operator", Role::Operator, false),
];

/// The key of test key `name`.
pub fn key_of(name: &str) -> String {
    format!("idg_test_{name}")
}

/// `[[auth.keys]]` entries of [`TEST_KEYS`].
pub fn test_keys() -> Vec<KeySettings> {
    TEST_KEYS
        .iter()
        .map(|(name, role, unmask)| KeySettings {
            name: (*name).to_owned(),
            role: *role,
            hash: hash_key(&key_of(name)),
            unmask: *unmask,
            rate_per_second: 1_000_000.0,
            burst: 1_000_000,
            sources: Vec::new(),
            tenant: None,
        })
        .collect()
}

/// Default headers carrying the admin test key.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", key_of("test-admin"));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&value).expect("a valid header value"),
    );
    headers
}

/// `IDGRAPH_AUTH__KEYS` for a server child process: the test keys, in figment's syntax.
pub fn test_keys_env() -> (String, String) {
    let entries: Vec<String> = test_keys()
        .iter()
        .map(|k| {
            format!(
                "{{name=\"{}\",role=\"{}\",hash=\"{}\",unmask={},rate_per_second=1000000.0,burst=1000000}}",
                k.name,
                k.role.name(),
                k.hash,
                k.unmask
            )
        })
        .collect();
    (
        "IDGRAPH_AUTH__KEYS".into(),
        format!("[{}]", entries.join(",")),
    )
}

/// Starts the server with default settings changed by `modify`. The test keys are
/// configured and the app's client sends the admin key.
/// Every engine a test server opened whose server may still run. A test's server stops
/// after the test returns, on its own worker threads; were the last reference to its
/// engine dropped there while the harness already exits, RocksDB would close the store
/// after its static state is gone and abort the whole test binary ("pthread lock: Invalid
/// argument", seen about once in five runs). Kept here, no store is closed at exit (a
/// static is never dropped). An engine only this list still holds (its test and server
/// are gone) is closed by the next [`spawn_app_with`], on a live test thread: until it is,
/// its files, already unlinked with the test's data directory, keep their disk space
/// (RocksDB preallocates tens of MB per store), and a run of hundreds of tests that never
/// closed one filled a CI machine's disk.
static ENGINES: std::sync::Mutex<Vec<Arc<Engine>>> = std::sync::Mutex::new(Vec::new());

/// Keeps `engine` open to the end of the process unless its server stops first; closes
/// the engines whose tests and servers are gone.
fn keep_engine(engine: Arc<Engine>) {
    let finished: Vec<Arc<Engine>> = {
        let mut engines = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
        let (running, finished) = std::mem::take(&mut *engines)
            .into_iter()
            .partition(|e| Arc::strong_count(e) > 1);
        *engines = running;
        engines.push(engine);
        finished
    };
    // Closed here, outside the lock (a close waits for the store's background work).
    drop(finished);
}

pub async fn spawn_app_with(modify: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("cannot create a temporary data directory");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.auth.keys = test_keys();
    settings.server.bind = "127.0.0.1:0".into();
    // Many servers run at once (one per test): keep each one small.
    settings.server.workers = 2;
    modify(&mut settings);
    let engine = Arc::new(Engine::open(settings).expect("cannot open the engine"));
    keep_engine(engine.clone());
    let app = Application::with_engine(engine.clone(), "127.0.0.1:0")
        .expect("cannot build the application");
    let port = app.port();
    tokio::spawn(app.run_in_background());
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(admin_headers())
        .build()
        .expect("cannot build the HTTP client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client,
        engine,
        _dir: dir,
    }
}

impl TestApp {
    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `POST /v1/events` with a JSON body (one event or an array).
    pub async fn post_events(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/events failed")
    }

    /// `POST /v1/events` with a raw body and an optional Content-Type.
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Response {
        let mut req = self.client.post(self.url("/v1/events")).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        req.send().await.expect("POST /v1/events failed")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    /// GET with URL-encoded query parameters.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {path} failed: {e}"))
    }

    /// `DELETE /v1/links?a=..&b=..` (identifiers as `kind:value`).
    pub async fn delete_link(&self, a: &str, b: &str) -> Response {
        self.client
            .delete(self.url("/v1/links"))
            .query(&[("a", a), ("b", b)])
            .send()
            .await
            .expect("DELETE /v1/links failed")
    }

    /// `GET /v1/lookup?kind=..&value=..`
    pub async fn lookup(&self, kind: &str, value: &str) -> Response {
        self.get_query("/v1/lookup", &[("kind", kind), ("value", value)])
            .await
    }

    /// Posts one event and asserts it was accepted; returns its outcome.
    pub async fn ingest(&self, event: &Value) -> Value {
        let outcome = json_ok(self.post_events(event).await).await;
        assert_eq!(
            outcome["status"], "accepted",
            "event not accepted: {outcome}"
        );
        outcome
    }

    /// Posts one event, asserts it was accepted and returns its profile id.
    pub async fn ingest_pid(&self, event: &Value) -> String {
        pid(&self.ingest(event).await)
    }

    /// The golden profile `id` (asserts 200).
    pub async fn profile(&self, id: &str) -> Value {
        json_ok(self.get(&format!("/v1/profiles/{id}")).await).await
    }

    /// The profile id holding identifier `kind`/`value` (asserts the lookup answers 200).
    pub async fn pid_of(&self, kind: &str, value: &str) -> String {
        pid(&json_ok(self.lookup(kind, value).await).await)
    }
}

/// Builds a wire event; `traits` is left out when it is `null`.
pub fn event(id: &str, source: &str, identifiers: Value, traits: Value) -> Value {
    let mut ev = json!({ "event_id": id, "source": source, "identifiers": identifiers });
    if !traits.is_null() {
        ev["traits"] = traits;
    }
    ev
}

/// The `profile_id` string of a JSON answer.
pub fn pid(v: &Value) -> String {
    v["profile_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no profile_id in {v}"))
        .to_owned()
}

/// Asserts a 200 answer and returns its JSON body.
pub async fn json_ok(resp: Response) -> Value {
    let status = resp.status();
    let url = resp.url().clone();
    let text = resp.text().await.expect("cannot read the body");
    assert_eq!(status, StatusCode::OK, "{url} answered {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: body is not JSON ({e}): {text}"))
}

/// Asserts an error answer with `status` and `code` in the stable error shape
/// `{"error": {"code", "message", "field"?}}`; returns the `error` object.
pub async fn assert_error(resp: Response, status: u16, code: &str) -> Value {
    let got = resp.status();
    let url = resp.url().clone();
    let text = resp.text().await.expect("cannot read the body");
    assert_ne!(got.as_u16(), 500, "{url} answered 500: {text}");
    assert_eq!(
        got.as_u16(),
        status,
        "{url}: unexpected status; body: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: error body is not JSON ({e}): {text:?}"));
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(obj.len(), 1, "error body has extra top-level keys: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], code, "unexpected error code: {body}");
    let message = err["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty(), "empty message: {body}");
    if let Some(field) = err.get("field") {
        assert!(
            field.is_string(),
            "field must be a string when present: {body}"
        );
    }
    err.clone()
}

/// Number of identifier values in a golden profile.
pub fn identifier_count(profile: &Value) -> usize {
    profile["identifiers"]
        .as_object()
        .unwrap_or_else(|| panic!("no identifiers in {profile}"))
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum()
}

/// The values of identifier `kind` in a golden profile (empty if none).
pub fn identifiers_of(profile: &Value, kind: &str) -> Vec<String> {
    profile["identifiers"][kind]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Longest wait for `idgraph serve` to print its address (a search index rebuild may run
/// first).
const SERVE_STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Longest wait for a graceful stop after SIGTERM.
const SERVE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asserts that a finished command succeeded; otherwise fails naming `what` and showing
/// what the command printed on stderr.
pub fn assert_succeeded(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real `idgraph` binary with every inherited `IDGRAPH_*` variable removed.
pub fn idgraph_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_idgraph"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IDGRAPH_") {
            cmd.env_remove(k);
        }
    }
    // Warnings, and the steps of a graceful stop (a stop that hangs shows how far it got).
    cmd.env("RUST_LOG", "warn,idgraph::shutdown=info");
    cmd
}

/// What each thread of process `pid` is doing, for a failure message: its name, state and
/// kernel wait channel from `/proc`, then every thread's stack when `gdb` is installed.
fn thread_dump(pid: u32) -> String {
    let mut out = String::new();
    // Whether a signal is pending, blocked, ignored or caught, process-wide.
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines().filter(|l| {
            ["ShdPnd:", "SigPnd:", "SigBlk:", "SigIgn:", "SigCgt:"]
                .iter()
                .any(|p| l.starts_with(p))
        }) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let path = task.path();
            let read = |f: &str| {
                std::fs::read_to_string(path.join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            let state = read("status")
                .lines()
                .find(|l| l.starts_with("State:"))
                .unwrap_or_default()
                .to_owned();
            out.push_str(&format!(
                "{} {:?} {state} wchan={}\n",
                task.file_name().to_string_lossy(),
                read("comm"),
                read("wchan")
            ));
        }
    }
    if let Ok(gdb) = std::process::Command::new("gdb")
        .args([
            "-batch",
            "-p",
            &pid.to_string(),
            "-ex",
            "thread apply all bt 30",
        ])
        .output()
    {
        out.push_str(&String::from_utf8_lossy(&gdb.stdout));
    }
    out
}

/// A running `idgraph serve` child process on a loopback port chosen by the OS (it reads
/// the `listening on http://...` line); killed on drop if still running.
pub struct ServeProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// Everything the process wrote to stderr so far.
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts the binary on `data_dir` and waits until it listens.
    pub fn start(data_dir: &std::path::Path) -> ServeProcess {
        ServeProcess::start_with_env(data_dir, &[])
    }

    /// Like [`ServeProcess::start`], with extra environment (e.g. `IDGRAPH_*` settings).
    pub fn start_with_env(data_dir: &std::path::Path, env: &[(String, String)]) -> ServeProcess {
        ServeProcess::start_args(&["serve"], data_dir, env)
    }

    /// `idgraph <args> --data-dir D --bind 127.0.0.1:0` (e.g. `["replica", "--follow",
    /// URL]`), waiting until it listens.
    pub fn start_args(
        args: &[&str],
        data_dir: &std::path::Path,
        env: &[(String, String)],
    ) -> ServeProcess {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let mut child = idgraph_command()
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0"])
            .env("IDGRAPH_SERVER__WORKERS", "2")
            .envs([test_keys_env()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the idgraph binary");
        // Drain stderr (logs) so the child never blocks on a full pipe; keep it for diagnostics.
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Read stdout until the address line, then keep draining it.
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(addr.to_owned());
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(SERVE_STARTUP_TIMEOUT) {
            Ok(address) => ServeProcess {
                child,
                address,
                stderr,
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                // Give the stderr thread a moment to collect the last lines.
                std::thread::sleep(std::time::Duration::from_millis(200));
                panic!(
                    "idgraph did not print `listening on` within {SERVE_STARTUP_TIMEOUT:?} (exit: {status:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends `signal` (`"TERM"`, `"INT"`) and waits for the process to exit.
    pub fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -{signal} failed");
        let deadline = std::time::Instant::now() + SERVE_STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "idgraph did not exit within {SERVE_STOP_TIMEOUT:?} of SIG{signal}; stderr:\n{}\nthreads:\n{}",
                    self.stderr(),
                    thread_dump(self.child.id())
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to write anything more.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait for the killed server");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP client for servers started as child processes (long timeout, no proxy, the
/// admin test key).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(admin_headers())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// POSTs JSON; returns the status and the JSON body (`null` when there is none).
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// GETs; returns the status and the JSON body (`null` when there is none).
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Runs `openssl` in `dir`.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/install-deps.sh)");
    assert_succeeded(&out, &format!("openssl {args:?}"));
}

/// A throwaway CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`) in `dir`, made with `openssl`; returns the CA's path.
pub fn test_certificates(dir: &std::path::Path) -> std::path::PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=idgraph test CA",
            "-days",
            "2",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
            "-days",
            "2",
        ],
    );
    dir.join("ca.pem")
}

/// Bytes of the SST files directly in the store directory `dir`.
pub fn sst_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read the store directory")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// The `/metrics` text of the server at `base` (empty when it cannot be read).
/// The value of the sample `series` (name with labels, exactly as exposed) in a
/// `/metrics` text, if present.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series)
            .then(|| value.parse::<f64>().ok())
            .flatten()
    })
}

pub async fn metrics_text(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap_or_default()
}

/// Every file under `root` (recursively) holding one of `needles` as bytes: (file, needle).
pub fn files_holding(
    root: &std::path::Path,
    needles: &[&str],
) -> Vec<(std::path::PathBuf, String)> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    hits.push((path.clone(), (*n).to_owned()));
                }
            }
        }
    }
    hits
}
