//! A process's memory of what it read from the database: API keys found valid, tenants as
//! GET served them. Every change to them is announced as it commits (see `watch.rs`), and
//! what changed is forgotten; a change made through this process is forgotten before its
//! answer goes out, so a client reads its own writes. Nothing is used or kept while the
//! announcements are not being heard, a read that raced with a change is not kept (its
//! ticket no longer matches), and an entry lives at most the TTL should an announcement
//! be lost.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

struct Inner<K, V> {
    /// Whether announcements are being heard.
    listening: bool,
    /// Bumped whenever everything is forgotten.
    epoch: u64,
    entries: HashMap<K, (V, Instant)>,
    /// Bumped whenever one key is forgotten.
    evictions: HashMap<K, u64>,
}

/// What a read of the database needs to be kept: that nothing was forgotten meanwhile.
pub struct Ticket<K> {
    key: K,
    epoch: u64,
    evictions: u64,
}

#[derive(Clone)]
pub struct Cache<K, V> {
    inner: Arc<Mutex<Inner<K, V>>>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                listening: false,
                epoch: 0,
                entries: HashMap::new(),
                evictions: HashMap::new(),
            })),
            ttl,
        }
    }

    /// The value kept for `key`, or else the ticket to keep the one read from the database
    /// (none while the cache is not in use).
    pub fn get(&self, key: &K) -> Result<V, Option<Ticket<K>>> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Result<V, Option<Ticket<K>>> {
        let Ok(inner) = self.inner.lock() else {
            return Err(None);
        };
        if !inner.listening || self.ttl.is_zero() {
            return Err(None);
        }
        match inner.entries.get(key) {
            Some((value, at)) if now.saturating_duration_since(*at) < self.ttl => Ok(value.clone()),
            _ => Err(Some(Ticket {
                key: key.clone(),
                epoch: inner.epoch,
                evictions: inner.evictions.get(key).copied().unwrap_or(0),
            })),
        }
    }

    /// Keeps `value`, read from the database with `ticket`, unless it changed since.
    pub fn keep(&self, ticket: Ticket<K>, value: V) {
        self.keep_at(ticket, value, Instant::now());
    }

    fn keep_at(&self, ticket: Ticket<K>, value: V, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let unchanged = inner.listening
            && inner.epoch == ticket.epoch
            && inner.evictions.get(&ticket.key).copied().unwrap_or(0) == ticket.evictions;
        if unchanged {
            inner.entries.insert(ticket.key, (value, now));
        }
    }

    /// Forgets `key`, and any read of it under way.
    pub fn evict(&self, key: &K) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(key);
            *inner.evictions.entry(key.clone()).or_default() += 1;
        }
    }

    /// Forgets everything, and any read under way; from now on the cache is used only if
    /// `listening`.
    pub fn reset(&self, listening: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.clear();
            inner.epoch += 1;
            inner.listening = listening;
        }
    }

    pub fn is_listening(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.listening)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache<&'static str, u32> {
        let cache = Cache::new(Duration::from_secs(5));
        cache.reset(true);
        cache
    }

    fn read(cache: &Cache<&'static str, u32>, key: &'static str) -> Ticket<&'static str> {
        match cache.get(&key) {
            Err(Some(ticket)) => ticket,
            _ => panic!("a miss with a ticket"),
        }
    }

    #[test]
    fn nothing_is_used_or_kept_until_the_announcements_are_heard() {
        let cache: Cache<&str, u32> = Cache::new(Duration::from_secs(5));
        assert!(matches!(cache.get(&"ohio"), Err(None)));
        cache.reset(true);
        let ticket = read(&cache, "ohio");
        cache.keep(ticket, 1);
        assert_eq!(cache.get(&"ohio").ok(), Some(1));
        let ticket = read(&cache, "utah");
        cache.reset(false);
        cache.keep(ticket, 2);
        assert!(
            matches!(cache.get(&"ohio"), Err(None)),
            "not used while deaf"
        );
    }

    #[test]
    fn a_read_that_raced_with_a_change_is_not_kept() {
        let cache = cache();
        let before = read(&cache, "ohio");
        cache.evict(&"ohio");
        cache.keep(before, 1);
        assert!(cache.get(&"ohio").is_err(), "evicted while it was read");
        let before = read(&cache, "ohio");
        cache.reset(true);
        cache.keep(before, 1);
        assert!(
            cache.get(&"ohio").is_err(),
            "everything forgotten while it was read"
        );
        let after = read(&cache, "ohio");
        cache.keep(after, 2);
        assert_eq!(cache.get(&"ohio").ok(), Some(2));
    }

    #[test]
    fn an_entry_lives_at_most_the_ttl() {
        let cache = cache();
        let start = Instant::now();
        let ticket = read(&cache, "ohio");
        cache.keep_at(ticket, 1, start);
        assert!(cache
            .get_at(&"ohio", start + Duration::from_secs(4))
            .is_ok());
        assert!(cache
            .get_at(&"ohio", start + Duration::from_secs(5))
            .is_err());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache: Cache<&str, u32> = Cache::new(Duration::ZERO);
        cache.reset(true);
        assert!(matches!(cache.get(&"ohio"), Err(None)));
    }
}
