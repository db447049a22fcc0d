//! Telegram's send budgets: about 30 messages/s per bot and 1 message/s per chat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keeps at most this many chats' slots before forgetting the ones already past.
const CHATS_KEPT: usize = 1024;

pub(crate) struct Limiter {
    global_interval: Duration,
    chat_interval: Duration,
    global_next: Mutex<Instant>,
    chat_next: Mutex<HashMap<i64, Instant>>,
}

impl Limiter {
    pub(crate) fn new(per_second: u32, per_chat_per_second: u32) -> Self {
        Self {
            global_interval: Duration::from_secs(1) / per_second.max(1),
            chat_interval: Duration::from_secs(1) / per_chat_per_second.max(1),
            global_next: Mutex::new(Instant::now()),
            chat_next: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot for `chat`, then for a global one (in that order, so a message held back
    /// by its chat does not hold a global slot meanwhile).
    pub(crate) async fn acquire(&self, chat: i64) {
        let chat_slot = {
            let mut next = self.chat_next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if next.len() >= CHATS_KEPT {
                next.retain(|_, slot| *slot > now);
            }
            let entry = next.entry(chat).or_insert(now);
            let slot = (*entry).max(now);
            *entry = slot + self.chat_interval;
            slot
        };
        tokio::time::sleep_until(chat_slot).await;
        let global_slot = {
            let mut next = self.global_next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.global_interval;
            slot
        };
        tokio::time::sleep_until(global_slot).await;
    }

    /// Holds messages to `chat` back for `pause` (Telegram answered 429 for it).
    pub(crate) fn pause_chat(&self, chat: i64, pause: Duration) {
        let until = Instant::now() + pause;
        let mut next = self.chat_next.lock().unwrap_or_else(|e| e.into_inner());
        let entry = next.entry(chat).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_per_chat_and_globally() {
        let limiter = Limiter::new(10, 1);
        let start = Instant::now();
        limiter.acquire(1).await;
        limiter.acquire(2).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        limiter.acquire(1).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        limiter.pause_chat(2, Duration::from_secs(5));
        limiter.acquire(2).await;
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }
}
