//! A read replica: `idgraph replica --follow <writer URL> --data-dir D --bind ADDR`.
//!
//! The replica keeps a copy of the writer's embedded store in `D/current` (with its own
//! search index and golden-profile cache, which are part of the store) and serves every
//! read route from it; writes answer `405 read_only_replica` naming the writer.
//!
//! - **Start.** Without a store that came from the writer (`D/current/replica.json`), it
//!   fetches a snapshot (`GET /v1/replication/snapshot`, file by file into `D/incoming`,
//!   each file's size checked and synced) and moves it into place; the search index is
//!   rebuilt from the store at open.
//! - **Encryption.** A replica is encrypted exactly when its writer is (it writes the
//!   writer's sealed bytes): the snapshot brings the writer's data key as the writer
//!   wrapped it, fetched first and unwrapped with the replica's own `[encryption.kek]`
//!   before anything else is fetched. A replica whose `encryption.enabled` differs from
//!   the writer's, or whose key-encryption key cannot unwrap the data key, stops with a
//!   configuration error instead of retrying.
//! - **Following.** It long-polls `GET /v1/replication/log?after=<its last group>` and
//!   writes each group exactly as the writer wrote it (synced), so it resumes from its own
//!   store after a restart. The search index is caught up from the store's change log at
//!   most every 500 ms. An erasure's group is followed by the same purge as on the writer
//!   (compaction of the store, merge of the index segments holding the erased profiles):
//!   the values leave the replica's files too.
//! - **Falling behind.** When the writer no longer holds the groups it needs (`410`, or
//!   `409` for a replica ahead of a restored writer), it fetches a new snapshot while it
//!   keeps serving the old data, then swaps and reopens on the same socket.
//! - **Lag.** After each page: 0 when it holds the writer's last group, otherwise the age
//!   of the oldest group it just applied (the writer's clock: same-host or NTP-synced
//!   clocks); while the writer is unreachable, the time since it was last caught up.
//!   `/ready` answers 503 beyond `replica.max_lag_seconds` (and before the first sync);
//!   `/metrics` has `idgraph_replica_*`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::crypto::EncryptionSettings;
use crate::engine::{now_ms, Engine};
use crate::serve::replication::{Manifest, SnapshotFile};
use crate::serve::Application;

/// Marks a store that came from the writer: `D/current/replica.json`.
const MARKER: &str = "replica.json";
/// Longest wait of one long poll of the writer's log.
const POLL_WAIT_SECONDS: u64 = 20;
/// How often the search index is caught up while groups keep coming.
const INDEX_EVERY: Duration = Duration::from_millis(500);

/// What `D/current/replica.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    writer: String,
    snapshot: String,
    commit_seq: u64,
}

/// The replica's position and counters (shared with `/ready` and `/metrics`).
pub struct ReplicaState {
    pub writer: String,
    max_lag_ms: i64,
    position: AtomicU64,
    writer_latest: AtomicU64,
    lag_ms: AtomicI64,
    caught_up_at: AtomicI64,
    synced: AtomicBool,
    applied: AtomicU64,
    snapshots: AtomicU64,
    failures: AtomicU64,
}

