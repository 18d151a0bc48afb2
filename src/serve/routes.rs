//! HTTP handlers under `/v1`. Each parses and bounds its input, then calls the
//! transport-neutral [`Engine`]; store work runs on the blocking pool, never on the
//! async executor.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{perm, Auth};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::engine::Engine;
use crate::resolve::EventOutcome;
use crate::search::SearchRequest;

type Result<T> = std::result::Result<T, ApiError>;

const MAX_ID_LEN: usize = 128;

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::not_found("profile not found"));
    }
    Ok(())
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> std::result::Result<T, crate::engine::EngineError> + Send + 'static,
    T: Send + 'static,
{
    Ok(web::block(f).await??)
}

/// Reads a JSON body of at most `max_body_bytes`.
async fn json_body(req: &HttpRequest, payload: web::Payload, engine: &Engine) -> Result<Value> {
    let limit = engine.settings().server.max_body_bytes;
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !ct.to_ascii_lowercase().contains("json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the limit of {limit} bytes (server.max_body_bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| too_large())?
        .map_err(|e| {
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body is empty; send a JSON event or an array of events",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

/// `POST /v1/events`: one event (object) or a batch (array).
pub async fn post_events(
    auth: Auth<perm::Ingest>,
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse> {
    let body = json_body(&req, payload, &engine).await?;
    let (items, single) = match body {
        Value::Array(items) => (items, false),
        obj @ Value::Object(_) => (vec![obj], true),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "the body must be an event object or an array of event objects",
            ))
        }
    };
    let max = engine.settings().server.max_batch_events;
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the batch holds no events",
        ));
    }
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "a batch holds at most {max} events (server.max_batch_events); got {}",
                items.len()
            ),
        ));
    }
    let mut results: Vec<Option<Value>> = vec![None; items.len()];
    let mut valid = Vec::new();
    let mut positions = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let source = item
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !auth.caller.sees([source]) {
            metrics.events.with_label_values(&["rejected"]).inc();
            let err = ApiError::new(
                StatusCode::FORBIDDEN,
                "source_not_allowed",
                "this key may only send events from its own sources",
            )
            .with_field("source");
            if single {
                return Err(err);
            }
            results[i] = Some(json!({
                "index": i,
                "status": "rejected",
                "event_id": item.get("event_id").and_then(Value::as_str),
                "error": { "code": err.code, "message": err.message, "field": err.field },
            }));
            continue;
        }
        match engine.validate(item) {
            Ok(ev) => {
                valid.push(ev);
                positions.push(i);
            }
            Err(e) => {
                metrics.events.with_label_values(&["rejected"]).inc();
                if single {
                    return Err(e.into());
                }
                let api: ApiError = e.into();
                results[i] = Some(json!({
                    "index": i,
                    "status": "rejected",
                    "event_id": item.get("event_id").and_then(Value::as_str),
                    "error": { "code": api.code, "message": api.message, "field": api.field },
                }));
            }
        }
    }
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        engine.ingest_async(valid).await?
    };
    for (pos, outcome) in positions.into_iter().zip(outcomes) {
        let label = match &outcome {
            EventOutcome::Accepted { .. } => "accepted",
            EventOutcome::Duplicate { .. } => "duplicate",
            EventOutcome::Suppressed { .. } => "suppressed",
        };
        if single {
            if let EventOutcome::Suppressed { kinds, .. } = &outcome {
                metrics.events.with_label_values(&[label]).inc();
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "suppressed",
                    format!(
                        "the event carries identifiers erased on request ({}); it was not stored",
                        kinds.join(", ")
                    ),
                )
                .with_field("identifiers"));
            }
        }
        metrics.events.with_label_values(&[label]).inc();
        let mut v = serde_json::to_value(&outcome).unwrap_or(Value::Null);
        v["index"] = json!(pos);
        results[pos] = Some(v);
    }
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| r.unwrap_or(Value::Null))
        .collect();
    if single {
        return Ok(HttpResponse::Ok().json(results.into_iter().next().unwrap_or(Value::Null)));
    }
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    Ok(HttpResponse::Ok().json(json!({
        "accepted": count("accepted"),
        "duplicate": count("duplicate"),
        "rejected": count("rejected"),
        "results": results,
    })))
}

