//! `GET /v1/changes`: the change feed (see `model::feed`), paged by sequence number, with
//! long polling, filtered by the caller's row scope and masked like every read; and the
//! admin view of the feed's webhooks (`GET /v1/webhooks`, `POST
//! /v1/webhooks/{name}/replay`).

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{perm, Auth};
use super::error::ApiError;
use super::routes::blocking;
use crate::engine::{ChangesPage, Engine, EngineError};
use crate::model::{ChangeRecord, ChangeType};

type Result<T> = std::result::Result<T, ApiError>;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Longest long poll, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    after: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
    types: Option<String>,
}

pub(super) fn number(field: &'static str, text: Option<&str>, max: u64) -> Result<Option<u64>> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{field}: must be a whole number from 0 to {max}"),
        )
        .with_field(field)),
    }
}

/// The `types` filter: comma-separated change types.
fn types(text: Option<&str>) -> Result<Option<BTreeSet<ChangeType>>> {
    let Some(text) = text else { return Ok(None) };
    let mut out = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match ChangeType::parse(name) {
            Some(t) => {
                out.insert(t);
            }
            None => {
                let known: Vec<&str> = ChangeType::ALL.iter().map(|t| t.name()).collect();
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "types: unknown change type {name:?}; known: {}",
                        known.join(", ")
                    ),
                )
                .with_field("types"));
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "types: name at least one change type",
        )
        .with_field("types"));
    }
    Ok(Some(out))
}

#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "feed",
    params(ChangesQuery),
    responses((status = 200, description = "A page of the change feed", body = Object))
)]
pub async fn changes(
    auth: Auth<perm::Changes>,
    q: web::Query<ChangesQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let after = number("after", q.after.as_deref(), u64::MAX)?.unwrap_or(0);
    let limit = number("limit", q.limit.as_deref(), MAX_LIMIT as u64)?.unwrap_or(100);
    if limit == 0 {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit: must be a whole number from 1 to {MAX_LIMIT}"),
        )
        .with_field("limit"));
    }
    let limit = limit as usize;
    let wait = number("wait", q.wait.as_deref(), MAX_WAIT_SECONDS)?.unwrap_or(0);
    let types = types(q.types.as_deref())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Subscribed before the first read: a record written between the read and the wait
    // still wakes this request.
    let mut signal = engine.feed_signal();
    let page = loop {
        signal.borrow_and_update();
        let e = engine.clone();
        let t = types.clone();
        let page: ChangesPage = web::block(move || e.changes(after, limit, t.as_ref()))
            .await
            .map_err(|_| ApiError::from(EngineError::ShuttingDown))??;
        if !page.changes.is_empty() || tokio::time::Instant::now() >= deadline {
            break page;
        }
        match tokio::time::timeout_at(deadline, signal.changed()).await {
            Ok(Ok(())) => continue,
            // The deadline passed, or the engine is stopping: answer what there is.
            _ => break page,
        }
    };
    let (visible, ids) = visible(&auth, &engine, page.changes).await?;
    auth.touched(ids);
    let mut v = json!({ "changes": visible, "next": page.next });
    auth.mask(&engine, &mut v);
    Ok(HttpResponse::Ok().json(v))
}

/// Applies the row-scope rule (`governance::scope`) to one row of the feed or an export:
/// `true` when it is about a hidden person (left out). Identifier values in `identifiers`
/// maps (the row's and its split parts') that the caller does not see are left out too.
fn scoped_row(
    rs: &mut crate::governance::scope::RowScope<'_>,
    row: &mut serde_json::Value,
) -> std::result::Result<bool, crate::store::StoreError> {
    if rs.redact(row)? {
        return Ok(true);
    }
    seen_identifiers(rs, row.get_mut("identifiers"))?;
    if let Some(parts) = row.get_mut("parts").and_then(|p| p.as_array_mut()) {
        for part in parts {
            seen_identifiers(rs, part.get_mut("identifiers"))?;
        }
    }
    Ok(false)
}

