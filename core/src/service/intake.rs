//! Intake's decision: the documented checks of `POST /api/v1/event`, in their documented order,
//! and the one transaction that commits an accepted event. The API parses the request (key,
//! headers, body) and turns the refusals into its answers; what it could not parse travels here
//! as its own answer (`R`) and is returned at its place in the order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use super::intake_cache::IntakeContext;
use super::intake_rate::Rate;
use crate::app::{AppState, KEY_TOUCH_INTERVAL_MS};
use crate::model::{
    ACCOUNT_DISABLED_MESSAGE, Account, Category, DeliveryStatus, EventId, now_millis,
};
use crate::store::{DecidedFrom, IdempotencyKey, IntakeResult, NewEvent, StoreError};

/// The 403 when an account has no channel switched on.
pub const NO_CHANNEL_MESSAGE: &str =
    "No notification channel is enabled. Enable at least one channel in your account settings";
/// Answered (403) when none of the channels a category routes to is on.
pub const NO_CATEGORY_CHANNEL_MESSAGE: &str = "None of this category's channels is enabled. \
     Enable one in your account settings or change the category's channels";

/// The 429 when the month's events are used up.
pub const QUOTA_MESSAGE: &str = "Monthly quota reached. Please upgrade your plan for more events";
/// The 429 when events come faster than the plan's rate.
pub const RATE_MESSAGE: &str =
    "Too many requests: slow down and retry after the number of seconds in Retry-After";
/// Where events are sent (`POST`): the documented path and its alias.
pub const INTAKE_PATHS: [&str; 2] = ["/api/v1/event", "/api/v1/events"];

/// How often a waiting answer looks for other processes' delivery results.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// Fresh reads of an account that keeps changing under intake before it gives up.
const FRESH_ATTEMPTS: usize = 3;

/// An event body that passed validation.
#[derive(Debug, PartialEq)]
pub struct ValidEvent {
    pub category: String,
    /// The text sent, or the default one for the category.
    pub description: String,
    pub fields: Map<String, Value>,
}

/// What a request brought, parsed. A part that did not parse holds the answer for it (`R`),
/// given when the documented order reaches that part.
pub struct Submission<R> {
    /// The `Idempotency-Key`, when one was sent.
    pub idempotency_key: Result<Option<String>, R>,
    /// A hash of the body as sent, when it is JSON: what a repeat of the key must match.
    pub request_hash: Option<String>,
    /// How long the answer may wait for the deliveries.
    pub wait: Result<Option<Duration>, R>,
    pub event: Result<ValidEvent, R>,
    /// The request has used one of its account's intake tokens: a request checked again from
    /// fresher data does not take a second.
    took_rate_token: AtomicBool,
}

impl<R> Submission<R> {
    pub fn new(
        idempotency_key: Result<Option<String>, R>,
        request_hash: Option<String>,
        wait: Result<Option<Duration>, R>,
        event: Result<ValidEvent, R>,
    ) -> Self {
        Self {
            idempotency_key,
            request_hash,
            wait,
            event,
            took_rate_token: AtomicBool::new(false),
        }
    }
}

