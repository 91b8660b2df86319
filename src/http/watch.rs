//! One LISTEN connection per API process keeps its caches honest: a revoked key and a
//! changed tenant are forgotten as their change commits. While the connection is down the
//! tenant cache is not used, and every (re)connection starts from empty caches, since
//! announcements made meanwhile are lost.

use std::time::Duration;

use sqlx::{
    postgres::{PgListener, PgPoolOptions},
    PgPool,
};

use super::{key_cache::KeyCache, tenant_cache::TenantCache};
use crate::db::{keys::KEYS_CHANGED_CHANNEL, tenants::TENANT_ROWS_CHANNEL};

fn reset(keys: &KeyCache, tenants: &TenantCache, listening: bool) {
    keys.clear();
    tenants.reset(listening);
}

/// Runs for as long as the process serves. The listener has a connection of its own, so
/// every connection of `pool` stays free for requests.
pub async fn watch(pool: PgPool, keys: KeyCache, tenants: TenantCache) {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    loop {
        let mut listener = match PgListener::connect_with(&own).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for changes; the caches wait");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([KEYS_CHANGED_CHANNEL, TENANT_ROWS_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "cannot LISTEN for changes; the caches wait");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        reset(&keys, &tenants, true);
        loop {
            match listener.try_recv().await {
                Ok(Some(change)) if change.channel() == KEYS_CHANGED_CHANNEL => keys.clear(),
                Ok(Some(change)) => tenants.evict(change.payload()),
                // The connection was lost and made again: what was said meanwhile is lost.
                Ok(None) => reset(&keys, &tenants, true),
                Err(e) => {
                    tracing::warn!(error = %e, "the change listener failed; reconnecting");
                    break;
                }
            }
        }
        reset(&keys, &tenants, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
