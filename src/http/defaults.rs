//! `/v1/fleet/defaults`: the spec a new tenant gets for every member its request leaves out.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::{AdminCaller, Caller},
    error::{ApiError, ApiResult, Problem},
    extract::{AppJson, Body},
    headers, AppState,
};
use crate::{
    db::{self, defaults::FleetDefaults},
    domain::spec::{SpecPatch, TenantSpec},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_defaults, patch_defaults))
}

impl Body for SpecPatch {
    const MEDIA_TYPES: &'static [&'static str] =
        &["application/merge-patch+json", "application/json"];
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&["env"]);
}

fn answer(defaults: &FleetDefaults) -> Response {
    let mut response = Json(defaults).into_response();
    if let Ok(tag) = HeaderValue::from_str(&headers::etag(defaults)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The fleet defaults.
///
/// Seeded from the configuration (`STATEHOUSE_DEFAULT_*`) the first time they are read;
/// after that they live in the database, changed by `PATCH` and by every rollout that
/// succeeds over the whole fleet, so a state onboarded later runs what the fleet runs.
#[utoipa::path(
    get, path = "/v1/fleet/defaults", tag = "fleet",
    security(("bearer" = [])),
    responses((status = 200, body = FleetDefaults, headers(("ETag" = String))))
)]
async fn get_defaults(State(state): State<AppState>, _caller: Caller) -> ApiResult<Response> {
    let mut conn = state.pool.acquire().await?;
    let defaults = db::defaults::current(&mut conn, &state.settings.spec_defaults).await?;
    Ok(answer(&defaults))
}

/// Change the fleet defaults with a JSON merge patch of the spec; `null` members return to
/// what the configuration says. Needs the current ETag in `If-Match`. Existing tenants are
/// not changed: a rollout does that.
#[utoipa::path(
    patch, path = "/v1/fleet/defaults", tag = "fleet",
    security(("bearer" = [])),
    params(("If-Match" = String, Header, description = "The defaults' current ETag (or `*`)")),
    request_body(content(
        (SpecPatch = "application/merge-patch+json"),
        (SpecPatch = "application/json"),
    )),
    responses(
        (status = 200, body = FleetDefaults, headers(("ETag" = String))),
        (status = 400, description = "The body is not JSON, or If-Match is not text", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A member breaks its rule, or the patched spec breaks a rule between members (each named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_defaults(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    request_headers: HeaderMap,
    AppJson(patch): AppJson<SpecPatch>,
) -> ApiResult<Response> {
    let limits = state.settings.spec_limits;
    let errors = patch.check(limits);
    if !errors.0.is_empty() {
        return Err(errors.into());
    }
    let Some(if_match) = headers::if_match(&request_headers)? else {
        return Err(ApiError::PreconditionRequired(
            "send the defaults' current ETag in If-Match (GET them first) so concurrent changes are not lost".into(),
        ));
    };
    let seed = &state.settings.spec_defaults;
    let mut tx = state.pool.begin().await?;
    let current = db::defaults::lock(&mut tx, seed).await?;
    if !headers::tag_matches(if_match, &headers::etag(&current)) {
        return Err(ApiError::PreconditionFailed(
            "the fleet defaults changed since that ETag was read; GET them again and retry".into(),
        ));
    }
    let spec = TenantSpec::validate(patch.apply(&current.spec, seed), Some(limits))?.to_doc();
    let updated = db::defaults::set(&mut tx, &spec, &caller.actor()).await?;
    tx.commit().await?;
    Ok(answer(&updated))
}
