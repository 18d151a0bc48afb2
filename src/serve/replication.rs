//! The writer's replication routes (admin keys; see `replication`):
//!
//! - `GET /v1/replication/log?after=SEQ&wait=S&max_bytes=N`: the write groups after
//!   `SEQ` as binary frames (`application/octet-stream`), long-polling up to `wait`
//!   seconds (at most 30) when there is none yet; header `Idgraph-Latest` is the writer's
//!   last group. `410 replication_behind` when the backlog no longer holds them (start
//!   again from a snapshot), `409 replica_ahead` when the replica has groups the writer
//!   does not (a writer restored from an older backup).
//! - `GET /v1/replication/snapshot`: makes a snapshot, answers `{id, commit_seq, files:
//!   [{name, bytes}]}` (the store's checkpoint, the governance secret and an encrypted
//!   store's wrapped data key).
//! - `GET /v1/replication/snapshot/{id}/{file}`: one file of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::{perm, Auth};
use super::changes::number;
use super::error::ApiError;
use super::routes::blocking;
use crate::engine::{Engine, EngineError};
use crate::replication::{self, Unavailable};
use crate::store::StoreError;

type Result<T> = std::result::Result<T, ApiError>;

/// Longest long poll.
const MAX_WAIT_SECONDS: u64 = 30;
/// Default and largest page of the log.
const DEFAULT_PAGE_BYTES: usize = 8 << 20;
const MAX_PAGE_BYTES: usize = 64 << 20;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    after: Option<String>,
    wait: Option<String>,
    max_bytes: Option<String>,
}

/// Only an admin key without a row-level scope: the log and snapshots hold everyone.
fn unscoped(auth: &Auth<perm::Admin>) -> Result<()> {
    match auth.caller.scope {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scoped_key",
            "a key scoped to some sources cannot replicate the store (it holds every person)",
        )),
    }
}

fn backlog(engine: &Engine) -> Result<std::sync::Arc<replication::Backlog>> {
    engine.store().replication_backlog().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "replication_disabled",
            "this server keeps no replication log (replication.enabled = false)",
        )
    })
}

/// `GET /v1/replication/log`.
#[utoipa::path(
    get,
    path = "/v1/replication/log",
    tag = "admin",
    params(LogQuery),
    responses((status = 200, description = "Write-ahead log records after `after`", content_type = "application/octet-stream", body = Vec<u8>))
)]
pub async fn log(
    auth: Auth<perm::Admin>,
    q: web::Query<LogQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let backlog = backlog(&engine)?;
    let after = number("after", q.after.as_deref(), u64::MAX)?.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            "after: required (the replica's last group)",
        )
        .with_field("after")
    })?;
    let wait = number("wait", q.wait.as_deref(), MAX_WAIT_SECONDS)?.unwrap_or(0);
    let max_bytes = number("max_bytes", q.max_bytes.as_deref(), MAX_PAGE_BYTES as u64)?
        .map_or(DEFAULT_PAGE_BYTES, |n| n.max(1) as usize);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Subscribed before the first read: a group recorded in between wakes the wait.
    let mut signal = backlog.subscribe();
    let entries = loop {
        signal.borrow_and_update();
        match backlog.after(after, max_bytes) {
            Ok(entries) if !entries.is_empty() => break entries,
            Ok(entries) => {
                if tokio::time::timeout_at(deadline, signal.changed())
                    .await
                    .is_err()
                {
                    break entries;
                }
            }
            Err(Unavailable::Behind { floor }) => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "replication_behind",
                    format!(
                        "the writer keeps the write groups after {floor} only (replication.backlog_mb, an erasure or a restart dropped older ones); start again from GET /v1/replication/snapshot"
                    ),
                ))
            }
            Err(Unavailable::Ahead { latest }) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "replica_ahead",
                    format!(
                        "the replica has write groups the writer does not (the writer's last is {latest}); start again from GET /v1/replication/snapshot"
                    ),
                ))
            }
        }
    };
    let mut body = Vec::with_capacity(entries.iter().map(|e| e.batch.len() + 64).sum());
    for e in &entries {
        replication::encode(e, &mut body);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Idgraph-Latest", backlog.latest().to_string()))
        .body(body))
}

