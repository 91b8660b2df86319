//! Extractors whose rejections are problems, so no malformed input reaches a handler or
//! escapes as plain text. A problem about one part of the request names it: a body member
//! by its dotted path (`spec.cpu`), a query parameter or a header by its name.

use axum::{
    body::Bytes,
    extract::{rejection::PathRejection, FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::domain::{state::StateSlug, FieldError, ValidationErrors};

/// A request body's type: the media types it is accepted as (those its operation
/// documents), and its shape. Serde reads a struct from a JSON array as well as from an
/// object, which the document does not allow, so the shape is checked first: `Some`
/// members means the body is an object and so is each of those members (or `null`).
pub trait Body: DeserializeOwned {
    const MEDIA_TYPES: &'static [&'static str] = &["application/json"];
    const OBJECT_MEMBERS: Option<&'static [&'static str]>;
}

/// Any JSON at all, to be checked later with [`from_value`].
impl Body for serde_json::Value {
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = None;
}

/// JSON body; unknown members, bad types, bad syntax, a wrong media type and oversize bodies
/// each get their own problem.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: Body> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        accepts::<T>(req.headers())?;
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// A JSON body that may be left out entirely, or sent as `null`; otherwise it is checked
/// as [`AppJson`] checks one.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: Body> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let accepted = accepts::<T>(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        accepted?;
        match parse_json::<serde_json::Value>(&bytes)? {
            serde_json::Value::Null => Ok(Self(None)),
            value => from_value(value).map(|body| Self(Some(body))),
        }
    }
}

/// The whole body, or a 413 past the limit.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the body is over the limit of {} bytes",
                super::MAX_BODY_BYTES
            ))
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// Whether the body's media type is one `T` is documented with (parameters such as
/// `charset` aside); otherwise a 415 that says which.
fn accepts<T: Body>(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if essence.is_some_and(|e| T::MEDIA_TYPES.contains(&e.as_str())) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "send the body as JSON with `Content-Type: {}`",
            T::MEDIA_TYPES.join("` or `")
        )))
    }
}

/// Syntax errors are a 400; a body of the wrong shape is a 422 naming the member at fault.
pub fn parse_json<T: Body>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    from_value(value)
}

/// A body already read as JSON, checked against `T`.
pub fn from_value<T: Body>(value: serde_json::Value) -> Result<T, ApiError> {
    if let Some(members) = T::OBJECT_MEMBERS {
        let Some(object) = value.as_object() else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        for member in members {
            if object
                .get(*member)
                .is_some_and(|v| !v.is_object() && !v.is_null())
            {
                return Err(ApiError::invalid(member, "must be a JSON object or null"));
            }
        }
    }
    serde_path_to_error::deserialize(value)
        .map_err(|err| shape_error(&err.path().to_string(), err.inner()))
}

fn shape_error(path: &str, err: &serde_json::Error) -> ApiError {
    ApiError::Validation(ValidationErrors(vec![member_error(
        path,
        &err.to_string(),
        "body",
    )]))
}

/// Serde reports a missing member at its parent; the problem names the member itself. (An
/// unknown member is reported at its own path already.) What is wrong with `whole`, the
/// body or the query string, rather than one member of it, names that.
fn member_error(path: &str, message: &str, whole: &str) -> FieldError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let at = (path != ".").then_some(path);
    let field = match (at, missing) {
        (Some(parent), Some(member)) => format!("{parent}.{member}"),
        (None, Some(member)) => member.to_owned(),
        (Some(at), None) => at.to_owned(),
        (None, None) => whole.to_owned(),
    };
    FieldError::new(field, message)
}

/// Query string; unknown parameters and bad values are a 400 naming the parameter.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs)
            .map(Self)
            .map_err(|err| {
                let field =
                    member_error(&err.path().to_string(), &err.inner().to_string(), "query");
                ApiError::invalid_parameter(field.field, field.message)
            })
    }
}

/// The `{name}` path segment: a state's slug or postal code, exactly as documented. Any
/// other segment, even one that is not UTF-8, is the same 422.
#[derive(IntoParams)]
#[into_params(names("name"), parameter_in = Path)]
pub struct TenantName(
    /// The state: its slug, or its postal code in upper or lower case.
    pub StateSlug,
);

impl<S: Send + Sync> FromRequestParts<S> for TenantName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => raw,
            // `/v1/tenants/{name}…`: a segment that does not decode to UTF-8.
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                let segment = parts.uri.path().split('/').nth(3).unwrap_or_default();
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            }
            Err(other) => return Err(ApiError::BadRequest(other.body_text())),
        };
        StateSlug::from_api(&raw)
            .map(TenantName)
            .map_err(|e| ApiError::invalid("name", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
    }

    impl Body for Outer {
        const MEDIA_TYPES: &'static [&'static str] = &["application/json"];
        const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&["inner"]);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        cpu: Option<u32>,
        env: Option<std::collections::BTreeMap<String, String>>,
    }

    fn field_of(body: &str) -> String {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors.0[0].field.clone(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_body_of_the_wrong_shape_names_the_member_at_fault() {
        assert_eq!(
            field_of(r#"{"name": "x", "inner": {"cpu": "lots"}}"#),
            "inner.cpu"
        );
        assert_eq!(
            field_of(r#"{"name": "x", "inner": {"env": {"A": 1}}}"#),
            "inner.env.A"
        );
        assert_eq!(
            field_of(r#"{"name": "x", "inner": {"replicas": 2}}"#),
            "inner.replicas"
        );
        assert_eq!(field_of(r#"{"name": "x", "owner": "me"}"#), "owner");
        assert_eq!(field_of(r#"{"name": "x", "a`b.c": 1}"#), "a`b.c");
        assert_eq!(field_of(r#"{"inner": null}"#), "name");
        assert_eq!(field_of(r#"{"name": 42}"#), "name");
        assert_eq!(field_of(r#"["x", null]"#), "body");
        assert_eq!(field_of(r#"{"name": "x", "inner": [1, null]}"#), "inner");
    }

    #[test]
    fn malformed_json_is_a_400_even_when_its_start_has_the_wrong_shape() {
        for body in [r#"{"name": 42"#, "", r#"{"name": "x"} trailing"#] {
            assert!(
                matches!(
                    parse_json::<Outer>(body.as_bytes()),
                    Err(ApiError::BadRequest(_))
                ),
                "{body:?}"
            );
        }
    }
}
