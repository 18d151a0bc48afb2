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
use crate::governance::keys::Visibility;
use crate::resolve::EventOutcome;
use crate::search::SearchRequest;

type Result<T> = std::result::Result<T, ApiError>;

const MAX_ID_LEN: usize = 128;

pub(super) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::not_found("profile not found"));
    }
    Ok(())
}

pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> std::result::Result<T, crate::engine::EngineError> + Send + 'static,
    T: Send + 'static,
{
    Ok(web::block(f).await??)
}

/// `POST /v1/events`: one event (object) or a batch (array), or NDJSON (one event per
/// line); optionally gzip-compressed.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/x-ndjson")), description = "One event object or an array of events (see schema/event.schema.json), or NDJSON (one event per line); optionally `Content-Encoding: gzip`"),
    responses((status = 200, description = "The outcome of the event (for one event) or of each event of a batch", body = serde_json::Value))
)]
pub async fn post_events(
    auth: Auth<perm::Ingest>,
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse> {
    let framing = super::body::framing(&req)?;
    let limit = engine.settings().server.max_body_bytes;
    let bytes = super::body::read(&req, payload, limit).await?;
    let (items, single) = super::body::events(&bytes, framing)?;
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
    // A scoped key's events may conflict with (or duplicate) data of profiles it does not
    // see: those are not named.
    let results = scoped_fields(&auth, &engine, results).await?;
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

/// What a route names that may be missing. A target that does not exist and one outside
/// the caller's row-level scope get the same answer (status, code and message), so a
/// scoped key cannot tell hidden people from absent ones.
#[derive(Debug, Clone, Copy)]
pub(super) enum Missing {
    Profile,
    Identifier,
    Household,
}

impl Missing {
    fn error(self) -> ApiError {
        ApiError::not_found(match self {
            Missing::Profile => "profile not found",
            Missing::Identifier => "identifier not found",
            Missing::Household => "household not found",
        })
    }
}

/// Every 404 of a lookup of `m` becomes `m`'s one answer.
pub(super) trait OrMissing<T> {
    fn or_missing(self, m: Missing) -> Result<T>;
}

impl<T> OrMissing<T> for Result<T> {
    fn or_missing(self, m: Missing) -> Result<T> {
        self.map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                m.error()
            } else {
                e
            }
        })
    }
}

/// The one way a `/v1` read answers: the row-level scope rule (`governance::scope`) for a
/// scoped key, then masking for the caller's visibility (`governance::mask`), the
/// profile ids noted for the audit trail. An answer about a hidden person is `missing`'s
/// 404, exactly as if it did not exist.
pub(super) async fn respond<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    v: Value,
    profiles: Vec<impl Into<String>>,
    missing: Missing,
) -> Result<HttpResponse> {
    let v = scoped(auth, engine, v, missing).await?;
    Ok(masked(auth, engine, v, profiles))
}

/// An answer already through the scope rule: masked for the caller, its profile ids
/// noted for the audit trail.
fn masked<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &Engine,
    mut v: Value,
    profiles: Vec<impl Into<String>>,
) -> HttpResponse {
    auth.touched(profiles);
    auth.mask(engine, &mut v);
    HttpResponse::Ok().json(v)
}

/// `v` with what a scoped caller may not see left out (see [`respond`]).
async fn scoped<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    mut v: Value,
    missing: Missing,
) -> Result<Value> {
    let Some(sources) = auth.caller.scope.clone() else {
        return Ok(v);
    };
    let e = engine.clone();
    let (hidden, v) =
        blocking(move || Ok((e.with_row_scope(&sources, |s| s.redact(&mut v))?, v))).await?;
    if hidden {
        return Err(missing.error());
    }
    Ok(v)
}

/// `missing`'s 404 unless the caller's row-level scope covers what `sees` asks about (a
/// target that does not exist is not covered, so both get the same answer).
async fn check_sees<P, F>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    sees: F,
    missing: Missing,
) -> Result<()>
where
    P: super::auth::Perm,
    F: FnOnce(
            &mut crate::governance::scope::RowScope<'_>,
        ) -> std::result::Result<bool, crate::store::StoreError>
        + Send
        + 'static,
{
    let Some(sources) = auth.caller.scope.clone() else {
        return Ok(());
    };
    let e = engine.clone();
    if blocking(move || e.with_row_scope(&sources, sees)).await? {
        Ok(())
    } else {
        Err(missing.error())
    }
}

/// A golden profile as JSON bytes for the caller (served byte-for-byte to an unscoped
/// caller who sees everything: lookups are the hot path).
async fn golden_answer<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    bytes: Vec<u8>,
    missing: Missing,
) -> Result<HttpResponse> {
    #[derive(Deserialize)]
    struct Head {
        profile_id: String,
    }
    let corrupt = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_record",
            "a stored golden profile is unreadable",
        )
    };
    if auth.caller.scope.is_none() && auth.visibility() == Visibility::Full {
        let head: Head = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
        auth.touched([head.profile_id]);
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(bytes));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    let pid = v["profile_id"].as_str().unwrap_or_default().to_owned();
    respond(auth, engine, v, vec![pid], missing).await
}