/// A golden profile as JSON bytes, masked for the caller (served byte-for-byte when the
/// caller sees everything).
fn golden_answer<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &Engine,
    bytes: Vec<u8>,
) -> Result<HttpResponse> {
    // The fields the checks need, read without building the whole document (lookups are
    // the hot path, and most callers see the stored bytes as they are).
    #[derive(Deserialize)]
    struct Head {
        profile_id: String,
        #[serde(default)]
        sources: Vec<String>,
    }
    let corrupt = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_record",
            "a stored golden profile is unreadable",
        )
    };
    let head: Head = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    if !auth.caller.sees(head.sources.iter().map(String::as_str)) {
        return Err(ApiError::not_found("profile not found"));
    }
    auth.touched([head.profile_id]);
    if auth.visibility() == crate::governance::keys::Visibility::Full {
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(bytes));
    }
    let mut v: Value = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    auth.mask(engine, &mut v);
    Ok(HttpResponse::Ok().json(v))
}

/// 404, as for a profile that does not exist, unless the caller's row-level scope covers
/// profile `id` (see `KeySettings::sources`).
async fn check_scope<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    id: &str,
) -> Result<()> {
    if auth.caller.scope.is_none() {
        return Ok(());
    }
    let e = engine.clone();
    let id = id.to_owned();
    let state = blocking(move || e.profile_state(&id)).await?;
    if auth.caller.sees(state.sources.iter().map(String::as_str)) {
        Ok(())
    } else {
        Err(ApiError::not_found("profile not found"))
    }
}

/// [`check_scope`] of the profile holding identifier `key` (unknown identifiers pass:
/// the operation then answers 404 itself).
async fn check_identifier_scope<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    key: &str,
) -> Result<()> {
    if auth.caller.scope.is_none() {
        return Ok(());
    }
    let e = engine.clone();
    let k = key.to_owned();
    match blocking(move || Ok(e.store().profile_of(&k)?)).await? {
        Some(pid) => check_scope(auth, engine, &pid).await,
        None => Ok(()),
    }
}

/// The profiles of `ids` the caller's scope covers.
async fn visible<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    ids: Vec<String>,
) -> Result<std::collections::HashSet<String>> {
    if auth.caller.scope.is_none() {
        return Ok(ids.into_iter().collect());
    }
    let e = engine.clone();
    let states = blocking(move || {
        ids.into_iter()
            .map(|id| e.profile_state(&id).map(|s| (id, s.sources)))
            .filter(|r| !matches!(r, Err(crate::engine::EngineError::NotFound { .. })))
            .collect::<std::result::Result<Vec<_>, _>>()
    })
    .await?;
    Ok(states
        .into_iter()
        .filter(|(_, sources)| auth.caller.sees(sources.iter().map(String::as_str)))
        .map(|(id, _)| id)
        .collect())
}

/// A JSON answer masked for the caller, its profile ids noted for the audit trail.
fn answer<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &Engine,
    mut v: Value,
    profiles: Vec<String>,
) -> HttpResponse {
    auth.touched(profiles);
    auth.mask(engine, &mut v);
    HttpResponse::Ok().json(v)
}

pub async fn get_profile(
    auth: Auth<perm::ReadProfile>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    let e = engine.clone();
    let bytes = blocking(move || e.profile_bytes(&id)).await?;
    golden_answer(&auth, &engine, bytes)
}

#[derive(Deserialize)]
pub struct LookupQuery {
    kind: String,
    value: String,
}

pub async fn lookup(
    auth: Auth<perm::ReadProfile>,
    q: web::Query<LookupQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let LookupQuery { kind, value } = q.into_inner();
    let e = engine.clone();
    let bytes = blocking(move || e.lookup_bytes(&kind, &value)).await?;
    golden_answer(&auth, &engine, bytes)
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    city: Option<String>,
}

