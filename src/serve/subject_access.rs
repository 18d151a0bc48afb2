//! `POST /v1/subject-access` (admin): everything idgraph holds about one person as one
//! JSON document (see `profile::subject_access`), named by an identifier or a profile id.
//! A read: nothing stored changes; the audit trail names the person's profile ids.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{Map, Value};

use super::auth::{perm, Auth};
use super::error::ApiError;
use super::routes::{
    blocking, check_id, check_identifier_scope, check_scope, respond, Missing, OrMissing,
};
use crate::engine::{Engine, SubjectTarget};

type Result<T> = std::result::Result<T, ApiError>;

/// The request: exactly one of the two.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectAccessRequest {
    /// `"kind:value"` (as `/v1/erasure` takes it) or `{"kind": ..., "value": ...}`,
    /// normalized like ingest.
    #[schema(value_type = Option<Object>)]
    pub identifier: Option<Value>,
    /// A profile id; an id merged away names its survivor.
    #[schema(value_type = Option<String>)]
    pub profile_id: Option<Value>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message).with_field(field)
}

/// A field name worth echoing in an error (the caller's own, but never a value's shape).
fn shown_name(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        format!("{name:?}")
    } else {
        "a field".into()
    }
}

/// Whom the body names (every refusal names its field; values are never echoed).
fn target(engine: &Engine, body: Value) -> Result<SubjectTarget> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "the body must be a JSON object: {\"identifier\": \"kind:value\"} or {\"profile_id\": \"p_...\"}",
        ));
    };
    if let Some(k) = map
        .keys()
        .find(|k| k.as_str() != "identifier" && k.as_str() != "profile_id")
    {
        return Err(invalid(
            k,
            format!(
                "unknown field {}; send exactly one of identifier and profile_id",
                shown_name(k)
            ),
        ));
    }
    let given = |k: &str| map.get(k).filter(|v| !v.is_null());
    let SubjectAccessRequest {
        identifier,
        profile_id,
    } = SubjectAccessRequest {
        identifier: given("identifier").cloned(),
        profile_id: given("profile_id").cloned(),
    };
    match (identifier, profile_id) {
        (Some(i), None) => Ok(SubjectTarget::Identifier(identifier_of(engine, i)?)),
        (None, Some(Value::String(id))) => {
            check_id(&id)?;
            Ok(SubjectTarget::Profile(id.into()))
        }
        (None, Some(_)) => Err(invalid("profile_id", "profile_id: must be a string")),
        (Some(_), Some(_)) => Err(invalid(
            "profile_id",
            "give exactly one of identifier and profile_id, not both",
        )),
        (None, None) => Err(invalid(
            "identifier",
            "give exactly one of identifier (\"kind:value\" or {\"kind\", \"value\"}) and profile_id",
        )),
    }
}

fn identifier_of(engine: &Engine, v: Value) -> Result<crate::store::IdentKey> {
    let shape = || {
        invalid(
            "identifier",
            "identifier: \"kind:value\" or {\"kind\": \"email\", \"value\": \"...\"}",
        )
    };
    match v {
        Value::String(text) => Ok(engine.parse_identifier("identifier", &text)?),
        Value::Object(o) => {
            let o: Map<String, Value> = o;
            if let Some(k) = o
                .keys()
                .find(|k| k.as_str() != "kind" && k.as_str() != "value")
            {
                return Err(invalid(
                    &format!("identifier.{k}"),
                    format!(
                        "identifier: unknown field {}; give kind and value",
                        shown_name(k)
                    ),
                ));
            }
            match (o.get("kind"), o.get("value")) {
                (Some(Value::String(kind)), Some(Value::String(value))) => {
                    Ok(engine.normalize("identifier.value", kind, value)?)
                }
                (Some(Value::String(_)), _) => Err(invalid(
                    "identifier.value",
                    "identifier.value: a string is required",
                )),
                _ => Err(invalid(
                    "identifier.kind",
                    "identifier.kind: a string is required",
                )),
            }
        }
        _ => Err(shape()),
    }
}

/// `POST /v1/subject-access` `{"identifier": "kind:value" | {"kind", "value"}}` or
/// `{"profile_id": "p_..."}` (admin): the person's subject access document.
#[utoipa::path(
    post,
    path = "/v1/subject-access",
    tag = "privacy",
    request_body = SubjectAccessRequest,
    responses((status = 200, description = "Everything idgraph holds about the person: golden profile, identifiers with sources and dates, trait values, consents, audiences, links, events and merge history (`format_version` 1)", body = Object))
)]
pub async fn subject_access(
    auth: Auth<perm::Admin>,
    body: web::Json<Value>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse> {
    let target = target(&engine, body.into_inner())?;
    let missing = match &target {
        SubjectTarget::Profile(id) => {
            check_scope(&auth, &engine, id).await?;
            Missing::Profile
        }
        SubjectTarget::Identifier(key) => {
            check_identifier_scope(&auth, &engine, key).await?;
            Missing::Identifier
        }
    };
    let e = engine.clone();
    let doc = blocking(move || e.subject_access(&target, crate::engine::now_ms()))
        .await
        .or_missing(missing)?;
    tracing::info!(
        profile_id = %doc.profile_id,
        identifiers = doc.identifiers.len(),
        events = doc.events.len(),
        "subject access document generated"
    );
    let touched: Vec<String> = std::iter::once(doc.profile_id.to_string())
        .chain(doc.merged_ids.iter().map(|p| p.to_string()))
        .collect();
    let v = serde_json::to_value(&doc).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode_error",
            "cannot encode the answer",
        )
    })?;
    respond(&auth, &engine, v, touched, missing).await
}