/// Why intake refused an event, in the order the checks run.
#[derive(Debug)]
pub enum IntakeError<R> {
    /// The key is unknown or revoked.
    UnknownKey,
    /// A part of the request that did not parse: the API's own answer.
    Request(R),
    /// An operator disabled the account.
    AccountDisabled,
    /// The account cannot receive events: a channel lacks an account field, or none is on.
    ChannelNotReady(&'static str),
    /// Faster than the plan's intake rate.
    RateLimited {
        retry_after_secs: u64,
    },
    /// The plan's events for this month are used up.
    QuotaReached,
    UnknownCategory(String),
    /// The `Idempotency-Key` came with another body before.
    IdempotencyConflict,
    /// With a wait: a delivery of the accepted event failed.
    DeliveryFailed {
        event_id: EventId,
    },
    /// The account changed under every attempt; nothing was written.
    AccountKeptChanging,
    Store(StoreError),
}

impl<R> From<StoreError> for IntakeError<R> {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// An accepted (or replayed) event: `PENDING`, or `DELIVERED` when the wait saw every delivery
/// go out.
#[derive(Debug)]
pub struct Accepted {
    pub event_id: EventId,
    pub status: DeliveryStatus,
}

/// A key that was found, from the cache or from the database: the first check, made before the
/// body is read.
pub struct Authorized {
    key_hash: String,
    context: Arc<IntakeContext>,
    source: Source,
}

impl Authorized {
    pub fn account_id(&self) -> &crate::model::AccountId {
        &self.context.account.id
    }
}

/// Finds the account behind an API key hash; [`IntakeError::UnknownKey`] when the key is
/// unknown or revoked.
pub async fn authorize<R>(
    state: &AppState,
    key_hash: String,
) -> Result<Authorized, IntakeError<R>> {
    let (context, source) = match state.intake_cache.get(&key_hash) {
        Some(context) => (context, Source::Cache),
        None => (load_context(state, &key_hash).await?, Source::Database),
    };
    Ok(Authorized {
        key_hash,
        context,
        source,
    })
}

/// Checks the submission for the authorized account and commits the event.
pub async fn accept<R: Clone>(
    state: &AppState,
    authorized: Authorized,
    submission: Submission<R>,
) -> Result<Accepted, IntakeError<R>> {
    let Authorized {
        key_hash,
        context,
        source,
    } = authorized;
    // Most requests: decided from the cached account, confirmed by the commit. Any refusal is
    // checked again from the database, which also replaces the cached copy.
    let mut fresh = match source {
        Source::Cache => {
            if let Ok(decided) = decide(state, &context, &key_hash, &submission, source).await {
                return respond(state, &context, decided).await;
            }
            None
        }
        Source::Database => Some(context),
    };
    for _ in 0..FRESH_ATTEMPTS {
        let context = match fresh.take() {
            Some(context) => context,
            None => load_context(state, &key_hash).await?,
        };
        match decide(state, &context, &key_hash, &submission, Source::Database).await {
            Ok(decided) => return respond(state, &context, decided).await,
            Err(Refusal::Answer(error)) => return Err(error),
            // The account changed between the read and the commit: read it again.
            Err(Refusal::Stale) => {}
        }
    }
    tracing::error!("the account kept changing during intake; nothing was written");
    Err(IntakeError::AccountKeptChanging)
}

/// The account behind a key hash, read from the database and cached (replacing any older copy).
async fn load_context<R>(
    state: &AppState,
    key_hash: &str,
) -> Result<Arc<IntakeContext>, IntakeError<R>> {
    let Some(found) = state.store().authenticate(key_hash).await? else {
        // A revoked key's copy must not send the next request through a commit again.
        state.intake_cache.forget(key_hash);
        return Err(IntakeError::UnknownKey);
    };
    let context = Arc::new(IntakeContext::new(found));
    state.intake_cache.remember(key_hash, context.clone());
    Ok(context)
}

/// Where the account a request is checked against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cache,
    Database,
}

/// A committed (or replayed) event and how long its answer may wait for its deliveries.
struct Decided {
    event_id: EventId,
    wait: Option<Duration>,
}

/// Why a request was not accepted: an answer, or a copy of the account that turned out stale.
enum Refusal<R> {
    Answer(IntakeError<R>),
    Stale,
}

impl<R> From<IntakeError<R>> for Refusal<R> {
    fn from(error: IntakeError<R>) -> Self {
        Self::Answer(error)
    }
}

impl<R> From<StoreError> for Refusal<R> {
    fn from(error: StoreError) -> Self {
        Self::Answer(error.into())
    }
}

/// A part of the submission, or its answer at this point of the order.
fn part<T, R: Clone>(part: &Result<T, R>) -> Result<&T, Refusal<R>> {
    part.as_ref()
        .map_err(|answer| IntakeError::Request(answer.clone()).into())
}

/// Runs the documented checks against `context` and commits the event. From a cached context
/// every refusal is only a reason to look again (the caller does).
async fn decide<R: Clone>(
    state: &AppState,
    context: &IntakeContext,
    key_hash: &str,
    submission: &Submission<R>,
    source: Source,
) -> Result<Decided, Refusal<R>> {
    let store = state.store();
    let account = &context.account;
    if account.disabled_at.is_some() {
        return Err(IntakeError::AccountDisabled.into());
    }
    let now = now_millis();
    let idempotency_key = part(&submission.idempotency_key)?.as_deref();
    let request_hash = idempotency_key.and(submission.request_hash.as_deref());
    // A repeat of an accepted request answers like the first one, whatever changed since but
    // the key: a cached copy may predate its revocation, so a repeat is answered only from a
    // key just read from the database.
    if let (Some(key), Some(hash)) = (idempotency_key, request_hash)
        && let Some((first_hash, event_id)) = store.idempotent_event(&account.id, key, now).await?
    {
        if source == Source::Cache {
            return Err(Refusal::Stale);
        }
        within_rate(state, account, submission)?;
        if first_hash != hash {
            return Err(IntakeError::IdempotencyConflict.into());
        }
        let wait = *part(&submission.wait)?;
        return Ok(Decided { event_id, wait });
    }
    // The category decides which channels the 403s concern; that it exists is checked later,
    // in the documented order.
    let category = match &submission.event {
        Ok(event) => find_category(state, context, &event.category).await?,
        Err(_) => None,
    };
    let providers = enabled_channels(state, account, category.as_ref())?;
    within_rate(state, account, submission)?;
    let limit = state.plan(&account.plan).events_per_month;
    // The commit checks the quota too; from a cache only a success is answered, so the read is
    // left to the commit.
    if source == Source::Database
        && let Some(limit) = limit
        && store.events_used(&account.id, now).await? >= limit
    {
        return Err(IntakeError::QuotaReached.into());
    }
    let wait = *part(&submission.wait)?;
    let event = part(&submission.event)?;
    let Some(category) = category else {
        return Err(IntakeError::UnknownCategory(event.category.clone()).into());
    };
    let idempotency = idempotency_key
        .zip(request_hash)
        .map(|(key, request_hash)| IdempotencyKey { key, request_hash });
    let result = store
        .insert_event(&NewEvent {
            account_id: &account.id,
            category: &category,
            description: &event.description,
            fields: &event.fields,
            providers: &providers,
            events_limit: limit,
            now,
            idempotency,
            decided_from: Some(DecidedFrom {
                key_hash,
                account_version: context.version,
            }),
        })
        .await?;
    match result {
        IntakeResult::QuotaExceeded => Err(IntakeError::QuotaReached.into()),
        IntakeResult::KeyConflict => Err(IntakeError::IdempotencyConflict.into()),
        IntakeResult::Stale => Err(Refusal::Stale),
        IntakeResult::Replayed { event_id } => Ok(Decided { event_id, wait }),
        IntakeResult::Accepted { event_id } => {
            state.work_ready.notify_one();
            Ok(Decided { event_id, wait })
        }
    }
}

/// The 403 intake answers every event of the account with, whatever its category, if any:
/// what the dashboard warns of.
pub fn account_refusal(state: &AppState, account: &Account) -> Option<&'static str> {
    if account.disabled_at.is_some() {
        return Some(ACCOUNT_DISABLED_MESSAGE);
    }
    match enabled_channels::<()>(state, account, None) {
        Err(IntakeError::ChannelNotReady(message)) => Some(message),
        _ => None,
    }
}

