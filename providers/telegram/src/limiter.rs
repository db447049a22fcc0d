//! The relay's own send budgets for one bot, applied before Telegram has to say no: about 30
//! messages/s per bot (`messages_per_second`) and 1 message/s per chat
//! (`messages_per_chat_per_second`).
//!
//! Both budgets are for the bot token across every relay process on the database (any process
//! may serve any chat): each process uses its part, `rate / processes`, with the number of live
//! processes ([`ProviderHost::process_count`]) read at each booking, so the spacing follows
//! processes joining or leaving within a heartbeat.
//!
//! Each message reserves one send instant that is free in both budgets. The bot's budget is a
//! [`Pacer`]: reserved instants stay pairwise at least `processes/rate` (plus a 1% guard)
//! apart, so no 1-second window ever holds more than the process's part; burst is 1 on purpose,
//! as a larger burst would let a backlog put more than that into one window. A chat's budget is
//! the instant of its last message plus the chat spacing. A 429 pauses its chat (or everything,
//! when it has no chat). A delivery reserves only when it will send within [`SHORT_WAIT`];
//! otherwise it gets the time to wait and nothing is taken.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingpilot_core::provider::ProviderHost;
pub(crate) use pingpilot_core::provider::kit::pacer::SHORT_WAIT;
use pingpilot_core::provider::kit::pacer::{Destinations, Pacer, after, spacing};
use tokio::time::Instant;

struct State {
    /// `messages_per_second`: the bot's budget across all relay processes.
    per_second: u32,
    /// `messages_per_chat_per_second`: each chat's budget across all relay processes.
    per_chat_per_second: u32,
    global: Pacer,
    /// A 429 without a chat holds every message back until then.
    global_pause: Option<Instant>,
    chats: Destinations<i64>,
    /// The latest `now` seen, so callers racing for the lock never move time backwards.
    clock: Instant,
}

pub(crate) struct Limiter {
    state: Mutex<State>,
    /// Tells how many relay processes share the budgets now; `None`: this process alone.
    host: Option<Arc<dyn ProviderHost>>,
}

impl Limiter {
    /// Budgets used by this process alone (see [`Limiter::shared_with`]).
    pub(crate) fn new(per_second: u32, per_chat_per_second: u32) -> Self {
        Self {
            state: Mutex::new(State {
                per_second,
                per_chat_per_second,
                global: Pacer::new(spacing(per_second, 1)),
                global_pause: None,
                chats: Destinations::default(),
                clock: Instant::now(),
            }),
            host: None,
        }
    }

    /// Shares both budgets with the other relay processes on the database: each booking uses
    /// `rate / host.process_count()` of the bot's and of the chat's budget.
    pub(crate) fn shared_with(mut self, host: Arc<dyn ProviderHost>) -> Self {
        self.host = Some(host);
        self
    }

