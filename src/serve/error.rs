//! The one place where errors become HTTP responses.
//!
//! Every error body has the shape `{"error": {"code", "message", "field"?}}`. The match on
//! [`EngineError`] and [`StoreError`] lists every variant (no catch-all), so a new error
//! cannot silently turn into a 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::engine::EngineError;
use crate::ingest::event::ValidationError;
use crate::store::StoreError;

#[derive(Debug, Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Debug, Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// Where in the field the error is (a byte offset), for filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

/// What a client (and readiness) is told while the disk is full.
pub const STORAGE_FULL_MESSAGE: &str = "the disk holding the data directory is full: writes are refused and nothing of this request was stored; reads are still served. The server resumes by itself once space is freed; retry later";

/// `Retry-After` of a `storage_full` answer, in seconds.
pub const STORAGE_FULL_RETRY_SECONDS: u64 = 10;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Byte offset of the error in `field` (audience filters).
    pub position: Option<usize>,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            position: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn with_position(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 507: the disk holding the data directory is full. Nothing of the request was
    /// stored; the server resumes by itself once space is freed.
    pub fn storage_full() -> Self {
        let mut e = ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            STORAGE_FULL_MESSAGE,
        );
        e.headers
            .push(("Retry-After", STORAGE_FULL_RETRY_SECONDS.to_string()));
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.as_str()));
        }
        builder.json(Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                position: self.position,
            },
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Engine(_) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the store failed; see the server log",
                )
            }
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "corrupt record");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_record",
                    "a stored record is unreadable; see the server log",
                )
            }
            StoreError::Unavailable(msg) => {
                ApiError::unavailable(format!("graph store unavailable: {msg}"))
            }
            StoreError::Full(_) => {
                tracing::error!(error = %e, "storage full");
                ApiError::storage_full()
            }
            StoreError::Fenced(msg) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_the_writer",
                msg.clone(),
            ),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            EngineError::Invalid { field, message } => {
                ApiError::bad_request("invalid_parameter", format!("{field}: {message}"))
                    .with_field(field)
            }
            EngineError::Missing { field, message } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message).with_field(field)
            }
            EngineError::Unprocessable {
                code,
                field,
                message,
            } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field),
            EngineError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            EngineError::Overloaded => {
                ApiError::unavailable("the write queue is full; retry later")
            }
            EngineError::QuotaExceeded(q) => {
                let err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    q.to_string(),
                )
                .with_field(q.quota);
                match q.retry_after {
                    Some(s) => err.with_header(
                        actix_web::http::header::RETRY_AFTER.as_str(),
                        &s.to_string(),
                    ),
                    None => err,
                }
            }
            EngineError::ShuttingDown => ApiError::unavailable("the service is shutting down"),
            EngineError::Config(msg) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "config_error", msg)
            }
            EngineError::InvalidFilter { position, message } => ApiError::bad_request(
                "invalid_filter",
                format!("filter: at position {position}: {message}"),
            )
            .with_field("filter")
            .with_position(position),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let message = if e.field.is_empty() {
            e.message.clone()
        } else {
            format!("{}: {}", e.field, e.message)
        };
        let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, message);
        if e.field.is_empty() {
            err
        } else {
            err.with_field(e.field)
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::unavailable("worker pool unavailable")
    }
}

impl From<crate::engine::ChangesError> for ApiError {
    fn from(e: crate::engine::ChangesError) -> Self {
        use crate::engine::ChangesError;
        match e {
            ChangesError::Disabled => ApiError::new(
                StatusCode::NOT_FOUND,
                "feed_disabled",
                "the change feed is off on this server (feed.enabled = false)",
            ),
            ChangesError::Expired {
                after,
                pruned_through,
            } => ApiError::new(
                StatusCode::GONE,
                "changes_expired",
                format!(
                    "after: the records after {after} are no longer kept (retention removed \
                     everything up to {pruned_through}); start again from an export and read \
                     on from after={pruned_through}"
                ),
            )
            .with_field("after"),
            ChangesError::Engine(e) => e.into(),
        }
    }
}
