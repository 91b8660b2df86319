//! One LISTEN connection per API process keeps its caches honest: a revoked key and a
//! changed tenant are forgotten as their change commits. While the connection is down the
//! caches are not used, and every (re)connection starts from empty caches, since
//! announcements made meanwhile are lost.

use std::time::Duration;

use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgPool,
};

use super::{KeyCache, TenantCache};
use crate::{
    db::{keys::KEYS_CHANGED_CHANNEL, tenants::TENANT_ROWS_CHANNEL},
    domain::state::StateSlug,
};

fn reset(keys: &KeyCache, tenants: &TenantCache, listening: bool) {
    keys.reset(listening);
    tenants.reset(listening);
}

/// A listener on its own connection (so every connection of `pool` stays free for
/// requests), or why not.
async fn listen(own: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(own).await?;
    // A lost connection is handed back to the loop below, which stops using the caches
    // until it has listened again.
    listener.eager_reconnect(false);
    listener
        .listen_all([KEYS_CHANGED_CHANNEL, TENANT_ROWS_CHANNEL])
        .await?;
    Ok(listener)
}

/// Runs for as long as the process serves.
pub async fn watch(pool: PgPool, keys: KeyCache, tenants: TenantCache) {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    loop {
        match listen(&own).await {
            Ok(mut listener) => {
                reset(&keys, &tenants, true);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(change)) if change.channel() == KEYS_CHANGED_CHANNEL => {
                            keys.reset(true);
                        }
                        Ok(Some(change)) => {
                            if let Ok(state) = StateSlug::from_api(change.payload()) {
                                tenants.evict(&state.as_str());
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("the change listener lost its connection; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the change listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN for changes; the caches wait"),
        }
        reset(&keys, &tenants, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
