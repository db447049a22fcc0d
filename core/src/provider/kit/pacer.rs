//! Pacing sends under a rate that the relay processes on one database share: each process uses
//! its part, `rate / processes`, with the number of live processes read at each booking
//! ([`ProviderHost::process_count`](crate::provider::ProviderHost::process_count)), so the
//! spacing follows processes joining or leaving. Burst is 1 on purpose: a larger burst would let
//! a backlog put more than the process's part into one window.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// The longest a delivery sleeps for its slot; a later slot is answered with `Throttled`.
pub const SHORT_WAIT: Duration = Duration::from_millis(250);

/// Destinations whose sends are remembered at most, before the ones whose limits are past are
/// forgotten.
pub const DESTINATIONS_KEPT: usize = 1024;
/// The longest pause believed from an answer (a bigger one could overflow `Instant`).
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 60 * 60);

/// `now + pause`, with the pause capped at [`MAX_PAUSE`].
pub fn after(now: Instant, pause: Duration) -> Instant {
    now + pause.min(MAX_PAUSE)
}

/// Spacing between sends for `rate` per second shared by `processes` relay processes:
/// `processes × 1s / rate` (each process uses `rate / processes`), 1% longer and rounded up, so
/// timer and network jitter cannot push `rate + 1` sends into one window at the provider.
pub fn spacing(rate: u32, processes: u32) -> Duration {
    let nanos = (1_010_000_000u64 * u64::from(processes.max(1))).div_ceil(u64::from(rate.max(1)));
    Duration::from_nanos(nanos)
}

/// Send instants reserved under one budget, pairwise at least `interval` apart. A send may take
/// a free gap between reservations (one that waits for its route or chat does not hold up the
/// ones behind it). The interval may change between reservations (processes join or leave);
/// each new reservation keeps the interval current at its booking.
pub struct Pacer {
    interval: Duration,
    /// Ascending. Instants more than `interval` in the past are dropped: they constrain nothing.
    slots: VecDeque<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            slots: VecDeque::new(),
        }
    }

    /// Keeps later reservations `interval` apart (the process count changed).
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// The earliest instant at or after `not_before` at least `interval` from every reservation.
    pub fn earliest(&self, not_before: Instant) -> Instant {
        let mut candidate = not_before;
        for &slot in &self.slots {
            if slot + self.interval <= candidate {
                continue;
            }
            if candidate + self.interval <= slot {
                break;
            }
            candidate = slot + self.interval;
        }
        candidate
    }

    /// Reserves `slot` (found with [`Pacer::earliest`] at or after `now`).
    pub fn take(&mut self, slot: Instant, now: Instant) {
        while self
            .slots
            .front()
            .is_some_and(|s| *s + self.interval <= now)
        {
            self.slots.pop_front();
        }
        let at = self.slots.partition_point(|s| *s < slot);
        self.slots.insert(at, slot);
    }
}

/// What limits the next send to one destination.
#[derive(Clone, Copy, Default)]
struct Destination {
    /// The send instant of its latest message.
    last: Option<Instant>,
    /// A 429 for this destination holds its sends back until then.
    paused_until: Option<Instant>,
}

impl Destination {
    fn open_at(&self, interval: Duration) -> Option<Instant> {
        let after_last = self.last.map(|last| last + interval);
        after_last.max(self.paused_until)
    }
}

/// Per-destination budgets (a chat, a webhook URL): each destination's sends at least the
/// interval apart, and held back while a 429 for it lasts. Burst is 1, as for [`Pacer`].
pub struct Destinations<K> {
    entries: HashMap<K, Destination>,
}

impl<K: Hash + Eq> Default for Destinations<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Destinations<K> {
    /// The first instant `key` may get a send, with its sends `interval` apart; `None`: now.
    pub fn open_at(&self, key: &K, interval: Duration) -> Option<Instant> {
        self.entries.get(key).and_then(|d| d.open_at(interval))
    }

    /// Records a send to `key` at `slot`. Past [`DESTINATIONS_KEPT`] destinations, those whose
    /// limits are all past at `now` are forgotten first.
    pub fn book(&mut self, key: K, slot: Instant, now: Instant, interval: Duration) {
        if self.entries.len() >= DESTINATIONS_KEPT {
            self.entries
                .retain(|_, d| d.open_at(interval).is_some_and(|at| at > now));
        }
        self.entries.entry(key).or_default().last = Some(slot);
    }

    /// Holds sends to `key` back until `until` (or a later pause already set).
    pub fn pause(&mut self, key: K, until: Instant) {
        let paused = &mut self.entries.entry(key).or_default().paused_until;
        *paused = (*paused).max(Some(until));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn spacing_rounds_up_with_a_guard() {
        assert_eq!(spacing(50, 1), Duration::from_micros(20_200));
        assert_eq!(spacing(30, 1), Duration::from_nanos(33_666_667));
        assert_eq!(spacing(1, 1), ms(1010));
        assert_eq!(spacing(3, 1), Duration::from_nanos(336_666_667));
        assert_eq!(spacing(0, 1), ms(1010));
        // A budget shared by processes: each uses its part.
        assert_eq!(spacing(30, 3), ms(101));
        assert_eq!(spacing(1, 3), ms(3030));
        assert_eq!(spacing(50, 2), Duration::from_micros(40_400));
        assert_eq!(spacing(50, 0), spacing(50, 1));
    }

    #[test]
    fn the_pacer_fills_gaps_but_keeps_its_spacing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(ms(100));
        assert_eq!(pacer.earliest(t0), t0);
        pacer.take(t0 + ms(250), t0);
        // Room before the later reservation, and after it; not too close to it.
        assert_eq!(pacer.earliest(t0), t0);
        pacer.take(t0, t0);
        assert_eq!(pacer.earliest(t0), t0 + ms(100));
        pacer.take(t0 + ms(100), t0);
        assert_eq!(pacer.earliest(t0), t0 + ms(350));
        assert_eq!(pacer.earliest(t0 + ms(400)), t0 + ms(400));
        // Old reservations are dropped once they no longer matter.
        pacer.take(t0 + ms(1000), t0 + ms(1000));
        assert_eq!(pacer.slots.len(), 1);
    }

    #[test]
    fn destinations_keep_their_own_spacing_and_pauses() {
        let t0 = Instant::now();
        let second = ms(1000);
        let mut destinations = Destinations::default();
        assert_eq!(destinations.open_at(&"a", second), None);
        destinations.book("a", t0, t0, second);
        assert_eq!(destinations.open_at(&"a", second), Some(t0 + second));
        assert_eq!(destinations.open_at(&"b", second), None);
        destinations.pause("b", t0 + ms(5000));
        destinations.pause("b", t0 + ms(2000));
        assert_eq!(destinations.open_at(&"b", second), Some(t0 + ms(5000)));
        // Past the number kept, destinations whose limits are over are forgotten.
        let later = t0 + ms(10_000);
        for i in 0..DESTINATIONS_KEPT {
            destinations.book(format!("{i}").leak() as &str, later, later, second);
        }
        destinations.book("last", later, later + ms(1500), second);
        assert_eq!(destinations.len(), 1);
    }
}