/// `GET /v1/search`: profiles for a support agent's query (see `search::query`).
pub async fn search(
    auth: Auth<perm::Search>,
    q: web::Query<SearchQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let number = |field: &'static str, v: Option<String>| -> Result<Option<usize>> {
        v.map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_search",
                    format!("{field}: {field} must be a whole number"),
                )
                .with_field(field)
            })
        })
        .transpose()
    };
    let req = SearchRequest::new(
        q.q.as_deref(),
        number("limit", q.limit)?,
        number("offset", q.offset)?,
        q.source.as_deref(),
        q.kind.as_deref(),
        q.city.as_deref(),
    )
    .map_err(|e| ApiError::bad_request("invalid_search", e.to_string()).with_field(e.field))?;
    let mut req = req;
    req.scope = auth
        .caller
        .scope
        .as_ref()
        .map(|s| s.iter().cloned().collect());
    let e = engine.clone();
    let body = blocking(move || e.search(&req)).await?;
    let ids = profile_ids(&body["hits"]);
    Ok(answer(&auth, &engine, body, ids))
}

/// The `profile_id`s of a list of objects.
fn profile_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("profile_id").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub async fn devices(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let (pid, devices) = blocking(move || e.devices(&id)).await?;
    let v = json!({ "profile_id": pid, "devices": devices });
    Ok(answer(&auth, &engine, v, vec![pid]))
}

async fn household_answer(
    auth: &Auth<perm::Views>,
    engine: &web::Data<Engine>,
    mut hh: crate::profile::household::Household,
) -> Result<HttpResponse> {
    use crate::profile::household::Bond;
    let seen = visible(auth, engine, hh.members.clone()).await?;
    if seen.is_empty() {
        return Err(ApiError::not_found("household not found"));
    }
    hh.members.retain(|m| seen.contains(m));
    hh.bonds.retain(|b| match b {
        Bond::SharedAddress { a, b } | Bond::SharedDevice { a, b, .. } => {
            seen.contains(a) && seen.contains(b)
        }
    });
    let v = serde_json::to_value(&hh).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode_error",
            "cannot encode the household",
        )
    })?;
    Ok(answer(auth, engine, v, hh.members))
}

pub async fn profile_household(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let hh = blocking(move || e.household(&id)).await?;
    household_answer(&auth, &engine, hh).await
}

pub async fn household(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    let e = engine.clone();
    let hh = blocking(move || e.household_by_id(&id)).await?;
    household_answer(&auth, &engine, hh).await
}

#[derive(Deserialize)]
pub struct GraphQuery {
    depth: Option<usize>,
    limit: Option<usize>,
}

pub const MAX_GRAPH_DEPTH: usize = 4;
pub const MAX_GRAPH_NODES: usize = 2000;

pub async fn graph(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    q: web::Query<GraphQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    let depth = q.depth.unwrap_or(1);
    let limit = q.limit.unwrap_or(300);
    if depth > MAX_GRAPH_DEPTH {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("depth: at most {MAX_GRAPH_DEPTH}"),
        )
        .with_field("depth"));
    }
    if limit == 0 || limit > MAX_GRAPH_NODES {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit: between 1 and {MAX_GRAPH_NODES}"),
        )
        .with_field("limit"));
    }
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let pid = id.clone();
    let mut v = blocking(move || e.graph(&id, depth, limit)).await?;
    let owner = v["profile_id"].as_str().map_or(pid, str::to_owned);
    if auth.caller.scope.is_some() {
        // Neighbours in profiles outside the caller's scope are not shown.
        let profiles: Vec<String> = v["elements"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["data"]["profile_id"].as_str().map(str::to_owned))
            .collect();
        let seen = visible(&auth, &engine, profiles).await?;
        let mut hidden = std::collections::HashSet::new();
        if let Some(nodes) = v["elements"]["nodes"].as_array_mut() {
            nodes.retain(|n| {
                let keep = n["data"]["profile_id"]
                    .as_str()
                    .is_some_and(|p| seen.contains(p));
                if !keep {
                    hidden.insert(n["data"]["id"].as_str().unwrap_or_default().to_owned());
                }
                keep
            });
        }
        if let Some(edges) = v["elements"]["edges"].as_array_mut() {
            edges.retain(|e| {
                let end = |k: &str| e["data"][k].as_str().unwrap_or_default().to_owned();
                !hidden.contains(&end("source")) && !hidden.contains(&end("target"))
            });
        }
    }
    Ok(answer(&auth, &engine, v, vec![owner]))
}

