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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// A request's turn at the database, in its extensions. A handler that goes on to wait for
/// something else (AWS) once its queries are done gives the turn back to the line.
#[derive(Clone)]
pub struct Turn(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl Turn {
    pub fn give_back(&self) {
        if let Ok(mut permit) = self.0.lock() {
            permit.take();
        }
    }
}

pub(super) async fn admit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let admission = &state.admission;
    let permits = admission.permits.clone();
    match tokio::time::timeout(admission.queue_timeout, permits.acquire_owned()).await {
        Ok(Ok(permit)) => {
            // Held here until the answer is made, unless the handler gives it back sooner;
            // the copy in the extensions goes wherever the request goes.
            let turn = Turn(Arc::new(std::sync::Mutex::new(Some(permit))));
            req.extensions_mut().insert(turn.clone());
            let response = next.run(req).await;
            drop(turn);
            response
        }
        _ => ApiError::TooBusy(format!(
            "every database connection stayed busy for {:?}; retry after a second",
            admission.queue_timeout
        ))
        .into_response(),
    }
}
