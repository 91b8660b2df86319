//! `/v1/tenants`: create, read, change and delete states' tenants.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, Transaction};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::{AdminCaller, Caller},
    cursor,
    error::{ApiError, ApiResult, Problem},
    extract::{AppJson, AppQuery, TenantName},
    AppState,
};
use crate::{
    db::{self, events::NewEvent, idempotency::StoredResponse, tenants::DesiredChange},
    domain::{
        spec::{SpecDoc, SpecInput, TenantSpec},
        state::StateSlug,
        tenant::{DataPolicy, Tenant, TenantStatus},
        ValidationErrors,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
        .routes(routes!(list_events))
}

const MAX_DISPLAY_NAME: usize = 100;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The state's slug or postal code.
    #[schema(example = "new-york")]
    name: String,
    /// Defaults to the state's official name.
    #[schema(example = "New York Department of Education")]
    display_name: Option<String>,
    /// Fields left out take the platform's defaults.
    spec: Option<SpecInput>,
}

/// A JSON merge patch (RFC 7396) of a tenant: members set to `null` return to their defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SpecInput>)]
    spec: Option<Option<Value>>,
}

/// Tells a member sent as `null` (Some(None)) from one left out (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only tenants in this status. Without it, every tenant that is not deleted.
    status: Option<TenantStatus>,
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// What to do with the tenant's bucket and table (default `retain`).
    data: Option<DataPolicy>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 100).
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<db::events::Event>,
    pub next_cursor: Option<String>,
}

/// The ETag is a digest of the tenant exactly as served, so it changes whenever anything
/// a client can see changes.
fn etag(tenant: &Tenant) -> String {
    let bytes = serde_json::to_vec(tenant).unwrap_or_default();
    format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]))
}

fn location(name: &str) -> String {
    format!("/v1/tenants/{name}")
}

pub(super) fn tenant_response(
    status: StatusCode,
    tenant: &Tenant,
    with_location: bool,
) -> Response {
    let mut response = (status, Json(tenant)).into_response();
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&etag(tenant)) {
        headers.insert(header::ETAG, tag);
    }
    if with_location {
        if let Ok(loc) = HeaderValue::from_str(&location(&tenant.name)) {
            headers.insert(header::LOCATION, loc);
        }
    }
    response
}

/// Whether free text an operator wrote is at most `max` characters, none of them control
/// characters.
pub(super) fn plain_text(value: &str, max: usize) -> bool {
    value.chars().count() <= max && !value.chars().any(char::is_control)
}

fn check_display_name(value: &str, errors: &mut ValidationErrors) {
    let trimmed = value.trim();
    if trimmed.is_empty() || !plain_text(trimmed, MAX_DISPLAY_NAME) {
        errors.push(
            "display_name",
            format!("must be 1-{MAX_DISPLAY_NAME} characters with no control characters"),
        );
    }
}