/// Leaves out of a kind -> values map the identifiers the caller does not see.
fn seen_identifiers(
    rs: &mut crate::governance::scope::RowScope<'_>,
    map: Option<&mut serde_json::Value>,
) -> std::result::Result<(), crate::store::StoreError> {
    let Some(by_kind) = map.and_then(|m| m.as_object_mut()) else {
        return Ok(());
    };
    for (kind, values) in by_kind.iter_mut() {
        if let Some(list) = values.as_array_mut() {
            let mut kept = Vec::with_capacity(list.len());
            for v in list.drain(..) {
                let seen = match v.as_str() {
                    Some(value) => rs.sees_identifier(&format!("{kind}:{value}"))?,
                    None => false,
                };
                if seen {
                    kept.push(v);
                }
            }
            *list = kept;
        }
    }
    by_kind.retain(|_, values| values.as_array().is_none_or(|l| !l.is_empty()));
    Ok(())
}

/// The records of profiles the caller's row scope covers (all without a scope), each
/// through [`scoped_row`], and the profile ids of those kept (for the audit trail). An
/// erased profile is covered by no scope.
async fn visible(
    auth: &Auth<perm::Changes>,
    engine: &web::Data<Engine>,
    records: Vec<ChangeRecord>,
) -> Result<(Vec<serde_json::Value>, BTreeSet<String>)> {
    let sources = auth.caller.scope.clone();
    let e = engine.clone();
    blocking(move || {
        let mut out = Vec::with_capacity(records.len());
        let mut ids = BTreeSet::new();
        let mut keep = |r: &ChangeRecord, v: serde_json::Value| {
            ids.extend(r.profiles().into_iter().map(|p| p.to_string()));
            out.push(v);
        };
        match &sources {
            None => records.iter().for_each(|r| keep(r, json!(r))),
            Some(sources) => e.with_row_scope(sources, |scope| {
                for r in &records {
                    let mut v = json!(r);
                    if !scoped_row(scope, &mut v)? {
                        keep(r, v);
                    }
                }
                Ok(())
            })?,
        }
        Ok((out, ids))
    })
    .await
}

