//! Storage: one contract ([`Storage`]) and its backends.

/// The `SET` term that sends a delivery tried again later to the back of its account's lane
/// (see `QueuedDelivery`): behind the account's other pending deliveries on its provider, never
/// before the front. One text for both backends but for the name of `GREATEST` (`max` in
/// SQLite); a macro, to be part of constant statements.
macro_rules! requeue_fair_key {
    ($greatest:literal) => {
        concat!(
            "fair_key = ",
            $greatest,
            "(COALESCE((SELECT o.fair_key FROM deliveries o \
             WHERE o.provider = deliveries.provider AND o.status = 'PENDING' \
             ORDER BY o.fair_key LIMIT 1), 0), \
             COALESCE((SELECT o.fair_key + 1 FROM deliveries o \
             WHERE o.provider = deliveries.provider AND o.account_id = deliveries.account_id \
             AND o.status = 'PENDING' AND o.id <> deliveries.id \
             ORDER BY o.fair_key DESC LIMIT 1), 0))"
        )
    };
}

/// Where a provider's queue stands for an account: the lowest `fair_key` pending on the
/// provider `$1` and the highest of account `$2`'s pending deliveries there. The same text on
/// both backends (SQLite numbers `$1` and `$2` as the first and second parameter).
const QUEUE_ENDS: &str = "SELECT (SELECT fair_key FROM deliveries WHERE provider = $1 \
     AND status = 'PENDING' ORDER BY fair_key LIMIT 1), (SELECT fair_key FROM deliveries \
     WHERE provider = $1 AND account_id = $2 AND status = 'PENDING' \
     ORDER BY fair_key DESC LIMIT 1)";

/// The events counted for account `$1` in month `$2` (see [`events_counted`]). The same text
/// on both backends, for intake's batches and for reads.
const STORED_COUNT: &str = "SELECT events FROM quota_usage WHERE account_id = $1 AND month = $2";

/// The request hash and event of account `$1`'s `Idempotency-Key` `$2` used at or after `$3`.
/// The same text on both backends.
const FIND_IDEMPOTENT: &str = "SELECT request_hash, event_id FROM idempotency_keys \
     WHERE account_id = $1 AND key = $2 AND created_at >= $3";

/// A month's count as [`STORED_COUNT`] read it: none is zero, and it never reads below zero.
fn events_counted(stored: Option<i64>) -> i64 {
    stored.unwrap_or(0).max(0)
}

mod accounts;
mod activity;
mod categories;
mod cluster;
#[cfg(test)]
mod contract;
mod dashboard;
mod events;
mod group_commit;
mod health;
mod keys;
mod links;
mod migrations;
mod postgres;
mod postgres_batch;
mod provider_values;
mod queue;
mod retention;
mod sessions;
mod sql;
mod sqlite;
mod sqlite_backup;
mod sqlite_batch;
mod sqlite_checkpoint;
mod sqlite_connection;
mod sqlite_writer;

use std::sync::Arc;

pub use accounts::Accounts;
pub use activity::{Activity, ActivityQuery, ActivityRow, StatusFilter};
pub use categories::Categories;
pub use cluster::Cluster;
pub use dashboard::{DashboardStorage, DeliveryBadge, EventSample};
pub use events::Events;
pub use health::Health;
pub use keys::Keys;
pub use links::Links;
pub use postgres::PgStore;
pub use provider_values::ProviderValues;
pub use queue::DeliveryQueue;
pub use retention::{EventScope, Removed, Retention, Space};
pub use sessions::{SessionRecord, Sessions};
pub use sqlite::SqliteStore;
pub use sqlite_backup::{BackupReport, backup_sqlite};

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::model::*;
use crate::provider::{LinkOutcome, LinkRequest};

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
    /// The database cannot take the request now (locked, full, gone, unreachable); a retry
    /// may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A batched write that failed for another reason, as told to each of its callers.
    #[error("database write failed: {0}")]
    WriteFailed(String),
    /// The database's schema is not one this binary can use (see `migrations.rs`).
    #[error("{0}")]
    Schema(String),
}

impl StoreError {
    /// Whether the failure is the database's state rather than the request's: a lock held too
    /// long, a full disk, an I/O error, a missing file, a lost or exhausted connection.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(err) => sqlx_unavailable(err),
            Self::Sqlite(err) => err
                .sqlite_error()
                .is_some_and(|err| sqlite_code_unavailable(err.extended_code)),
            Self::Corrupt(_) | Self::ThreadStart(_) | Self::WriteFailed(_) | Self::Schema(_) => {
                false
            }
        }
    }

    /// The same failure for every caller of a batch (the error itself is not `Clone`).
    pub fn for_each_caller(&self) -> Self {
        if self.is_unavailable() {
            Self::Unavailable(self.to_string())
        } else {
            Self::WriteFailed(self.to_string())
        }
    }
}

fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| match code.parse::<i32>() {
            Ok(sqlite_code) => sqlite_code_unavailable(sqlite_code),
            Err(_) => postgres_state_unavailable(&code),
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// SQLite result codes (primary code in the low byte) of a database that cannot take a request
/// now: busy or locked, out of memory, read-only (including a file moved away), I/O error,
/// full, cannot open, locking protocol.
fn sqlite_code_unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14 | 15)
}

/// PostgreSQL SQLSTATEs of a server that cannot take a request now: connection exceptions,
/// insufficient resources (a full disk among them), a lock or statement timeout, shutting down.
fn postgres_state_unavailable(state: &str) -> bool {
    state.starts_with("08")
        || state.starts_with("53")
        || matches!(state, "55P03" | "57014" | "57P01" | "57P02" | "57P03")
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An account found by one of its API keys.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Account,
    pub key_id: KeyId,
    pub key_last_used_at: Option<Millis>,
    /// Moves with every change to the account's settings, plan or categories.
    pub account_version: i64,
}