fn validate_spec(state: &AppState, doc: SpecDoc, errors: &mut ValidationErrors) -> Option<SpecDoc> {
    match TenantSpec::validate(doc, Some(state.settings.spec_limits)) {
        Ok(spec) => Some(spec.to_doc()),
        Err(found) => {
            errors.0.extend(found.0);
            None
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

/// Create a tenant for a state.
///
/// Returns at once with status `pending`; the worker then provisions the state's stack.
/// Send an `Idempotency-Key` header to make retries safe: the same key and body replay the
/// first response for 24 hours.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe")),
    request_body = CreateTenant,
    responses(
        (status = 202, description = "Accepted; provisioning follows", body = Tenant,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A live tenant of that name exists, or no cell has room", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or spec, or an idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    AppJson(raw): AppJson<Value>,
) -> ApiResult<Response> {
    let idempotency_key = idempotency_key(&headers)?;
    let request_hash = Sha256::digest(serde_json::to_vec(&raw).unwrap_or_default()).to_vec();
    let body: CreateTenant =
        serde_json::from_value(raw).map_err(|e| ApiError::invalid("body", e.to_string()))?;

    let mut errors = ValidationErrors::default();
    let name = StateSlug::parse(&body.name)
        .map_err(|e| errors.push("name", e.to_string()))
        .ok();
    if let Some(display_name) = &body.display_name {
        check_display_name(display_name, &mut errors);
    }
    let spec = validate_spec(
        &state,
        body.spec
            .unwrap_or_default()
            .or_defaults(&state.settings.spec_defaults),
        &mut errors,
    );
    let (Some(name), Some(spec)) = (name, spec) else {
        return Err(errors.into());
    };
    if !errors.0.is_empty() {
        return Err(errors.into());
    }
    let display_name = body
        .display_name
        .as_deref()
        .map_or(name.official_name(), str::trim);

    let mut tx = state.pool.begin().await?;
    if let Some(key) = &idempotency_key {
        db::idempotency::lock(&mut tx, &caller.key_name, key).await?;
        if let Some(stored) = db::idempotency::find(&mut tx, &caller.key_name, key).await? {
            return replay(stored, &request_hash);
        }
    }
    // Placed under a lock, after the name is known to be free, so "already exists" wins
    // over "full" and two creates cannot both take a cell's last place.
    db::cells::lock(&mut tx).await?;
    if let Some(existing) = db::tenants::lock_live(&mut tx, name).await? {
        return Err(exists(name, Some(existing.status)));
    }
    let cell = db::cells::with_room(&mut tx, &state.settings.cells)
        .await?
        .ok_or_else(|| no_capacity(&state.settings.cells))?;
    let new = db::tenants::NewTenant {
        name,
        display_name,
        spec: &spec,
        cell: &cell,
    };
    let tenant = match db::tenants::insert(&mut tx, new).await {
        Err(err) if db::is_unique_violation(&err) => {
            drop(tx);
            return Err(already_exists(&state, name).await);
        }
        other => other?,
    };
    let message = format!("tenant {name} created by key {}", caller.key_name);
    record(
        &mut tx,
        &tenant,
        &caller,
        "tenant.created",
        message,
        json!({ "spec": spec }),
    )
    .await?;
    db::tenants::notify_changed(&mut tx, &tenant.name).await?;
    if let Some(key) = &idempotency_key {
        let stored = StoredResponse {
            request_hash,
            status: StatusCode::ACCEPTED.as_u16() as i16,
            body: serde_json::to_value(&tenant).map_err(anyhow::Error::from)?,
            location: Some(location(&tenant.name)),
        };
        db::idempotency::save(&mut tx, &caller.key_name, key, &stored).await?;
    }
    tx.commit().await?;
    Ok(tenant_response(StatusCode::ACCEPTED, &tenant, true))
}

fn replay(stored: StoredResponse, request_hash: &[u8]) -> ApiResult<Response> {
    if stored.request_hash != request_hash {
        return Err(ApiError::IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body; use a new key for a new request".into(),
        ));
    }
    let status = StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (status, Json(stored.body)).into_response();
    let headers = response.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, loc);
    }
    Ok(response)
}

fn no_capacity(cells: &[db::cells::CellCapacity]) -> ApiError {
    let cells = cells
        .iter()
        .map(|c| format!("{} ({} tenants)", c.name, c.capacity))
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::NoCapacity(format!(
        "every cell is full: {cells}; delete a tenant or add a cell to STATEHOUSE_CELLS"
    ))
}

async fn already_exists(state: &AppState, name: StateSlug) -> ApiError {
    let status = db::tenants::find_latest(&state.pool, name)
        .await
        .ok()
        .flatten()
        .map(|existing| existing.status);
    exists(name, status)
}

fn exists(name: StateSlug, status: Option<TenantStatus>) -> ApiError {
    let status = status.map_or_else(String::new, |s| format!(" (status {})", s.as_str()));
    ApiError::Conflict(format!(
        "tenant {name} already exists{status}; change it with PATCH, or delete it before creating it again"
    ))
}

/// The live tenant called `name`, locked until the transaction ends, or 404.
pub(super) async fn lock_live(conn: &mut PgConnection, name: StateSlug) -> ApiResult<Tenant> {
    db::tenants::lock_live(conn, name)
        .await?
        .ok_or_else(|| not_found(name))
}

/// Ends a change made through the API: its event, a NOTIFY so the workers act on it at
/// once (and a pass under way for the tenant checks its lease), and the commit.
pub(super) async fn commit_change(
    mut tx: Transaction<'_, Postgres>,
    tenant: &Tenant,
    caller: &Caller,
    action: &str,
    message: String,
    details: Value,
) -> ApiResult<()> {
    record(&mut tx, tenant, caller, action, message, details).await?;
    db::tenants::notify_changed(&mut tx, &tenant.name).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn record(
    conn: &mut PgConnection,
    tenant: &Tenant,
    caller: &Caller,
    action: &str,
    message: String,
    details: Value,
) -> Result<(), sqlx::Error> {
    let actor = caller.actor();
    db::events::append(
        conn,
        tenant,
        NewEvent {
            actor: &actor,
            action,
            message,
            details,
        },
    )
    .await
}

/// List tenants in name order.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = TenantPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_tenants(
    State(state): State<AppState>,
    _caller: Caller,
    AppQuery(params): AppQuery<ListParams>,
) -> ApiResult<Json<TenantPage>> {
    let limit = cursor::limit(params.limit)?;
    let after = params
        .cursor
        .as_deref()
        .map(decode_tenant_cursor)
        .transpose()?;
    let filter = db::tenants::ListFilter {
        status: params.status,
        after,
        limit: limit + 1,
    };
    let mut items = db::tenants::list(&state.pool, &filter).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|t| cursor::encode(&format!("{}|{}", t.name, t.id)))
    } else {
        None
    };
    Ok(Json(TenantPage { items, next_cursor }))
}

