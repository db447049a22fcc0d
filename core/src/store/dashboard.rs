//! What the dashboard reads beyond the API's queries: summaries of a category's events, and
//! the state of many events' deliveries at once. One text for both backends (see `sql.rs`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Result;
use crate::model::{AccountId, DeliveryStatus, EventId, Millis};

/// One event of a category, as the category page's totals and chart need it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSample {
    pub id: EventId,
    pub created_at: Millis,
    pub fields: Map<String, Value>,
}

/// One delivery of an event: the provider and its status (`PENDING`, `DELIVERED`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryBadge {
    pub provider: String,
    pub status: DeliveryStatus,
    /// Pending because the channel is not ready (a waiting reason is set).
    pub waiting: bool,
    /// An attempt failed (the last error is set).
    pub had_error: bool,
}

#[async_trait]
pub trait DashboardStorage: Send + Sync {
    /// The events of an account's category created in `[from, to)`, by id (which sorts by
    /// creation time); with `after`, only those with a larger id.
    async fn category_samples(
        &self,
        account_id: &AccountId,
        category: &str,
        from: Millis,
        to: Millis,
        after: Option<&EventId>,
    ) -> Result<Vec<EventSample>>;

    /// How many events of the category were created in `[from, to)`, and the largest id among
    /// them: what tells whether a summary of them is still current.
    async fn category_window(
        &self,
        account_id: &AccountId,
        category: &str,
        from: Millis,
        to: Millis,
    ) -> Result<(u64, Option<EventId>)>;

    /// How many events each of the account's categories received since `since` (categories
    /// without any are absent).
    async fn category_counts_since(
        &self,
        account_id: &AccountId,
        since: Millis,
    ) -> Result<BTreeMap<String, i64>>;

    /// Events per category and day since `since`: `(category, day, count)`, the day counted
    /// from `since` (0 is its first 24 hours). For the overview's small charts.
    async fn category_days_since(
        &self,
        account_id: &AccountId,
        since: Millis,
    ) -> Result<Vec<(String, i64, i64)>>;

    /// Failed deliveries per category of the account's events created since `since`
    /// (categories without any are absent).
    async fn category_failures_since(
        &self,
        account_id: &AccountId,
        since: Millis,
    ) -> Result<BTreeMap<String, i64>>;

    /// How many deliveries of the account's events created since `since` failed.
    async fn failed_deliveries_since(&self, account_id: &AccountId, since: Millis) -> Result<u64>;

    /// The deliveries of each of these events (the account's only), in provider order.
    async fn delivery_badges(
        &self,
        account_id: &AccountId,
        event_ids: &[EventId],
    ) -> Result<BTreeMap<EventId, Vec<DeliveryBadge>>>;
}

