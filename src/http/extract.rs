//! Extractors whose rejections are problems, so no malformed input reaches a handler or
//! escapes as plain text.

use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        FromRequest, FromRequestParts, Path, Query, Request,
    },
    http::{request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::state::StateSlug;

/// JSON body; unknown fields, bad types, bad syntax, wrong media type and oversize bodies
/// each get their own problem.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::invalid("body", text),
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(text),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!(
                "the body is over the limit of {} bytes",
                super::MAX_BODY_BYTES
            ))
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Query string; unknown parameters and bad values are a 400.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::BadRequest(e.body_text()))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// The `{name}` path segment, as a state slug or postal code.
pub struct TenantName(pub StateSlug);

impl<S: Send + Sync> FromRequestParts<S> for TenantName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        StateSlug::parse(&raw)
            .map(TenantName)
            .map_err(|e| ApiError::invalid("name", e.to_string()))
    }
}