impl ReplicaState {
    fn new(writer: String, max_lag_seconds: u64) -> ReplicaState {
        ReplicaState {
            writer,
            max_lag_ms: i64::try_from(max_lag_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
            position: AtomicU64::new(0),
            writer_latest: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
            caught_up_at: AtomicI64::new(now_ms()),
            synced: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Why the replica is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.synced.load(Ordering::Relaxed) {
            return Some("the replica has not reached the writer yet".into());
        }
        let lag = self.lag_ms.load(Ordering::Relaxed);
        (lag > self.max_lag_ms).then(|| {
            format!(
                "the replica is {:.1} s behind the writer (replica.max_lag_seconds = {})",
                lag as f64 / 1000.0,
                self.max_lag_ms / 1000
            )
        })
    }

    /// What `/ready` shows of the replica.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "writer": self.writer,
            "position": self.position.load(Ordering::Relaxed),
            "writer_position": self.writer_latest.load(Ordering::Relaxed),
            "lag_seconds": self.lag_seconds(),
        })
    }

    /// The replica's counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let families: [(&str, &str, &str, String); 6] = [
            (
                "idgraph_replica_lag_seconds",
                "gauge",
                "How far the replica is behind its writer (0 when it holds the writer's last write group)",
                format!("{:.3}", self.lag_seconds()),
            ),
            (
                "idgraph_replica_position",
                "gauge",
                "The last write group the replica applied",
                self.position.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_replica_writer_position",
                "gauge",
                "The writer's last write group, as last seen",
                self.writer_latest.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_replica_applied_groups_total",
                "counter",
                "Write groups applied from the writer",
                self.applied.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_replica_snapshots_total",
                "counter",
                "Snapshots fetched from the writer",
                self.snapshots.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_replica_failures_total",
                "counter",
                "Failed requests to the writer (retried)",
                self.failures.load(Ordering::Relaxed).to_string(),
            ),
        ];
        crate::serve::metrics::families(&families, "")
    }
}

/// Why following stopped.
enum Stopped {
    /// The writer no longer has what the replica needs: a new snapshot.
    NeedSnapshot,
    /// SIGTERM / Ctrl-C.
    Shutdown,
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(30))
}

/// Runs a replica of `settings.replica.follow` in `settings.storage.data_dir`, serving on
/// `settings.server.bind`, until SIGTERM / Ctrl-C.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let writer = settings.replica.follow.trim_end_matches('/').to_owned();
    let url = url::Url::parse(&writer)
        .map_err(|e| anyhow::anyhow!("configuration error: replica.follow: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("configuration error: replica.follow: must be an http:// or https:// URL");
    }
    if settings.replica.key.expose().is_empty() {
        anyhow::bail!(
            "configuration error: replica.key: an admin key of the writer is required (IDGRAPH_REPLICA__KEY)"
        );
    }
    if settings.graph.store != crate::config::GraphBackend::Embedded {
        anyhow::bail!("configuration error: a read replica keeps an embedded store (graph.store = \"embedded\")");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!(
            "Bearer {}",
            settings.replica.key.expose()
        ))
        .map_err(|_| {
            anyhow::anyhow!("configuration error: replica.key: not a valid header value")
        })?,
    );
    let mut client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(POLL_WAIT_SECONDS + 60))
        .user_agent(concat!("idgraph-replica/", env!("CARGO_PKG_VERSION")));
    if matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "::1" | "[::1]")
    ) {
        client = client.no_proxy();
    }
    if let Some(path) = &settings.replica.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "configuration error: replica.ca_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("configuration error: replica.ca_file: {e}"))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client.build()?;
    let root = settings.storage.data_dir.clone();
    std::fs::create_dir_all(&root)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?;
    let bind = settings.server.bind.clone();
    let listener =
        TcpListener::bind(&bind).map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    let port = listener.local_addr()?.port();
    let state = Arc::new(ReplicaState::new(
        writer.clone(),
        settings.replica.max_lag_seconds,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Installed before anything is announced, so no stop request is lost.
        let mut stop = crate::serve::Shutdown::listen()
            .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM/SIGINT handlers: {e}"))?;
        let mut announced = false;
        loop {
            let current = root.join("current");
            if !current.join(MARKER).exists() {
                tracing::info!(writer = %writer, "replica: fetching a snapshot of the writer");
                tokio::select! {
                    r = fetch_until_done(&client, &state, &root, &settings.encryption) => r?,
                    () = stop.requested() => return Ok(()),
                }
                swap(&root)?;
            }
            let mut s = settings.clone();
            s.storage.data_dir = current.clone();
            // The writer's duties stay with the writer.
            s.replication.enabled = false;
            s.webhooks.clear();
            s.ingest.kafka = None;
            s.feed.kafka = None;
            let engine = Arc::new(
                tokio::task::spawn_blocking(move || Engine::open(s))
                    .await
                    .map_err(|_| anyhow::anyhow!("the store could not be opened"))??,
            );
            state
                .position
                .store(engine.store().counters()?.commit_seq, Ordering::Relaxed);
            let app = Application::with_listener(
                engine.clone(),
                listener.try_clone()?,
                Some(state.clone()),
            )?;
            let reload = app.reload_tls_on_hangup();
            if !announced {
                tracing::info!(port, writer = %writer, "idgraph replica listening");
                crate::outln!(
                    "listening on {}://{}",
                    app.scheme(),
                    crate::cli::bind_with_port(&bind, port)
                );
                announced = true;
            }
            let handle = app.handle();
            let server = tokio::spawn(app.run_in_background());
            let stopped = tokio::select! {
                s = follow(&engine, &client, &state) => s,
                () = stop.requested() => Stopped::Shutdown,
            };
            let mut refetched = Ok(());
            if let Stopped::NeedSnapshot = stopped {
                tracing::warn!("replica: the writer no longer holds the groups it needs; fetching a new snapshot while serving the old data");
                refetched = tokio::select! {
                    r = fetch_until_done(&client, &state, &root, &settings.encryption) => r,
                    () = stop.requested() => Ok(()),
                };
            }
            handle.stop(true).await;
            let _ = server.await;
            if let Some(reload) = reload {
                reload.abort();
            }
            let engine = tokio::task::spawn_blocking(move || crate::cli::close(engine)).await;
            if engine.is_err() {
                anyhow::bail!("the store could not be closed");
            }
            refetched?;
            match stopped {
                Stopped::Shutdown => return Ok(()),
                Stopped::NeedSnapshot if root.join("incoming").join(MARKER).exists() => {
                    swap(&root)?
                }
                Stopped::NeedSnapshot => return Ok(()),
            }
        }
    })
}

