//! `POST /v1/admin/backup` (admin, unscoped): a backup of the running server's store
//! into a directory on the server's machine (see `crate::backup`). Body (optional):
//! `{"to": "/absolute/dir"}`, default `backup.dir`. Answers the backup's record.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::{perm, Auth};
use super::error::ApiError;
use super::routes::blocking;
use crate::engine::Engine;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    to: Option<String>,
}

/// One backup at a time (two into one directory would race in RocksDB's backup engine).
static RUNNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `POST /v1/admin/backup`.
#[utoipa::path(
    post,
    path = "/v1/admin/backup",
    tag = "admin",
    description = "An online, incremental backup of the embedded store into `to` (a directory on the server's machine; default `backup.dir`)",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"to\": \"/absolute/dir\"}` (optional)"),
    responses(
        (status = 200, description = "The backup made (id, time, last write group, bytes)", body = Object),
        (status = 409, description = "The store is not the embedded one, or a backup is running", body = Object),
    )
)]
pub async fn backup(
    auth: Auth<perm::Admin>,
    body: web::Bytes,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, ApiError> {
    if auth.caller.scope.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scoped_key",
            "a key scoped to some sources cannot back up the store (it holds every person)",
        ));
    }
    let request: BackupRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BackupRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("the body must be {{\"to\": \"/absolute/dir\"}}: {e}"),
            )
        })?
    };
    if engine.settings().graph.store != crate::config::GraphBackend::Embedded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_unsupported",
            "backups are made of the embedded store only; back up the graph database with its own tools",
        ));
    }
    let to = crate::backup::target(engine.settings(), request.to.as_deref())?;
    let e = engine.into_inner();
    let record = blocking(move || {
        let _one = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        crate::backup::backup(e.store(), e.settings(), &to)
    })
    .await?;
    Ok(HttpResponse::Ok().json(record))
}