#[derive(Deserialize)]
pub struct PairQuery {
    a: String,
    b: String,
}

pub async fn explain(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    q: web::Query<PairQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let (a, b) = if auth.visibility() == crate::governance::keys::Visibility::Full {
        (
            engine.parse_identifier("a", &q.a)?,
            engine.parse_identifier("b", &q.b)?,
        )
    } else {
        // The caller saw masked or pseudonymized identifiers: find them in the profile.
        let e = engine.clone();
        let pid = id.clone();
        let state = blocking(move || e.profile_state(&pid)).await?;
        let keys: Vec<String> = state.identifier_keys().collect();
        let shown = auth.masked_keys(&engine, &keys);
        let find = |field: &'static str, given: &str| -> Result<String> {
            let found: Vec<&String> = keys
                .iter()
                .zip(&shown)
                .filter(|(k, m)| *m == given || *k == given)
                .map(|(k, _)| k)
                .collect();
            match found.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(ApiError::not_found(format!(
                    "{field}: not an identifier of this profile"
                ))
                .with_field(field)),
                _ => Err(ApiError::bad_request(
                    "ambiguous_identifier",
                    format!("{field}: the masked identifier matches several of this profile's"),
                )
                .with_field(field)),
            }
        };
        (find("a", &q.a)?, find("b", &q.b)?)
    };
    let e = engine.clone();
    let pid = id.clone();
    let v = blocking(move || e.explain(&id, &a, &b)).await?;
    let owner = v["profile_id"].as_str().map_or(pid, str::to_owned);
    Ok(answer(&auth, &engine, v, vec![owner]))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

pub async fn history(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    let limit = q.limit.unwrap_or(500);
    if limit == 0 || limit > 5000 {
        return Err(
            ApiError::bad_request("invalid_parameter", "limit: between 1 and 5000")
                .with_field("limit"),
        );
    }
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let (pid, entries) = blocking(move || e.history(&id, limit)).await?;
    let v = json!({ "profile_id": pid, "history": entries });
    Ok(answer(&auth, &engine, v, vec![pid]))
}

pub async fn delete_link(
    auth: Auth<perm::Admin>,
    q: web::Query<PairQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let a = engine.parse_identifier("a", &q.a)?;
    let b = engine.parse_identifier("b", &q.b)?;
    if a == b {
        return Err(
            ApiError::bad_request("invalid_parameter", "a and b are the same identifier")
                .with_field("b"),
        );
    }
    check_identifier_scope(&auth, &engine, &a).await?;
    let out = engine.delete_link(a, b).await?;
    auth.touched(out.profiles.iter().cloned().chain([out.profile_id.clone()]));
    Ok(HttpResponse::Ok().json(out))
}

pub async fn delete_identifier(
    auth: Auth<perm::Admin>,
    path: web::Path<(String, String)>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let (kind, value) = path.into_inner();
    let key = engine.normalize("value", &kind, &value)?;
    check_identifier_scope(&auth, &engine, &key).await?;
    let out = engine.delete_identifier(key).await?;
    auth.touched(out.profiles.iter().cloned().chain([out.profile_id.clone()]));
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    profile_id: Option<String>,
    /// `kind:value`, normalized like ingest.
    identifier: Option<String>,
}

/// `POST /v1/erasure` (admin): erases a person by profile id or by one identifier, puts
/// the identifiers on the suppression list and purges storage (see `resolve::erase`).
pub async fn erasure(
    auth: Auth<perm::Admin>,
    body: web::Json<ErasureRequest>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    use crate::resolve::erase::ErasureTarget;
    let target = match body.into_inner() {
        ErasureRequest {
            profile_id: Some(id),
            identifier: None,
        } => {
            check_id(&id)?;
            ErasureTarget::Profile(id)
        }
        ErasureRequest {
            profile_id: None,
            identifier: Some(text),
        } => ErasureTarget::Identifier(engine.parse_identifier("identifier", &text)?),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give exactly one of profile_id and identifier",
            ))
        }
    };
    match &target {
        ErasureTarget::Profile(id) => check_scope(&auth, &engine, id).await?,
        ErasureTarget::Identifier(key) => check_identifier_scope(&auth, &engine, key).await?,
    }
    let out = engine.into_inner().erase(target).await?;
    auth.touched(std::iter::once(out.profile_id.clone()).chain(out.absorbed.iter().cloned()));
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
pub struct SuppressionQuery {
    identifier: String,
}

