//! What the category page shows of a range's events besides their table (how many, when, the
//! sums of numeric fields), kept between requests: the page and its live refresh every few
//! seconds would otherwise read and parse every event of the range each time. Whether a kept
//! summary is current costs one count over the range (an index); events that came since are
//! folded in; any other change (events deleted, or committed out of id order) reads the range
//! again. Each relay process keeps its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use pingpilot_core::model::{AccountId, EventId, Millis};
use pingpilot_core::store::{EventSample, Store, StoreError};

/// Ranges kept at most; past that the cache starts over.
const MAX_KEPT: usize = 64;

/// A range's events, summed up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeStats {
    /// Every event's creation time, in id order (which is time order but for events committed
    /// in the same moment).
    pub times: Vec<Millis>,
    /// The sum of every field that holds a JSON number, by field name.
    pub sums: BTreeMap<String, f64>,
    /// The largest event id counted.
    newest: Option<EventId>,
}

impl RangeStats {
    pub fn count(&self) -> u64 {
        self.times.len() as u64
    }

    fn add(&mut self, samples: &[EventSample]) {
        for sample in samples {
            self.times.push(sample.created_at);
            for (name, value) in &sample.fields {
                if let Some(number) = value.as_f64() {
                    *self.sums.entry(name.clone()).or_insert(0.0) += number;
                }
            }
            if self.newest.as_ref() < Some(&sample.id) {
                self.newest = Some(sample.id.clone());
            }
        }
    }

    pub fn of(samples: &[EventSample]) -> Self {
        let mut stats = Self::default();
        stats.add(samples);
        stats
    }
}

/// The account, the category (lower case) and the range's bounds.
type Key = (AccountId, String, Millis, Millis);

#[derive(Default)]
pub struct StatsCache {
    kept: Mutex<HashMap<Key, Arc<RangeStats>>>,
}

impl StatsCache {
    /// The summary of the category's events created in `[from, to)`, current as of this call.
    pub async fn stats(
        &self,
        store: &Store,
        account_id: &AccountId,
        category: &str,
        (from, to): (Millis, Millis),
    ) -> Result<Arc<RangeStats>, StoreError> {
        let key = (account_id.clone(), category.to_lowercase(), from, to);
        let (count, newest) = store
            .category_window(account_id, category, from, to)
            .await?;
        let kept = pingpilot_core::lock(&self.kept).get(&key).cloned();
        if let Some(kept) = &kept
            && kept.count() == count
            && kept.newest == newest
        {
            return Ok(kept.clone());
        }
        // Events added since: fold them in, when that accounts for every event now there.
        let mut stats = match kept.filter(|kept| kept.count() < count) {
            Some(kept) => {
                let added = store
                    .category_samples(account_id, category, from, to, kept.newest.as_ref())
                    .await?;
                let mut stats = RangeStats::clone(&kept);
                stats.add(&added);
                Some(stats).filter(|stats| stats.count() == count && stats.newest == newest)
            }
            None => None,
        };
        if stats.is_none() {
            let samples = store
                .category_samples(account_id, category, from, to, None)
                .await?;
            stats = Some(RangeStats::of(&samples));
        }
        let stats = Arc::new(stats.unwrap_or_default());
        let mut kept = pingpilot_core::lock(&self.kept);
        if kept.len() >= MAX_KEPT && !kept.contains_key(&key) {
            kept.clear();
        }
        kept.insert(key, stats.clone());
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn sample(id: &str, at: Millis, fields: Value) -> EventSample {
        EventSample {
            id: EventId::parse(id).expect("an event id"),
            created_at: at,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn only_numbers_are_summed_and_new_events_fold_in() {
        let mut stats = RangeStats::of(&[
            sample(
                "evt_1",
                10,
                json!({"amount": 12.5, "plan": "pro", "seats": 2}),
            ),
            sample(
                "evt_2",
                20,
                json!({"amount": 7.5, "recurring": true, "seats": "3"}),
            ),
        ]);
        assert_eq!(stats.sums.get("amount"), Some(&20.0));
        assert_eq!(stats.sums.get("seats"), Some(&2.0));
        assert!(!stats.sums.contains_key("plan") && !stats.sums.contains_key("recurring"));
        stats.add(&[sample("evt_3", 30, json!({"amount": 1}))]);
        assert_eq!(stats.sums.get("amount"), Some(&21.0));
        assert_eq!(stats.times, [10, 20, 30]);
        assert_eq!(stats.newest.as_ref().map(EventId::as_str), Some("evt_3"));
    }
}