fn decode_tenant_cursor(raw: &str) -> ApiResult<(String, Uuid)> {
    let position = cursor::decode(raw)?;
    let (name, id) = position.split_once('|').ok_or_else(cursor::invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| cursor::invalid())?;
    let name = StateSlug::parse(name).map_err(|_| cursor::invalid())?;
    Ok((name.as_str().to_owned(), id))
}

/// Get a tenant: the live one of that name, or else its latest tombstone.
#[utoipa::path(
    get, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Slug or postal code", example = "new-york")),
    responses(
        (status = 200, body = Tenant, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_tenant(
    State(state): State<AppState>,
    _caller: Caller,
    TenantName(name): TenantName,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = db::tenants::find_latest(&state.pool, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let tag = etag(&tenant);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| tag_matches(v, &tag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    Ok(tenant_response(StatusCode::OK, &tenant, false))
}

pub(super) fn not_found(name: StateSlug) -> ApiError {
    ApiError::NotFound(format!("there is no tenant for {name}"))
}

/// Strong comparison against a list of entity tags, or `*`.
fn tag_matches(header: &str, current: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || format!("\"{t}\"") == current)
}

fn if_match_required() -> ApiError {
    ApiError::PreconditionRequired(
        "send the tenant's current ETag in If-Match (GET it first) so concurrent changes are not lost".into(),
    )
}

/// Checks If-Match when it is sent; callers that require it check its presence first.
fn check_if_match(headers: &HeaderMap, tenant: &Tenant) -> ApiResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not valid text".into()))?;
    if tag_matches(value, &etag(tenant)) {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "tenant {} changed since that ETag was read; GET it again and retry",
            tenant.name
        )))
    }
}

