//! `POST /v1/tenants`: a new state's tenant, placed in a cell with room, with
//! `Idempotency-Key` replay.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{
    auth::AdminCaller,
    error::{ApiError, ApiResult, Problem},
    extract::{from_value, AppJson, Body},
    headers::IdempotencyKey,
    tenants::{check_display_name, display_name_schema, evict, location, record, tenant_response},
    AppState,
};
use crate::{
    db::{self, cells::CellCapacity, idempotency::StoredResponse},
    domain::{
        spec::{SpecInput, TenantSpec},
        state::StateSlug,
        tenant::{Tenant, TenantStatus},
        ValidationErrors,
    },
};

/// A new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(value_type = StateSlug)]
    name: String,
    #[schema(schema_with = display_name_schema)]
    display_name: Option<String>,
    spec: Option<SpecInput>,
    /// The cell to place the tenant in (e.g. a cell in a dedicated account), one of the
    /// configured cells (the served document lists them); by default the first cell with
    /// room that the state may use. A cell reserved for some states takes only those, and a
    /// state a cell is reserved for goes only to such a cell (a 422 on `cell` otherwise).
    #[schema(
        example = "ca-dedicated",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]+$"
    )]
    cell: Option<String>,
}

impl Body for CreateTenant {
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&["spec"]);
}

