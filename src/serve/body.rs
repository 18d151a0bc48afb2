//! Request bodies of the ingest routes: content type, `Content-Encoding: gzip`, and the
//! `server.max_body_bytes` limit, which bounds the bytes on the wire *and* the bytes after
//! decompression (a gzip bomb stops at the limit, it is never inflated in full).

use std::io::Read;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest};
use serde_json::Value;

use super::error::ApiError;

/// How the events of a body are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json` (or `application/*+json`): one event object
    /// or an array of events.
    Json,
    /// `application/x-ndjson` (also `application/jsonl`): one event per line.
    Ndjson,
}

/// The media types accepted by `POST /v1/events`, for error messages.
const ACCEPTED: &str = "application/json, application/x-ndjson";

fn unsupported(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        message,
    )
}

/// The framing named by the request's Content-Type. A missing Content-Type, or anything
/// that is not a JSON or NDJSON media type, is refused with 415 (as on every JSON route:
/// see `serve::media`).
pub fn framing(req: &HttpRequest) -> Result<Framing, ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(unsupported(format!(
            "the request has no Content-Type; send {ACCEPTED}"
        )));
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    match essence {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Framing::Ndjson),
        e if super::media::is_json(e) => Ok(Framing::Json),
        _ => Err(unsupported(format!(
            "Content-Type {essence:?} is not accepted here; send {ACCEPTED}"
        ))),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes (server.max_body_bytes)"),
    )
}

fn too_large_inflated(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the body decompresses to more than the limit of {limit} bytes (server.max_body_bytes)"
        ),
    )
}

/// Reads the body (at most `limit` bytes on the wire), decompressing `gzip` (at most
/// `limit` bytes once inflated). Any other `Content-Encoding` is refused with 415.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(unsupported(format!(
                "Content-Encoding {other:?} is not supported; send the body as is or with gzip"
            )))
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let bytes = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| too_large(limit))?
        .map_err(|e| {
            if e.as_error::<actix_web::error::PayloadError>()
                .is_some_and(super::stall::is_stalled)
            {
                return super::stall::stalled();
            }
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        })?;
    if !gzip {
        return Ok(bytes);
    }
    // Inflating is CPU work: on the blocking pool, not the request's executor thread.
    web::block(move || gunzip(&bytes, limit))
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?
        .map(web::Bytes::from)
}

/// Inflates a gzip body, reading at most `limit + 1` bytes so a bomb costs no more than
/// the limit.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the body is not valid gzip (Content-Encoding: gzip): {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(too_large_inflated(limit));
    }
    Ok(out)
}

/// The events of a body: `(items, single)` where `single` is true for one JSON object
/// (answered with one result rather than a batch summary).
pub fn events(bytes: &[u8], framing: Framing) -> Result<(Vec<Value>, bool), ApiError> {
    let empty = || {
        ApiError::bad_request(
            "invalid_json",
            "the body is empty; send a JSON event or an array of events",
        )
    };
    match framing {
        Framing::Json => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(empty());
            }
            let body: Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
            })?;
            match body {
                Value::Array(items) => Ok((items, false)),
                obj @ Value::Object(_) => Ok((vec![obj], true)),
                _ => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    "the body must be an event object or an array of event objects",
                )),
            }
        }
        Framing::Ndjson => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the body is not UTF-8: {e}"))
            })?;
            let mut items = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_json",
                        format!("line {} of the NDJSON body is not valid JSON: {e}", i + 1),
                    )
                })?;
                if !v.is_object() {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        format!(
                            "line {} of the NDJSON body is not an event object; each line holds one event",
                            i + 1
                        ),
                    ));
                }
                items.push(v);
            }
            if items.is_empty() {
                return Err(empty());
            }
            Ok((items, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    #[test]
    fn gunzip_inflates_and_bounds_a_bomb() {
        let small = gz(b"{\"a\":1}");
        assert_eq!(gunzip(&small, 100).ok(), Some(b"{\"a\":1}".to_vec()));
        // 10 MB of zeros compresses to about 10 KB: refused at 1 KB after inflation.
        let bomb = gz(&vec![b'0'; 10_000_000]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let err = gunzip(&bomb, 1000).err().map(|e| e.status);
        assert_eq!(err, Some(StatusCode::PAYLOAD_TOO_LARGE));
        // Exactly at the limit is fine.
        assert_eq!(
            gunzip(&gz(&[b'x'; 1000]), 1000).map(|v| v.len()).ok(),
            Some(1000)
        );
        let bad = gunzip(b"not gzip at all", 1000).err().map(|e| e.code);
        assert_eq!(bad, Some("invalid_body"));
    }

    #[test]
    fn ndjson_lines_become_a_batch() {
        let body = b"{\"a\":1}\n\n{\"b\":2}\r\n";
        let (items, single) = events(body, Framing::Ndjson).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert!(!single);
        let err = events(b"{\"a\":1}\n{oops\n", Framing::Ndjson).err();
        assert!(err.is_some_and(|e| e.message.starts_with("line 2 ")));
        let err = events(b"[1]\n", Framing::Ndjson).err();
        assert!(err.is_some_and(|e| e.status == StatusCode::UNPROCESSABLE_ENTITY));
        assert!(events(b"\n \n", Framing::Ndjson).is_err());
        let (items, single) = events(b"{\"a\":1}", Framing::Json).unwrap_or_default();
        assert_eq!((items.len(), single), (1, true));
        assert!(events(b"  ", Framing::Json).is_err());
    }
}