/// The channels an event goes to, in provider order: those the account has on, and of them
/// the category's when it names some. Refused when one of them lacks a field it needs, or there
/// is none.
fn enabled_channels<R>(
    state: &AppState,
    account: &Account,
    category: Option<&Category>,
) -> Result<Vec<&'static str>, IntakeError<R>> {
    let routes = category.and_then(|c| c.channels.as_deref());
    let mut enabled = Vec::new();
    for entry in &state.providers {
        let registration = entry.registration;
        let routed = routes.is_none_or(|ids| ids.iter().any(|id| id == registration.id));
        if !routed || !registration.enabled_for(account) {
            continue;
        }
        if let Some(field) = registration
            .account_fields
            .iter()
            .find(|field| !account.fields.contains_key(field.name))
        {
            return Err(IntakeError::ChannelNotReady(field.missing_message));
        }
        enabled.push(registration.id);
    }
    if enabled.is_empty() {
        return Err(IntakeError::ChannelNotReady(match routes {
            Some(_) => NO_CATEGORY_CHANNEL_MESSAGE,
            None => NO_CHANNEL_MESSAGE,
        }));
    }
    Ok(enabled)
}

/// Takes one of the account's intake tokens, once per request.
fn within_rate<R>(
    state: &AppState,
    account: &Account,
    submission: &Submission<R>,
) -> Result<(), IntakeError<R>> {
    if submission.took_rate_token.load(Ordering::Relaxed) {
        return Ok(());
    }
    let Some(plan) = state.settings.plans.get(&account.plan) else {
        return Ok(());
    };
    let Some(rate) = Rate::of_plan(plan.events_per_second, plan.burst) else {
        return Ok(());
    };
    let processes = state.process_count.load(Ordering::Relaxed);
    state
        .intake_rate
        .take(&account.id, rate, processes)
        .map_err(|retry_after_secs| IntakeError::RateLimited { retry_after_secs })?;
    submission.took_rate_token.store(true, Ordering::Relaxed);
    Ok(())
}