/// Why a snapshot was not fetched.
enum Failure {
    /// Worth another attempt (the network, the writer, a full disk).
    Retry(String),
    /// This replica cannot hold this writer's store as configured: it stops, saying why.
    Refuse(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Retry(why)
    }
}

/// Fetches a snapshot into `D/incoming`, retrying until it is complete; an error only
/// when the replica's configuration cannot hold the writer's store.
async fn fetch_until_done(
    client: &reqwest::Client,
    state: &ReplicaState,
    root: &Path,
    encryption: &EncryptionSettings,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match fetch_snapshot(client, state, root, encryption).await {
            Ok(()) => return Ok(()),
            Err(Failure::Refuse(why)) => anyhow::bail!("configuration error: {why}"),
            Err(Failure::Retry(why)) => {
                attempt += 1;
                state.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempt, error = %why, "replica: snapshot failed; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
            }
        }
    }
}

/// Refuses a writer's snapshot whose encryption the replica's `[encryption]` does not
/// match: a replica writes the writer's bytes as they are, so it is encrypted exactly when
/// the writer is, under the writer's data key.
fn check_encryption(manifest: &Manifest, encryption: &EncryptionSettings) -> Result<(), Failure> {
    let writer_encrypts = manifest
        .files
        .iter()
        .any(|f| f.name == crate::crypto::DATA_KEY_FILE);
    match (writer_encrypts, encryption.enabled) {
        (true, false) => Err(Failure::Refuse(
            "the writer's store is encrypted (its snapshot holds the wrapped data key): start the replica with encryption.enabled = true and [encryption.kek] naming the writer's key-encryption key".into(),
        )),
        (false, true) => Err(Failure::Refuse(
            "the writer's store is not encrypted and a replica holds the writer's bytes as they are: start the replica with encryption.enabled = false, or encrypt the writer".into(),
        )),
        _ => Ok(()),
    }
}

