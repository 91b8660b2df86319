//! API keys recently found valid, so a request is authenticated without a database round
//! trip (two, with the `last_used_at` update). A revocation clears every API process's
//! cache at once (see `watch.rs`); should that message be lost, an entry is believed for
//! at most the TTL. Only valid keys are kept, so the cache cannot be filled from outside.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use super::auth::Caller;

/// `last_used_at` is written at most this often per key and process.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct Entry {
    caller: Caller,
    key_id: uuid::Uuid,
    checked_at: Instant,
    touched_at: Instant,
}

#[derive(Clone)]
pub struct KeyCache {
    entries: Arc<RwLock<HashMap<[u8; 32], Entry>>>,
    ttl: Duration,
}

/// What a lookup found: the caller, and whether its `last_used_at` is due an update.
pub struct Hit {
    pub caller: Caller,
    pub touch: Option<uuid::Uuid>,
}

impl KeyCache {
    /// `ttl` zero keeps nothing: every request looks its key up.
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
        }
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Hit> {
        let now = Instant::now();
        {
            let entries = self.entries.read().ok()?;
            let entry = entries.get(hash)?;
            if now.duration_since(entry.checked_at) >= self.ttl {
                return None;
            }
            if now.duration_since(entry.touched_at) < TOUCH_EVERY {
                return Some(Hit {
                    caller: entry.caller.clone(),
                    touch: None,
                });
            }
        }
        let mut entries = self.entries.write().ok()?;
        let entry = entries.get_mut(hash)?;
        entry.touched_at = now;
        Some(Hit {
            caller: entry.caller.clone(),
            touch: Some(entry.key_id),
        })
    }

    /// A key just found valid (and touched) in the database.
    pub fn insert(&self, hash: [u8; 32], key_id: uuid::Uuid, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(
                hash,
                Entry {
                    caller,
                    key_id,
                    checked_at: now,
                    touched_at: now,
                },
            );
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn caller() -> Caller {
        Caller {
            key_name: "ops".into(),
            role: Role::Viewer,
        }
    }

    #[test]
    fn a_key_is_believed_for_the_ttl_and_cleared_on_revocation() {
        let cache = KeyCache::new(Duration::from_millis(200));
        let id = uuid::Uuid::now_v7();
        cache.insert([1; 32], id, caller());
        let hit = cache.get(&[1; 32]).expect("cached");
        assert_eq!(hit.caller.key_name, "ops");
        assert!(hit.touch.is_none(), "just touched");
        assert!(cache.get(&[2; 32]).is_none());
        cache.clear();
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([1; 32], id, caller());
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            cache.get(&[1; 32]).is_none(),
            "past the TTL it is looked up again"
        );
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.insert([1; 32], uuid::Uuid::now_v7(), caller());
        assert!(cache.get(&[1; 32]).is_none());
    }
}
