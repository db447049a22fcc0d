//! The relay's own rate limits for one bot token, applied before Discord has to say no.
//!
//! - A global budget of `requests_per_second` for the bot token, shared by every relay process
//!   on the database: each process uses its part, `rate / processes`, with the number of live
//!   processes ([`ProviderHost::process_count`]) read at each booking, so the spacing follows
//!   processes joining or leaving within a heartbeat. Every request takes a send instant from a
//!   [`Pacer`], which keeps reserved instants pairwise at least `processes/rate` (plus a 1%
//!   guard) apart, so no 1-second window ever holds more than the process's part. Burst is 1 on
//!   purpose: a larger burst would let a backlog put more than that into one window.
//! - Per-route buckets learnt from `X-RateLimit-*` headers: a bucket with no requests remaining
//!   is closed until its reset; routes reporting the same `X-RateLimit-Bucket` share one state
//!   (per major parameter, the channel id, as Discord scopes buckets). Discord reports these
//!   itself, so they are not divided among processes.
//! - A 429 closes its bucket, or every route when it is global, for `retry_after`.
//!
//! A request reserves only when it will be sent, within [`SHORT_WAIT`]; otherwise the caller
//! gets the time to wait and nothing is taken.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingpilot_core::provider::ProviderHost;
pub(crate) use pingpilot_core::provider::kit::pacer::SHORT_WAIT;
use pingpilot_core::provider::kit::pacer::{MAX_PAUSE, Pacer, after, spacing};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// The limit of a bucket known only from a 429: after its pause only the global budget applies.
const UNKNOWN_LIMIT: u32 = u32::MAX;

/// Bucket states kept before those already reset are forgotten (they would refill anyway).
const BUCKETS_KEPT: usize = 1024;

/// A route: method and path with its major parameter (channel, guild or webhook id) kept and
/// other ids replaced, e.g. `POST /channels/900/messages` or `POST /users/@me/channels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    key: String,
    major: String,
}

impl Route {
    pub(crate) fn new(method: &str, path: &str) -> Self {
        let mut key = String::from(method);
        key.push(' ');
        let mut major = String::new();
        let mut previous = "";
        for (i, segment) in path.trim_start_matches('/').split('/').enumerate() {
            key.push('/');
            let is_major = major.is_empty()
                && i == 1
                && matches!(previous, "channels" | "guilds" | "webhooks");
            if is_major {
                major = segment.to_string();
                key.push_str(segment);
            } else if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                key.push_str("{id}");
            } else {
                key.push_str(segment);
            }
            previous = segment;
        }
        Self { key, major }
    }
}

/// What a response said about rate limits (`X-RateLimit-*`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RateLimitHeaders {
    pub(crate) bucket: Option<String>,
    pub(crate) limit: Option<u32>,
    pub(crate) remaining: Option<u32>,
    pub(crate) reset_after: Option<Duration>,
    /// `X-RateLimit-Global: true` (or scope `global`).
    pub(crate) global: bool,
}

impl RateLimitHeaders {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        Self {
            bucket: text("x-ratelimit-bucket").map(str::to_string),
            limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
            remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset_after: text("x-ratelimit-reset-after")
                .and_then(|v| v.parse::<f64>().ok())
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
            global: text("x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || text("x-ratelimit-scope").is_some_and(|v| v.eq_ignore_ascii_case("global")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    /// A route whose `X-RateLimit-Bucket` is not known (yet).
    Route(String),
    /// Discord's bucket id with the major parameter: the actual limit.
    Shared { bucket: String, major: String },
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Requests per window ([`UNKNOWN_LIMIT`] when only a 429 told us about the bucket).
    limit: u32,
    remaining: u32,
    /// When the window ends and `remaining` goes back to `limit`.
    reset_at: Instant,
    /// Estimated window length (the longest `X-RateLimit-Reset-After` seen), used when the
    /// relay refills a bucket before Discord has told it the new window.
    window: Duration,
}

impl Bucket {
    /// When the next request may go.
    fn open_at(&self, now: Instant) -> Instant {
        if self.remaining > 0 {
            now
        } else {
            self.reset_at.max(now)
        }
    }