/// 404 as for a profile that does not exist unless the caller's row-level scope covers
/// profile `id` (see `KeySettings::sources`).
pub(super) async fn check_scope<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    id: &str,
) -> Result<()> {
    let id = id.to_owned();
    check_sees(auth, engine, move |s| s.sees_profile(&id), Missing::Profile).await
}

/// 404 as for an identifier that does not exist unless the caller's scope covers the
/// profile holding identifier `key` (an unknown identifier answers the same 404 here for a
/// scoped caller, and from the operation itself for others).
pub(super) async fn check_identifier_scope<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    key: &str,
) -> Result<()> {
    let key = key.to_owned();
    check_sees(
        auth,
        engine,
        move |s| s.sees_identifier(&key),
        Missing::Identifier,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}",
    tag = "profiles",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    responses((status = 200, description = "The golden profile", body = Object))
)]
pub async fn get_profile(
    auth: Auth<perm::ReadProfile>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    let e = engine.clone();
    let bytes = blocking(move || e.profile_bytes(&id))
        .await
        .or_missing(Missing::Profile)?;
    golden_answer(&auth, &engine, bytes, Missing::Profile).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    kind: String,
    value: String,
}

/// `GET /v1/lookup` (service, admin: roles that see raw values; see `governance::access`).
#[utoipa::path(
    get,
    path = "/v1/lookup",
    tag = "profiles",
    params(LookupQuery),
    responses((status = 200, description = "The golden profile holding the identifier", body = Object))
)]
pub async fn lookup(
    auth: Auth<perm::Lookup>,
    q: web::Query<LookupQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let LookupQuery { kind, value } = q.into_inner();
    let e = engine.clone();
    let bytes = blocking(move || e.lookup_bytes(&kind, &value))
        .await
        .or_missing(Missing::Identifier)?;
    golden_answer(&auth, &engine, bytes, Missing::Identifier).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    city: Option<String>,
}

/// `GET /v1/search`: profiles for a support agent's query (see `search::query`).
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "profiles",
    params(SearchQuery),
    responses((status = 200, description = "A page of matching profiles", body = Object))
)]
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
    // A caller shown masked emails and phones cannot search by them: the answer would
    // confirm a guessed value. Refused before the index is read, so right and wrong guesses
    // get the same answer.
    if auth.visibility() != Visibility::Full {
        if let Some(what) = crate::governance::mask::masked_value_in(&req.q) {
            return Err(ApiError::bad_request(
                "masked_value",
                format!(
                    "q: this key is shown {what}s masked, so it cannot search by {what}; \
                     search by name, city or an unmasked identifier"
                ),
            )
            .with_field("q"));
        }
    }
    let mut req = req;
    req.scope = auth
        .caller
        .scope
        .as_ref()
        .map(|s| s.iter().cloned().collect());
    let e = engine.clone();
    let body = blocking(move || e.search(&req)).await?;
    let ids = profile_ids(&body["hits"]);
    respond(&auth, &engine, body, ids, Missing::Profile).await
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

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/devices",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    responses((status = 200, description = "The profile's devices", body = Object))
)]
pub async fn devices(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let (pid, devices) = blocking(move || e.devices(&id))
        .await
        .or_missing(Missing::Profile)?;
    let v = json!({ "profile_id": pid, "devices": devices });
    respond(&auth, &engine, v, vec![pid], Missing::Profile).await
}

/// A household for the caller: members and bonds outside its scope left out (the scope
/// rule), and a household of fewer than two visible members is `missing`'s 404 when it
/// was asked for by its id, and has no `household_id` when asked for by a member.
async fn household_answer(
    auth: &Auth<perm::Views>,
    engine: &web::Data<Engine>,
    hh: crate::profile::household::Household,
    by_id: bool,
) -> Result<HttpResponse> {
    let v = serde_json::to_value(&hh).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode_error",
            "cannot encode the household",
        )
    })?;
    let missing = if by_id {
        Missing::Household
    } else {
        Missing::Profile
    };
    let v = scoped(auth, engine, v, missing).await?;
    let members: Vec<String> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    if members.is_empty() || (by_id && (members.len() < 2 || v["household_id"].is_null())) {
        return Err(missing.error());
    }
    // A person alone (as far as the caller sees) is in no household: no id is handed out
    // that `/v1/households/{id}` would not answer, as on the golden profile.
    let mut v = v;
    if members.len() < 2 {
        v["household_id"] = Value::Null;
    }
    Ok(masked(auth, engine, v, members))
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/household",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    responses((status = 200, description = "The profile's household", body = Object))
)]
pub async fn profile_household(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let hh = blocking(move || e.household(&id))
        .await
        .or_missing(Missing::Profile)?;
    household_answer(&auth, &engine, hh, false).await
}

#[utoipa::path(
    get,
    path = "/v1/households/{id}",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    responses((status = 200, description = "The household", body = Object))
)]
pub async fn household(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id).or_missing(Missing::Household)?;
    let e = engine.clone();
    let hh = blocking(move || e.household_by_id(&id))
        .await
        .or_missing(Missing::Household)?;
    household_answer(&auth, &engine, hh, true).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphQuery {
    depth: Option<usize>,
    limit: Option<usize>,
}

