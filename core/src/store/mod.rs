//! Storage: one contract ([`Storage`]) and its backends.

mod dashboard;
mod group_commit;
mod postgres;
mod postgres_batch;
mod postgres_dashboard;
mod sqlite;
mod sqlite_batch;
mod sqlite_checkpoint;
mod sqlite_dashboard;

use std::sync::Arc;

pub use dashboard::{DashboardStorage, DeliveryBadge, EventSample, SessionRecord};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::model::*;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("cannot start a database thread: {0}")]
    ThreadStart(std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An account found by one of its API keys.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Account,
    pub key_id: String,
    pub key_last_used_at: Option<Millis>,
    /// Moves with every change to the account's settings, plan or categories.
    pub account_version: i64,
}

/// What event intake writes, all in one transaction.
pub struct NewEvent<'a> {
    pub account_id: &'a str,
    pub category: &'a Category,
    pub description: &'a str,
    pub fields: &'a Map<String, Value>,
    pub providers: &'a [&'static str],
    pub events_limit: Option<u64>,
    pub now: Millis,
    pub idempotency: Option<IdempotencyKey<'a>>,
    /// What the caller checked the request against, when it used a cached copy of the account:
    /// the commit makes sure both are still current.
    pub decided_from: Option<DecidedFrom<'a>>,
}

/// The API key and account version a request was checked against.
#[derive(Debug, Clone, Copy)]
pub struct DecidedFrom<'a> {
    pub key_hash: &'a str,
    pub account_version: i64,
}

/// A client's `Idempotency-Key` with a hash of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum IntakeResult {
    Accepted {
        event_id: String,
    },
    QuotaExceeded,
    /// The key was used before with the same request: that event, nothing new written.
    Replayed {
        event_id: String,
    },
    /// The key was used before with a different request.
    KeyConflict,
    /// Nothing written: the key was revoked or the account changed since the caller's copy.
    Stale,
}

/// Deliveries by queue state, for metrics.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub by_state: Vec<(String, i64)>,
    /// Creation time of the oldest delivery not final yet.
    pub oldest_pending: Option<Millis>,
}

#[derive(Debug)]
pub enum CategoryCreate {
    Created(Category),
    Duplicate,
    LimitReached,
}

#[derive(Debug)]
pub enum CategoryUpdate {
    Updated(Category),
    NotFound,
    Duplicate,
}

#[derive(Debug, Default)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub color: Option<u32>,
    /// `Some(None)` clears the emoji.
    pub emoji: Option<Option<String>>,
}

#[derive(Debug, Default)]
pub struct AccountChanges {
    /// Field name → new value, `None` clears.
    pub fields: BTreeMap<String, Option<String>>,
    pub channels: BTreeMap<String, bool>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
}

#[derive(Debug, Default)]
pub struct EventFilter {
    pub category: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only events with an id below this one (the cursor of the previous page).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// A delivery handed to a worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub provider: String,
    pub attempts: u32,
    pub queued_at: Millis,
    pub account_id: String,
    pub account_fields: BTreeMap<String, String>,
    pub link_token: Option<String>,
    pub link_state: Option<Value>,
    pub event_id: String,
    pub category: String,
    pub color: u32,
    pub emoji: Option<String>,
    pub description: String,
    pub fields: Map<String, Value>,
    pub created_at: Millis,
}

/// How a worker leaves a delivery after trying it.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    Delivered,
    Retry {
        at: Millis,
        counted: bool,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Not sent: the channel is not ready. Not an attempt.
    Waiting {
        at: Millis,
        reason: String,
    },
    /// Not sent: the relay's own rate limit is used up; due again at `at`. Not an attempt.
    Deferred {
        at: Millis,
    },
}

#[derive(Debug, Clone)]
pub struct AttemptLog {
    pub started_at: Millis,
    pub duration_ms: i64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The relay's storage, whichever backend it is.
pub type Store = Arc<dyn Storage>;

/// Opens the database at `url` and brings its schema up to date: PostgreSQL for `postgres://`
/// and `postgresql://` URLs (the database must exist), SQLite otherwise (created when absent).
pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url, max_connections).await?));
    }
    Ok(Arc::new(SqliteStore::open(url, max_connections).await?))
}

/// The storage contract: every query the relay makes, for each backend.
#[async_trait]
pub trait Storage: DashboardStorage + Send + Sync {
    /// Notes that relay process `process_id` is alive at `now`, forgets processes silent for
    /// longer than `window_ms`, and returns how many are alive (this one included).
    async fn heartbeat(&self, process_id: &str, now: Millis, window_ms: i64) -> Result<u32>;

    /// Removes a stopping process from the live ones.
    async fn forget_process(&self, process_id: &str) -> Result<()>;

    /// Takes the lease `name` for `owner` until `until` when it is free, expired or already
    /// `owner`'s (renewing it); returns whether `owner` holds it now.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool>;

    async fn ping(&self) -> Result<()>;