async fn fetch_snapshot(
    client: &reqwest::Client,
    state: &ReplicaState,
    root: &Path,
    encryption: &EncryptionSettings,
) -> Result<(), Failure> {
    let writer = &state.writer;
    let resp = client
        .get(format!("{writer}/v1/replication/snapshot"))
        .send()
        .await
        .map_err(|e| format!("cannot reach the writer: {e}"))?;
    if !resp.status().is_success() {
        return Err(Failure::Retry(format!(
            "the writer answered {} to the snapshot request",
            resp.status()
        )));
    }
    let manifest: Manifest = resp
        .json()
        .await
        .map_err(|e| format!("the snapshot manifest is unreadable: {e}"))?;
    check_encryption(&manifest, encryption)?;
    let incoming = root.join("incoming");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming).map_err(|e| format!("{}: {e}", incoming.display()))?;
    }
    std::fs::create_dir_all(&incoming).map_err(|e| format!("{}: {e}", incoming.display()))?;
    // The data key first: a key-encryption key that cannot unwrap it stops the replica
    // before it fetches the store.
    let mut files: Vec<&SnapshotFile> = manifest.files.iter().collect();
    files.sort_by_key(|f| f.name != crate::crypto::DATA_KEY_FILE);
    for f in files {
        fetch_file(client, writer, &manifest.id, f, &incoming).await?;
        if f.name == crate::crypto::DATA_KEY_FILE {
            let (settings, dir) = (encryption.clone(), incoming.clone());
            tokio::task::spawn_blocking(move || crate::crypto::store_cipher(&settings, &dir))
                .await
                .map_err(|_| "the data key check stopped".to_owned())?
                .map_err(|e| Failure::Refuse(format!("the writer's data key: {e}")))?;
        }
    }
    let marker = Marker {
        writer: writer.clone(),
        snapshot: manifest.id.clone(),
        commit_seq: manifest.commit_seq,
    };
    let json = serde_json::to_vec_pretty(&marker).map_err(|e| e.to_string())?;
    write_synced(&incoming.join(MARKER), &json)?;
    sync_dir(&incoming)?;
    state.snapshots.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        files = manifest.files.len(),
        commit_seq = manifest.commit_seq,
        "replica: snapshot fetched"
    );
    Ok(())
}