/// Create a tenant for a state.
///
/// Returns at once with status `pending`; the worker then provisions the state's stack.
/// The tenant is placed in the first configured cell with room; when every cell is full the
/// answer is a 409 `no-capacity` and nothing is recorded. Send an `Idempotency-Key` header
/// to make retries safe: the same key and body replay the first response (with its
/// `Location` and `ETag`) for 24 hours.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes retries safe: the same key with the same body replays the first answer for 24 hours; with another body it is a 422. 1-255 visible ASCII characters, scoped to the API key.")),
    request_body = CreateTenant,
    responses(
        (status = 202, description = "Accepted; provisioning follows", body = Tenant,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key breaks its rule", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A live tenant of that name exists (`conflict`), or no cell has room (`no-capacity`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A member breaks its rule (each is named in `errors`), or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    AppJson(raw): AppJson<Value>,
) -> ApiResult<Response> {
    let idempotency_key = IdempotencyKey::from_headers(&headers)?.map(|k| k.0);
    let request_hash = Sha256::digest(serde_json::to_vec(&raw).unwrap_or_default()).to_vec();
    let body: CreateTenant = from_value(raw)?;

    let mut errors = ValidationErrors::default();
    let name = StateSlug::from_api(&body.name)
        .map_err(|e| errors.push("name", e.to_string()))
        .ok();
    if let Some(display_name) = &body.display_name {
        check_display_name(display_name, &mut errors);
    }
    let seed = &state.settings.spec_defaults;
    let defaults = db::defaults::current(&mut *state.pool.acquire().await?, seed).await?;
    let spec = body.spec.unwrap_or_default().or_defaults(&defaults.spec);
    let spec = TenantSpec::validate(spec, Some(state.settings.spec_limits))
        .map_err(|found| errors.0.extend(found.0))
        .ok();
    let candidates = name.and_then(|name| {
        placeable(&state.settings.cells, name, body.cell.as_deref())
            .map_err(|e| errors.push("cell", e))
            .ok()
    });
    let (Some(name), Some(spec), Some(candidates), true) =
        (name, spec, candidates, errors.0.is_empty())
    else {
        return Err(errors.into());
    };
    let display_name = body
        .display_name
        .as_deref()
        .map_or(name.official_name(), str::trim);
    let spec = spec.to_doc();
    let details = json!({ "spec": &spec });
    let caller_key = &caller.key_name;
    // Each round places the tenant where the committed counts show room, and confirms it
    // under that cell's lock just before committing. A round is only repeated when others
    // filled the cell in between, so the counts it starts from have grown.
    loop {
        let mut tx = state.pool.begin().await?;
        if let Some(key) = &idempotency_key {
            db::idempotency::lock(&mut tx, caller_key, key).await?;
            if let Some(stored) = db::idempotency::find(&mut tx, caller_key, key).await? {
                return replay(stored, &request_hash);
            }
        }
        if let Some(existing) = db::tenants::lock_live(&mut tx, name).await? {
            return Err(exists(name, Some(existing.status)));
        }
        let cells = &candidates;
        let cell = db::cells::with_room(&mut tx, cells)
            .await?
            .ok_or_else(|| no_capacity(cells))?;
        let insert = db::tenants::NewTenant {
            name,
            display_name,
            spec: &spec,
            cell: &cell.name,
        };
        let tenant = match db::tenants::insert(&mut tx, insert).await {
            Err(err) if db::is_unique_violation(&err) => {
                drop(tx);
                return Err(already_exists(&state, name).await);
            }
            other => other?,
        };
        let message = format!("tenant {name} created by key {caller_key}");
        record(
            &mut tx,
            &tenant,
            &caller,
            "tenant.created",
            message,
            details.clone(),
        )
        .await?;
        db::tenants::notify_changed(&mut tx, &tenant.name).await?;
        if !db::cells::confirm(&mut tx, cell).await? {
            tx.rollback().await?;
            continue;
        }
        if let Some(key) = &idempotency_key {
            let stored = stored_response(&tenant, request_hash.clone())?;
            db::idempotency::save(&mut tx, caller_key, key, &stored).await?;
        }
        tx.commit().await?;
        // A tombstone of that name may be cached.
        evict(&state, &tenant.name);
        return Ok(tenant_response(StatusCode::ACCEPTED, &tenant, true));
    }
}

fn stored_response(tenant: &Tenant, request_hash: Vec<u8>) -> ApiResult<StoredResponse> {
    Ok(StoredResponse {
        request_hash,
        status: StatusCode::ACCEPTED.as_u16() as i16,
        body: serde_json::to_value(tenant).map_err(anyhow::Error::from)?,
        location: Some(location(&tenant.name)),
        etag: Some(super::tenants::tenant_etag(tenant)),
    })
}

pub(super) fn replay(response: StoredResponse, request_hash: &[u8]) -> ApiResult<Response> {
    if response.request_hash != request_hash {
        return Err(ApiError::IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body; use a new key for a new request".into(),
        ));
    }
    let status = StatusCode::from_u16(response.status as u16).unwrap_or(StatusCode::ACCEPTED);
    let mut answer = (status, Json(response.body)).into_response();
    let headers = answer.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    for (name, value) in [
        (header::LOCATION, response.location),
        (header::ETAG, response.etag),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    Ok(answer)
}

/// The cells `state` may be placed in, in order: the one asked for, else those reserved
/// for it, else every cell reserved for nobody. `Err` says why the cell asked for is no
/// place for it.
fn placeable(
    cells: &[CellCapacity],
    state: StateSlug,
    asked: Option<&str>,
) -> Result<Vec<CellCapacity>, String> {
    let reserved: Vec<CellCapacity> = cells
        .iter()
        .filter(|c| c.reserved_for.contains(&state))
        .cloned()
        .collect();
    let Some(asked) = asked else {
        return Ok(if reserved.is_empty() {
            cells
                .iter()
                .filter(|c| c.reserved_for.is_empty())
                .cloned()
                .collect()
        } else {
            reserved
        });
    };
    let Some(cell) = cells.iter().find(|c| c.name == asked) else {
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "cell `{asked}` is not configured; the cells are {}",
            names.join(", ")
        ));
    };
    if !cell.takes(state) {
        return Err(format!(
            "cell `{asked}` is reserved for {}",
            cell.reserved_for
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !reserved.is_empty() && !reserved.iter().any(|c| c.name == asked) {
        return Err(format!(
            "{state} has a cell of its own ({}); it cannot be placed in `{asked}`",
            reserved
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(vec![cell.clone()])
}

fn no_capacity(cells: &[CellCapacity]) -> ApiError {
    let cells = cells
        .iter()
        .map(|c| format!("{} ({} tenants)", c.name, c.capacity))
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::NoCapacity(format!(
        "no cell this state may use has room: {cells}; delete a tenant or add a cell (STATEHOUSE_CELLS or the cells file)"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str, reserved: &[&str]) -> CellCapacity {
        CellCapacity {
            name: name.into(),
            capacity: 10,
            reserved_for: reserved
                .iter()
                .map(|s| StateSlug::parse(s).unwrap())
                .collect(),
        }
    }

    #[test]
    fn a_state_goes_to_its_own_cell_or_the_shared_ones_and_a_named_cell_must_take_it() {
        let cells = [
            cell("cell-1", &[]),
            cell("ca-dedicated", &["california"]),
            cell("cell-2", &[]),
        ];
        let names = |r: Result<Vec<CellCapacity>, String>| {
            r.unwrap().into_iter().map(|c| c.name).collect::<Vec<_>>()
        };
        let ca = StateSlug::parse("california").unwrap();
        let tx = StateSlug::parse("texas").unwrap();
        assert_eq!(names(placeable(&cells, tx, None)), ["cell-1", "cell-2"]);
        assert_eq!(names(placeable(&cells, ca, None)), ["ca-dedicated"]);
        assert_eq!(names(placeable(&cells, tx, Some("cell-2"))), ["cell-2"]);
        assert_eq!(
            names(placeable(&cells, ca, Some("ca-dedicated"))),
            ["ca-dedicated"]
        );
        for (state, asked, says) in [
            (tx, "ca-dedicated", "reserved for california"),
            (ca, "cell-1", "has a cell of its own (ca-dedicated)"),
            (
                tx,
                "cell-9",
                "cell `cell-9` is not configured; the cells are cell-1, ca-dedicated, cell-2",
            ),
        ] {
            let err = placeable(&cells, state, Some(asked)).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
