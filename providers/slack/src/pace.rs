//! Slack takes about one message per second per incoming webhook: the relay keeps to it for
//! each URL, across its processes (each process uses its part: one message every `processes`
//! seconds), so messages are spaced rather than answered with 429.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingpilot_core::lock;
use pingpilot_core::provider::ProviderHost;
use pingpilot_core::provider::kit::pacer::{Destinations, SHORT_WAIT, after, spacing};
use tokio::time::Instant;

/// Messages per second per webhook URL, across all relay processes.
const PER_URL_PER_SECOND: u32 = 1;

pub(crate) struct PerUrl {
    urls: Mutex<Destinations<String>>,
    host: Arc<dyn ProviderHost>,
}

impl PerUrl {
    pub(crate) fn new(host: Arc<dyn ProviderHost>) -> Self {
        Self {
            urls: Mutex::new(Destinations::default()),
            host,
        }
    }

    /// Reserves the next send to `url` and sleeps until it when it is at most [`SHORT_WAIT`]
    /// away; otherwise nothing is reserved and the wait is returned.
    pub(crate) async fn try_acquire(&self, url: &str) -> Result<(), Duration> {
        let interval = spacing(PER_URL_PER_SECOND, self.host.process_count());
        let now = Instant::now();
        let slot = {
            let mut urls = lock(&self.urls);
            let slot = urls
                .open_at(&url.to_string(), interval)
                .map_or(now, |open| open.max(now));
            if slot - now > SHORT_WAIT {
                return Err(slot - now);
            }
            urls.book(url.to_string(), slot, now, interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// Holds messages to `url` back for `pause` (Slack answered 429).
    pub(crate) fn pause(&self, url: &str, pause: Duration, now: Instant) {
        lock(&self.urls).pause(url.to_string(), after(now, pause));
    }
}