pub const MAX_GRAPH_DEPTH: usize = 4;
pub const MAX_GRAPH_NODES: usize = 2000;

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/graph",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)"), GraphQuery),
    responses((status = 200, description = "The profile's identity graph (nodes and edges)", body = Object))
)]
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
    let v = blocking(move || e.graph(&id, depth, limit))
        .await
        .or_missing(Missing::Profile)?;
    let owner = v["profile_id"].as_str().map_or(pid, str::to_owned);
    // Neighbours in profiles outside a scoped caller's sources are left out by the rule.
    respond(&auth, &engine, v, vec![owner], Missing::Profile).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PairQuery {
    a: String,
    b: String,
}

/// A key scoped to some sources may not use the review queue: its items pair people the
/// key may not see.
fn unscoped<P: super::auth::Perm>(auth: &Auth<P>) -> Result<()> {
    unscoped_for(
        auth,
        "a key scoped to some sources cannot use the review queue (its items pair people of any source)",
    )
}

/// 403 `scoped_key` with `why` for a key scoped to some sources.
fn unscoped_for<P: super::auth::Perm>(auth: &Auth<P>, why: &str) -> Result<()> {
    match auth.caller.scope {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "scoped_key",
            why,
        )),
    }
}

const RERESOLVE_SCOPED: &str =
    "a key scoped to some sources cannot re-resolve: a run covers every profile";

/// `GET /v1/admin/reresolve` (admin, unscoped): the progress of the current or last run.
#[utoipa::path(
    get,
    path = "/v1/admin/reresolve",
    tag = "admin",
    responses((status = 200, description = "The progress of the current or last re-resolve", body = Object))
)]
pub async fn reresolve_progress(
    auth: Auth<perm::Admin>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped_for(&auth, RERESOLVE_SCOPED)?;
    Ok(HttpResponse::Ok().json(engine.reresolve_progress()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReresolveQuery {
    #[serde(default)]
    rematch: bool,
}

/// `POST /v1/admin/reresolve[?rematch=true]` (admin, unscoped): re-renders every golden
/// profile under the current survivorship settings in the background, and with
/// `rematch` matches every record again under the current model (202 with the progress;
/// while a run is on, its progress with `already_running`).
#[utoipa::path(
    post,
    path = "/v1/admin/reresolve",
    tag = "admin",
    params(ReresolveQuery),
    responses((status = 202, description = "The re-resolve started", body = Object))
)]
pub async fn reresolve_start(
    auth: Auth<perm::Admin>,
    q: web::Query<ReresolveQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped_for(&auth, RERESOLVE_SCOPED)?;
    let progress = engine.into_inner().start_reresolve("api", q.rematch)?;
    Ok(HttpResponse::Accepted().json(progress))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    min_score: Option<f64>,
    max_score: Option<f64>,
    source: Option<String>,
    profile: Option<String>,
}

/// `GET /v1/review`: the candidate pairs matching was unsure of, oldest first.
#[utoipa::path(
    get,
    path = "/v1/review",
    tag = "stewardship",
    params(ReviewQuery),
    responses((status = 200, description = "A page of the review queue", body = Object))
)]
pub async fn review_queue(
    auth: Auth<perm::Admin>,
    q: web::Query<ReviewQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_parameter", "limit must be between 1 and 500")
                .with_field("limit"),
        );
    }
    for (name, v) in [("min_score", q.min_score), ("max_score", q.max_score)] {
        if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{name} must be between 0 and 1"),
            )
            .with_field(name));
        }
    }
    if q.profile
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > MAX_ID_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("profile must be a profile id of 1 to {MAX_ID_LEN} bytes"),
        )
        .with_field("profile"));
    }
    let filter = crate::engine::ReviewFilter {
        after: q.after,
        limit,
        min_score: q.min_score,
        max_score: q.max_score,
        source: q.source,
        profile: q.profile,
    };
    let e = engine.clone();
    let page = blocking(move || e.review_queue(&filter)).await?;
    if let Some(items) = page["items"].as_array() {
        auth.touched(items.iter().flat_map(|i| {
            [&i["a"]["profile_id"], &i["b"]["profile_id"]]
                .into_iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
        }));
    }
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisionBody {
    #[schema(value_type = String, example = "accept")]
    decision: crate::resolve::review::Decision,
    reason: String,
    #[serde(default, rename = "override")]
    overrides: Vec<String>,
}

/// Longest reason a steward may give.
const MAX_REASON: usize = 1_000;

