//! The delivery worker: claims due deliveries from the database with a lease, hands each to its
//! provider, records the attempt and decides what happens next (done, retry later, failed,
//! waiting for the channel). The queue lives only in the database. Test notifications from the
//! dashboard go straight to the providers.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use pingpilot_config::DeliveryPriority;
use rand::Rng;
use serde_json::Map;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::app::AppState;
use crate::lock;
use crate::model::{ACCOUNT_DISABLED_MESSAGE, Account, Millis, now_millis, to_datetime};
use crate::provider::{ChannelContext, DeliveryOutcome, DeliveryRequest, EventMessage};
use crate::store::{AttemptLog, ClaimedDelivery, DeliveryUpdate, StoreError};
use crate::throttled::Throttled;

/// Retry policy from the delivery settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub waiting_recheck: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &pingpilot_config::DeliverySettings) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            max_age: settings.max_age.get(),
            backoff_initial: settings.backoff_initial.get(),
            backoff_max: settings.backoff_max.get(),
            waiting_recheck: settings.waiting_recheck.get(),
        }
    }

    /// Delay before attempt `attempt + 1`, given `attempt` attempts so far: doubling from the
    /// initial delay up to the maximum, then "equal jitter" (half fixed, half random) so
    /// retries of a burst spread out.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let full = self
            .backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max);
        full / 2 + full.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }

    /// What to do with a delivery after an outcome, given its attempts so far (before this one)
    /// and when it was queued.
    pub fn next(
        &self,
        outcome: &DeliveryOutcome,
        attempts: u32,
        queued_at: Millis,
        now: Millis,
    ) -> DeliveryUpdate {
        let too_old = now - queued_at > self.max_age.as_millis() as i64;
        let after = |delay: Duration| now + delay.as_millis() as i64;
        match outcome {
            DeliveryOutcome::Delivered { .. } => DeliveryUpdate::Delivered,
            DeliveryOutcome::Failed { error, .. } => DeliveryUpdate::Failed {
                error: error.clone(),
            },
            DeliveryOutcome::Retry {
                error, retry_after, ..
            } => {
                if too_old {
                    return DeliveryUpdate::Failed {
                        error: format!("gave up: older than delivery.max_age; last error: {error}"),
                    };
                }
                match retry_after {
                    // The provider asked for a pause: honour it, and it costs no attempt.
                    Some(pause) => DeliveryUpdate::Retry {
                        at: after(*pause),
                        counted: false,
                        error: error.clone(),
                    },
                    None if attempts + 1 >= self.max_attempts => DeliveryUpdate::Failed {
                        error: format!(
                            "gave up after {} attempts; last error: {error}",
                            attempts + 1
                        ),
                    },
                    None => DeliveryUpdate::Retry {
                        at: after(self.backoff(attempts + 1, rand::rng().random())),
                        counted: true,
                        error: error.clone(),
                    },
                }
            }
            DeliveryOutcome::Throttled { retry_after } => DeliveryUpdate::Deferred {
                at: after(*retry_after),
            },
            DeliveryOutcome::Wait { reason } if too_old => DeliveryUpdate::Failed {
                error: format!("gave up: older than delivery.max_age; {reason}"),
            },
            DeliveryOutcome::Wait { reason } => DeliveryUpdate::Waiting {
                at: after(self.waiting_recheck),
                reason: reason.clone(),
            },
        }
    }
}

/// A failure that repeats with every claim, renewal or result is logged once per this period.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(5);
static CLAIM_LOG: LazyLock<Throttled> = LazyLock::new(|| Throttled::every(ERROR_LOG_EVERY));
static RENEW_LOG: LazyLock<Throttled> = LazyLock::new(|| Throttled::every(ERROR_LOG_EVERY));
static RESULT_LOG: LazyLock<Throttled> = LazyLock::new(|| Throttled::every(ERROR_LOG_EVERY));

/// The pause after failed claims: from a tenth of a second, doubling, up to the poll interval
/// (or 5 s when that is shorter).
#[derive(Default)]
struct Backoff {
    pause: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(5);

    fn next(&mut self, poll: Duration) -> Duration {
        self.pause = (self.pause * 2).clamp(Self::FIRST, poll.max(Self::MOST));
        self.pause
    }