/// A snapshot: its id, last group and files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub commit_seq: u64,
    pub files: Vec<SnapshotFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotFile {
    pub name: String,
    pub bytes: u64,
}

/// The files of the data directory a replica copies besides the store's: the generated
/// governance secret, so its pseudonyms are the writer's, and an encrypted store's data
/// key as wrapped by the writer's key-encryption key (the replica unwraps it with its own
/// `[encryption.kek]`; the unwrapped key never leaves the writer's memory).
const SIDE_FILES: [&str; 2] = ["governance.secret", crate::crypto::DATA_KEY_FILE];

fn snapshots_dir(engine: &Engine) -> PathBuf {
    engine
        .settings()
        .storage
        .data_dir
        .join(replication::SNAPSHOTS_DIR)
}

fn io(what: &Path, e: std::io::Error) -> EngineError {
    EngineError::Store(StoreError::Engine(format!("{}: {e}", what.display())))
}

/// `GET /v1/replication/snapshot`.
#[utoipa::path(
    get,
    path = "/v1/replication/snapshot",
    tag = "admin",
    responses((status = 200, description = "A new snapshot's manifest", body = Object))
)]
pub async fn snapshot(auth: Auth<perm::Admin>, engine: web::Data<Engine>) -> Result<HttpResponse> {
    unscoped(&auth)?;
    backlog(&engine)?;
    let e = engine.clone();
    let manifest = blocking(move || {
        let root = snapshots_dir(&e);
        std::fs::create_dir_all(&root).map_err(|err| io(&root, err))?;
        // Oldest first; keep room for the new one.
        let mut old: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|err| io(&root, err))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .collect();
        old.sort();
        while old.len() >= replication::KEEP_SNAPSHOTS {
            let gone = old.remove(0);
            std::fs::remove_dir_all(&gone).map_err(|err| io(&gone, err))?;
        }
        let id = format!("{:020}", crate::engine::now_ms().max(0));
        let dir = root.join(&id);
        let commit_seq = e.store().snapshot(&dir)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|err| io(&dir, err))? {
            let entry = entry.map_err(|err| io(&dir, err))?;
            let meta = entry.metadata().map_err(|err| io(&entry.path(), err))?;
            if meta.is_file() {
                files.push(SnapshotFile {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    bytes: meta.len(),
                });
            }
        }
        for name in SIDE_FILES {
            if let Ok(meta) = std::fs::metadata(e.settings().storage.data_dir.join(name)) {
                files.push(SnapshotFile {
                    name: name.into(),
                    bytes: meta.len(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Manifest {
            id,
            commit_seq,
            files,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(manifest))
}

/// `GET /v1/replication/snapshot/{id}/{file}`.
#[utoipa::path(
    get,
    path = "/v1/replication/snapshot/{id}/{file}",
    tag = "admin",
    params(("id" = String, Path, description = "The snapshot"), ("file" = String, Path, description = "A file of its manifest")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>))
)]
pub async fn snapshot_file(
    auth: Auth<perm::Admin>,
    path: web::Path<(String, String)>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    backlog(&engine)?;
    let (id, name) = path.into_inner();
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if !id.chars().all(|c| c.is_ascii_digit()) || id.is_empty() || !plain(&name) {
        return Err(ApiError::not_found("no such snapshot file"));
    }
    let dir = snapshots_dir(&engine).join(&id);
    if !dir.is_dir() {
        return Err(ApiError::not_found(
            "no such snapshot (deleted by a newer one or by an erasure); ask for a new one",
        ));
    }
    let file = if SIDE_FILES.contains(&name.as_str()) {
        engine.settings().storage.data_dir.join(&name)
    } else {
        dir.join(&name)
    };
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|_| ApiError::not_found("no such snapshot file"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}