/// `POST /v1/review/{seq}` `{"decision": "accept"|"reject", "reason", "override"?}`.
#[utoipa::path(
    post,
    path = "/v1/review/{seq}",
    tag = "stewardship",
    params(("seq" = String, Path, description = "The review item's sequence number")),
    request_body = ReviewDecisionBody,
    responses((status = 200, description = "What the decision did", body = Object))
)]
pub async fn review_decide(
    auth: Auth<perm::Admin>,
    path: web::Path<String>,
    body: web::Json<ReviewDecisionBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let seq: u64 = path.into_inner().parse().map_err(|_| {
        ApiError::bad_request("invalid_parameter", "the review item is a positive number")
            .with_field("seq")
    })?;
    let body = body.into_inner();
    let reason = steward_reason(&body.reason)?;
    let outcome = engine
        .review(
            seq,
            body.decision,
            auth.caller.name.clone(),
            reason,
            body.overrides,
        )
        .await?;
    auth.touched(outcome.profile_id.iter().chain(&outcome.absorbed).cloned());
    Ok(HttpResponse::Ok().json(outcome))
}

/// The steward's reason: trimmed, 1 to [`MAX_REASON`] characters.
fn steward_reason(reason: &str) -> Result<String> {
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("reason must be 1 to {MAX_REASON} characters"),
        )
        .with_field("reason"));
    }
    Ok(reason)
}

/// What history records of a steward's action: the key's name, the reason, the overrides.
fn steward_note(
    auth: &Auth<perm::Admin>,
    reason: String,
    overrides: Vec<String>,
) -> crate::model::StewardNote {
    crate::model::StewardNote {
        actor: auth.caller.name.clone(),
        reason,
        overrides,
    }
}

/// Rule names a steward overrides: each 1 to 200 bytes, at most 20.
fn steward_overrides(overrides: Vec<String>) -> Result<Vec<String>> {
    if overrides.len() > 20 {
        return Err(
            ApiError::bad_request("invalid_parameter", "override: at most 20 rules")
                .with_field("override"),
        );
    }
    if let Some(i) = overrides
        .iter()
        .position(|o| o.trim().is_empty() || o.len() > 200)
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("override[{i}]: a rule name of 1 to 200 bytes"),
        )
        .with_field(format!("override[{i}]")));
    }
    Ok(overrides)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    profiles: Vec<String>,
    reason: String,
    #[serde(default, rename = "override")]
    overrides: Vec<String>,
}

/// `POST /v1/profiles/merge` `{"profiles": [...], "reason", "override"?}` (admin): a
/// steward merges two or more profiles into the oldest (see `resolve::steward`).
#[utoipa::path(
    post,
    path = "/v1/profiles/merge",
    tag = "stewardship",
    request_body = MergeBody,
    responses((status = 200, description = "The merged profile", body = Object))
)]
pub async fn merge_profiles(
    auth: Auth<perm::Admin>,
    body: web::Json<MergeBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    use crate::resolve::steward::MAX_MERGE;
    let body = body.into_inner();
    let reason = steward_reason(&body.reason)?;
    let overrides = steward_overrides(body.overrides)?;
    if body.profiles.len() < 2 || body.profiles.len() > MAX_MERGE {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("profiles: name 2 to {MAX_MERGE} profiles to merge"),
        )
        .with_field("profiles"));
    }
    for (i, id) in body.profiles.iter().enumerate() {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("profiles[{i}]: a profile id of 1 to {MAX_ID_LEN} bytes"),
            )
            .with_field(format!("profiles[{i}]")));
        }
        if body.profiles[..i].contains(id) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("profiles[{i}]: profile {id} is named twice"),
            )
            .with_field(format!("profiles[{i}]")));
        }
    }
    for id in &body.profiles {
        check_scope(&auth, &engine, id).await?;
    }
    let note = steward_note(&auth, reason, overrides);
    let profiles = body
        .profiles
        .into_iter()
        .map(crate::model::ProfileId::from)
        .collect();
    let out = engine.merge_profiles(profiles, note).await?;
    auth.touched(std::iter::once(out.profile_id.clone()).chain(out.absorbed.iter().cloned()));
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBody {
    groups: Option<Vec<Vec<String>>>,
    mode: Option<String>,
    reason: String,
    #[serde(default, rename = "override")]
    overrides: Vec<String>,
}

