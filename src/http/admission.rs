//! Admission of `/v1` requests: as many at once as the database pool has connections, the
//! rest in line (first come, first served) for at most the queue timeout, then a 429 with
//! `Retry-After`. A burst therefore waits its turn instead of timing out inside the pool,
//! and a pool timeout past this gate means the database itself cannot be reached (503).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use super::{error::ApiError, AppState};

#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Admission {
    /// One request at a time per connection of `pool`.
    pub fn new(pool: &PgPool, queue_timeout: Duration) -> Self {
        let connections = pool.options().get_max_connections() as usize;
        Self {
            permits: Arc::new(Semaphore::new(connections.max(1))),
            queue_timeout,
        }
    }
}

pub(super) async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let admission = &state.admission;
    match tokio::time::timeout(admission.queue_timeout, admission.permits.acquire()).await {
        Ok(Ok(_permit)) => next.run(req).await,
        _ => ApiError::TooBusy(format!(
            "every database connection stayed busy for {:?}; retry after a second",
            admission.queue_timeout
        ))
        .into_response(),
    }
}
