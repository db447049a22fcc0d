//! Each account's intake rate: a token bucket per account, filled at its plan's
//! `events_per_second` up to `burst`. Kept in memory by each relay process; with several
//! processes each one allows its share (the rate and burst divided by the live processes), so
//! requests spread over them add up to the plan's rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;
use crate::model::AccountId;

/// A plan's intake rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `plans.<name>.events_per_second` and `.burst` (one second's worth when absent); `None`
    /// when the plan sets no rate.
    pub fn of_plan(per_second: Option<f64>, burst: Option<u64>) -> Option<Self> {
        let per_second = per_second?;
        Some(Self {
            per_second,
            burst: burst.map_or(per_second.ceil().max(1.0), |burst| burst as f64),
        })
    }

    /// This process's share when `processes` relay processes serve the account.
    fn share(self, processes: u32) -> Self {
        let processes = f64::from(processes.max(1));
        Self {
            per_second: self.per_second / processes,
            burst: (self.burst / processes).max(1.0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token; otherwise how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }

    /// Whether the bucket is full again by `now`, so forgetting it changes nothing.
    fn full_by(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= rate.burst
    }
}

/// Buckets kept before full ones are forgotten.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct IntakeRate {
    buckets: Mutex<HashMap<String, (Bucket, Rate)>>,
}

impl IntakeRate {
    /// Takes one of the account's tokens, or says in how many whole seconds (at least one) the
    /// next is there.
    pub fn take(&self, account_id: &AccountId, rate: Rate, processes: u32) -> Result<(), u64> {
        self.take_at(account_id, rate, processes, Instant::now())
    }

    fn take_at(
        &self,
        account_id: &AccountId,
        rate: Rate,
        processes: u32,
        now: Instant,
    ) -> Result<(), u64> {
        let rate = rate.share(processes);
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= SWEEP_ABOVE && !buckets.contains_key(account_id.as_str()) {
            buckets.retain(|_, (bucket, rate)| !bucket.full_by(*rate, now));
        }
        let (bucket, kept_rate) = buckets.entry(account_id.to_string()).or_insert((
            Bucket {
                tokens: rate.burst,
                at: now,
            },
            rate,
        ));
        // A plan change or another process count applies from the next request on.
        *kept_rate = rate;
        bucket
            .take(rate, now)
            .map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE: Rate = Rate {
        per_second: 10.0,
        burst: 200.0,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let limits = IntakeRate::default();
        let start = Instant::now();
        for _ in 0..200 {
            assert_eq!(limits.take_at(&"acc".into(), FREE, 1, start), Ok(()));
        }
        assert_eq!(limits.take_at(&"acc".into(), FREE, 1, start), Err(1));
        // A tenth of a second gives one more.
        let later = start + Duration::from_millis(100);
        assert_eq!(limits.take_at(&"acc".into(), FREE, 1, later), Ok(()));
        assert_eq!(limits.take_at(&"acc".into(), FREE, 1, later), Err(1));
        // Another account has its own bucket.
        assert_eq!(limits.take_at(&"other".into(), FREE, 1, later), Ok(()));
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_seconds() {
        let slow = Rate {
            per_second: 0.25,
            burst: 1.0,
        };
        let limits = IntakeRate::default();
        let start = Instant::now();
        assert_eq!(limits.take_at(&"acc".into(), slow, 1, start), Ok(()));
        assert_eq!(limits.take_at(&"acc".into(), slow, 1, start), Err(4));
        let later = start + Duration::from_millis(2500);
        assert_eq!(limits.take_at(&"acc".into(), slow, 1, later), Err(2));
    }

    #[test]
    fn processes_share_the_rate() {
        let limits = IntakeRate::default();
        let start = Instant::now();
        for _ in 0..100 {
            assert_eq!(limits.take_at(&"acc".into(), FREE, 2, start), Ok(()));
        }
        assert_eq!(limits.take_at(&"acc".into(), FREE, 2, start), Err(1));
    }

    #[test]
    fn absent_burst_is_one_seconds_worth() {
        assert_eq!(
            Rate::of_plan(Some(2.5), None),
            Some(Rate {
                per_second: 2.5,
                burst: 3.0
            })
        );
        assert_eq!(Rate::of_plan(None, Some(5)), None);
    }

    #[test]
    fn full_buckets_are_forgotten_when_many() {
        let limits = IntakeRate::default();
        let start = Instant::now();
        for i in 0..SWEEP_ABOVE {
            let _ = limits.take_at(&format!("acc{i}").as_str().into(), FREE, 1, start);
        }
        // Each bucket used one token; a tenth of a second later all are full again.
        let later = start + Duration::from_millis(100);
        let _ = limits.take_at(&"new".into(), FREE, 1, later);
        assert_eq!(lock(&limits.buckets).len(), 1);
    }
}
