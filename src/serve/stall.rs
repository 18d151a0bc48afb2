//! Stalled request bodies: a request whose body stops arriving for
//! `server.body_idle_timeout_seconds` is answered `408 body_timeout` and its connection
//! closed, instead of holding a worker's request open for as long as the client likes (a
//! slow-body attack). The request head has its own limit (actix-web's client request
//! timeout); this covers the body, chunk by chunk, so a large upload that keeps moving is
//! never cut off.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use futures_util::StreamExt;

use super::error::ApiError;

/// The error a stalled body's stream ends with.
const STALLED: &str = "idgraph: request body stalled";

/// Wraps the request's body (when it has one) so that a gap of `idle` between two of its
/// chunks ends it with an error [`is_stalled`] recognizes.
pub async fn guard(
    idle: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        let inner = req.take_payload();
        let guarded = futures_util::stream::unfold(Some(inner), move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(inner))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        STALLED,
                    ))),
                    None,
                )),
            }
        });
        req.set_payload(Payload::Stream {
            payload: Box::pin(guarded),
        });
    }
    next.call(req).await
}

/// Whether a body error is a stall [`guard`] detected.
pub fn is_stalled(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut && io.to_string() == STALLED)
}

/// The answer to a stalled body.
pub fn stalled() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body stopped arriving (server.body_idle_timeout_seconds); send it again",
    )
    .with_header(header::CONNECTION.as_str(), "close")
}
