//! Request ids: every request gets one, taken from a valid incoming `X-Request-Id` or
//! generated, echoed in the `X-Request-Id` response header and carried by the request's
//! tracing span (so each log line written while serving it names it).
//!
//! An incoming id is kept only when it is 1 to [`MAX_LEN`] characters of `[A-Za-z0-9._:-]`:
//! anything else (too long, spaces, quotes, non-ASCII) is replaced by a generated id, so a
//! client cannot inject text into log lines or headers through it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use rand::Rng;
use tracing::Instrument;

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
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
    );
    let started = std::time::Instant::now();
    // (The request cannot be cloned to answer an inner middleware's error here: routing
    // needs it unshared. Handlers, extractors and the `/v1` middleware answer errors as
    // responses, which pass through below.)
    let mut res = next.call(req).instrument(span.clone()).await?;
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
