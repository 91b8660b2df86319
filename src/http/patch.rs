//! `PATCH /v1/tenants/{name}`: a JSON merge patch of a tenant, with `If-Match`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{
    auth::AdminCaller,
    error::{ApiError, ApiResult, Problem},
    extract::{AppJson, Body, TenantName},
    headers,
    tenants::{
        check_display_name, commit_change, display_name_schema, lock_live, stale, tenant_response,
    },
    AppState,
};
use crate::{
    db::{self, tenants::DesiredChange},
    domain::{
        present,
        spec::{SpecPatch, TenantSpec},
        tenant::{Tenant, TenantStatus},
        ValidationErrors,
    },
};

/// A JSON merge patch (RFC 7396) of a tenant: members left out keep their value, members set
/// to `null` return to their defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = display_name_schema)]
    display_name: Option<Option<String>>,
    /// `null` restores every member's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SpecPatch>)]
    spec: Option<Option<SpecPatch>>,
}

impl Body for PatchTenant {
    const MEDIA_TYPES: &'static [&'static str] =
        &["application/merge-patch+json", "application/json"];
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&["spec"]);
}

/// Change a tenant's spec or display name.
///
/// The body is a JSON merge patch (RFC 7396) and needs the current ETag in `If-Match`.
/// A change to `spec` bumps `generation`, and the worker rolls it out. What is wrong with
/// the body itself is said first (400, 415, 422); then the preconditions (428, 404, 412,
/// 409); then the rules between the patched spec's members (422).
#[utoipa::path(
    patch, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(
        TenantName,
        ("If-Match" = String, Header, description = "The tenant's current ETag (or `*`)"),
    ),
    request_body(content(
        (PatchTenant = "application/merge-patch+json"),
        (PatchTenant = "application/json"),
    )),
    responses(
        (status = 200, body = Tenant, headers(("ETag" = String))),
        (status = 400, description = "The body is not JSON, or If-Match is not text", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is being deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A member breaks its rule, or the patched spec breaks a rule between members (each named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn patch_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    request_headers: HeaderMap,
    AppJson(patch): AppJson<PatchTenant>,
) -> ApiResult<Response> {
    let mut errors = ValidationErrors::default();
    if let Some(Some(value)) = &patch.display_name {
        check_display_name(value, &mut errors);
    }
    if let Some(Some(spec)) = &patch.spec {
        errors.0.extend(spec.check(state.settings.spec_limits).0);
    }
    if !errors.0.is_empty() {
        return Err(errors.into());
    }
    let Some(if_match) = headers::if_match(&request_headers)? else {
        return Err(ApiError::PreconditionRequired(
            "send the tenant's current ETag in If-Match (GET it first) so concurrent changes are not lost".into(),
        ));
    };

    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    if !headers::tag_matches(if_match, &super::tenants::tenant_etag(&current)) {
        return Err(stale(&current));
    }
    if current.status == TenantStatus::Deleting {
        return Err(ApiError::Conflict(format!(
            "tenant {name} is being deleted and can no longer be changed"
        )));
    }

    let display_name = match &patch.display_name {
        None => current.display_name.clone(),
        Some(None) => name.official_name().to_owned(),
        Some(Some(value)) => value.trim().to_owned(),
    };
    let spec = match &patch.spec {
        None => current.spec.clone(),
        Some(spec_patch) => {
            let seed = &state.settings.spec_defaults;
            let defaults = db::defaults::current(&mut tx, seed).await?.spec;
            let patched = match spec_patch {
                Some(p) => p.apply(&current.spec, &defaults),
                None => defaults,
            };
            TenantSpec::validate(patched, Some(state.settings.spec_limits))?.to_doc()
        }
    };

    let spec_changed = spec != current.spec;
    if !spec_changed && display_name == current.display_name {
        return Ok(tenant_response(StatusCode::OK, &current, false));
    }
    let change = DesiredChange {
        display_name: &display_name,
        spec: &spec,
        generation: current.generation + i64::from(spec_changed),
        status: if spec_changed {
            current.status_after_spec_change()
        } else {
            current.status
        },
    };
    let updated = db::tenants::update_desired(&mut tx, current.id, change).await?;
    let details = json!({
        "display_name": (display_name != current.display_name).then_some(&display_name),
        "spec": spec_changed.then_some(&spec),
        "previous_generation": current.generation,
    });
    let message = if spec_changed {
        format!(
            "spec changed to generation {} by key {}",
            updated.generation, caller.key_name
        )
    } else {
        format!("display name changed by key {}", caller.key_name)
    };
    commit_change(
        &state,
        tx,
        &updated,
        &caller,
        "tenant.updated",
        message,
        details,
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &updated, false))
}
