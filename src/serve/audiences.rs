//! The audience routes (`/v1/audiences...`, analysts and admins): define, list, read,
//! delete, estimate while editing, and page through members (golden profiles, masked as
//! the key's role shows them). See `activation` for the filter language and membership.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{perm, Auth};
use super::error::ApiError;
use super::routes::blocking;
use crate::engine::audiences::NewAudience;
use crate::engine::{Engine, EngineError};
use crate::model::ProfileId;

type Result<T> = std::result::Result<T, ApiError>;

/// A key limited to some sources sees no audience: sizes and members span every source.
fn unscoped<P: super::auth::Perm>(auth: &Auth<P>) -> Result<()> {
    match &auth.caller.scope {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "audiences span every source: a key limited to some sources cannot use them",
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceBody {
    /// `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
    id: String,
    #[serde(default)]
    description: String,
    /// The filter (see the README's filter language).
    filter: String,
    /// The consent purpose members must have granted.
    purpose: String,
    /// Destinations (`[[destinations]]` names) the members are delivered to.
    #[serde(default)]
    destinations: Vec<String>,
}

/// `POST /v1/audiences`: defines an audience; members are computed in the background
/// (`status: building`, then `ready`) and kept current as profiles change.
#[utoipa::path(
    post,
    path = "/v1/audiences",
    tag = "audiences",
    request_body = AudienceBody,
    responses(
        (status = 201, description = "The audience, with its counts so far", body = Object),
        (status = 200, description = "The same definition existed: the audience as it is", body = Object),
        (status = 409, description = "An audience with this id exists, or too many audiences")
    )
)]
pub async fn create(
    auth: Auth<perm::Audiences>,
    body: web::Json<AudienceBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let b = body.into_inner();
    let e = engine.into_inner();
    let new = NewAudience {
        id: b.id,
        description: b.description,
        filter: b.filter,
        purpose: b.purpose,
        destinations: b.destinations,
        created_by: auth.caller.name.clone(),
    };
    let (view, created) = blocking(move || e.define_audience(new)).await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// `GET /v1/audiences`: every audience with its size and consent exclusions.
#[utoipa::path(
    get,
    path = "/v1/audiences",
    tag = "audiences",
    responses((status = 200, description = "The audiences", body = Object))
)]
pub async fn list(auth: Auth<perm::Audiences>, engine: web::Data<Engine>) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let e = engine.clone();
    let all = blocking(move || e.audiences()).await?;
    Ok(HttpResponse::Ok().json(json!({ "audiences": all })))
}

fn check_id(id: &str) -> Result<()> {
    if crate::activation::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_parameter",
            "id: an audience id is 1 to 64 characters of a-z, 0-9, '_' or '-'",
        )
        .with_field("id"))
    }
}

