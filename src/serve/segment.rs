//! Segment's HTTP Tracking API at the edge: `POST /v1/identify`, `/v1/track`, `/v1/page`,
//! `/v1/screen`, `/v1/group`, `/v1/alias` and `/v1/batch` (RudderStack's SDKs call the
//! same paths).
//!
//! The key is the writeKey as the Basic user name (empty password), idgraph's own
//! headers, or `writeKey` in the body; it needs the ingest permission. Bodies may be
//! gzip (`Content-Encoding: gzip`), bounded by `server.max_body_bytes` before and after
//! decompression. Each message is mapped by `ingest::segment` into a native event and
//! validated like one; a request is all or nothing: one bad message answers 400 naming
//! it and nothing is stored. Accepted calls answer 200 `{"success": true}` as Segment
//! does; errors answer `{"success": false, "code", "message"}` plus idgraph's `error`
//! object.
//! Segment's libraries retry on 429 and 5xx only, so a 400/401 is not retried.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::auth::{perm, presented_key, Auth};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::engine::Engine;
use crate::ingest::segment;
use crate::resolve::EventOutcome;

/// The Segment routes (for the audit middleware, which leaves ingest out of the trail).
pub const ROUTES: [&str; 7] = [
    "/v1/identify",
    "/v1/track",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
];

/// Registers the routes inside the `/v1` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, call) in [
        ("/identify", Some("identify")),
        ("/track", Some("track")),
        ("/page", Some("page")),
        ("/screen", Some("screen")),
        ("/group", Some("group")),
        ("/alias", Some("alias")),
        ("/batch", None),
    ] {
        cfg.service(
            web::resource(path)
                .default_service(web::to(super::routes::method_not_allowed))
                .route(web::post().to(
                    move |req: HttpRequest,
                          payload: web::Payload,
                          engine: web::Data<Engine>,
                          metrics: web::Data<Metrics>| {
                        handle(req, payload, engine, metrics, call)
                    },
                )),
        );
    }
}

/// An error in Segment's shape (`success`, `code`, `message`: analytics-python reads
/// `code` and `message`) with idgraph's `error` object.
fn answer_error(e: ApiError) -> HttpResponse {
    let mut builder = HttpResponse::build(e.status);
    for (name, value) in &e.headers {
        builder.insert_header((*name, value.as_str()));
    }
    let mut detail = json!({ "code": e.code, "message": e.message });
    if let Some(f) = &e.field {
        detail["field"] = json!(f);
    }
    builder.json(json!({
        "success": false,
        "code": e.code,
        "message": e.message,
        "error": detail,
    }))
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    metrics: web::Data<Metrics>,
    call: Option<&'static str>,
) -> HttpResponse {
    match ingest(&req, payload, &engine, &metrics, call).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => answer_error(e),
    }
}

async fn ingest(
    req: &HttpRequest,
    payload: web::Payload,
    engine: &Engine,
    metrics: &Metrics,
    call: Option<&'static str>,
) -> Result<Value, ApiError> {
    // A key in the headers is checked before the body is read.
    let header_key = presented_key(req);
    let early = match header_key.as_deref() {
        Some(k) => Some(Auth::<perm::Ingest>::for_key(req, Some(k))?),
        None => None,
    };
    let body = read_body(req, payload, engine.settings().server.max_body_bytes).await?;
    let auth = match early {
        Some(a) => a,
        None => {
            let key = body.get("writeKey").and_then(Value::as_str);
            Auth::<perm::Ingest>::for_key(req, key)?
        }
    };
    let settings = &engine.settings().segment;
    let messages = segment::messages(&body, call).map_err(bad_message)?;
    if messages.is_empty() {
        return Err(
            ApiError::bad_request("empty_batch", "batch: holds no messages").with_field("batch"),
        );
    }
    let max = engine.settings().server.max_batch_events;
    if messages.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "a batch holds at most {max} messages (server.max_batch_events); got {}",
                messages.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(messages.len());
    for (path, msg) in &messages {
        let wire = segment::to_event(settings, msg, path, call).map_err(|e| {
            metrics.events.with_label_values(&["rejected"]).inc();
            bad_message(e)
        })?;
        let source = wire["source"].as_str().unwrap_or_default();
        if !auth.caller.sees([source]) {
            metrics.events.with_label_values(&["rejected"]).inc();
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "source_not_allowed",
                format!(
                    "this key may only send events from its own sources; Segment calls of this type come from source {source:?} (segment.source, segment.sources)"
                ),
            ));
        }
        match engine.validate(&wire) {
            Ok(ev) => events.push(ev),
            Err(e) => {
                metrics.events.with_label_values(&["rejected"]).inc();
                let field = segment::segment_field(settings, &e.field);
                let field = if path.is_empty() {
                    field
                } else {
                    format!("{path}.{field}")
                };
                return Err(
                    ApiError::bad_request(e.code, format!("{field}: {}", e.message))
                        .with_field(field),
                );
            }
        }
    }
    let outcomes = engine.ingest_async(events).await?;
    let (mut accepted, mut duplicate, mut suppressed) = (0, 0, 0);
    for o in &outcomes {
        let label = match o {
            EventOutcome::Accepted { .. } => {
                accepted += 1;
                "accepted"
            }
            EventOutcome::Duplicate { .. } => {
                duplicate += 1;
                "duplicate"
            }
            EventOutcome::Suppressed { .. } => {
                suppressed += 1;
                "suppressed"
            }
        };
        metrics.events.with_label_values(&[label]).inc();
    }
    Ok(json!({
        "success": true,
        "accepted": accepted,
        "duplicate": duplicate,
        "suppressed": suppressed,
    }))
}

fn bad_message(e: segment::SegmentError) -> ApiError {
    let code = if e.field.ends_with("type") {
        "unknown_type"
    } else {
        "invalid_field"
    };
    let mut err = ApiError::bad_request(code, e.to_string());
    if !e.field.is_empty() {
        err = err.with_field(e.field);
    }
    err
}

/// Reads the body (JSON, possibly gzip), at most `limit` bytes as sent and as decoded.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    // The Content-Type is not checked, as Segment's own API does not: analytics.js sends
    // text/plain from sendBeacon, and RudderStack's Node SDK posts its gzip body with
    // axios's default form type. The body must be JSON whatever it says.
    let bytes = super::body::read(req, payload, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body is empty; send a Segment message",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}