    /// Back to no pause; whether there was one.
    fn reset(&mut self) -> bool {
        !std::mem::take(&mut self.pause).is_zero()
    }
}

/// Per-provider worker slots within the process-wide limit.
struct Slots {
    total: Arc<Semaphore>,
    by_provider: Vec<ProviderSlots>,
}

struct ProviderSlots {
    provider: &'static str,
    slots: Arc<Semaphore>,
    /// Free slots worth a claim while sends are still running: claiming in batches keeps the
    /// database from answering one claim per finished send.
    claim_batch: u32,
}

impl Slots {
    fn new(state: &AppState) -> Self {
        let settings = &state.settings.delivery;
        let total = settings.concurrency as usize;
        let by_provider = state
            .providers
            .iter()
            .map(|entry| {
                let id = entry.registration.id;
                let limit = settings
                    .provider_concurrency
                    .get(id)
                    .map_or(total, |n| *n as usize)
                    .min(total);
                ProviderSlots {
                    provider: id,
                    slots: Arc::new(Semaphore::new(limit)),
                    claim_batch: (limit / 4).max(1) as u32,
                }
            })
            .collect();
        Self {
            total: Arc::new(Semaphore::new(total)),
            by_provider,
        }
    }
}

/// Runs [`run_workers`] on a thread of its own, at the CPU priority `delivery.priority` asks
/// for, so that on a saturated machine request handling (and SQLite's writer) run first. The
/// receiver resolves when the workers have stopped.
pub fn start_on_own_thread(
    state: Arc<AppState>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (stopped, on_stop) = oneshot::channel();
    crate::spawn_on_own_thread(
        "pingpilot-send",
        tokio::runtime::Builder::new_current_thread().enable_all(),
        async move {
            // The first poll runs on the new thread: the priority is that thread's alone.
            lower_this_threads_priority(state.settings.delivery.priority);
            run_workers(state, shutdown).await;
            let _ = stopped.send(());
        },
    )?;
    Ok(on_stop)
}

