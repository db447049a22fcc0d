//! Logging a failure that repeats (a loop that keeps failing, a flood of bad clients) at most
//! once per period, with how many times it happened in between.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttled {
    every: Duration,
    state: Mutex<State>,
}

struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when the failure should be logged now, `n` being how many times it was not
    /// since the last line; `None` to stay quiet.
    pub fn ready(&self) -> Option<u64> {
        self.ready_at(Instant::now())
    }

    fn ready_at(&self, now: Instant) -> Option<u64> {
        let mut state = crate::lock(&self.state);
        match state.last {
            Some(last) if now.duration_since(last) < self.every => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }

    /// Forgets the last line, so the next failure is logged at once (after a recovery).
    pub fn reset(&self) {
        let mut state = crate::lock(&self.state);
        state.last = None;
        state.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_with_the_count_in_between() {
        let log = Throttled::every(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(log.ready_at(start), Some(0));
        assert_eq!(log.ready_at(start + Duration::from_secs(1)), None);
        assert_eq!(log.ready_at(start + Duration::from_secs(4)), None);
        assert_eq!(log.ready_at(start + Duration::from_secs(5)), Some(2));
        assert_eq!(log.ready_at(start + Duration::from_secs(6)), None);
        log.reset();
        assert_eq!(log.ready_at(start + Duration::from_secs(7)), Some(0));
    }
}