    /// Creates an account with one API key; returns the account and the key in clear (the only
    /// time it exists outside the caller).
    async fn create_account(
        &self,
        name: &str,
        email: Option<&str>,
        plan: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<(Account, String)>;

    async fn list_accounts(&self) -> Result<Vec<Account>>;

    async fn account(&self, id: &str) -> Result<Option<Account>>;

    async fn set_plan(&self, account_id: &str, plan: &str) -> Result<bool>;

    /// Applies account changes; returns the account as it is afterwards. Deliveries waiting on
    /// this account are looked at again right away.
    async fn update_account(&self, id: &str, changes: &AccountChanges) -> Result<Option<Account>>;

    async fn authenticate(&self, key_hash: &str) -> Result<Option<Authenticated>>;

    async fn touch_key(&self, key_id: &str, at: Millis) -> Result<()>;

    /// Creates a key; `None` when the account does not exist.
    async fn create_key(&self, account_id: &str) -> Result<Option<(ApiKeyInfo, String)>>;

    async fn list_keys(&self, account_id: &str) -> Result<Vec<ApiKeyInfo>>;

    /// Revokes a key, limited to one account's keys when `account_id` is given, and ends the
    /// dashboard sessions signed in with it. Returns whether a live key was revoked.
    async fn revoke_key(&self, key_id: &str, account_id: Option<&str>) -> Result<bool>;

    /// The account's link token for a provider, created on first use.
    async fn link_token(&self, account_id: &str, provider: &str)
    -> Result<(String, Option<Value>)>;

    /// Stores provider state for the account holding `link_token` and wakes its waiting
    /// deliveries on that provider. Returns the account's name.
    async fn link_account(
        &self,
        provider: &str,
        link_token: &str,
        state: &Value,
    ) -> Result<Option<String>>;

    async fn provider_value(&self, provider: &str, key: &str) -> Result<Option<String>>;

    async fn set_provider_value(&self, provider: &str, key: &str, value: &str) -> Result<()>;

    async fn categories(&self, account_id: &str) -> Result<Vec<Category>>;

    /// The category of that name (case-insensitive) without its statistics: what intake
    /// needs, cheap however many events the category has.
    async fn category_for_intake(&self, account_id: &str, name: &str) -> Result<Option<Category>>;

    /// The category of that name, matched case-insensitively.
    async fn category(&self, account_id: &str, name: &str) -> Result<Option<Category>>;

    async fn count_categories(&self, account_id: &str) -> Result<i64>;

    async fn create_category(
        &self,
        account_id: &str,
        name: &str,
        color: u32,
        emoji: Option<&str>,
        limit: Option<u64>,
    ) -> Result<CategoryCreate>;

    async fn update_category(
        &self,
        account_id: &str,
        name: &str,
        changes: &CategoryChanges,
    ) -> Result<CategoryUpdate>;

    async fn delete_category(&self, account_id: &str, name: &str) -> Result<bool>;

    async fn events_used(&self, account_id: &str, now: Millis) -> Result<u64>;

    /// Commits the event, one delivery per provider and the quota count together, unless the
    /// quota is used up.
    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<IntakeResult>;

    /// The event an `Idempotency-Key` was first used for within the window, with its request
    /// hash.
    async fn idempotent_event(
        &self,
        account_id: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>>;

    /// The event's delivery status, `None` when there is no such event.
    async fn event_status(&self, event_id: &str) -> Result<Option<String>>;

    async fn events(&self, account_id: &str, filter: &EventFilter) -> Result<Vec<EventRecord>>;

    async fn event(
        &self,
        account_id: &str,
        event_id: &str,
    ) -> Result<Option<(EventRecord, Vec<DeliveryRecord>)>>;

    /// Re-queues the event's failed deliveries; `None` when there is no such event.
    async fn retry_event(&self, account_id: &str, event_id: &str) -> Result<Option<u64>>;

    /// Leases up to `limit` due deliveries to `owner` until `lease_until`.
    async fn claim_due(
        &self,
        owner: &str,
        provider: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Records one attempt (when something was sent) and the delivery's new state, then the
    /// event's status. Ignored when the lease was lost to another worker.
    async fn finish_delivery(
        &self,
        delivery_id: i64,
        owner: &str,
        attempt: Option<&AttemptLog>,
        update: &DeliveryUpdate,
    ) -> Result<bool>;

    /// Extends the leases of every delivery `owner` is still working on.
    async fn extend_leases(&self, owner: &str, until: Millis) -> Result<u64>;

    /// Deliveries by state: `leased` (being sent), `waiting` (channel not ready), `due`,
    /// `scheduled` (retry later), `delivered`, `failed`.
    async fn queue_stats(&self, now: Millis) -> Result<QueueStats>;

    /// Gives a claimed delivery back untouched (shutdown).
    async fn release(&self, delivery_id: i64, owner: &str) -> Result<()>;

    /// When the next delivery falls due (for the worker's sleep).
    async fn next_due(&self) -> Result<Option<Millis>>;
}
