//! Request ids: every request gets one, taken from a valid incoming `X-Request-Id` or
//! generated, echoed in the `X-Request-Id` response header and carried by the request's
//! tracing span (so each log line written while serving it names it).
//!
//! An incoming id is kept only when it is 1 to [`MAX_LEN`] characters of `[A-Za-z0-9._:-]`:
//! anything else (too long, spaces, quotes, non-ASCII) is replaced by a generated id, so a
//! client cannot inject text into log lines or headers through it.
//!
//! When spans are exported (`telemetry::exporting`), the request span is also the
//! OpenTelemetry server span: see [`server_span`].

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::Rng;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header read and written.
pub const HEADER: &str = "x-request-id";

/// Longest incoming id kept.
pub const MAX_LEN: usize = 128;

/// The request id of a request, in its extensions (handlers may read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether `id` may be used as given: 1..=MAX_LEN characters of `[A-Za-z0-9._:-]`.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A fresh id: 32 lowercase hex digits (128 random bits).
pub fn generate() -> String {
    let bits: u128 = rand::thread_rng().gen();
    format!("{bits:032x}")
}

/// The id to use for a request carrying `incoming` (the header's value, if any).
pub fn choose(incoming: Option<&[u8]>) -> String {
    match incoming.and_then(|b| std::str::from_utf8(b).ok()) {
        Some(id) if is_valid(id) => id.to_owned(),
        _ => generate(),
    }
}

/// Middleware: picks the id, runs the request inside a `request` span carrying it, logs one
/// access line (method, route pattern, status, milliseconds: never the raw path, which may
/// hold identifier values) and sets the response header.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = choose(req.headers().get(HEADER).map(|v| v.as_bytes()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().as_str().to_owned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = if crate::telemetry::exporting() {
        server_span(&req, &id, &method, &route)
    } else {
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            route = %route,
        )
    };
    let started = std::time::Instant::now();
    // (The request cannot be cloned to answer an inner middleware's error here: routing
    // needs it unshared. Handlers, extractors and the `/v1` middleware answer errors as
    // responses, which pass through below.)
    let mut res = next.call(req).instrument(span.clone()).await?;
    if crate::telemetry::exporting() {
        let status = res.status();
        span.set_attribute("http.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.set_status(opentelemetry::trace::Status::error(status.to_string()));
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request served"
        )
    });
    // `choose` only yields visible ASCII, always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(res)
}

/// The request span when spans are exported: an OpenTelemetry server span named by method
/// and route pattern (never the raw path: paths hold identifier values), the child of an
/// incoming W3C `traceparent`, with `http.method` and `http.route` (the status code is set
/// when the answer is known). The query string and headers other than `traceparent` and
/// `tracestate` are never read into it.
fn server_span(req: &ServiceRequest, id: &str, method: &str, route: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
    );
    let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
    // Fails only when the span filter disabled the span (nothing is exported then).
    let _ = span.set_parent(parent);
    span.set_attribute("http.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    span
}

/// The request's headers as a propagation carrier (`traceparent`, `tracestate`).
struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept_and_others_replaced() {
        assert_eq!(choose(Some(b"abc-123_x.y:z")), "abc-123_x.y:z");
        let long = "a".repeat(MAX_LEN + 1);
        for bad in [
            b"".as_slice(),
            b"has space",
            b"quote\"",
            "caf\u{e9}".as_bytes(),
            long.as_bytes(),
            b"\xff\xfe",
        ] {
            let got = choose(Some(bad));
            assert_ne!(got.as_bytes(), bad);
            assert_eq!(got.len(), 32, "{got}");
            assert!(is_valid(&got));
        }
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        let (a, b) = (choose(None), choose(None));
        assert_ne!(a, b, "generated ids differ");
    }
}