    /// How many processes share the budgets at this moment (at least 1).
    fn processes(&self) -> u32 {
        self.host
            .as_ref()
            .map_or(1, |host| host.process_count().max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        pingpilot_core::lock(&self.state)
    }

    /// Reserves the send instant of one message to `chat`: the earliest moment free for the
    /// chat and for the bot, within this process's part of each budget. When that is more than
    /// `max_wait` away nothing is reserved and the wait is returned.
    pub(crate) fn reserve(
        &self,
        chat: i64,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Instant, Duration> {
        let processes = self.processes();
        let mut state = self.lock();
        let state = &mut *state;
        state.clock = state.clock.max(now);
        let now = state.clock;
        let interval = spacing(state.per_second, processes);
        state.global.set_interval(interval);
        let chat_interval = spacing(state.per_chat_per_second, processes);
        let mut not_before = now;
        if let Some(until) = state.global_pause {
            not_before = not_before.max(until);
        }
        if let Some(open_at) = state.chats.open_at(&chat, chat_interval) {
            not_before = not_before.max(open_at);
        }
        let slot = state.global.earliest(not_before);
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        state.global.take(slot, now);
        state.chats.book(chat, slot, now, chat_interval);
        Ok(slot)
    }

    /// Reserves a slot for `chat`, sleeping for it when it is at most [`SHORT_WAIT`] away.
    pub(crate) async fn try_acquire(&self, chat: i64) -> Result<(), Duration> {
        let slot = self.reserve(chat, Instant::now(), SHORT_WAIT)?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// Waits as long as it takes for a slot for `chat` (for the bot's replies, which are not
    /// deliveries and cannot be put back).
    pub(crate) async fn acquire(&self, chat: i64) {
        let slot = self
            .reserve(chat, Instant::now(), Duration::MAX)
            .unwrap_or_else(|_| unreachable!("no wait is too long"));
        tokio::time::sleep_until(slot).await;
    }

    /// Holds messages to `chat` back for `pause` (Telegram answered 429 for it).
    pub(crate) fn pause_chat(&self, chat: i64, pause: Duration, now: Instant) {
        let until = after(now, pause);
        self.lock().chats.pause(chat, until);
    }

    /// Holds every message back for `pause` (a 429 that names no chat).
    pub(crate) fn pause_all(&self, pause: Duration, now: Instant) {
        let until = after(now, pause);
        let mut state = self.lock();
        state.global_pause = Some(state.global_pause.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use pingpilot_core::provider::kit::testing::TestHost;

    use super::*;

    const NONE: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// At most `rate` instants in any window of one second (half-open), checked from each one.
    fn assert_within_rate(sent: &[Instant], rate: usize) {
        let mut sent = sent.to_vec();
        sent.sort();
        for (i, start) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|t| **t < *start + Duration::from_secs(1))
                .count();
            assert!(in_window <= rate, "{in_window} messages in one second");
        }
    }

    #[test]
    fn a_busy_chat_is_throttled_without_taking_the_bots_slot() {
        let limiter = Limiter::new(10, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(1, t0, SHORT_WAIT), Ok(t0));
        assert_eq!(limiter.reserve(1, t0, SHORT_WAIT), Err(ms(1010)));
        // The throttled message took no bot slot: chat 2 gets the next one.
        assert_eq!(limiter.reserve(2, t0, SHORT_WAIT), Ok(t0 + ms(101)));
        assert_eq!(limiter.reserve(1, t0 + ms(500), SHORT_WAIT), Err(ms(510)));
        // Close enough: reserved, to be slept for.
        assert_eq!(
            limiter.reserve(1, t0 + ms(800), SHORT_WAIT),
            Ok(t0 + ms(1010))
        );
    }

    #[test]
    fn the_bots_budget_throttles_beyond_the_short_wait() {
        let limiter = Limiter::new(10, 1);
        let t0 = Instant::now();
        for (chat, at) in [(1, 0), (2, 101), (3, 202)] {
            assert_eq!(limiter.reserve(chat, t0, SHORT_WAIT), Ok(t0 + ms(at)));
        }
        assert_eq!(limiter.reserve(4, t0, SHORT_WAIT), Err(ms(303)));
        assert_eq!(limiter.reserve(4, t0, SHORT_WAIT), Err(ms(303)));
    }

    #[test]
    fn processes_share_the_bots_and_each_chats_budget() {
        // 30 messages/s for the bot, 1/s per chat, 3 processes: this one sends 10/s, 101 ms
        // apart, and one message to a chat every 3.03 s.
        let host = TestHost::with_processes(3);
        let limiter = Limiter::new(30, 1).shared_with(host.clone());
        let t0 = Instant::now();
        for (chat, at) in [(1, 0), (2, 101), (3, 202)] {
            assert_eq!(limiter.reserve(chat, t0, SHORT_WAIT), Ok(t0 + ms(at)));
        }
        assert_eq!(limiter.reserve(4, t0, SHORT_WAIT), Err(ms(303)));
        assert_eq!(limiter.reserve(1, t0 + ms(1010), SHORT_WAIT), Err(ms(2020)));
        // The other processes left: the next booking uses the whole budgets.
        host.set_processes(1);
        assert_eq!(
            limiter.reserve(1, t0 + ms(1010), SHORT_WAIT),
            Ok(t0 + ms(1010))
        );
        assert_eq!(
            limiter.reserve(4, t0 + ms(1010), SHORT_WAIT),
            Ok(t0 + ms(1010) + spacing(30, 1))
        );
        // Back to 3: 101 ms from the bot's last message, 3.03 s from the chat's.
        host.set_processes(3);
        assert_eq!(
            limiter.reserve(5, t0 + ms(1050), SHORT_WAIT),
            Ok(t0 + ms(1010) + spacing(30, 1) + ms(101))
        );
        assert_eq!(limiter.reserve(1, t0 + ms(2000), SHORT_WAIT), Err(ms(2040)));
        // A chat paused by a 429 stays paused whatever the count.
        limiter.pause_chat(6, ms(5000), t0 + ms(2000));
        host.set_processes(1);
        assert_eq!(limiter.reserve(6, t0 + ms(2000), SHORT_WAIT), Err(ms(5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn replies_keep_the_shared_spacing_too() {
        let limiter = Limiter::new(30, 1).shared_with(TestHost::with_processes(3));
        let start = Instant::now();
        limiter.acquire(1).await;
        limiter.acquire(2).await;
        assert_eq!(start.elapsed(), ms(101));
        limiter.acquire(1).await;
        assert_eq!(start.elapsed(), ms(3030));
    }

    #[test]
    fn a_backlog_uses_the_budget_without_exceeding_it() {
        // 40 chats with 5 messages each, all due at once, each retried when told (as the core
        // does): the bot's budget and every chat's are kept, and the bot's is used up.
        let rate = 10;
        let limiter = Limiter::new(rate, 1);
        let t0 = Instant::now();
        let mut due: Vec<(Instant, i64)> = (0..200).map(|i| (t0, i % 40)).collect();
        let mut sent: Vec<(Instant, i64)> = Vec::new();
        while !due.is_empty() {
            due.sort();
            let (now, chat) = due.remove(0);
            match limiter.reserve(chat, now, SHORT_WAIT) {
                Ok(slot) => sent.push((slot, chat)),
                Err(wait) => due.push((now + wait, chat)),
            }
        }
        let all: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
        assert_within_rate(&all, rate as usize);
        for chat in 0..40 {
            let to_chat: Vec<Instant> = sent
                .iter()
                .filter(|(_, c)| *c == chat)
                .map(|(t, _)| *t)
                .collect();
            assert_within_rate(&to_chat, 1);
        }
        // Back to back while many chats wait; only the last chat's tail goes at 1/s.
        let mut all = all;
        all.sort();
        assert_eq!(all[180] - t0, spacing(rate, 1) * 180);
    }

    #[test]
    fn a_429_pauses_its_chat_or_everything() {
        let limiter = Limiter::new(10, 1);
        let t0 = Instant::now();
        limiter.pause_chat(1, ms(5000), t0);
        assert_eq!(limiter.reserve(1, t0, SHORT_WAIT), Err(ms(5000)));
        assert_eq!(limiter.reserve(2, t0, NONE), Ok(t0));
        limiter.pause_all(ms(3000), t0 + ms(1000));
        assert_eq!(limiter.reserve(3, t0 + ms(1000), SHORT_WAIT), Err(ms(3000)));
        assert_eq!(limiter.reserve(3, t0 + ms(4000), NONE), Ok(t0 + ms(4000)));
        assert_eq!(limiter.reserve(1, t0 + ms(4000), SHORT_WAIT), Err(ms(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn replies_wait_and_deliveries_sleep_only_briefly() {
        let limiter = Limiter::new(10, 1);
        let start = Instant::now();
        limiter.acquire(1).await;
        limiter.acquire(2).await;
        assert_eq!(start.elapsed(), ms(101));
        limiter.acquire(1).await;
        assert_eq!(start.elapsed(), ms(1010));
        assert_eq!(limiter.try_acquire(1).await, Err(ms(1010)));
        limiter.try_acquire(2).await.unwrap();
        assert_eq!(start.elapsed(), ms(1111));
    }
}