/// Gives the calling thread the CPU priority `priority` (Linux keeps one per thread).
#[cfg(target_os = "linux")]
fn lower_this_threads_priority(priority: DeliveryPriority) {
    // SAFETY: plain system calls on integers and a local struct; 0 is the calling thread.
    let failed = match priority {
        DeliveryPriority::Normal => return,
        DeliveryPriority::Low => unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 },
        DeliveryPriority::Idle => unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0
        },
    };
    if failed {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, ?priority, "could not lower the delivery thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_priority: DeliveryPriority) {}

/// Claims and sends deliveries until `shutdown` turns true, then lets in-flight sends finish
/// within the grace period (or gives their leases back).
async fn run_workers(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let store = state.store().clone();
    let settings = &state.settings.delivery;
    let owner = format!("worker-{}", ulid::Ulid::new());
    let policy = RetryPolicy::from_settings(settings);
    let lease = settings.lease.get();
    let lease_ms = lease.as_millis() as i64;
    let poll = settings.poll_interval.get();
    let slots = Slots::new(&state);
    let in_flight_ids = Arc::new(Mutex::new(HashSet::new()));
    let mut in_flight = JoinSet::new();
    // Leases are renewed while sends run, so a slow send (or a provider's pause) never lets
    // another worker take a delivery that is still being worked on. A task of its own, so a
    // busy claim loop never delays it.
    let renewer = tokio::spawn({
        let (store, owner, ids) = (store.clone(), owner.clone(), in_flight_ids.clone());
        async move {
            let mut renew = tokio::time::interval(lease / 3);
            renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                renew.tick().await;
                renew_leases(&store, &owner, lease_ms, &ids).await;
            }
        }
    });

    let mut claim_failures = Backoff::default();
    while !*shutdown.borrow() {
        while in_flight.try_join_next().is_some() {}
        let mut claimed_everything_asked = false;
        let mut waiting_for_free_slots = false;
        let mut claim_failed = false;
        for ProviderSlots {
            provider,
            slots: provider_slots,
            claim_batch,
        } in &slots.by_provider
        {
            let free = slots
                .total
                .available_permits()
                .min(provider_slots.available_permits()) as u32;
            if free == 0 {
                continue;
            }
            if free < *claim_batch && !in_flight.is_empty() {
                waiting_for_free_slots = true;
                continue;
            }
            let now = now_millis();
            let claimed = match store
                .claim_due(&owner, provider, now, now + lease_ms, free)
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    if let Some(repeats) = CLAIM_LOG.ready() {
                        tracing::error!(error = %err, repeats, "could not claim deliveries");
                    }
                    claim_failed = true;
                    continue;
                }
            };
            if now_millis() - now > lease_ms / 2 {
                // The claim waited so long for the database that its leases are nearly gone and
                // another worker may take these deliveries: give them back rather than risk a
                // second send.
                for delivery in &claimed {
                    if let Err(err) = store.release(delivery.id, &owner).await {
                        tracing::warn!(error = %err, delivery = delivery.id, "could not release a late claim");
                    }
                }
                continue;
            }
            claimed_everything_asked |= claimed.len() as u32 == free;
            for delivery in claimed {
                let (Ok(total), Ok(own)) = (
                    slots.total.clone().try_acquire_owned(),
                    provider_slots.clone().try_acquire_owned(),
                ) else {
                    break;
                };
                let state = state.clone();
                let owner = owner.clone();
                let ids = in_flight_ids.clone();
                lock(&ids).insert(delivery.id);
                // What the attempt logs carries the delivery, and it is one span of a trace.
                let span = tracing::info_span!(
                    "delivery",
                    delivery_id = delivery.id,
                    event_id = %delivery.event_id,
                    provider = %delivery.provider,
                    attempt = delivery.attempts + 1,
                    trace_id = tracing::field::Empty,
                );
                crate::telemetry::record_trace_id(&span);
                in_flight.spawn(
                    async move {
                        let id = delivery.id;
                        process(&state, &owner, &policy, delivery).await;
                        lock(&ids).remove(&id);
                        drop((total, own));
                    }
                    .instrument(span),
                );
            }
        }
        if claim_failed {
            // The database cannot take claims (locked, full, unreachable): try again later,
            // later each time, rather than at once.
            tokio::select! {
                _ = tokio::time::sleep(claim_failures.next(poll)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if claim_failures.reset() {
            CLAIM_LOG.reset();
            tracing::info!("claiming deliveries again");
        }
        if claimed_everything_asked {
            continue;
        }
        if waiting_for_free_slots {
            // Sends are running: the next one to finish (or new work) is the time to look again;
            // at the latest after the poll interval, for retries falling due on other providers
            // while every send is slow.
            tokio::select! {
                Some(_) = in_flight.join_next() => {}
                _ = state.work_ready.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let wait = match store.next_due().await {
            Ok(Some(due)) => {
                Duration::from_millis((due - now_millis()).clamp(0, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        };
        tokio::select! {
            _ = state.work_ready.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.changed() => {}
        }
    }

    let grace = state.settings.server.shutdown_grace.get();
    let finished = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    renewer.abort();
    if finished.is_err() {
        in_flight.abort_all();
        let unfinished: Vec<i64> = lock(&in_flight_ids).drain().collect();
        for id in unfinished {
            if let Err(err) = store.release(id, &owner).await {
                tracing::warn!(error = %err, delivery = id, "could not release a lease; it expires on its own");
            }
        }
    }
}

async fn renew_leases(
    store: &crate::store::Store,
    owner: &str,
    lease_ms: i64,
    in_flight: &Mutex<HashSet<i64>>,
) {
    if lock(in_flight).is_empty() {
        return;
    }
    if let Err(err) = store.extend_leases(owner, now_millis() + lease_ms).await
        && let Some(repeats) = RENEW_LOG.ready()
    {
        tracing::warn!(error = %err, repeats, "could not renew delivery leases");
    }
}

async fn process(state: &AppState, owner: &str, policy: &RetryPolicy, delivery: ClaimedDelivery) {
    if delivery.account_disabled {
        let outcome = DeliveryOutcome::Wait {
            reason: ACCOUNT_DISABLED_MESSAGE.into(),
        };
        return unsent(state, owner, policy, &delivery, &outcome).await;
    }
    let Some(entry) = state.provider(&delivery.provider) else {
        let outcome = DeliveryOutcome::Wait {
            reason: format!("provider {} is not part of this build", delivery.provider),
        };
        return unsent(state, owner, policy, &delivery, &outcome).await;
    };
    let message = EventMessage {
        event_id: delivery.event_id.to_string(),
        category: delivery.category.clone(),
        emoji: delivery.emoji.clone(),
        color: delivery.color,
        description: delivery.description.clone(),
        fields: delivery.fields.clone(),
        created_at: to_datetime(delivery.created_at),
    };
    // As claimed, or made now for a channel switched on that was never used before.
    let secret = match &delivery.link_secret {
        Some(claimed) => Ok(Some(claimed.clone())),
        None => state.channel_secret(entry, &delivery.account_id).await,
    };
    let secret = match secret {
        Ok(secret) => secret,
        Err(err) => {
            let outcome = DeliveryOutcome::Retry {
                http_status: None,
                error: format!("could not read the channel's secret: {err}"),
                retry_after: None,
            };
            return unsent(state, owner, policy, &delivery, &outcome).await;
        }
    };
    let started_at = now_millis();
    let clock = Instant::now();
    let outcome = entry
        .provider
        .deliver(DeliveryRequest {
            delivery_id: delivery.id,
            message: &message,
            channel: ChannelContext {
                account_id: &delivery.account_id,
                fields: &delivery.account_fields,
                link_token: delivery.link_token.as_deref(),
                state: delivery.link_state.as_ref(),
                secret: secret.as_ref(),
            },
        })
        .await;
    let duration_ms = clock.elapsed().as_millis() as i64;
    let attempt = match &outcome {
        DeliveryOutcome::Wait { .. } | DeliveryOutcome::Throttled { .. } => None,
        DeliveryOutcome::Delivered { http_status } => Some(AttemptLog {
            started_at,
            duration_ms,
            http_status: *http_status,
            error: None,
        }),
        DeliveryOutcome::Retry {
            http_status, error, ..
        }
        | DeliveryOutcome::Failed { http_status, error } => Some(AttemptLog {
            started_at,
            duration_ms,
            http_status: *http_status,
            error: Some(error.clone()),
        }),
    };
    let now = now_millis();
    let update = policy.next(&outcome, delivery.attempts, delivery.queued_at, now);
    state.metrics.delivery(
        &delivery.provider,
        outcome_name(&update),
        attempt
            .as_ref()
            .map(|_| Duration::from_millis(duration_ms as u64)),
    );
    if matches!(update, DeliveryUpdate::Delivered) {
        let latency = Duration::from_millis((now - delivery.created_at).max(0) as u64);
        state.metrics.delivered(&delivery.provider, latency);
    }
    tracing::info!(
        event_id = %delivery.event_id,
        provider = %delivery.provider,
        delivery = delivery.id,
        outcome = outcome_name(&update),
        http_status = attempt.as_ref().and_then(|a| a.http_status),
        duration_ms,
        "delivery attempt"
    );
    finish(state, owner, &delivery, attempt.as_ref(), &update).await;
}

/// Records what became of a delivery that was not handed to its provider.
async fn unsent(
    state: &AppState,
    owner: &str,
    policy: &RetryPolicy,
    delivery: &ClaimedDelivery,
    outcome: &DeliveryOutcome,
) {
    let update = policy.next(outcome, delivery.attempts, delivery.queued_at, now_millis());
    finish(state, owner, delivery, None, &update).await;
}

/// The description of the test notification.
pub const TEST_DESCRIPTION: &str = "Test notification from the PingPilot dashboard";

/// Sends a test notification through each enabled channel of `account`, directly (not stored as
/// an event, not counted against the quota, never retried): what each provider answered, in
/// provider order.
pub async fn send_test_notification(
    state: &AppState,
    account: &Account,
) -> Result<Vec<(&'static str, DeliveryOutcome)>, StoreError> {
    let now = now_millis();
    let message = EventMessage {
        event_id: format!("test_{}", ulid::Ulid::new()),
        category: "test".into(),
        emoji: Some("🔔".into()),
        color: TEST_COLOR,
        description: TEST_DESCRIPTION.into(),
        fields: Map::new(),
        created_at: to_datetime(now),
    };
    let mut answers = Vec::new();
    for entry in &state.providers {
        let id = entry.registration.id;
        if !entry.registration.enabled_for(account) {
            continue;
        }
        // The same channel view a real delivery gets: the link token and linked state.
        let link = state.channel_link(entry, account).await?;
        let outcome = entry
            .provider
            .deliver(DeliveryRequest {
                delivery_id: 0,
                message: &message,
                channel: link.context(account),
            })
            .await;
        tracing::info!(account = %account.id, provider = id, ?outcome, "test notification");
        answers.push((id, outcome));
    }
    Ok(answers)
}

/// PingPilot blue, the colour of the test notification.
const TEST_COLOR: u32 = 0x3b5bdb;

fn outcome_name(update: &DeliveryUpdate) -> &'static str {
    match update {
        DeliveryUpdate::Delivered => "delivered",
        DeliveryUpdate::Retry { .. } => "retry",
        DeliveryUpdate::Failed { .. } => "failed",
        DeliveryUpdate::Waiting { .. } => "waiting",
        DeliveryUpdate::Deferred { .. } => "throttled",
    }
}

async fn finish(
    state: &AppState,
    owner: &str,
    delivery: &ClaimedDelivery,
    attempt: Option<&AttemptLog>,
    update: &DeliveryUpdate,
) {
    let store = state.store();
    match store
        .finish_delivery(delivery.id, owner, attempt, update)
        .await
    {
        Ok(true) => {
            state
                .delivery_results
                .send_modify(|count| *count = count.wrapping_add(1));
        }
        Ok(false) => tracing::warn!(
            delivery = delivery.id,
            "lease lost before the result was recorded"
        ),
        Err(err) => {
            if let Some(repeats) = RESULT_LOG.ready() {
                tracing::error!(error = %err, delivery = delivery.id, repeats, "could not record a delivery result; the lease will expire and it is tried again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            max_age: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            waiting_recheck: Duration::from_secs(60),
        }
    }

    fn retry(after: Option<Duration>) -> DeliveryOutcome {
        DeliveryOutcome::Retry {
            http_status: Some(500),
            error: "boom".into(),
            retry_after: after,
        }
    }

    #[test]
    fn failed_claims_pause_longer_each_time_up_to_a_bound() {
        let mut backoff = Backoff::default();
        let poll = Duration::from_secs(1);
        assert_eq!(backoff.next(poll), Duration::from_millis(100));
        assert_eq!(backoff.next(poll), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.next(poll);
        }
        assert_eq!(backoff.next(poll), Duration::from_secs(5));
        assert!(backoff.reset());
        assert!(!backoff.reset());
        assert_eq!(backoff.next(poll), Duration::from_millis(100));
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let p = policy();
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff(40, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn retries_until_the_attempt_limit() {
        let p = policy();
        assert!(matches!(
            p.next(&retry(None), 0, 0, 0),
            DeliveryUpdate::Retry { counted: true, .. }
        ));
        assert!(matches!(
            p.next(&retry(None), 1, 0, 0),
            DeliveryUpdate::Retry { counted: true, .. }
        ));
        match p.next(&retry(None), 2, 0, 0) {
            DeliveryUpdate::Failed { error } => {
                assert_eq!(error, "gave up after 3 attempts; last error: boom")
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn provider_pauses_are_honoured_and_free() {
        let p = policy();
        match p.next(&retry(Some(Duration::from_millis(2500))), 2, 0, 1000) {
            DeliveryUpdate::Retry { at, counted, .. } => {
                assert_eq!(at, 3500);
                assert!(!counted);
            }
            other => panic!("expected retry, got {other:?}"),
        }
    }

    #[test]
    fn too_old_fails_and_waiting_waits() {
        let p = policy();
        let late = 3_600_001;
        assert!(matches!(
            p.next(&retry(None), 0, 0, late),
            DeliveryUpdate::Failed { .. }
        ));
        let wait = DeliveryOutcome::Wait {
            reason: "not linked".into(),
        };
        assert!(matches!(
            p.next(&wait, 0, 0, 10),
            DeliveryUpdate::Waiting { at: 60_010, .. }
        ));
        assert!(matches!(
            p.next(&wait, 0, 0, late),
            DeliveryUpdate::Failed { .. }
        ));
    }
}
