//! Opaque pagination cursors. Clients pass them back unchanged; anything else is a 400.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use super::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

pub fn encode(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

pub fn decode(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)
}

/// A cursor that holds an id (events are paged by theirs).
pub fn decode_id(cursor: &str) -> Result<i64, ApiError> {
    decode(cursor)?.parse().map_err(|_| invalid())
}

pub fn invalid() -> ApiError {
    ApiError::invalid_parameter(
        "cursor",
        "not one this API issued; pass `next_cursor` from the previous page",
    )
}

/// The page size asked for, within 1..=MAX_LIMIT.
pub fn limit(requested: Option<u32>) -> Result<i64, ApiError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(i64::from(n)),
        n => Err(ApiError::invalid_parameter(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, not {n}"),
        )),
    }
}