    /// Counts a request sent at `slot`.
    fn take(&mut self, slot: Instant) {
        if self.reset_at <= slot {
            self.remaining = self.limit;
            self.reset_at = slot + self.window;
        }
        self.remaining = self.remaining.saturating_sub(1);
    }
}

struct State {
    /// `requests_per_second`: the bot token's budget across all relay processes.
    per_second: u32,
    global: Pacer,
    /// A global 429 holds every request back until then.
    global_pause: Option<Instant>,
    /// Route key → `X-RateLimit-Bucket` it reported.
    routes: HashMap<String, String>,
    buckets: HashMap<BucketKey, Bucket>,
    /// The latest `now` seen, so callers racing for the lock never move time backwards.
    clock: Instant,
}

impl State {
    fn key(&self, route: &Route) -> BucketKey {
        match self.routes.get(&route.key) {
            Some(bucket) => BucketKey::Shared {
                bucket: bucket.clone(),
                major: route.major.clone(),
            },
            None => BucketKey::Route(route.key.clone()),
        }
    }

    fn tick(&mut self, now: Instant) -> Instant {
        self.clock = self.clock.max(now);
        self.clock
    }

    fn prune(&mut self, now: Instant) {
        if self.buckets.len() >= BUCKETS_KEPT {
            self.buckets.retain(|_, b| b.reset_at > now);
        }
        if self.routes.len() >= BUCKETS_KEPT * 4 {
            self.routes.clear();
        }
    }
}

pub(crate) struct Limiter {
    state: Mutex<State>,
    /// Tells how many relay processes share the budget now; `None`: this process alone.
    host: Option<Arc<dyn ProviderHost>>,
}

impl Limiter {
    /// Limits for `per_second` requests per second, used by this process alone (see
    /// [`Limiter::shared_with`]).
    pub(crate) fn new(per_second: u32) -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                per_second,
                global: Pacer::new(spacing(per_second, 1)),
                global_pause: None,
                routes: HashMap::new(),
                buckets: HashMap::new(),
                clock: now,
            }),
            host: None,
        }
    }

    /// Shares the global budget with the other relay processes on the database: each booking
    /// uses `per_second / host.process_count()`.
    pub(crate) fn shared_with(mut self, host: Arc<dyn ProviderHost>) -> Self {
        self.host = Some(host);
        self
    }

    /// How many processes share the budget at this moment (at least 1).
    fn processes(&self) -> u32 {
        self.host
            .as_ref()
            .map_or(1, |host| host.process_count().max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        pingpilot_core::lock(&self.state)
    }

    /// Reserves the send instant of one request on `route`: the earliest moment its bucket is
    /// open, no global pause holds, and this process's part of the global budget has a slot.
    /// When that is more than `max_wait` away nothing is reserved and the wait is returned.
    pub(crate) fn reserve(
        &self,
        route: &Route,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Instant, Duration> {
        let processes = self.processes();
        let mut state = self.lock();
        let now = state.tick(now);
        let interval = spacing(state.per_second, processes);
        state.global.set_interval(interval);
        let key = state.key(route);
        let mut not_before = now;
        if let Some(until) = state.global_pause {
            not_before = not_before.max(until);
        }
        if let Some(bucket) = state.buckets.get(&key) {
            not_before = not_before.max(bucket.open_at(now));
        }
        let slot = state.global.earliest(not_before);
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        state.global.take(slot, now);
        if let Some(bucket) = state.buckets.get_mut(&key) {
            bucket.take(slot);
        }
        Ok(slot)
    }

    /// Reserves a slot on `route`, sleeping for it when it is at most [`SHORT_WAIT`] away.
    pub(crate) async fn acquire(&self, route: &Route) -> Result<(), Duration> {
        let slot = self.reserve(route, Instant::now(), SHORT_WAIT)?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// Learns the bucket of `route` from a response's headers.
    pub(crate) fn learn(&self, route: &Route, headers: &RateLimitHeaders, now: Instant) {
        let mut state = self.lock();
        let state = &mut *state;
        let now = state.tick(now);
        if let Some(bucket) = &headers.bucket {
            let route_state = state.buckets.remove(&BucketKey::Route(route.key.clone()));
            state.routes.insert(route.key.clone(), bucket.clone());
            if let Some(known) = route_state {
                Self::merge(state, route, known, now);
            }
        }
        let (Some(remaining), Some(reset_after)) = (headers.remaining, headers.reset_after) else {
            return;
        };
        state.prune(now);
        let limit = headers
            .limit
            .or_else(|| state.buckets.get(&state.key(route)).map(|b| b.limit))
            .unwrap_or(remaining.max(1));
        let told = Bucket {
            limit,
            remaining,
            reset_at: after(now, reset_after),
            window: reset_after.min(MAX_PAUSE),
        };
        Self::merge(state, route, told, now);
    }

    /// Combines what is known of `route`'s bucket with `new`.
    fn merge(state: &mut State, route: &Route, new: Bucket, now: Instant) {
        let key = state.key(route);
        match state.buckets.get_mut(&key) {
            // The window we know is still running: answers may come back out of order and
            // requests may still be in flight, so keep the stricter view.
            Some(bucket) if bucket.reset_at > now => {
                if new.limit != UNKNOWN_LIMIT {
                    bucket.limit = new.limit;
                }
                bucket.remaining = bucket.remaining.min(new.remaining);
                bucket.reset_at = bucket.reset_at.max(new.reset_at);
                bucket.window = bucket.window.max(new.window);
            }
            Some(bucket) => {
                let window = bucket.window.max(new.window);
                *bucket = Bucket { window, ..new };
            }
            None => {
                state.buckets.insert(key, new);
            }
        }
    }

    /// A 429 on `route` (whose headers were [learnt](Limiter::learn) already): closes its
    /// bucket, or everything when `global`, for `retry_after` (else `X-RateLimit-Reset-After`).
    pub(crate) fn rate_limited(
        &self,
        route: &Route,
        headers: &RateLimitHeaders,
        retry_after: Option<Duration>,
        global: bool,
        now: Instant,
    ) {
        let mut state = self.lock();
        let now = state.tick(now);
        let Some(pause) = retry_after.or(headers.reset_after) else {
            return;
        };
        let until = after(now, pause);
        if global || headers.global {
            state.global_pause = Some(state.global_pause.map_or(until, |p| p.max(until)));
            return;
        }
        let key = state.key(route);
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            limit: UNKNOWN_LIMIT,
            remaining: 0,
            reset_at: until,
            window: Duration::ZERO,
        });
        bucket.remaining = 0;
        bucket.reset_at = bucket.reset_at.max(until);
    }
}