/// `GET /v1/audiences/{id}`: the audience, its counts and its size history.
#[utoipa::path(
    get,
    path = "/v1/audiences/{id}",
    tag = "audiences",
    params(("id" = String, Path, description = "Audience id")),
    responses((status = 200, description = "The audience with its size history", body = Object))
)]
pub async fn get(
    auth: Auth<perm::Audiences>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let id = path.into_inner();
    check_id(&id)?;
    let e = engine.clone();
    let (view, history) =
        blocking(move || Ok((e.audience(&id)?, e.audience_history(&id)?))).await?;
    let history: Vec<_> = history
        .into_iter()
        .map(|(at, size)| json!({ "at": crate::profile::golden::iso(at), "size": size }))
        .collect();
    let mut v = serde_json::to_value(view)
        .map_err(|e| ApiError::from(EngineError::Config(e.to_string())))?;
    v["size_history"] = json!(history);
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationsBody {
    /// Destinations (`[[destinations]]` names) the members are delivered to from now on.
    destinations: Vec<String>,
}

/// `PUT /v1/audiences/{id}/destinations`: replaces where the audience is delivered; an
/// added destination receives every current member (a resync), a removed one their exits.
#[utoipa::path(
    put,
    path = "/v1/audiences/{id}/destinations",
    tag = "audiences",
    params(("id" = String, Path, description = "Audience id")),
    request_body = DestinationsBody,
    responses(
        (status = 200, description = "The audience with its destinations", body = Object),
        (status = 404, description = "No such audience")
    )
)]
pub async fn set_destinations(
    auth: Auth<perm::Audiences>,
    path: web::Path<String>,
    body: web::Json<DestinationsBody>,
    engine: web::Data<Engine>,
    list: web::Data<crate::destinations::Destinations>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let id = path.into_inner();
    let e = engine.into_inner();
    let names = body.into_inner().destinations;
    let (view, changed) = blocking(move || e.set_audience_destinations(&id, names)).await?;
    for name in changed {
        if let Some(d) = list.get(&name) {
            d.request_resync();
        }
    }
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /v1/audiences/{id}`: members leave it (with exit records) and it is removed.
#[utoipa::path(
    delete,
    path = "/v1/audiences/{id}",
    tag = "audiences",
    params(("id" = String, Path, description = "Audience id")),
    responses((status = 202, description = "Deleted; members leave it in the background", body = Object))
)]
pub async fn delete(
    auth: Auth<perm::Audiences>,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let id = path.into_inner();
    check_id(&id)?;
    let e = engine.into_inner();
    let gone = id.clone();
    blocking(move || e.delete_audience(&gone)).await?;
    Ok(HttpResponse::Accepted().json(json!({ "deleted": id })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// The last profile id of the previous page.
    after: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<String>,
}

/// `GET /v1/audiences/{id}/members`: a page of members' golden profiles, in profile id
/// order, masked as the key's role shows profiles.
#[utoipa::path(
    get,
    path = "/v1/audiences/{id}/members",
    tag = "audiences",
    params(("id" = String, Path, description = "Audience id"), MembersQuery),
    responses((status = 200, description = "A page of members", body = Object))
)]
pub async fn members(
    auth: Auth<perm::Audiences>,
    path: web::Path<String>,
    q: web::Query<MembersQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let id = path.into_inner();
    check_id(&id)?;
    let q = q.into_inner();
    let limit = match q.limit.as_deref().map(str::trim) {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "limit: a whole number from 1 to 1000",
                )
                .with_field("limit"))
            }
        },
    };
    if let Some(a) = &q.after {
        if a.is_empty() || a.len() > 128 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "after: a profile id of 1 to 128 bytes",
            )
            .with_field("after"));
        }
    }
    let e = engine.clone();
    let (ids, profiles) = blocking(move || {
        let ids = e.audience_members(&id, q.after.as_deref(), limit)?;
        let profiles = e.goldens_json(&ids)?;
        Ok((ids, profiles))
    })
    .await?;
    let next: Option<&ProfileId> = if ids.len() == limit { ids.last() } else { None };
    auth.touched(ids.iter().map(|p| p.to_string()));
    let mut v = json!({ "members": profiles, "next_after": next });
    auth.mask(&engine, &mut v);
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    filter: String,
    purpose: String,
}

/// `POST /v1/audiences/estimate`: a filter's size over a sample of profiles, while the
/// author edits it (nothing is stored).
#[utoipa::path(
    post,
    path = "/v1/audiences/estimate",
    tag = "audiences",
    request_body = EstimateBody,
    responses((status = 200, description = "The estimate", body = Object))
)]
pub async fn estimate(
    auth: Auth<perm::Audiences>,
    body: web::Json<EstimateBody>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let b = body.into_inner();
    let e = engine.clone();
    let est = blocking(move || e.estimate_audience(&b.filter, &b.purpose)).await?;
    Ok(HttpResponse::Ok().json(est))
}

/// `GET /v1/destinations` (admin): every audience destination with its delivery state.
#[utoipa::path(
    get,
    path = "/v1/destinations",
    tag = "audiences",
    responses((status = 200, description = "The destinations and their delivery state", body = Object))
)]
pub async fn destinations(
    auth: Auth<perm::Admin>,
    list: web::Data<crate::destinations::Destinations>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let all: Vec<serde_json::Value> = list
        .all()
        .iter()
        .map(|d| crate::destinations::Destinations::view(d))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "destinations": all })))
}

/// `POST /v1/destinations/{name}/resync` (admin): compares every member of the audiences
/// naming the destination, and everything delivered to it, and delivers the differences
/// (then goes on from the feed's end).
#[utoipa::path(
    post,
    path = "/v1/destinations/{name}/resync",
    tag = "audiences",
    params(("name" = String, Path, description = "The destination's name")),
    responses(
        (status = 202, description = "The resync was scheduled", body = Object),
        (status = 404, description = "No such destination")
    )
)]
pub async fn resync(
    auth: Auth<perm::Admin>,
    path: web::Path<String>,
    list: web::Data<crate::destinations::Destinations>,
) -> Result<HttpResponse> {
    unscoped(&auth)?;
    let name = path.into_inner();
    let d = list
        .get(&name)
        .ok_or_else(|| ApiError::not_found("destination not found"))?;
    d.request_resync();
    Ok(HttpResponse::Accepted().json(crate::destinations::Destinations::view(&d)))
}

/// `GET /v1/stats` (analyst, admin): the dashboard's aggregates: per-day profiles created,
/// merges, splits, conflicts and deleted links; the cached snapshot (distributions, source
/// overlap, largest profiles); the matcher's score histogram. Nothing is scanned per
/// request.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "audiences",
    responses((status = 200, description = "The dashboard's aggregates", body = Object))
)]
pub async fn stats(auth: Auth<perm::Stats>, engine: web::Data<Engine>) -> Result<HttpResponse> {
    unscoped(&auth)?;
    Ok(HttpResponse::Ok().json(engine.stats()))
}