/// Change a tenant's spec or display name.
///
/// The body is a JSON merge patch (RFC 7396) and needs the current ETag in `If-Match`.
/// A change to `spec` bumps `generation`, and the worker rolls it out.
#[utoipa::path(
    patch, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "Slug or postal code", example = "new-york"),
        ("If-Match" = String, Header, description = "The tenant's ETag"),
    ),
    request_body(content = PatchTenant, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = Tenant, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is being deleted", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    headers: HeaderMap,
    AppJson(patch): AppJson<PatchTenant>,
) -> ApiResult<Response> {
    if !headers.contains_key(header::IF_MATCH) {
        return Err(if_match_required());
    }
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    check_if_match(&headers, &current)?;
    if current.status == TenantStatus::Deleting {
        return Err(ApiError::Conflict(format!(
            "tenant {name} is being deleted and can no longer be changed"
        )));
    }

    let mut errors = ValidationErrors::default();
    let display_name = match &patch.display_name {
        None => current.display_name.clone(),
        Some(None) => name.official_name().to_owned(),
        Some(Some(value)) => {
            check_display_name(value, &mut errors);
            value.trim().to_owned()
        }
    };
    let spec = match &patch.spec {
        None => Some(current.spec.clone()),
        Some(spec_patch) => patched_spec(&state, &current.spec, spec_patch.as_ref(), &mut errors),
    };
    let Some(spec) = spec.filter(|_| errors.0.is_empty()) else {
        return Err(errors.into());
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
            status_after_spec_change(&current)
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
    commit_change(tx, &updated, &caller, "tenant.updated", message, details).await?;
    Ok(tenant_response(StatusCode::OK, &updated, false))
}

/// Applies a merge patch to the stored spec; members removed by the patch take defaults.
fn patched_spec(
    state: &AppState,
    current: &SpecDoc,
    patch: Option<&Value>,
    errors: &mut ValidationErrors,
) -> Option<SpecDoc> {
    let mut doc = serde_json::to_value(current).unwrap_or(Value::Null);
    json_patch::merge(&mut doc, patch.unwrap_or(&Value::Null));
    if doc.is_null() {
        doc = json!({});
    }
    match serde_json::from_value::<SpecInput>(doc) {
        Ok(input) => validate_spec(
            state,
            input.or_defaults(&state.settings.spec_defaults),
            errors,
        ),
        Err(err) => {
            errors.push("spec", err.to_string());
            None
        }
    }
}

/// A new generation is rolled out; a tenant never fully provisioned waits for the worker.
fn status_after_spec_change(current: &Tenant) -> TenantStatus {
    match current.status {
        TenantStatus::Ready | TenantStatus::Failed if current.observed_generation > 0 => {
            TenantStatus::Updating
        }
        TenantStatus::Failed => TenantStatus::Pending,
        other => other,
    }
}

/// Delete a tenant.
///
/// The tenant moves to `deleting` and the worker removes its resources; once every one is
/// verified gone it becomes `deleted` and the name can be used again. With `data=retain`
/// (the default) the bucket and table are kept; with `data=purge` a final table backup is
/// taken and both are deleted.
#[utoipa::path(
    delete, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "Slug or postal code", example = "new-york"),
        ("If-Match" = Option<String>, Header, description = "Only delete if the tenant still has this ETag"),
        DeleteParams,
    ),
    responses(
        (status = 202, description = "Deletion under way", body = Tenant, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    headers: HeaderMap,
    AppQuery(params): AppQuery<DeleteParams>,
) -> ApiResult<Response> {
    let policy = params.data.unwrap_or_default();
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    check_if_match(&headers, &current)?;
    if current.status == TenantStatus::Deleting {
        // The worker may already have acted on the first policy, so it cannot be switched.
        return match current.data_policy {
            Some(first) if first != policy => Err(ApiError::Conflict(format!(
                "tenant {name} is already being deleted with data={}",
                first.as_str()
            ))),
            _ => Ok(tenant_response(StatusCode::ACCEPTED, &current, true)),
        };
    }
    let tenant = db::tenants::request_deletion(&mut tx, current.id, policy).await?;
    let message = format!(
        "deletion requested by key {} (data: {})",
        caller.key_name,
        policy.as_str()
    );
    commit_change(
        tx,
        &tenant,
        &caller,
        "tenant.deletion_requested",
        message,
        json!({ "data": policy }),
    )
    .await?;
    Ok(tenant_response(StatusCode::ACCEPTED, &tenant, true))
}

/// A state's history, newest first, across every tenant it has had.
#[utoipa::path(
    get, path = "/v1/tenants/{name}/events", tag = "tenants",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Slug or postal code", example = "new-york"), PageParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    _caller: Caller,
    TenantName(name): TenantName,
    AppQuery(params): AppQuery<PageParams>,
) -> ApiResult<Json<EventPage>> {
    let limit = cursor::limit(params.limit)?;
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            cursor::decode(c)?
                .parse::<i64>()
                .map_err(|_| cursor::invalid())
        })
        .transpose()?;
    if before.is_none() && db::tenants::find_latest(&state.pool, name).await?.is_none() {
        return Err(not_found(name));
    }
    let mut items = db::events::list(&state.pool, name, before, limit + 1).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|e| cursor::encode(&e.id.to_string()))
    } else {
        None
    };
    Ok(Json(EventPage { items, next_cursor }))
}
