//! Tenants as GET last served them, so reading a tenant costs no database round trip. Any
//! change to what is served of a tenant is announced as it commits (a trigger, see the
//! migration `api_contract`) and evicts the entry on every API process; a change made
//! through this process is evicted before its answer goes out, so a client reads its own
//! writes. The cache is used only while its listener is connected, an entry lives at most
//! the TTL should an announcement be lost, and a read that raced with an eviction is not
//! kept. `Cache-Control: no-cache` on a GET reads the database.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::body::Bytes;

use crate::domain::state::StateSlug;

/// A tenant's answer: its JSON and ETag.
#[derive(Clone)]
pub struct Served {
    pub body: Bytes,
    pub etag: String,
}

struct Entry {
    served: Served,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    /// Whether announcements are being heard: no entry is used or kept otherwise.
    listening: bool,
    /// Bumped by every eviction of everything (a reconnect, a lost listener).
    epoch: u64,
    entries: HashMap<&'static str, Entry>,
    /// Bumped by every eviction of the name, so a read that started before it is not kept.
    evictions: HashMap<&'static str, u64>,
}

/// What a read of the database must show to be kept: nothing was evicted meanwhile.
pub struct Ticket {
    name: &'static str,
    epoch: u64,
    evictions: u64,
}

#[derive(Clone)]
pub struct TenantCache {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
}

impl TenantCache {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::default(),
            ttl,
        }
    }

    /// The cached answer, or the ticket to keep the one read from the database.
    pub fn get(&self, name: StateSlug) -> Result<Served, Option<Ticket>> {
        let Ok(inner) = self.inner.lock() else {
            return Err(None);
        };
        if !inner.listening || self.ttl.is_zero() {
            return Err(None);
        }
        let name = name.as_str();
        match inner.entries.get(name) {
            Some(entry) if entry.at.elapsed() < self.ttl => Ok(entry.served.clone()),
            _ => Err(Some(Ticket {
                name,
                epoch: inner.epoch,
                evictions: inner.evictions.get(name).copied().unwrap_or(0),
            })),
        }
    }

    /// Keeps an answer read with `ticket`, unless the tenant changed since.
    pub fn keep(&self, ticket: Ticket, served: Served) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let unchanged = inner.listening
            && inner.epoch == ticket.epoch
            && inner.evictions.get(ticket.name).copied().unwrap_or(0) == ticket.evictions;
        if unchanged {
            let at = Instant::now();
            inner.entries.insert(ticket.name, Entry { served, at });
        }
    }

    /// Forgets the tenant called `name` (a slug; anything else is ignored).
    pub fn evict(&self, name: &str) {
        let Ok(state) = StateSlug::from_api(name) else {
            return;
        };
        if let Ok(mut inner) = self.inner.lock() {
            let name = state.as_str();
            inner.entries.remove(name);
            *inner.evictions.entry(name).or_default() += 1;
        }
    }

    /// Whether changes are being heard, so the cache is in use.
    pub fn is_listening(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.listening)
    }

    /// Forgets everything; the cache is used from now on only if `listening`.
    pub fn reset(&self, listening: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.clear();
            inner.epoch += 1;
            inner.listening = listening;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(tag: &str) -> Served {
        Served {
            body: Bytes::from_static(b"{}"),
            etag: tag.into(),
        }
    }

    fn ohio() -> StateSlug {
        StateSlug::from_api("ohio").unwrap()
    }

    #[test]
    fn nothing_is_cached_until_the_listener_is_up() {
        let cache = TenantCache::new(Duration::from_secs(5));
        assert!(matches!(cache.get(ohio()), Err(None)));
        cache.reset(true);
        let Err(Some(ticket)) = cache.get(ohio()) else {
            panic!("a ticket")
        };
        cache.keep(ticket, served("\"a\""));
        assert_eq!(cache.get(ohio()).ok().unwrap().etag, "\"a\"");
        cache.reset(false);
        assert!(
            matches!(cache.get(ohio()), Err(None)),
            "a lost listener stops the cache"
        );
    }

    #[test]
    fn a_read_that_raced_with_a_change_is_not_kept() {
        let cache = TenantCache::new(Duration::from_secs(5));
        cache.reset(true);
        let Err(Some(before)) = cache.get(ohio()) else {
            panic!("a ticket")
        };
        cache.evict("ohio");
        cache.keep(before, served("\"old\""));
        assert!(cache.get(ohio()).is_err(), "the stale read was dropped");
        let Err(Some(before_reset)) = cache.get(ohio()) else {
            panic!("a ticket")
        };
        cache.reset(true);
        cache.keep(before_reset, served("\"old\""));
        assert!(cache.get(ohio()).is_err());
    }

    #[test]
    fn an_entry_lives_at_most_the_ttl() {
        let cache = TenantCache::new(Duration::from_millis(100));
        cache.reset(true);
        let Err(Some(ticket)) = cache.get(ohio()) else {
            panic!("a ticket")
        };
        cache.keep(ticket, served("\"a\""));
        assert!(cache.get(ohio()).is_ok());
        std::thread::sleep(Duration::from_millis(150));
        assert!(cache.get(ohio()).is_err());
    }
}