/// [`DashboardStorage`] for a store. A list of event ids is bound as one value: `$ids_in` is
/// the test of `d.event_id` against parameter `$2`, and `$bind_ids` makes that value from the
/// ids (a JSON array read by `json_each` on SQLite; an array on PostgreSQL).
macro_rules! dashboard_for {
    ($store:ty, ids_in = $ids_in:literal, bind_ids = $bind_ids:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::dashboard::DashboardStorage for $store {
            async fn category_samples(
                &self,
                account_id: &$crate::model::AccountId,
                category: &str,
                from: $crate::model::Millis,
                to: $crate::model::Millis,
                after: Option<&$crate::model::EventId>,
            ) -> $crate::store::Result<Vec<$crate::store::EventSample>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT e.id, e.created_at, e.fields FROM categories c \
                     JOIN events e ON e.category_id = c.id \
                     WHERE c.account_id = $1 AND c.name = lower($2) \
                     AND e.created_at >= $3 AND e.created_at < $4 AND e.id > $5 \
                     ORDER BY e.id",
                )
                .bind(account_id)
                .bind(category)
                .bind(from)
                .bind(to)
                .bind(after.map_or("", |id| id.as_str()))
                .fetch_all(self.reads())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::EventSample {
                            id: row.try_get("id")?,
                            created_at: row.try_get("created_at")?,
                            fields: $crate::store::parse_json(row.try_get("fields")?)?,
                        })
                    })
                    .collect()
            }

            async fn category_window(
                &self,
                account_id: &$crate::model::AccountId,
                category: &str,
                from: $crate::model::Millis,
                to: $crate::model::Millis,
            ) -> $crate::store::Result<(u64, Option<$crate::model::EventId>)> {
                let (count, newest): (i64, Option<$crate::model::EventId>) = sqlx::query_as(
                    "SELECT COUNT(*), MAX(e.id) FROM categories c \
                     JOIN events e ON e.category_id = c.id \
                     WHERE c.account_id = $1 AND c.name = lower($2) \
                     AND e.created_at >= $3 AND e.created_at < $4",
                )
                .bind(account_id)
                .bind(category)
                .bind(from)
                .bind(to)
                .fetch_one(self.reads())
                .await?;
                Ok((u64::try_from(count).unwrap_or(0), newest))
            }

            async fn category_counts_since(
                &self,
                account_id: &$crate::model::AccountId,
                since: $crate::model::Millis,
            ) -> $crate::store::Result<std::collections::BTreeMap<String, i64>> {
                let counts: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT c.name, COUNT(*) FROM categories c \
                     JOIN events e ON e.category_id = c.id \
                     WHERE c.account_id = $1 AND e.created_at >= $2 \
                     GROUP BY c.name",
                )
                .bind(account_id)
                .bind(since)
                .fetch_all(self.reads())
                .await?;
                Ok(counts.into_iter().collect())
            }

            async fn category_days_since(
                &self,
                account_id: &$crate::model::AccountId,
                since: $crate::model::Millis,
            ) -> $crate::store::Result<Vec<(String, i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT c.name, (e.created_at - $2) / 86400000, COUNT(*) FROM categories c \
                     JOIN events e ON e.category_id = c.id \
                     WHERE c.account_id = $1 AND e.created_at >= $2 GROUP BY 1, 2",
                )
                .bind(account_id)
                .bind(since)
                .fetch_all(self.reads())
                .await?)
            }

            async fn category_failures_since(
                &self,
                account_id: &$crate::model::AccountId,
                since: $crate::model::Millis,
            ) -> $crate::store::Result<std::collections::BTreeMap<String, i64>> {
                // From the failed deliveries alone (a partial index), of events by their id,
                // which sorts by creation time (see `EventId::first_at`).
                let counts: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT c.name, COUNT(*) FROM deliveries d \
                     JOIN events e ON e.id = d.event_id JOIN categories c ON c.id = e.category_id \
                     WHERE d.account_id = $1 AND d.status = 'FAILED' AND d.event_id >= $2 \
                     GROUP BY c.name",
                )
                .bind(account_id)
                .bind($crate::model::EventId::first_at(since))
                .fetch_all(self.reads())
                .await?;
                Ok(counts.into_iter().collect())
            }

            async fn failed_deliveries_since(
                &self,
                account_id: &$crate::model::AccountId,
                since: $crate::model::Millis,
            ) -> $crate::store::Result<u64> {
                // Failed deliveries alone (a partial index), of events by their id, which sorts
                // by creation time (see `EventId::first_at`).
                let failed: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM deliveries \
                     WHERE account_id = $1 AND status = 'FAILED' AND event_id >= $2",
                )
                .bind(account_id)
                .bind($crate::model::EventId::first_at(since))
                .fetch_one(self.reads())
                .await?;
                Ok(u64::try_from(failed).unwrap_or(0))
            }

            async fn delivery_badges(
                &self,
                account_id: &$crate::model::AccountId,
                event_ids: &[$crate::model::EventId],
            ) -> $crate::store::Result<
                std::collections::BTreeMap<
                    $crate::model::EventId,
                    Vec<$crate::store::DeliveryBadge>,
                >,
            > {
                let mut badges: std::collections::BTreeMap<
                    $crate::model::EventId,
                    Vec<$crate::store::DeliveryBadge>,
                > = std::collections::BTreeMap::new();
                if event_ids.is_empty() {
                    return Ok(badges);
                }
                let rows: Vec<($crate::model::EventId, String, String, bool, bool)> =
                    sqlx::query_as(concat!(
                        "SELECT d.event_id, d.provider, d.status, d.waiting_reason IS NOT NULL, \
                     d.last_error IS NOT NULL FROM deliveries d \
                     JOIN events e ON e.id = d.event_id \
                     WHERE e.account_id = $1 AND d.event_id ",
                        $ids_in,
                        " ORDER BY d.id"
                    ))
                    .bind(account_id)
                    .bind($bind_ids(event_ids))
                    .fetch_all(self.reads())
                    .await?;
                for (event_id, provider, status, waiting, had_error) in rows {
                    badges
                        .entry(event_id)
                        .or_default()
                        .push($crate::store::DeliveryBadge {
                            provider,
                            status: $crate::store::stored_status(&status)?,
                            waiting,
                            had_error,
                        });
                }
                Ok(badges)
            }
        }

    };
}
pub(super) use dashboard_for;
