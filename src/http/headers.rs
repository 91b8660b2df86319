//! The request headers with rules of their own: `Idempotency-Key`, and the entity tags of
//! `If-Match` / `If-None-Match`.

use super::error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap};
use serde::Serialize;
use sha2::{Digest, Sha256};

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A client's key for a POST that may be retried: 1-255 visible ASCII characters, as the
/// operations that take one document it (`max_length`, `pattern`).
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// The key sent, if any; one that breaks the rule is a 400 naming the header.
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<Option<Self>> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= MAX_IDEMPOTENCY_KEY
                    && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Some(Self(key.to_owned())))
            }
            _ => Err(ApiError::invalid_parameter(
                "Idempotency-Key",
                format!("must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
            )),
        }
    }
}

/// The ETag of a representation: a digest of it exactly as served, so it changes whenever
/// anything a client can see changes.
pub fn etag<T: Serialize>(representation: &T) -> String {
    etag_of(&serde_json::to_vec(representation).unwrap_or_default())
}

/// The ETag of a body already serialised.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

/// Strong comparison against a list of entity tags, or `*`.
pub fn tag_matches(header: &str, current: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || format!("\"{t}\"") == current)
}

/// Whether the client asks for an answer from the database, not from a cache
/// (`Cache-Control: no-cache` or `no-store`, or `Pragma: no-cache`).
pub fn no_cache(headers: &HeaderMap) -> bool {
    let says = |name: header::HeaderName| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',').map(str::trim).any(|d| {
                    d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store")
                })
            })
        })
    };
    says(header::CACHE_CONTROL) || says(header::PRAGMA)
}

/// Whether `If-None-Match` names the current tag.
pub fn none_match(headers: &HeaderMap, current: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| tag_matches(v, current))
}

/// The `If-Match` list sent, if any; read before anything is looked up, so a malformed one
/// is a 400 whatever the tenant's state.
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    headers
        .get(header::IF_MATCH)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::invalid_parameter("If-Match", "is not visible ASCII text"))
        })
        .transpose()
}