#[cfg(test)]
mod tests {
    use pingpilot_core::provider::kit::testing::TestHost;

    use super::*;

    const NONE: Duration = Duration::ZERO;
    const FOREVER: Duration = Duration::MAX;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn messages(channel: &str) -> Route {
        Route::new("POST", &format!("/channels/{channel}/messages"))
    }

    fn headers(bucket: &str, limit: u32, remaining: u32, reset_after: f64) -> RateLimitHeaders {
        RateLimitHeaders {
            bucket: Some(bucket.into()),
            limit: Some(limit),
            remaining: Some(remaining),
            reset_after: Some(Duration::from_secs_f64(reset_after)),
            global: false,
        }
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
            assert!(in_window <= rate, "{in_window} requests in one second");
        }
    }

    #[test]
    fn routes_keep_the_major_parameter_only() {
        assert_eq!(
            Route::new("POST", "/channels/900/messages"),
            Route {
                key: "POST /channels/900/messages".into(),
                major: "900".into()
            }
        );
        assert_eq!(
            Route::new("DELETE", "/channels/900/messages/123").key,
            "DELETE /channels/900/messages/{id}"
        );
        assert_eq!(
            Route::new("POST", "/users/@me/channels"),
            Route {
                key: "POST /users/@me/channels".into(),
                major: String::new()
            }
        );
        assert_eq!(
            Route::new("GET", "/users/123456789012345678").key,
            "GET /users/{id}"
        );
    }

    #[test]
    fn parses_rate_limit_headers() {
        let mut map = HeaderMap::new();
        map.insert("x-ratelimit-bucket", "abcd1234".parse().unwrap());
        map.insert("x-ratelimit-limit", "5".parse().unwrap());
        map.insert("x-ratelimit-remaining", "0".parse().unwrap());
        map.insert("x-ratelimit-reset-after", "1.25".parse().unwrap());
        assert_eq!(
            RateLimitHeaders::from_headers(&map),
            headers("abcd1234", 5, 0, 1.25)
        );
        map.insert("x-ratelimit-scope", "global".parse().unwrap());
        assert!(RateLimitHeaders::from_headers(&map).global);
        assert_eq!(
            RateLimitHeaders::from_headers(&HeaderMap::new()),
            RateLimitHeaders::default()
        );
    }

    #[test]
    fn the_global_budget_is_never_exceeded_and_throttles_beyond_the_short_wait() {
        let limiter = Limiter::new(10);
        let route = Route::new("POST", "/users/@me/channels");
        let t0 = Instant::now();
        // Slots 0, 101 ms, 202 ms fit in the short wait; the fourth (303 ms) does not.
        let mut sent = Vec::new();
        for _ in 0..3 {
            sent.push(limiter.reserve(&route, t0, SHORT_WAIT).unwrap());
        }
        assert_eq!(sent, [t0, t0 + ms(101), t0 + ms(202)]);
        assert_eq!(limiter.reserve(&route, t0, SHORT_WAIT), Err(ms(303)));
        // Throttling took nothing: the same slot is offered again.
        assert_eq!(limiter.reserve(&route, t0, SHORT_WAIT), Err(ms(303)));
        assert_eq!(
            limiter.reserve(&route, t0 + ms(60), SHORT_WAIT),
            Ok(t0 + ms(303))
        );
    }

    #[test]
    fn processes_share_the_global_budget() {
        // 30 requests/s for the token, 3 processes: this one sends 10/s, 101 ms apart.
        let host = TestHost::with_processes(3);
        let limiter = Limiter::new(30).shared_with(host.clone());
        let route = Route::new("POST", "/users/@me/channels");
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..3 {
            sent.push(limiter.reserve(&route, t0, SHORT_WAIT).unwrap());
        }
        assert_eq!(sent, [t0, t0 + ms(101), t0 + ms(202)]);
        assert_eq!(limiter.reserve(&route, t0, SHORT_WAIT), Err(ms(303)));
        // The other processes left: the next booking uses the whole budget, 33.7 ms apart.
        host.set_processes(1);
        assert_eq!(
            limiter.reserve(&route, t0 + ms(202), SHORT_WAIT),
            Ok(t0 + ms(202) + spacing(30, 1))
        );
        // Back to 3: the next slot keeps 101 ms from every reservation.
        host.set_processes(3);
        assert_eq!(
            limiter.reserve(&route, t0 + ms(250), SHORT_WAIT),
            Ok(t0 + ms(202) + spacing(30, 1) + ms(101))
        );
        // A count of 0 is taken as 1.
        host.set_processes(0);
        let limiter = Limiter::new(10).shared_with(host);
        let t1 = Instant::now();
        assert_eq!(limiter.reserve(&route, t1, NONE), Ok(t1));
        assert_eq!(limiter.reserve(&route, t1, SHORT_WAIT), Ok(t1 + ms(101)));
    }

    #[test]
    fn a_backlog_of_one_process_among_several_keeps_its_part() {
        // 4 processes on a 40/s token: this one stays within 10 per second.
        let limiter = Limiter::new(40).shared_with(TestHost::with_processes(4));
        let t0 = Instant::now();
        let mut due: Vec<(Instant, usize)> = (0..50).map(|i| (t0, i)).collect();
        let mut sent = Vec::new();
        while !due.is_empty() {
            due.sort();
            let (now, id) = due.remove(0);
            match limiter.reserve(&messages(&id.to_string()), now, SHORT_WAIT) {
                Ok(slot) => sent.push(slot),
                Err(wait) => due.push((now + wait, id)),
            }
        }
        assert_within_rate(&sent, 10);
        assert_eq!(*sent.iter().max().unwrap() - t0, ms(101) * 49);
    }

    #[test]
    fn a_backlog_uses_the_budget_without_exceeding_it() {
        // 200 deliveries due at once, each retried when told (as the core does).
        let rate = 20;
        let limiter = Limiter::new(rate);
        let t0 = Instant::now();
        let mut due: Vec<(Instant, usize)> = (0..200).map(|i| (t0, i)).collect();
        let mut sent = Vec::new();
        while !due.is_empty() {
            due.sort();
            let (now, id) = due.remove(0);
            let route = messages(&id.to_string());
            match limiter.reserve(&route, now, SHORT_WAIT) {
                Ok(slot) => sent.push(slot),
                Err(wait) => due.push((now + wait, id)),
            }
        }
        assert_within_rate(&sent, rate as usize);
        let span = *sent.iter().max().unwrap() - t0;
        // 199 intervals of 50.5 ms: 99% of the configured rate.
        assert_eq!(span, spacing(rate, 1) * 199);
    }

    #[test]
    fn a_bucket_with_nothing_remaining_is_closed_until_its_reset() {
        let limiter = Limiter::new(50);
        let t0 = Instant::now();
        let route = messages("900");
        limiter.reserve(&route, t0, NONE).unwrap();
        limiter.learn(&route, &headers("b1", 5, 0, 2.0), t0 + ms(10));
        assert_eq!(
            limiter.reserve(&route, t0 + ms(10), SHORT_WAIT),
            Err(Duration::from_secs(2))
        );
        // Another channel is its own bucket, even with the same bucket id.
        assert_eq!(
            limiter.reserve(&messages("901"), t0 + ms(30), NONE),
            Ok(t0 + ms(30))
        );
        assert_eq!(
            limiter.reserve(&route, t0 + ms(1900), SHORT_WAIT),
            Ok(t0 + ms(2010))
        );
    }

    #[test]
    fn a_bucket_refills_after_its_reset_and_counts_down() {
        let limiter = Limiter::new(50);
        let t0 = Instant::now();
        let route = messages("900");
        limiter.reserve(&route, t0, NONE).unwrap();
        limiter.learn(&route, &headers("b1", 2, 1, 1.0), t0);
        // One left in this window, then closed until the reset.
        limiter.reserve(&route, t0 + ms(100), NONE).unwrap();
        assert_eq!(
            limiter.reserve(&route, t0 + ms(200), FOREVER),
            Ok(t0 + ms(1000))
        );
        // The relay refilled (2) and took one at the reset; one more, then closed for a window.
        assert_eq!(
            limiter.reserve(&route, t0 + ms(1100), NONE),
            Ok(t0 + ms(1100))
        );
        assert_eq!(
            limiter.reserve(&route, t0 + ms(1200), SHORT_WAIT),
            Err(ms(800))
        );
    }

    #[test]
    fn routes_share_state_through_their_bucket_id() {
        let limiter = Limiter::new(50);
        let t0 = Instant::now();
        let post = messages("900");
        let edit = Route::new("PATCH", "/channels/900/messages/77");
        limiter.learn(&post, &headers("shared", 5, 3, 4.0), t0);
        limiter.learn(&edit, &headers("shared", 5, 0, 4.0), t0);
        assert_eq!(limiter.reserve(&post, t0, SHORT_WAIT), Err(ms(4000)));
        assert_eq!(limiter.reserve(&edit, t0, SHORT_WAIT), Err(ms(4000)));
        // A bucket first known by its route joins the shared state once its id is known.
        let limiter = Limiter::new(50);
        limiter.learn(
            &post,
            &RateLimitHeaders {
                bucket: None,
                ..headers("", 5, 0, 3.0)
            },
            t0,
        );
        limiter.learn(&edit, &headers("shared", 5, 4, 3.0), t0);
        limiter.learn(
            &post,
            &RateLimitHeaders {
                remaining: None,
                ..headers("shared", 5, 0, 3.0)
            },
            t0,
        );
        assert_eq!(limiter.reserve(&edit, t0, SHORT_WAIT), Err(ms(3000)));
    }

    #[test]
    fn out_of_order_answers_keep_the_stricter_view() {
        let limiter = Limiter::new(50);
        let t0 = Instant::now();
        let route = messages("900");
        limiter.learn(&route, &headers("b", 5, 1, 5.0), t0);
        // An older answer (more remaining) arriving late does not reopen the bucket.
        limiter.reserve(&route, t0, NONE).unwrap();
        limiter.learn(&route, &headers("b", 5, 3, 5.0), t0 + ms(10));
        assert!(limiter.reserve(&route, t0 + ms(20), SHORT_WAIT).is_err());
    }

    #[test]
    fn a_429_pauses_its_bucket_and_a_global_one_everything() {
        let limiter = Limiter::new(50);
        let t0 = Instant::now();
        let a = messages("900");
        let b = messages("901");
        let none = RateLimitHeaders::default();
        limiter.rate_limited(&a, &none, Some(ms(1500)), false, t0);
        assert_eq!(limiter.reserve(&a, t0, SHORT_WAIT), Err(ms(1500)));
        assert_eq!(limiter.reserve(&b, t0, SHORT_WAIT), Ok(t0));
        // After the pause the route is limited by the global budget only.
        assert_eq!(limiter.reserve(&a, t0 + ms(1500), NONE), Ok(t0 + ms(1500)));
        assert_eq!(limiter.reserve(&a, t0 + ms(1600), NONE), Ok(t0 + ms(1600)));

        limiter.rate_limited(&a, &none, Some(ms(3000)), true, t0 + ms(2000));
        assert_eq!(
            limiter.reserve(&b, t0 + ms(2000), SHORT_WAIT),
            Err(ms(3000))
        );
        assert_eq!(
            limiter.reserve(
                &Route::new("POST", "/users/@me/channels"),
                t0 + ms(4800),
                SHORT_WAIT
            ),
            Ok(t0 + ms(5000))
        );
        // The header alone marks a 429 global too; without a body value, Reset-After decides.
        let global = RateLimitHeaders {
            global: true,
            reset_after: Some(ms(700)),
            ..Default::default()
        };
        limiter.rate_limited(&b, &global, None, false, t0 + ms(6000));
        assert_eq!(limiter.reserve(&a, t0 + ms(6000), SHORT_WAIT), Err(ms(700)));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_for_a_near_slot_only() {
        let limiter = Limiter::new(10);
        let route = messages("900");
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire(&route).await.unwrap();
        }
        assert_eq!(start.elapsed(), ms(202));
        limiter.rate_limited(
            &route,
            &RateLimitHeaders::default(),
            Some(ms(2000)),
            false,
            Instant::now(),
        );
        assert_eq!(limiter.acquire(&route).await, Err(ms(2000)));
        assert_eq!(start.elapsed(), ms(202));
    }
}