/// The named category (case-insensitive), from the context or else the database.
async fn find_category<R>(
    state: &AppState,
    context: &IntakeContext,
    name: &str,
) -> Result<Option<Category>, IntakeError<R>> {
    if let Some(category) = context.category(name) {
        return Ok(Some(category));
    }
    let found = state
        .store()
        .category_for_intake(&context.account.id, name)
        .await?;
    if let Some(category) = &found {
        context.remember_category(category);
    }
    Ok(found)
}

/// The outcome for an accepted event: at once, or once every delivery is final or the wait is
/// up (then `PENDING`).
async fn respond<R>(
    state: &AppState,
    context: &IntakeContext,
    Decided { event_id, wait }: Decided,
) -> Result<Accepted, IntakeError<R>> {
    touch_key(state, context).await;
    let status = match wait {
        None => DeliveryStatus::Pending,
        Some(wait) => wait_for_final(state, &event_id, wait).await?,
    };
    match status {
        DeliveryStatus::Failed => Err(IntakeError::DeliveryFailed { event_id }),
        DeliveryStatus::Delivered => Ok(Accepted { event_id, status }),
        _ => Ok(Accepted {
            event_id,
            status: DeliveryStatus::Pending,
        }),
    }
}

/// Keeps the key's `lastUsedAt` roughly current (it is shown in key listings).
async fn touch_key(state: &AppState, context: &IntakeContext) {
    let now = now_millis();
    if !context.key_touch_due(now, KEY_TOUCH_INTERVAL_MS) {
        return;
    }
    let touched = state.store().touch_key(&context.key_id, now).await;
    // The event is committed by now: a failure here must not turn its answer into an error.
    if let Err(err) = touched {
        tracing::warn!(error = %err, "could not record when the API key was used");
    }
}

async fn wait_for_final(
    state: &AppState,
    event_id: &EventId,
    wait: Duration,
) -> Result<DeliveryStatus, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut results = state.delivery_results.subscribe();
    let store = state.store();
    loop {
        results.mark_unchanged();
        let status = store
            .event_status(event_id)
            .await?
            .unwrap_or(DeliveryStatus::Pending);
        if status != DeliveryStatus::Pending || tokio::time::Instant::now() >= deadline {
            return Ok(status);
        }
        // Results recorded by this process wake us at once; other processes' results are seen
        // by the periodic look.
        tokio::select! {
            _ = results.changed() => {}
            _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + WAIT_POLL)) => {}
        }
    }
}
