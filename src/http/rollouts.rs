//! `/v1/rollouts`: ship a spec change to many tenants in waves, and watch it go. Creating
//! one is `rollout_create.rs`; pausing, resuming, promoting and aborting, `rollout_ops.rs`.

use axum::{
    extract::{rejection::PathRejection, FromRequestParts, Path, State},
    http::request::Parts,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::Caller,
    cursor,
    error::{ApiError, ApiResult, Problem},
    events::PageParams,
    extract::AppQuery,
    rollout_create::{__path_create_rollout, create_rollout},
    rollout_ops::{
        __path_abort_rollout, __path_pause_rollout, __path_promote_rollout, __path_resume_rollout,
        abort_rollout, pause_rollout, promote_rollout, resume_rollout,
    },
    AppState,
};
use crate::{
    db::{
        self,
        rollouts::{Rollout, RolloutEvent},
    },
    domain::rollout::RolloutState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rollouts, create_rollout))
        .routes(routes!(get_rollout))
        .routes(routes!(rollout_events))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(promote_rollout))
        .routes(routes!(abort_rollout))
}

/// The `{id}` path segment: a rollout's id.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct RolloutId(
    /// The id `POST /v1/rollouts` answered with.
    pub Uuid,
);

impl<S: Send + Sync> FromRequestParts<S> for RolloutId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => raw,
            Err(PathRejection::FailedToDeserializePathParams(_)) => String::new(),
            Err(other) => return Err(ApiError::BadRequest(other.body_text())),
        };
        Uuid::parse_str(&raw)
            .map(RolloutId)
            .map_err(|_| ApiError::invalid("id", "not a rollout id (a UUID)"))
    }
}

pub(super) fn location(id: Uuid) -> String {
    format!("/v1/rollouts/{id}")
}

pub(super) fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("there is no rollout {id}"))
}

/// The rollout with its tenants, or 404.
pub(super) async fn load(state: &AppState, id: Uuid) -> ApiResult<Rollout> {
    db::rollouts::get(&mut *state.pool.acquire().await?, id)
        .await?
        .ok_or_else(|| not_found(id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only rollouts in this state.
    state: Option<RolloutState>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page, unchanged; any other value is a 400.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolloutPage {
    /// Newest first; each with its `progress`, without its `tenants`.
    pub items: Vec<Rollout>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List rollouts, newest first.
#[utoipa::path(
    get, path = "/v1/rollouts", tag = "rollouts",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = RolloutPage),
        (status = 400, description = "A query parameter breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_rollouts(
    State(state): State<AppState>,
    _caller: Caller,
    AppQuery(params): AppQuery<ListParams>,
) -> ApiResult<Json<RolloutPage>> {
    let limit = cursor::limit(params.limit)?;
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = db::rollouts::ListFilter {
        state: params.state,
        before,
        limit: limit + 1,
    };
    let mut items = db::rollouts::list(&state.pool, &filter).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|r| cursor::encode(&format!("{}|{}", r.created_at.to_rfc3339(), r.id)))
    } else {
        None
    };
    Ok(Json(RolloutPage { items, next_cursor }))
}

fn decode_cursor(raw: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let position = cursor::decode(raw)?;
    let (at, id) = position.split_once('|').ok_or_else(cursor::invalid)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| cursor::invalid())?;
    let id = Uuid::parse_str(id).map_err(|_| cursor::invalid())?;
    Ok((at.with_timezone(&Utc), id))
}

/// Get a rollout: its state, the wave under way, and each tenant's state with its timings
/// and the reason for it.
#[utoipa::path(
    get, path = "/v1/rollouts/{id}", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId),
    responses(
        (status = 200, body = Rollout),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_rollout(
    State(state): State<AppState>,
    _caller: Caller,
    RolloutId(id): RolloutId,
) -> ApiResult<Json<Rollout>> {
    load(&state, id).await.map(Json)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolloutEventPage {
    pub items: Vec<RolloutEvent>,
    /// Pass as `cursor` for the next page. On the last page it is still given while the
    /// rollout is active, so a client can follow it as it goes; null once it has ended.
    pub next_cursor: Option<String>,
}

/// A rollout's history, oldest first: who did what, on what trigger.
#[utoipa::path(
    get, path = "/v1/rollouts/{id}/events", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId, PageParams),
    responses(
        (status = 200, body = RolloutEventPage),
        (status = 400, description = "A query parameter breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn rollout_events(
    State(state): State<AppState>,
    _caller: Caller,
    RolloutId(id): RolloutId,
    AppQuery(params): AppQuery<PageParams>,
) -> ApiResult<Json<RolloutEventPage>> {
    let limit = cursor::limit(params.limit)?;
    let after = params
        .cursor
        .as_deref()
        .map(cursor::decode_id)
        .transpose()?;
    let rollout = db::rollouts::get_state(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut items = db::rollouts::events(&state.pool, id, after, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let last = items.last().map(|e| e.id).or(after);
    let next_cursor = if more || rollout.is_active() {
        Some(cursor::encode(&last.unwrap_or(0).to_string()))
    } else {
        None
    };
    Ok(Json(RolloutEventPage { items, next_cursor }))
}
