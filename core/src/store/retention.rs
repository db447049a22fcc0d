//! Deleting events with their deliveries and attempts, a small batch per transaction: those
//! past `retention.events`, or all of an account's when it is deleted. One text for both
//! backends (see `sql.rs`).

use async_trait::async_trait;

use super::Result;
use crate::model::{AccountId, EventId, Millis};

/// Which events go.
#[derive(Debug, Clone, Copy)]
pub enum EventScope<'a> {
    /// Created before this time, and with no delivery still pending.
    OlderThan(Millis),
    /// Every event of the account.
    OfAccount(&'a AccountId),
}

impl EventScope<'_> {
    /// The statements' three parameters: the scope's key (the first event id not deleted, or
    /// the account), the time before which events go, and the batch size.
    pub(super) fn parameters(&self) -> (String, Millis) {
        match self {
            Self::OlderThan(before) => (EventId::first_at(*before).to_string(), *before),
            Self::OfAccount(account) => (account.to_string(), Millis::MAX),
        }
    }
}

/// Rows deleted (or, for a dry run, that would be).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

impl Removed {
    pub fn add(&mut self, other: Removed) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
    }
}

#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes up to `limit` events of the scope, oldest first, with their deliveries and
    /// attempts, in one transaction; fewer events than `limit` means the scope is done.
    async fn delete_events(&self, scope: EventScope<'_>, limit: u32) -> Result<Removed>;

    /// What [`Retention::delete_events`] would delete, all batches together.
    async fn count_events(&self, scope: EventScope<'_>) -> Result<Removed>;

    /// Deletes the account and everything it has left (keys, categories, links, sessions,
    /// quota counts); its events go first, with `delete_events`. Whether it existed.
    async fn delete_account_row(&self, account_id: &AccountId) -> Result<bool>;
}

/// Giving the space of deleted rows back to the file system: SQLite's file keeps its size
/// otherwise; PostgreSQL reuses the space itself (autovacuum), so it does nothing there.
#[async_trait]
pub trait Space: Send + Sync {
    /// Gives back up to `pages` unused pages (SQLite's incremental vacuum); the bytes given
    /// back, or `None` when the database cannot or need not shrink this way: PostgreSQL, or a
    /// SQLite file made before incremental vacuum (see [`Space::compact`]).
    async fn shrink(&self, pages: u32) -> Result<Option<u64>>;

    /// Rewrites the whole SQLite file compactly, switching it to incremental vacuum
    /// (`VACUUM`; it holds the database until it is done); the bytes given back. `None` on
    /// PostgreSQL.
    async fn compact(&self) -> Result<Option<u64>>;
}

/// The events of a scope, by their id: `$1` is the scope's key, `$2` the time before which
/// events go, `$3` the batch size (see [`EventScope::parameters`]).
macro_rules! old_events {
    ($limit:literal) => {
        concat!(
            "SELECT id FROM events WHERE id < $1 AND created_at < $2 AND NOT EXISTS \
             (SELECT 1 FROM deliveries p WHERE p.event_id = events.id AND p.status = 'PENDING') \
             ORDER BY id",
            $limit
        )
    };
}
macro_rules! account_events {
    ($limit:literal) => {
        concat!(
            "SELECT id FROM events WHERE account_id = $1 AND created_at < $2 ORDER BY id",
            $limit
        )
    };
}
pub(super) use {account_events, old_events};

/// The three deletions of a batch of `$events` (a statement selecting event ids), children
/// first, each statement selecting the same batch again within the transaction.
macro_rules! batch_deletions {
    ($events:expr) => {
        [
            concat!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT d.id FROM deliveries d \
                 WHERE d.event_id IN (",
                $events,
                "))"
            ),
            concat!("DELETE FROM deliveries WHERE event_id IN (", $events, ")"),
            concat!("DELETE FROM events WHERE id IN (", $events, ")"),
        ]
    };
}
pub(super) use batch_deletions;

/// The counts of a scope's rows, in the order of [`Removed`].
macro_rules! scope_counts {
    ($events:expr) => {
        concat!(
            "SELECT (SELECT COUNT(*) FROM (",
            $events,
            ") s), (SELECT COUNT(*) FROM deliveries WHERE event_id IN (",
            $events,
            ")), (SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id IN \
             (SELECT d.id FROM deliveries d WHERE d.event_id IN (",
            $events,
            ")))"
        )
    };
}
pub(super) use scope_counts;

/// [`Retention`] for a store.
macro_rules! retention_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::retention::Retention for $store {
            async fn delete_events(
                &self,
                scope: $crate::store::retention::EventScope<'_>,
                limit: u32,
            ) -> $crate::store::Result<$crate::store::retention::Removed> {
                use $crate::store::retention::{
                    EventScope, Removed, account_events, batch_deletions, old_events,
                };
                use $crate::store::sql::BeginWrite as _;
                let statements = match scope {
                    EventScope::OlderThan(_) => batch_deletions!(old_events!(" LIMIT $3")),
                    EventScope::OfAccount(_) => batch_deletions!(account_events!(" LIMIT $3")),
                };
                let (key, before) = scope.parameters();
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let mut counts = [0u64; 3];
                for (statement, count) in statements.iter().zip(counts.iter_mut()) {
                    *count = sqlx::query(*statement)
                        .bind(&key)
                        .bind(before)
                        .bind(i64::from(limit))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                let [attempts, deliveries, events] = counts;
                Ok(Removed {
                    events,
                    deliveries,
                    attempts,
                })
            }

            async fn count_events(
                &self,
                scope: $crate::store::retention::EventScope<'_>,
            ) -> $crate::store::Result<$crate::store::retention::Removed> {
                use $crate::store::retention::{
                    EventScope, Removed, account_events, old_events, scope_counts,
                };
                let statement = match scope {
                    EventScope::OlderThan(_) => scope_counts!(old_events!("")),
                    EventScope::OfAccount(_) => scope_counts!(account_events!("")),
                };
                let (key, before) = scope.parameters();
                let (events, deliveries, attempts): (i64, i64, i64) = sqlx::query_as(statement)
                    .bind(&key)
                    .bind(before)
                    .fetch_one(self.reads())
                    .await?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(Removed {
                    events: count(events),
                    deliveries: count(deliveries),
                    attempts: count(attempts),
                })
            }

            async fn delete_account_row(
                &self,
                account_id: &$crate::model::AccountId,
            ) -> $crate::store::Result<bool> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                // Whatever intake committed after the last batch, then the account, whose other
                // rows go with it (ON DELETE CASCADE).
                for statement in $crate::store::retention::batch_deletions!(
                    "SELECT id FROM events WHERE account_id = $1"
                ) {
                    sqlx::query(statement)
                        .bind(account_id)
                        .execute(&mut *tx)
                        .await?;
                }
                let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(deleted > 0)
            }
        }
    };
}
pub(super) use retention_for;
