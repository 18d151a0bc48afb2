//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request types' `ToSchema`/`IntoParams` derives.
//!
//! Served at `GET /openapi.json` (public) and rendered by `GET /docs` (Swagger UI, `swagger-ui-dist` from npm,
//! compiled into the binary like the console's Cytoscape). `schema/openapi.json` is the
//! committed copy: `idgraph openapi > schema/openapi.json` regenerates it, and a test fails
//! when the two differ.
//!
//! The error answers every route shares (400, 401, 403, 404, 405, 413, 415, 429, 503, 507,
//! all in the `{"error": {...}}` shape of [`super::error`]) are added to each operation by
//! [`CommonErrors`], so a handler's annotation names only what is its own.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::response::{ResponseBuilder, Responses};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ApiError;
use super::{changes, replication, routes};

/// The error body every failed request answers with.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_json`, `not_found`, `unauthorized`, ...).
    pub code: String,
    /// One sentence for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The statuses any operation may answer with, besides its own successes.
const ERROR_STATUSES: &[(&str, &str)] = &[
    ("400", "The request is malformed (the field is named)"),
    ("401", "No key, or an unknown key"),
    ("403", "The key's role or row scope does not allow this"),
    ("404", "Nothing with this id"),
    ("405", "The path exists with other methods"),
    ("409", "The request conflicts with the stored state"),
    ("413", "The body or a parameter is too large"),
    ("414", "The URI is too long"),
    ("415", "The body's content type is not accepted"),
    ("422", "The request is well formed but breaks a rule"),
    (
        "429",
        "Too many requests or failed authentications (see Retry-After)",
    ),
    ("431", "The request's headers are too large"),
    (
        "503",
        "Not ready, read-only, or a backend is unavailable (see Retry-After)",
    ),
    (
        "507",
        "The disk holding the data directory is full (see Retry-After)",
    ),
];

/// The Segment tracking routes are registered as closures (`serve::segment::configure`);
/// these functions exist only to carry their documentation. Their answers, errors
/// included, are Segment's shape (`{"success", "code"?, "message"?, "error"?}`), so every
/// status is documented here rather than by [`CommonErrors`].
macro_rules! segment_doc {
    ($name:ident, $path:literal, $what:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "segment",
            description = $what,
            request_body(content = serde_json::Value, content_type = "application/json", description = "A Segment HTTP Tracking API payload (gzip allowed); the writeKey as HTTP Basic user, `writeKey` in the body, or the usual key headers"),
            responses(
                (status = 200, description = "Accepted (`{\"success\": true, ...}`)", body = Object),
                (status = 400, description = "A malformed message, named by its Segment field", body = Object),
                (status = 401, description = "No valid writeKey", body = Object),
                (status = 403, description = "The key may not ingest, or not these sources", body = Object),
                (status = 413, description = "The body (or its decompressed size) is over server.max_body_bytes", body = Object),
                (status = 415, description = "An unsupported Content-Encoding", body = Object),
                (status = 429, description = "The key is over its rate (see Retry-After)", body = Object),
                (status = 500, description = "An internal error", body = Object),
                (status = 503, description = "Not ready, read-only, or a backend is unavailable", body = Object),
                (status = 507, description = "The disk is full", body = Object),
            ),
            security(("bearer" = []), ("api_key" = []), ("basic" = []))
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}
segment_doc!(
    segment_identify,
    "/v1/identify",
    "Segment `identify` call(s)"
);
segment_doc!(segment_track, "/v1/track", "Segment `track` call(s)");
segment_doc!(segment_page, "/v1/page", "Segment `page` call(s)");
segment_doc!(segment_screen, "/v1/screen", "Segment `screen` call(s)");
segment_doc!(segment_group, "/v1/group", "Segment `group` call(s)");
segment_doc!(segment_alias, "/v1/alias", "Segment `alias` call(s)");
segment_doc!(
    segment_batch,
    "/v1/batch",
    "A Segment batch of calls of any type"
);

/// Adds the shared error answers and the security schemes.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer KEY` (an API key, see `idgraph keys new`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "HTTP Basic with the API key as user name and an empty password (a Segment writeKey); every `/v1` route takes it",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same API key in the `X-API-Key` header",
            ))),
        );
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
            ]
            .into_iter()
            .flatten()
            {
                add_errors(&mut op.responses);
            }
        }
    }
}

