//! What intake checks a request against, cached by API key hash: the key's account and the
//! account's categories by name. A copy may be out of date (the key revoked, the settings, plan
//! or categories changed, by this process or another), so intake answers only a success from it,
//! and that success is committed only if the key is still live and the account still at the
//! copy's version (`DecidedFrom`); anything else is checked afresh from the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::lock;
use crate::model::{Account, Category, KeyId, Millis};
use crate::store::Authenticated;

/// Keys remembered at most; past that the cache starts over rather than grow without bound.
const MAX_KEYS: usize = 10_000;

/// An account as seen through one of its API keys.
pub struct IntakeContext {
    pub account: Account,
    pub key_id: KeyId,
    pub version: i64,
    /// When the key's `lastUsedAt` was last written (as far as this process knows).
    key_touched_at: AtomicI64,
    /// Categories found so far, by lowercase name.
    categories: Mutex<HashMap<String, Category>>,
}

impl IntakeContext {
    pub fn new(found: Authenticated) -> Self {
        Self {
            account: found.account,
            key_id: found.key_id,
            version: found.account_version,
            key_touched_at: AtomicI64::new(found.key_last_used_at.unwrap_or(Millis::MIN)),
            categories: Mutex::new(HashMap::new()),
        }
    }

    pub fn category(&self, name: &str) -> Option<Category> {
        lock(&self.categories)
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    pub fn remember_category(&self, category: &Category) {
        lock(&self.categories).insert(category.name.to_ascii_lowercase(), category.clone());
    }

    /// Whether the key's `lastUsedAt` is older than `interval_ms` at `now`; when it is, this
    /// caller (and no concurrent one) is the one to write it.
    pub fn key_touch_due(&self, now: Millis, interval_ms: i64) -> bool {
        let touched = self.key_touched_at.load(Ordering::Relaxed);
        now.saturating_sub(touched) >= interval_ms
            && self
                .key_touched_at
                .compare_exchange(touched, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[derive(Default)]
pub struct IntakeCache {
    by_key_hash: RwLock<HashMap<String, Arc<IntakeContext>>>,
}

impl IntakeCache {
    pub fn get(&self, key_hash: &str) -> Option<Arc<IntakeContext>> {
        self.by_key_hash
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key_hash)
            .cloned()
    }

    pub fn remember(&self, key_hash: &str, context: Arc<IntakeContext>) {
        let mut entries = self
            .by_key_hash
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_KEYS && !entries.contains_key(key_hash) {
            entries.clear();
        }
        entries.insert(key_hash.to_string(), context);
    }

    pub fn forget(&self, key_hash: &str) {
        self.by_key_hash
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(last_used: Option<Millis>) -> IntakeContext {
        IntakeContext::new(Authenticated {
            account: Account {
                id: "acc".into(),
                name: "A".into(),
                email: None,
                plan: "free".into(),
                fields: Default::default(),
                channels: Default::default(),
                channels_explicit: true,
                created_at: 0,
                disabled_at: None,
            },
            key_id: "key".into(),
            key_last_used_at: last_used,
            account_version: 3,
        })
    }

    #[test]
    fn one_caller_touches_a_stale_key() {
        let used = context(Some(1_000));
        assert!(!used.key_touch_due(30_000, 60_000));
        assert!(used.key_touch_due(61_000, 60_000));
        assert!(!used.key_touch_due(61_000, 60_000));
        assert!(context(None).key_touch_due(0, 60_000));
    }

    #[test]
    fn categories_are_found_by_any_case() {
        let context = context(None);
        context.remember_category(&Category {
            id: 7,
            name: "sale".into(),
            color: 0xFFB02E,
            emoji: None,
            channels: None,
            created_at: 0,
            events_count: 0,
            last_ping: None,
        });
        assert_eq!(context.category("SALE").map(|c| c.id), Some(7));
        assert!(context.category("refund").is_none());
    }
}