/// `GET /v1/webhooks` (admin): every destination, where it is and what it set aside.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "feed",
    responses((status = 200, description = "The webhooks and their delivery state", body = Object))
)]
pub async fn webhooks(
    _auth: Auth<perm::Admin>,
    hooks: web::Data<crate::webhooks::Webhooks>,
) -> Result<HttpResponse> {
    let list: Vec<serde_json::Value> = hooks
        .all()
        .iter()
        .map(|h| {
            let state = h.state();
            let url = reqwest::Url::parse(&h.settings.url)
                .map(|u| {
                    format!(
                        "{}://{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                })
                .unwrap_or_default();
            json!({
                "name": h.settings.name,
                "url": url,
                "types": h.settings.types,
                "role": h.settings.role.name(),
                "delivered_through": state.delivered_through,
                "delivered_records": h.delivered_records.load(std::sync::atomic::Ordering::Relaxed),
                "failed_attempts": h.failed_attempts.load(std::sync::atomic::Ordering::Relaxed),
                "lag_seconds": h.lag_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
                "dead_letters": state.dead_letters,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "webhooks": list })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    after: u64,
}

/// `POST /v1/webhooks/{name}/replay {"after": SEQ}` (admin): sends every record after
/// `SEQ` again (dead letters after it included).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{name}/replay",
    tag = "feed",
    params(("name" = String, Path, description = "The webhook")),
    request_body = ReplayBody,
    responses((status = 200, description = "The replay was scheduled", body = Object))
)]
pub async fn replay(
    _auth: Auth<perm::Admin>,
    path: web::Path<String>,
    body: web::Json<ReplayBody>,
    hooks: web::Data<crate::webhooks::Webhooks>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let name = path.into_inner();
    let hook = hooks
        .get(&name)
        .ok_or_else(|| ApiError::not_found("webhook not found"))?;
    let after = body.after;
    let e = engine.clone();
    let bounds = blocking(move || Ok(e.store().feed_bounds()?)).await?;
    if after < bounds.pruned_through {
        return Err(crate::engine::ChangesError::Expired {
            after,
            pruned_through: bounds.pruned_through,
        }
        .into());
    }
    let state = hook.replay(after).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            format!("cannot save the webhook's position: {e}"),
        )
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "name": name,
        "delivered_through": state.delivered_through,
        "dead_letters": state.dead_letters,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    since: Option<String>,
}

/// `GET /v1/exports/{kind}?since=SEQ` (roles of the change feed): every row of an export
/// (see `export`) as JSON lines, streamed, in the API's own shapes, masked for the caller
/// and limited to its row scope. `Idgraph-Through` names the feed position the rows
/// reflect at least (the next call's `since`). The audit entry names the export, not each
/// profile.
#[utoipa::path(
    get,
    path = "/v1/exports/{kind}",
    tag = "feed",
    params(("kind" = String, Path, description = "What to export (profiles, identifiers, ...)"), ExportQuery),
    responses((status = 200, description = "Every row as JSON lines", content_type = "application/x-ndjson", body = String))
)]
pub async fn export(
    auth: Auth<perm::Changes>,
    path: web::Path<String>,
    q: web::Query<ExportQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    use crate::export::Kind;
    let kind = match path.as_str() {
        "profiles" => Kind::Profiles,
        "identifiers" => Kind::Identifiers,
        "graph" => Kind::Graph,
        "changes" => Kind::Changes,
        other => {
            return Err(ApiError::not_found(format!(
                "no export {other:?}; exports: profiles, identifiers, graph, changes"
            )))
        }
    };
    let since = number("since", q.since.as_deref(), u64::MAX)?;
    if !engine.settings().feed.enabled && (since.is_some() || kind == Kind::Changes) {
        return Err(crate::engine::ChangesError::Disabled.into());
    }
    let e = engine.clone();
    let (through, bounds) = blocking(move || {
        let c = e.store().counters()?;
        Ok((
            crate::model::feed::seq(c.commit_seq, crate::model::feed::MAX_GROUP_RECORDS - 1)
                .unwrap_or(u64::MAX),
            e.store().feed_bounds().unwrap_or_default(),
        ))
    })
    .await?;
    if let Some(after) = since {
        if after < bounds.pruned_through {
            return Err(crate::engine::ChangesError::Expired {
                after,
                pruned_through: bounds.pruned_through,
            }
            .into());
        }
    }
    let masking = auth.masking(&engine);
    let scope = auth.caller.scope.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<web::Bytes>(64);
    let e = engine.clone();
    tokio::task::spawn_blocking(move || {
        let send = |mut row: serde_json::Value| -> std::result::Result<(), String> {
            if let Some((visibility, secret, kinds)) = &masking {
                crate::governance::mask::Masker {
                    visibility: *visibility,
                    secret,
                    kinds,
                }
                .apply(&mut row);
            }
            let mut line = serde_json::to_vec(&row).map_err(|e| e.to_string())?;
            line.push(b'\n');
            // A closed channel: the client went away; stop.
            tx.blocking_send(web::Bytes::from(line))
                .map_err(|_| "the client closed the connection".to_owned())
        };
        let walked = match &scope {
            None => crate::export::walk(e.store(), kind, since, true, &mut |row| send(row))
                .map_err(|e| e.to_string()),
            Some(sources) => e
                .with_row_scope(sources, |rs| {
                    let mut failed = None;
                    let walked =
                        crate::export::walk(e.store(), kind, since, true, &mut |mut row| {
                            match scoped_row(rs, &mut row) {
                                Ok(false) => send(row),
                                Ok(true) => Ok(()),
                                Err(err) => {
                                    failed = Some(err);
                                    Err("the store failed".into())
                                }
                            }
                        });
                    match failed {
                        Some(err) => Err(err),
                        None => Ok(walked.map_err(|e| e.to_string())),
                    }
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r),
        };
        if let Err(why) = walked {
            // The answer has started: the stream ends early, and the log says why.
            tracing::warn!(error = %why, "an export stream ended early");
        }
    });
    // Audited by route and key (which profiles: all of them, or those the feed names).
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Idgraph-Through", through.to_string()))
        .streaming(body))
}
