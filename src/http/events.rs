//! `/v1/tenants/{name}/events`: a state's history.

use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::Caller,
    cursor,
    error::{ApiResult, Problem},
    extract::{AppQuery, TenantName},
    tenants::not_found,
    AppState,
};
use crate::db;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub(super) limit: Option<u32>,
    /// `next_cursor` from the previous page, unchanged; any other value is a 400.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub(super) cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<db::events::Event>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A state's history, newest first, across every tenant it has had.
#[utoipa::path(
    get, path = "/v1/tenants/{name}/events", tag = "tenants",
    security(("bearer" = [])),
    params(TenantName, PageParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A query parameter breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
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
        .map(cursor::decode_id)
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