/// `DELETE /v1/suppressions?identifier=kind:value` (admin): events carrying it are accepted
/// again.
pub async fn delete_suppression(
    _auth: Auth<perm::Admin>,
    q: web::Query<SuppressionQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let key = engine.parse_identifier("identifier", &q.identifier)?;
    if !engine.unsuppress(key).await? {
        return Err(ApiError::not_found(
            "this identifier is not on the suppression list",
        ));
    }
    Ok(HttpResponse::Ok().json(json!({ "removed": true })))
}

/// Liveness: 200 while the process serves. With the graph database unreachable (Bolt
/// store) the status is `degraded`: lookups still answer from the profile cache, writes do
/// not. Readiness for writes is [`ready`].
pub async fn health(engine: web::Data<Engine>) -> Result<HttpResponse> {
    match web::block(move || engine.store().counters()).await? {
        Ok(counters) => Ok(HttpResponse::Ok().json(json!({
            "status": "ok",
            "profiles_created": counters.profile_seq,
            "events": counters.event_seq,
        }))),
        Err(crate::store::StoreError::Unavailable(reason)) => Ok(HttpResponse::Ok().json(json!({
            "status": "degraded",
            "graph_store": "unavailable",
            "reason": reason,
        }))),
        Err(e) => Err(e.into()),
    }
}

/// Readiness: 200 when the graph store answers (writes can be taken), 503 otherwise.
pub async fn ready(engine: web::Data<Engine>) -> Result<HttpResponse> {
    blocking(move || Ok(engine.store().counters()?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}

pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    engine: web::Data<Engine>,
    gov: web::Data<crate::governance::Governance>,
) -> Result<HttpResponse> {
    if gov.protect_metrics {
        super::auth::any_key(&req, &gov)?;
    }
    let mut body = metrics.render();
    if let Some(t) = engine.match_totals() {
        body.push_str(&super::metrics::matching(&t));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}

/// `GET /v1/config` (admin): the running configuration, secrets replaced by `***`.
pub async fn config(_auth: Auth<perm::Admin>, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let mut settings = engine.settings().clone();
    settings.graph.bolt.password = crate::config::Secret::new("***");
    settings.auth.secret = crate::config::Secret::new("***");
    for key in &mut settings.auth.keys {
        key.hash = "sha256:***".into();
    }
    Ok(HttpResponse::Ok().json(settings))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    key: Option<String>,
    profile: Option<String>,
    route: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

/// `GET /v1/audit` (admin): the latest audit entries, as JSON or JSONL (`format=jsonl`).
pub async fn audit(
    auth: Auth<perm::Admin>,
    q: web::Query<AuditQuery>,
    gov: web::Data<crate::governance::Governance>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 100_000 {
        return Err(
            ApiError::bad_request("invalid_parameter", "limit: between 1 and 100000")
                .with_field("limit"),
        );
    }
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_parameter", "format: json or jsonl")
                    .with_field("format"),
            )
        }
    };
    let filter = crate::governance::audit::AuditFilter {
        key: q.key,
        profile: q.profile,
        route: q.route,
        after: q.after,
        limit,
    };
    let entries = web::block(move || gov.audit.query(&filter))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read the audit log");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unreadable",
                "the audit log cannot be read; see the server log",
            )
        })?;
    let _ = &auth;
    if jsonl {
        let mut body = String::new();
        for e in &entries {
            body.push_str(&serde_json::to_string(e).unwrap_or_default());
            body.push('\n');
        }
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .body(body));
    }
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

pub async fn not_found() -> Result<HttpResponse> {
    Err(ApiError::not_found(
        "no such route; the API lives under /v1 (see README)",
    ))
}

pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {} is not allowed on this route", req.method()),
    ))
}
