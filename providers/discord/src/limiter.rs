//! A process-wide request budget for one bot token.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces requests `1/rate` apart; a global 429 pushes the next slot out.
pub(crate) struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot.
    pub(crate) async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Holds every request back for `pause` (Discord's global rate limit).
    pub(crate) fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if *next < until {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_and_honours_pauses() {
        let limiter = Limiter::new(10);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        limiter.pause(Duration::from_secs(2));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(2200));
    }
}
