//! `/v1/tenants`: read, change and delete states' tenants (creating one is `create.rs`).

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, Postgres, Transaction};
use utoipa::{
    openapi::{RefOr, Schema},
    IntoParams, ToSchema,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::{AdminCaller, Caller},
    create::{__path_create_tenant, create_tenant},
    cursor,
    error::{ApiError, ApiResult, Problem},
    extract::{AppQuery, TenantName},
    headers,
    patch::{__path_patch_tenant, patch_tenant},
    AppState,
};
use crate::{
    db::{self, events::NewEvent},
    domain::{
        state::StateSlug,
        tenant::{DataPolicy, Tenant, TenantStatus},
        text, ValidationErrors,
    },
    health::{Health, HealthStatus},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
}

const MAX_DISPLAY_NAME: usize = 100;

pub(super) fn display_name_schema() -> impl Into<RefOr<Schema>> {
    let mut schema = text::schema(MAX_DISPLAY_NAME, true, true);
    schema.description = Some(
        "1-100 characters, not only white space, no control characters; stored trimmed. \
         Defaults to (and `null` restores) the state's official name."
            .into(),
    );
    schema.examples = vec!["New York State Education Department".into()];
    schema
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only tenants in this status. Without it, every tenant that is not deleted.
    status: Option<TenantStatus>,
    /// Only tenants whose observed health is this (`unknown` includes those not observed
    /// yet).
    health: Option<HealthStatus>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page, unchanged; any other value is a 400.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// What to do with the tenant's bucket and table (default `retain`).
    data: Option<DataPolicy>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub(super) fn location(name: &str) -> String {
    format!("/v1/tenants/{name}")
}

/// A tenant's answer: its JSON and its ETag.
#[derive(Clone)]
pub struct Served {
    pub body: axum::body::Bytes,
    pub etag: String,
}

/// The tenant's ETag. It covers everything the tenant is, of its health only the status,
/// and of its sizing the recommended size and the changes made: the observed figures
/// (`observed_at`, task and target counts, metrics, a recommendation's evidence) change
/// every interval without anyone changing the tenant, and must not make an If-Match read
/// a minute earlier fail. The live figures are at `/health`.
pub(super) fn tenant_etag(tenant: &Tenant) -> String {
    let mut versioned = tenant.clone();
    versioned.health = Health::unknown("", None);
    versioned.health.status = tenant.health.status;
    versioned.sizing = tenant.sizing.versioned();
    headers::etag(&(&versioned, tenant.sizing.recommended()))
}

/// The tenant as JSON with its ETag.
pub(super) fn served(tenant: &Tenant) -> ApiResult<Served> {
    let body = serde_json::to_vec(tenant).map_err(anyhow::Error::from)?;
    let etag = tenant_etag(tenant);
    Ok(Served {
        body: body.into(),
        etag,
    })
}

fn respond(status: StatusCode, served: Served, location: Option<&str>) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        served.body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&served.etag) {
        headers.insert(header::ETAG, tag);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, loc);
    }
    response
}

pub(super) fn tenant_response(
    status: StatusCode,
    tenant: &Tenant,
    with_location: bool,
) -> Response {
    match served(tenant) {
        Ok(served) => {
            let location = with_location.then(|| location(&tenant.name));
            respond(status, served, location.as_deref())
        }
        Err(e) => e.into_response(),
    }
}

/// 1-100 characters, no control characters, not only white space; stored trimmed.
pub(super) fn check_display_name(value: &str, errors: &mut ValidationErrors) {
    if !text::is_plain(value, MAX_DISPLAY_NAME) || text::is_blank(value) {
        errors.push(
            "display_name",
            format!(
                "must be 1-{MAX_DISPLAY_NAME} characters, not only white space, with no control characters"
            ),
        );
    }
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
    state: &AppState,
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
    // Before the answer goes out, so the caller reads its own write from this process.
    evict(state, &tenant.name);
    Ok(())
}

/// Forgets what GET served of the tenant called `name`.
pub(super) fn evict(state: &AppState, name: &str) {
    if let Ok(state_name) = StateSlug::from_api(name) {
        state.tenants.evict(&state_name.as_str());
    }
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
        (status = 400, description = "A query parameter breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
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
        health: params.health,
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
    let name = StateSlug::from_api(name).map_err(|_| cursor::invalid())?;
    Ok((name.as_str().to_owned(), id))
}

/// Get a tenant: the live one of that name, or else its latest tombstone.
///
/// The server answers from memory a tenant it has read before. Every change to a tenant is
/// announced to every API process as it commits and replaces what they hold, and a change
/// made through one process is read back from it at once; through another process it shows
/// within the moment the announcement takes. `Cache-Control: no-cache` reads the database.
#[utoipa::path(
    get, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(
        TenantName,
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds; when one is current the answer is a 304"),
        ("Cache-Control" = Option<String>, Header, nullable = false, description = "`no-cache` reads the database rather than the server's memory (see the description)"),
    ),
    responses(
        (status = 200, body = Tenant, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match", headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_tenant(
    State(state): State<AppState>,
    _caller: Caller,
    TenantName(name): TenantName,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    let served = match state.tenants.get(&name.as_str()) {
        Ok(cached) if !headers::no_cache(&request_headers) => cached,
        cached => {
            let tenant = db::tenants::find_latest(&state.pool, name)
                .await?
                .ok_or_else(|| not_found(name))?;
            let fresh = served(&tenant)?;
            if let Err(Some(ticket)) = cached {
                state.tenants.keep(ticket, fresh.clone());
            }
            fresh
        }
    };
    if headers::none_match(&request_headers, &served.etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, served.etag)]).into_response());
    }
    Ok(respond(StatusCode::OK, served, None))
}

pub(super) fn not_found(name: StateSlug) -> ApiError {
    ApiError::NotFound(format!("there is no tenant for {name}"))
}

pub(super) fn stale(tenant: &Tenant) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "tenant {} changed since that ETag was read; GET it again and retry",
        tenant.name
    ))
}

/// Delete a tenant.
///
/// Deletion is asynchronous: the answer is at once, with the tenant in status `deleting`;
/// the worker then removes its resources, and GET keeps showing `deleting` until every one
/// is verified gone. It then becomes `deleted` (kept as a tombstone for the audit trail)
/// and the name can be used again. With `data=retain` (the default) the bucket and table
/// are kept; with `data=purge` a final table backup is taken and both are deleted.
/// Repeating the request changes nothing; repeating it with another `data` is a 409.
#[utoipa::path(
    delete, path = "/v1/tenants/{name}", tag = "tenants",
    security(("bearer" = [])),
    params(
        TenantName,
        ("If-Match" = Option<String>, Header, nullable = false, description = "Only delete if the tenant still has this ETag (or `*`)"),
        DeleteParams,
    ),
    responses(
        (status = 202, description = "Deletion under way", body = Tenant, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "A query parameter or If-Match breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already being deleted with the other data policy", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    request_headers: HeaderMap,
    AppQuery(params): AppQuery<DeleteParams>,
) -> ApiResult<Response> {
    let policy = params.data.unwrap_or_default();
    let if_match = headers::if_match(&request_headers)?;
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    if if_match.is_some_and(|tags| !headers::tag_matches(tags, &tenant_etag(&current))) {
        return Err(stale(&current));
    }
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
        &state,
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