/// What event intake writes, all in one transaction.
pub struct NewEvent<'a> {
    pub account_id: &'a AccountId,
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
        event_id: EventId,
    },
    QuotaExceeded,
    /// The key was used before with the same request: that event, nothing new written.
    Replayed {
        event_id: EventId,
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
    /// `Some(None)`: every channel the account has on.
    pub channels: Option<Option<Vec<String>>>,
}

#[derive(Debug, Default)]
pub struct AccountChanges {
    /// Field name → new value, `None` clears.
    pub fields: BTreeMap<String, Option<String>>,
    pub channels: BTreeMap<String, bool>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
}

impl AccountChanges {
    /// The changes made to `account`.
    pub fn apply_to(&self, account: &mut Account) {
        for (field, value) in &self.fields {
            match value {
                Some(value) => account.fields.insert(field.clone(), value.clone()),
                None => account.fields.remove(field),
            };
        }
        account.channels.extend(self.channels.clone());
        if let Some(name) = &self.name {
            account.name = name.clone();
        }
        if let Some(email) = &self.email {
            account.email = email.clone();
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub category: Option<String>,
    /// The event's status; with `channel`, the status of its delivery there.
    pub status: Option<DeliveryStatus>,
    /// Only events with a delivery on this provider.
    pub channel: Option<String>,
    /// Only events whose description or fields contain this text (case-insensitive for ASCII
    /// letters).
    pub search: Option<String>,
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
    pub account_id: AccountId,
    pub account_fields: BTreeMap<String, String>,
    /// An operator disabled the account: the delivery waits.
    pub account_disabled: bool,
    pub link_token: Option<String>,
    pub link_state: Option<Value>,
    /// The channel's secret, when its provider keeps one and it was made.
    pub link_secret: Option<crate::provider::kit::secret::Secret>,
    pub event_id: EventId,
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

/// A delivery status as stored.
pub(crate) fn stored_status(text: &str) -> Result<DeliveryStatus> {
    DeliveryStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery status {text:?}")))
}

pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The refusal of a link request by the account its token found (with these field values),
/// when the account has the field the request must match and the linking user does not match it.
pub(crate) fn link_refusal(
    fields: &BTreeMap<String, String>,
    request: &LinkRequest<'_>,
) -> Option<LinkOutcome> {
    let rule = request.must_match?;
    let expected = fields.get(rule.field)?;
    (!rule.matches(expected)).then(|| LinkOutcome::FieldMismatch {
        expected: expected.clone(),
    })
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The relay's storage, whichever backend it is.
pub type Store = Arc<dyn Storage>;

/// How a store connects and how long it waits, from the `database` settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite: reader connections (writes have their own). PostgreSQL: the whole pool.
    pub max_connections: u32,
    /// The longest a write waits for a lock (SQLite's file, PostgreSQL's rows and advisory
    /// locks) or a pooled connection before it fails as unavailable.
    pub busy_timeout: std::time::Duration,
    /// SQLite's `synchronous` pragma.
    pub synchronous: pingpilot_config::SqliteSynchronous,
}

impl StoreOptions {
    pub fn from_settings(settings: &pingpilot_config::DatabaseSettings) -> Self {
        Self {
            max_connections: settings.max_connections,
            busy_timeout: settings.busy_timeout.get(),
            synchronous: settings.synchronous,
        }
    }

    /// The defaults with `max_connections` connections.
    pub fn with_connections(max_connections: u32) -> Self {
        Self::from_settings(&pingpilot_config::DatabaseSettings {
            max_connections,
            ..Default::default()
        })
    }
}

/// Opens the database at `url` and brings its schema up to date: PostgreSQL for `postgres://`
/// and `postgresql://` URLs (the database must exist), SQLite otherwise (created when absent).
pub async fn open(url: &str, options: &StoreOptions) -> Result<Store> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open_with(url, options).await?));
    }
    Ok(Arc::new(SqliteStore::open_with(url, options).await?))
}

/// The storage contract: every query the relay makes, for each backend, as the sum of its
/// roles (each in a module of its own, written once for both backends).
pub trait Storage:
    Accounts
    + Keys
    + Categories
    + Links
    + Events
    + DeliveryQueue
    + Cluster
    + ProviderValues
    + Sessions
    + DashboardStorage
    + Retention
    + Space
    + Activity
    + Send
    + Sync
{
}

impl Storage for SqliteStore {}
impl Storage for PgStore {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_databases_state_is_told_from_the_requests_fault() {
        // SQLite: busy, locked, I/O error (an extended code), full — and a constraint, which
        // is not.
        for code in [5, 6, 10, 13, 266] {
            assert!(sqlite_code_unavailable(code), "{code}");
        }
        assert!(!sqlite_code_unavailable(19));
        assert!(!sqlite_code_unavailable(2067));
        // PostgreSQL: a lost connection, a full disk, a lock timeout — not a unique violation.
        for state in ["08006", "53100", "55P03", "57P01"] {
            assert!(postgres_state_unavailable(state), "{state}");
        }
        assert!(!postgres_state_unavailable("23505"));
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Corrupt("x".into()).is_unavailable());
        let shared = StoreError::Database(sqlx::Error::PoolTimedOut).for_each_caller();
        assert!(matches!(shared, StoreError::Unavailable(_)));
        let shared = StoreError::Corrupt("x".into()).for_each_caller();
        assert!(matches!(shared, StoreError::WriteFailed(_)));
    }
}