/// `POST /v1/profiles/{id}/split` `{"groups": [[kind:value, ...], ...] | "mode":
/// "components"|"identifiers", "reason", "override"?}` (admin): a steward splits a profile
/// (see `resolve::steward`).
#[utoipa::path(
    post,
    path = "/v1/profiles/{id}/split",
    tag = "stewardship",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    request_body = SplitBody,
    responses((status = 200, description = "The profiles the split made", body = Object))
)]
pub async fn split_profile(
    auth: Auth<perm::Admin>,
    path: web::Path<String>,
    body: web::Json<SplitBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    use crate::resolve::steward::{SplitPlan, MAX_PARTS};
    let id = path.into_inner();
    check_id(&id)?;
    let body = body.into_inner();
    let reason = steward_reason(&body.reason)?;
    let overrides = steward_overrides(body.overrides)?;
    let plan =
        match (body.groups, body.mode.as_deref()) {
            (Some(groups), None) => {
                if groups.is_empty() || groups.len() > MAX_PARTS {
                    return Err(ApiError::bad_request(
                        "invalid_parameter",
                        format!("groups: name 1 to {MAX_PARTS} groups of identifiers"),
                    )
                    .with_field("groups"));
                }
                let mut parsed = Vec::with_capacity(groups.len());
                for (g, group) in groups.iter().enumerate() {
                    if group.is_empty() {
                        return Err(ApiError::bad_request(
                            "invalid_parameter",
                            format!("groups[{g}]: a group needs at least one identifier"),
                        )
                        .with_field(format!("groups[{g}]")));
                    }
                    let mut keys = Vec::with_capacity(group.len());
                    for (j, text) in group.iter().enumerate() {
                        keys.push(engine.parse_identifier(&format!("groups[{g}][{j}]"), text)?);
                    }
                    parsed.push(keys);
                }
                SplitPlan::Groups(parsed)
            }
            (None, Some("components")) => SplitPlan::Components,
            (None, Some("identifiers")) => SplitPlan::Identifiers,
            (None, Some(other)) => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("mode: {other:?} is not a mode; use \"components\" or \"identifiers\""),
                )
                .with_field("mode"))
            }
            (Some(_), Some(_)) | (None, None) => return Err(ApiError::bad_request(
                "invalid_parameter",
                "send either groups (identifiers to move out) or mode (components or identifiers)",
            )
            .with_field("groups")),
        };
    check_scope(&auth, &engine, &id).await?;
    let note = steward_note(&auth, reason, overrides);
    let out = engine.split_profile(id.into(), plan, note).await?;
    auth.touched(out.profiles.iter().cloned().chain([out.profile_id.clone()]));
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /v1/profiles/{id}/values` (admin): every observed value of each trait with its
/// sources, first/last seen, count and event, and which one the golden profile shows.
#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/values",
    tag = "stewardship",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)")),
    responses((status = 200, description = "Every value of every trait with its source", body = Object))
)]
pub async fn trait_values(
    auth: Auth<perm::Admin>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let e = engine.clone();
    let v = blocking(move || e.values(&id))
        .await
        .or_missing(Missing::Profile)?;
    auth.touched(v["profile_id"].as_str().map(str::to_owned));
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    value: Value,
    reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnpinQuery {
    reason: String,
}

fn check_trait_name(name: &str) -> Result<()> {
    if crate::ingest::event::valid_trait_name(name) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "invalid_parameter",
        "name: trait names are 1 to 64 characters of letters, digits, '_', '-' or '.'",
    )
    .with_field("name"))
}

/// `PUT /v1/profiles/{id}/pins/{name}` `{"value", "reason"}` (admin): a steward pins a
/// trait's value (normalized as ingest does); answers the profile's values.
#[utoipa::path(
    put,
    path = "/v1/profiles/{id}/pins/{name}",
    tag = "stewardship",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)"), ("name" = String, Path, description = "The trait")),
    request_body = PinBody,
    responses((status = 200, description = "The profile with the pinned value", body = Object))
)]
pub async fn pin_value(
    auth: Auth<perm::Admin>,
    path: web::Path<(String, String)>,
    body: web::Json<PinBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let (id, name) = path.into_inner();
    check_id(&id)?;
    check_trait_name(&name)?;
    let body = body.into_inner();
    let reason = steward_reason(&body.reason)?;
    check_scope(&auth, &engine, &id).await?;
    let note = steward_note(&auth, reason, vec![]);
    let pid = engine.pin(id.into(), name, Some(body.value), note).await?;
    pinned_answer(&auth, &engine, pid).await
}

/// `DELETE /v1/profiles/{id}/pins/{name}?reason=` (admin): removes a steward's pin.
#[utoipa::path(
    delete,
    path = "/v1/profiles/{id}/pins/{name}",
    tag = "stewardship",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)"), ("name" = String, Path, description = "The trait"), UnpinQuery),
    responses((status = 200, description = "The profile without the pin", body = Object))
)]
pub async fn unpin_value(
    auth: Auth<perm::Admin>,
    path: web::Path<(String, String)>,
    q: web::Query<UnpinQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let (id, name) = path.into_inner();
    check_id(&id)?;
    check_trait_name(&name)?;
    let reason = steward_reason(&q.reason)?;
    check_scope(&auth, &engine, &id).await?;
    let note = steward_note(&auth, reason, vec![]);
    let pid = engine.pin(id.into(), name, None, note).await?;
    pinned_answer(&auth, &engine, pid).await
}

async fn pinned_answer(
    auth: &Auth<perm::Admin>,
    engine: &web::Data<Engine>,
    pid: crate::model::ProfileId,
) -> Result<HttpResponse> {
    auth.touched([pid.clone()]);
    let e = engine.clone();
    let v = blocking(move || e.values(&pid)).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// `GET /v1/explain?a=kind:value&b=kind:value`: why two identifiers are (not) one person.
/// A steward's question, so admin only; a key limited to some sources must see both
/// profiles.
#[utoipa::path(
    get,
    path = "/v1/explain",
    tag = "stewardship",
    params(PairQuery),
    responses((status = 200, description = "Why two identifiers are (not) in one profile", body = Object))
)]
pub async fn why_not(
    auth: Auth<perm::Admin>,
    q: web::Query<PairQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let a = engine.parse_identifier("a", &q.a)?;
    let b = engine.parse_identifier("b", &q.b)?;
    check_identifier_scope(&auth, &engine, &a).await?;
    check_identifier_scope(&auth, &engine, &b).await?;
    let e = engine.clone();
    let answer = blocking(move || e.why_not(&a, &b)).await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/explain",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)"), PairQuery),
    responses((status = 200, description = "Why two identifiers of the profile are joined", body = Object))
)]
pub async fn explain(
    auth: Auth<perm::Views>,
    path: web::Path<String>,
    q: web::Query<PairQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    check_id(&id)?;
    check_scope(&auth, &engine, &id).await?;
    let (a, b) = if auth.visibility() == Visibility::Full {
        (
            engine.parse_identifier("a", &q.a)?,
            engine.parse_identifier("b", &q.b)?,
        )
    } else {
        // The caller was shown masked or pseudonymized identifiers: it names them as it
        // saw them, and only so (a raw value is never matched, or a right guess would
        // answer differently from a wrong one).
        let e = engine.clone();
        let pid = id.clone();
        let state = blocking(move || e.profile_state(&pid))
            .await
            .or_missing(Missing::Profile)?;
        let keys: Vec<String> = state.identifier_keys().map(String::from).collect();
        let shown = auth.masked_keys(&engine, &keys);
        let find = |field: &'static str, given: &str| -> Result<crate::store::IdentKey> {
            let found: Vec<&String> = keys
                .iter()
                .zip(&shown)
                .filter(|(_, m)| *m == given)
                .map(|(k, _)| k)
                .collect();
            match found.as_slice() {
                [one] => Ok(crate::store::IdentKey::from(*one)),
                [] => Err(ApiError::not_found(format!(
                    "{field}: not an identifier of this profile as this key is shown them"
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
    respond(&auth, &engine, v, vec![owner], Missing::Profile).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/profiles/{id}/history",
    tag = "views",
    params(("id" = String, Path, description = "A profile id (or a household id for /v1/households)"), HistoryQuery),
    responses((status = 200, description = "The profile's merge and split history", body = serde_json::Value))
)]
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
    let (pid, entries) = blocking(move || e.history(&id, limit))
        .await
        .or_missing(Missing::Profile)?;
    let v = json!({ "profile_id": pid, "history": entries });
    respond(&auth, &engine, v, vec![pid], Missing::Profile).await
}

/// The answer of an unmerge, its profile ids noted for the audit trail (all of them) and
/// the scope rule applied (a split part outside a scoped admin's sources is left out).
async fn split_answer(
    auth: &Auth<perm::Admin>,
    engine: &web::Data<Engine>,
    out: &crate::resolve::split::SplitOutcome,
) -> Result<HttpResponse> {
    let touched = out.profiles.iter().cloned().chain([out.profile_id.clone()]);
    let v = serde_json::to_value(out).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode_error",
            "cannot encode the answer",
        )
    })?;
    auth.touched(touched);
    let v = scoped_fields(auth, engine, vec![v]).await?.pop();
    Ok(HttpResponse::Ok().json(v.unwrap_or(Value::Null)))
}

/// The answers of writes (events, unmerges) for a scoped caller: the write is done, so
/// each field is redacted on its own by the scope rule; a profile outside the scope
/// becomes `null` (or leaves its list) instead of hiding the rest of the answer.
async fn scoped_fields<P: super::auth::Perm>(
    auth: &Auth<P>,
    engine: &web::Data<Engine>,
    answers: Vec<Value>,
) -> Result<Vec<Value>> {
    let Some(sources) = auth.caller.scope.clone() else {
        return Ok(answers);
    };
    let e = engine.clone();
    blocking(move || {
        let mut answers = answers;
        e.with_row_scope(&sources, |scope| {
            for v in &mut answers {
                for child in v.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                    if scope.redact(child)? {
                        *child = Value::Null;
                    }
                }
            }
            Ok(())
        })?;
        Ok(answers)
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/links",
    tag = "privacy",
    params(PairQuery),
    responses((status = 200, description = "The profiles after the link is removed", body = Object))
)]
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
    check_identifier_scope(&auth, &engine, &b).await?;
    let out = engine.delete_link(a, b).await?;
    split_answer(&auth, &engine, &out).await
}

#[utoipa::path(
    delete,
    path = "/v1/identifiers/{kind}/{value}",
    tag = "privacy",
    params(("kind" = String, Path, description = "Identifier kind (email, phone, ...)"), ("value" = String, Path, description = "The identifier value")),
    responses((status = 200, description = "The identifier was removed", body = Object))
)]
pub async fn delete_identifier(
    auth: Auth<perm::Admin>,
    path: web::Path<(String, String)>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let (kind, value) = path.into_inner();
    let key = engine.normalize("value", &kind, &value)?;
    check_identifier_scope(&auth, &engine, &key).await?;
    let out = engine
        .delete_identifier(key)
        .await
        .map_err(ApiError::from)
        .or_missing(Missing::Identifier)?;
    split_answer(&auth, &engine, &out).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    profile_id: Option<String>,
    /// `kind:value`, normalized like ingest.
    identifier: Option<String>,
}

/// `POST /v1/erasure` (admin): erases a person by profile id or by one identifier, puts
/// the identifiers on the suppression list and purges storage (see `resolve::erase`).
#[utoipa::path(
    post,
    path = "/v1/erasure",
    tag = "privacy",
    request_body = ErasureRequest,
    responses((status = 200, description = "What was erased", body = Object))
)]
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
            ErasureTarget::Profile(id.into())
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
    let missing = match &target {
        ErasureTarget::Profile(id) => {
            check_scope(&auth, &engine, id).await?;
            Missing::Profile
        }
        ErasureTarget::Identifier(key) => {
            check_identifier_scope(&auth, &engine, key).await?;
            Missing::Identifier
        }
    };
    let out = engine
        .into_inner()
        .erase(target)
        .await
        .map_err(ApiError::from)
        .or_missing(missing)?;
    auth.touched(std::iter::once(out.profile_id.clone()).chain(out.absorbed.iter().cloned()));
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    identifier: String,
}

/// `DELETE /v1/suppressions?identifier=kind:value` (admin): events carrying it are accepted
/// again.
#[utoipa::path(
    delete,
    path = "/v1/suppressions",
    tag = "privacy",
    params(SuppressionQuery),
    responses((status = 200, description = "The suppression was removed", body = Object))
)]
pub async fn delete_suppression(
    auth: Auth<perm::Admin>,
    q: web::Query<SuppressionQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let key = engine.parse_identifier("identifier", &q.identifier)?;
    // A suppression belongs to no source (the person is gone), so no row-level scope
    // covers it: a scoped admin is refused whatever the identifier, which also keeps it
    // from testing whether someone was erased.
    if auth.caller.scope.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope_not_allowed",
            "a key limited to some sources cannot lift suppressions: they belong to no source",
        ));
    }
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
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses((status = 200, description = "The process is up (with store counters)", body = Object)),
    security(())
)]
pub async fn health(
    req: HttpRequest,
    engine: web::Data<Engine>,
    gov: web::Data<crate::governance::Governance>,
) -> Result<HttpResponse> {
    // Liveness is public; the counts (how much data this deployment holds) are shown only
    // to a caller presenting a valid key of any role.
    let known = super::auth::known_key(&req, &gov);
    match web::block(move || engine.store().counters()).await? {
        Ok(counters) if known => Ok(HttpResponse::Ok().json(json!({
            "status": "ok",
            "profiles_created": counters.profile_seq,
            "events": counters.event_seq,
        }))),
        Ok(_) => Ok(HttpResponse::Ok().json(json!({ "status": "ok" }))),
        Err(crate::store::StoreError::Unavailable(reason)) => Ok(HttpResponse::Ok().json(json!({
            "status": "degraded",
            "graph_store": "unavailable",
            "reason": reason,
        }))),
        Err(e) => Err(e.into()),
    }
}

/// Readiness: 200 when writes can be taken (the graph store answers and, after a failed
/// write, a probe write succeeds); 503 otherwise, naming the cause (`storage_full` while
/// the disk is full, with `Retry-After`).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "ops",
    responses((status = 200, description = "Ready to take writes", body = Object), (status = 503, description = "Not ready: `status`, `reason` and `message` say why", body = Object)),
    security(())
)]
pub async fn ready(
    engine: web::Data<Engine>,
    replica: web::Data<super::Replica>,
) -> Result<HttpResponse> {
    if let Some(state) = &replica.0 {
        let mut body = state.status();
        return Ok(match state.not_ready() {
            None => {
                body["status"] = json!("ready");
                HttpResponse::Ok().json(body)
            }
            Some(message) => {
                body["status"] = json!("not_ready");
                body["reason"] = json!("replica_lag");
                body["message"] = json!(message);
                HttpResponse::ServiceUnavailable().json(body)
            }
        });
    }
    match web::block(move || engine.writable()).await? {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Err(crate::store::StoreError::Full(_)) => Ok(HttpResponse::ServiceUnavailable()
            .insert_header((
                "Retry-After",
                super::error::STORAGE_FULL_RETRY_SECONDS.to_string(),
            ))
            .json(json!({
                "status": "not_ready",
                "reason": "storage_full",
                "message": super::error::STORAGE_FULL_MESSAGE,
            }))),
        Err(crate::store::StoreError::Fenced(message)) => Ok(HttpResponse::ServiceUnavailable()
            .json(json!({
                "status": "not_ready",
                "reason": "not_the_writer",
                "message": message,
            }))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)),
    security(())
)]
pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    engine: web::Data<Engine>,
    gov: web::Data<crate::governance::Governance>,
    hooks: web::Data<crate::webhooks::Webhooks>,
    kafka: web::Data<crate::kafka::Kafka>,
    replica: web::Data<super::Replica>,
) -> Result<HttpResponse> {
    if gov.protect_metrics {
        super::auth::any_key(&req, &gov)?;
    }
    let mut body = metrics.render();
    if let Some(t) = engine.match_totals() {
        body.push_str(&super::metrics::matching(&t));
    }
    body.push_str(&hooks.metrics());
    body.push_str(&kafka.metrics());
    if let Some(destinations) = req.app_data::<web::Data<crate::destinations::Destinations>>() {
        body.push_str(&destinations.metrics());
    }
    // Reads the store's counters and RocksDB's properties: on the blocking pool.
    let ops_engine = engine.clone();
    body.push_str(
        &web::block(move || super::metrics::operations(&ops_engine))
            .await
            .unwrap_or_default(),
    );
    if let Some(tenants) = req
        .app_data::<web::Data<super::tenants::Tenants>>()
        .cloned()
    {
        body.push_str(
            &web::block(move || tenants.metrics())
                .await
                .unwrap_or_default(),
        );
    }
    let p = engine.reresolve_progress();
    body.push_str(&format!(
        "# HELP idgraph_reresolve_profiles Profiles of the current or last re-resolve run, done and in total.\n# TYPE idgraph_reresolve_profiles gauge\nidgraph_reresolve_profiles{{what=\"done\"}} {}\nidgraph_reresolve_profiles{{what=\"total\"}} {}\n# HELP idgraph_reresolve_running Whether a re-resolve runs.\n# TYPE idgraph_reresolve_running gauge\nidgraph_reresolve_running {}\n",
        p.profiles_done,
        p.profiles_total,
        u8::from(matches!(
            p.state,
            crate::engine::reresolve::RunState::Counting | crate::engine::reresolve::RunState::Running
        ))
    ));
    if let Some(state) = &replica.0 {
        body.push_str(&state.metrics());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}

/// `GET /v1/config` (admin): the running configuration, secrets replaced by `***`.
#[utoipa::path(
    get,
    path = "/v1/config",
    tag = "admin",
    responses((status = 200, description = "The effective settings, secrets redacted", body = Object))
)]
pub async fn config(_auth: Auth<perm::Admin>, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let mut settings = engine.settings().clone();
    settings.graph.bolt.password = crate::config::Secret::new("***");
    settings.auth.secret = crate::config::Secret::new("***");
    settings.replica.key = crate::config::Secret::new("***");
    for kafka in [&mut settings.ingest.kafka, &mut settings.feed.kafka]
        .into_iter()
        .flatten()
    {
        if !kafka.sasl_password.expose().is_empty() {
            kafka.sasl_password = crate::config::Secret::new("***");
        }
    }
    for hook in &mut settings.webhooks {
        hook.secret = crate::config::Secret::new("***");
    }
    for d in &mut settings.destinations {
        if let Some(w) = &mut d.webhook {
            w.secret = crate::config::Secret::new("***");
        }
        if let Some(k) = &mut d.kafka {
            if !k.sasl_password.expose().is_empty() {
                k.sasl_password = crate::config::Secret::new("***");
            }
        }
    }
    for key in &mut settings.auth.keys {
        key.hash = "sha256:***".into();
    }
    Ok(HttpResponse::Ok().json(settings))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    key: Option<String>,
    profile: Option<String>,
    route: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

/// `GET /v1/audit` (admin): the latest audit entries, as JSON or JSONL (`format=jsonl`).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "admin",
    params(AuditQuery),
    responses((status = 200, description = "Audit entries (JSON, or JSON lines with format=jsonl)", content((Object = "application/json"), (String = "application/x-ndjson"))))
)]
pub async fn audit(
    auth: Auth<perm::Admin>,
    q: web::Query<AuditQuery>,
    gov: web::Data<crate::governance::Governance>,
    engine: web::Data<Engine>,
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
    // A scoped admin reads the entries of the people it may see, with the scope rule
    // applied to each (an entry only about hidden profiles is left out).
    let scope = auth.caller.scope.clone();
    let entries = web::block(move || {
        let Some(sources) = scope else {
            return gov.audit.query(&filter);
        };
        // One scope for the whole log: the entries name the same profiles again and again.
        let scoped = engine.with_row_scope(&sources, |rows| {
            Ok(gov.audit.query_with(&filter, |entry| {
                let mut v = serde_json::to_value(&*entry).map_err(std::io::Error::other)?;
                if rows
                    .redact(&mut v)
                    .map_err(|e| std::io::Error::other(e.to_string()))?
                {
                    return Ok(false);
                }
                *entry = serde_json::from_value(v).map_err(std::io::Error::other)?;
                Ok(true)
            }))
        });
        scoped.map_err(|e| std::io::Error::other(e.to_string()))?
    })
    .await?
    .map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit log");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_unreadable",
            "the audit log cannot be read; see the server log",
        )
    })?;
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

/// A read replica's `/v1` answers only reads: anything else is `405 read_only_replica`,
/// naming the writer to send it to.
pub async fn read_only(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> std::result::Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error>
{
    let reads = matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    );
    if reads || !req.path().starts_with("/v1/") {
        return next.call(req).await;
    }
    let writer = req
        .app_data::<web::Data<super::Replica>>()
        .and_then(|r| r.0.as_ref().map(|s| s.writer.clone()))
        .unwrap_or_default();
    let err = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "read_only_replica",
        format!("this is a read replica: send writes to the writer at {writer}"),
    );
    let resp = actix_web::ResponseError::error_response(&err);
    let mut resp = resp;
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    Ok(req.into_response(resp))
}
