//! Which request bodies the JSON routes take, and how the JSON extractor's refusals are
//! answered (in the error shape of [`super::error`]).
//!
//! A JSON body needs `Content-Type: application/json` or a `+json` type
//! (`application/merge-patch+json`); a missing content type and any other type
//! (`text/plain`, `text/notjson`) are `415 unsupported_media_type` on every JSON route; a body
//! over its limit is `413 payload_too_large`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;

use super::error::ApiError;

/// Whether `content_type` (a header value, parameters allowed) names JSON.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be JSON (Content-Type: application/json)",
    )
}

/// The answer to a body the JSON extractor refused. The parser's message may quote the
/// body: only the kind of problem is named.
pub fn json_error(e: &JsonPayloadError, limit: usize) -> ApiError {
    match e {
        JsonPayloadError::ContentType => unsupported(),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
            )
        }
        JsonPayloadError::Payload(p) if super::stall::is_stalled(p) => super::stall::stalled(),
        JsonPayloadError::Deserialize(d) if d.is_data() => ApiError::bad_request(
            "invalid_json",
            "the JSON does not have the expected fields and types",
        ),
        _ => ApiError::bad_request("invalid_json", "the body is not valid JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_plus_json_only() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/notjson",
            "text/json",
            "text/plain",
            "application/jsonx",
            "",
            "json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn extractor_refusals_have_their_statuses() {
        assert_eq!(json_error(&JsonPayloadError::ContentType, 10).status, 415);
        let big = JsonPayloadError::OverflowKnownLength {
            length: 20,
            limit: 10,
        };
        assert_eq!(json_error(&big, 10).status, 413);
        assert_eq!(
            json_error(&JsonPayloadError::Overflow { limit: 10 }, 10).status,
            413
        );
    }
}