fn add_errors(responses: &mut Responses) {
    for (status, description) in ERROR_STATUSES {
        responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(*description)
                        .content(
                            "application/json",
                            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ErrorBody",
                            )))),
                        )
                        .build(),
                )
            });
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "idgraph",
        description = "Graph-native identity resolution: events in, identity graph, golden profiles out. \
            Every `/v1` route takes an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`); \
            the role of the key decides which routes it may call (see the README's role table).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        routes::health,
        routes::ready,
        routes::metrics,
        openapi_json,
        routes::post_events,
        segment_identify,
        segment_track,
        segment_page,
        segment_screen,
        segment_group,
        segment_alias,
        segment_batch,
        routes::lookup,
        routes::get_profile,
        routes::search,
        routes::devices,
        routes::profile_household,
        routes::household,
        routes::graph,
        routes::explain,
        routes::history,
        routes::why_not,
        routes::review_queue,
        routes::review_decide,
        routes::merge_profiles,
        routes::split_profile,
        routes::trait_values,
        routes::pin_value,
        routes::unpin_value,
        changes::changes,
        changes::export,
        super::audiences::create,
        super::audiences::list,
        super::audiences::estimate,
        super::audiences::get,
        super::audiences::delete,
        super::audiences::members,
        super::audiences::set_destinations,
        super::audiences::destinations,
        super::audiences::resync,
        super::audiences::stats,
        routes::delete_link,
        routes::delete_identifier,
        routes::erasure,
        super::subject_access::subject_access,
        super::tenants::list,
        super::tenants::create,
        super::tenants::get,
        super::tenants::update,
        super::tenants::delete,
        super::tenants::suspend,
        super::tenants::resume,
        super::tenants::create_key,
        super::tenants::delete_key,
        routes::delete_suppression,
        routes::audit,
        routes::config,
        super::backup::backup,
        routes::reresolve_progress,
        routes::reresolve_start,
        changes::webhooks,
        changes::replay,
        replication::log,
        replication::snapshot,
        replication::snapshot_file,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&CommonErrors),
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "ingest", description = "Events in"),
        (name = "segment", description = "Segment / RudderStack HTTP Tracking API (events in)"),
        (name = "profiles", description = "Golden profiles, lookup and search"),
        (name = "views", description = "Devices, households, graph, explanations, history"),
        (name = "stewardship", description = "Review queue, merge, split, pins (admin)"),
        (name = "feed", description = "Change feed, exports, webhooks"),
        (name = "audiences", description = "Audiences over golden profiles (analyst, admin)"),
        (name = "privacy", description = "Erasure, suppressions, link and identifier deletion (admin)"),
        (name = "admin", description = "Audit, configuration, re-resolve, replication"),
        (name = "ops", description = "Health, readiness, metrics and this document (no key)"),
        (name = "tenants", description = "Tenants, their keys, quotas and usage (operator)"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline (what `schema/openapi.json` holds).
pub fn document() -> String {
    let doc = ApiDoc::openapi();
    // A document of plain structs always serializes.
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// `GET /openapi.json`: this document (no key needed).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(document())
}

const SWAGGER_JS: &[u8] =
    include_bytes!("../../console/node_modules/swagger-ui-dist/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] =
    include_bytes!("../../console/node_modules/swagger-ui-dist/swagger-ui.css");
const DOCS_INIT: &str = "window.onload = function () { window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#docs' }); };\n";

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>idgraph API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body>
</html>
"#;

fn asset(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    super::console::respond(content_type, body)
}

/// `GET /docs`: the document rendered by Swagger UI (`swagger-ui-dist` from npm, compiled
/// in; no CDN).
pub async fn docs() -> HttpResponse {
    asset("text/html; charset=utf-8", DOCS_PAGE.as_bytes())
}

/// `GET /docs/{file}`: Swagger UI's script and stylesheet, and the page's start-up script.
pub async fn docs_asset(name: actix_web::web::Path<String>) -> Result<HttpResponse, ApiError> {
    match name.as_str() {
        "swagger-ui-bundle.js" => Ok(asset("text/javascript; charset=utf-8", SWAGGER_JS)),
        "swagger-ui.css" => Ok(asset("text/css; charset=utf-8", SWAGGER_CSS)),
        "init.js" => Ok(asset(
            "text/javascript; charset=utf-8",
            DOCS_INIT.as_bytes(),
        )),
        _ => Err(ApiError::not_found("no such file of the API docs page")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::access::ROUTES;

    /// `{value:.*}` (actix's regex segment) is `{value}` in OpenAPI.
    fn openapi_pattern(actix: &str) -> String {
        let re = regex::Regex::new(r"\{([A-Za-z_]+):[^}]*\}").expect("static regex");
        re.replace_all(actix, "{$1}").into_owned()
    }

    fn documented(method: &str, path: &str) -> bool {
        let doc = ApiDoc::openapi();
        let Some(item) = doc.paths.paths.get(path) else {
            return false;
        };
        match method {
            "GET" => item.get.is_some(),
            "POST" => item.post.is_some(),
            "PUT" => item.put.is_some(),
            "DELETE" => item.delete.is_some(),
            "PATCH" => item.patch.is_some(),
            _ => false,
        }
    }

    /// Every route of the governance table (every `/v1` route) is in the document.
    #[test]
    fn every_governed_route_is_documented() {
        let missing: Vec<String> = ROUTES
            .iter()
            .filter(|r| !documented(r.method, &openapi_pattern(r.pattern)))
            .map(|r| {
                format!(
                    "{} {} (in governance ROUTES) has no #[utoipa::path] listed in ApiDoc's paths(...) in src/serve/openapi.rs",
                    r.method, r.pattern
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "undocumented routes:\n{}",
            missing.join("\n")
        );
    }

    /// Every operation of the document is a route of the app (no stale entries).
    #[test]
    fn every_documented_v1_operation_is_a_governed_route() {
        let doc = ApiDoc::openapi();
        for (path, item) in &doc.paths.paths {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, present) in [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
            ] {
                if present {
                    assert!(
                        ROUTES
                            .iter()
                            .any(|r| r.method == method && openapi_pattern(r.pattern) == *path),
                        "{method} {path} is documented but not in governance ROUTES"
                    );
                }
            }
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_the_error_shape_on_every_operation() {
        let v: serde_json::Value = serde_json::from_str(&document()).expect("valid JSON");
        assert!(v["openapi"].as_str().is_some_and(|s| s.starts_with("3.1")));
        let ops = v["paths"]["/v1/events"]["post"]["responses"]
            .as_object()
            .expect("responses");
        assert_eq!(
            ops["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(v["components"]["securitySchemes"]["api_key"].is_object());
        assert_eq!(
            v["paths"]["/health"]["get"]["security"],
            serde_json::json!([{}])
        );
    }
}