/// Fetches file `f` of snapshot `id` into `dir` (synced), checking its size.
async fn fetch_file(
    client: &reqwest::Client,
    writer: &str,
    id: &str,
    f: &SnapshotFile,
    dir: &Path,
) -> Result<(), String> {
    if f.name.contains('/') || f.name.starts_with('.') {
        return Err(format!("the snapshot names a bad file {:?}", f.name));
    }
    let resp = client
        .get(format!("{writer}/v1/replication/snapshot/{id}/{}", f.name))
        .send()
        .await
        .map_err(|e| format!("cannot fetch {}: {e}", f.name))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the writer answered {} for {}",
            resp.status(),
            f.name
        ));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("cannot fetch {}: {e}", f.name))?;
    if bytes.len() as u64 != f.bytes {
        return Err(format!(
            "{} has {} bytes, the manifest says {}",
            f.name,
            bytes.len(),
            f.bytes
        ));
    }
    write_synced(&dir.join(&f.name), &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Moves `D/incoming` to `D/current` (the old store, if any, is deleted).
fn swap(root: &Path) -> anyhow::Result<()> {
    let (incoming, current, old): (PathBuf, PathBuf, PathBuf) = (
        root.join("incoming"),
        root.join("current"),
        root.join("old"),
    );
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if current.exists() {
        std::fs::rename(&current, &old)?;
    }
    std::fs::rename(&incoming, &current)?;
    sync_dir(root).map_err(|e| anyhow::anyhow!(e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Applies the writer's groups until it cannot (a snapshot is needed).
async fn follow(engine: &Arc<Engine>, client: &reqwest::Client, state: &ReplicaState) -> Stopped {
    let writer = &state.writer;
    let mut attempt = 0u32;
    let mut index_behind = false;
    let mut indexed_at = Instant::now();
    loop {
        let position = state.position.load(Ordering::Relaxed);
        // No waiting before the first answer (readiness) or while the index is behind.
        let wait = if index_behind || !state.synced.load(Ordering::Relaxed) {
            0
        } else {
            POLL_WAIT_SECONDS
        };
        let resp = client
            .get(format!(
                "{writer}/v1/replication/log?after={position}&wait={wait}"
            ))
            .send()
            .await;
        let failed = |why: String, attempt: &mut u32| {
            *attempt += 1;
            state.failures.fetch_add(1, Ordering::Relaxed);
            let since = now_ms().saturating_sub(state.caught_up_at.load(Ordering::Relaxed));
            state.lag_ms.store(since.max(0), Ordering::Relaxed);
            tracing::warn!(attempt = *attempt, error = %why, "replica: cannot follow the writer; retrying");
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                failed(format!("cannot reach the writer: {e}"), &mut attempt);
                tokio::time::sleep(retry_delay(attempt)).await;
                continue;
            }
        };
        match resp.status().as_u16() {
            200 => {}
            409 | 410 => return Stopped::NeedSnapshot,
            status => {
                failed(format!("the writer answered {status}"), &mut attempt);
                tokio::time::sleep(retry_delay(attempt)).await;
                continue;
            }
        }
        let latest = resp
            .headers()
            .get("Idgraph-Latest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let entries = match resp
            .bytes()
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| crate::replication::decode(&b))
        {
            Ok(entries) => entries,
            Err(why) => {
                failed(why, &mut attempt);
                tokio::time::sleep(retry_delay(attempt)).await;
                continue;
            }
        };
        attempt = 0;
        let oldest = entries.first().map(|e| e.at_ms);
        let count = entries.len() as u64;
        if !entries.is_empty() {
            let e = engine.clone();
            let applied = tokio::task::spawn_blocking(move || apply(&e, &entries)).await;
            match applied {
                Ok(Ok(through)) => {
                    state.position.store(through, Ordering::Relaxed);
                    state.applied.fetch_add(count, Ordering::Relaxed);
                    index_behind = true;
                }
                Ok(Err(why)) => {
                    // A local failure (a full disk): the groups come again.
                    failed(
                        format!("cannot apply the writer's groups: {why}"),
                        &mut attempt,
                    );
                    tokio::time::sleep(retry_delay(attempt)).await;
                    continue;
                }
                Err(_) => return Stopped::Shutdown,
            }
        }
        let position = state.position.load(Ordering::Relaxed);
        state.writer_latest.store(latest, Ordering::Relaxed);
        if position >= latest {
            state.caught_up_at.store(now_ms(), Ordering::Relaxed);
            state.lag_ms.store(0, Ordering::Relaxed);
        } else if let Some(at) = oldest {
            state
                .lag_ms
                .store(now_ms().saturating_sub(at).max(0), Ordering::Relaxed);
        }
        state.synced.store(true, Ordering::Relaxed);
        if index_behind && (count == 0 || indexed_at.elapsed() >= INDEX_EVERY) {
            let e = engine.clone();
            let caught = tokio::task::spawn_blocking(move || catch_up_index(&e)).await;
            if let Ok(Err(why)) = caught {
                tracing::warn!(error = %why, "replica: the search index could not catch up; retrying");
            } else {
                index_behind = false;
            }
            indexed_at = Instant::now();
        }
    }
}

/// Writes `entries` in order; after an erasure's group, purges like the writer. Returns
/// the last group written.
fn apply(engine: &Engine, entries: &[crate::replication::Entry]) -> Result<u64, String> {
    let mut through = 0;
    for e in entries {
        engine
            .store()
            .apply_replicated(&e.batch)
            .map_err(|e| e.to_string())?;
        through = e.commit_seq;
        if !e.erased.is_empty() {
            engine.store().sync().map_err(|e| e.to_string())?;
            catch_up_index(engine)?;
            engine
                .purge(None, &e.erased, &[])
                .map_err(|e| e.to_string())?;
            tracing::info!(
                commit_seq = e.commit_seq,
                "replica: erased data purged from the files"
            );
        }
    }
    engine.store().sync().map_err(|e| e.to_string())?;
    Ok(through)
}

fn catch_up_index(engine: &Engine) -> Result<(), String> {
    match engine.search_index() {
        Some(index) => index
            .catch_up_with(engine.store())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
