//! The delivery queue: claiming due deliveries (through the backend's group commit), recording
//! what became of them, leases, and the queue's state. One text for both backends (see
//! `sql.rs`); the claim itself, and reading the claimed rows, are each backend's own.

use async_trait::async_trait;
use sqlx::Row;

use super::{AttemptLog, ClaimedDelivery, DeliveryUpdate, QueueStats, Result};
use crate::model::Millis;

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
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

/// What a delivery worker needs of a claimed delivery: the columns a backend's claimed-rows
/// query selects (`d.*` of the delivery, the account's fields, its link, the event).
pub(super) fn claimed_from_row<R>(row: &R) -> Result<ClaimedDelivery>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let link_state: Option<&str> = row.try_get("link_state")?;
    Ok(ClaimedDelivery {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
        queued_at: row.try_get("queued_at")?,
        account_id: row.try_get("account_id")?,
        account_fields: super::parse_json(row.try_get("account_fields")?)?,
        account_disabled: row
            .try_get::<Option<i64>, _>("account_disabled_at")?
            .is_some(),
        link_token: row.try_get("link_token")?,
        link_state: link_state.map(super::parse_json).transpose()?,
        link_secret: row
            .try_get::<Option<String>, _>("link_secret")?
            .map(crate::provider::kit::secret::Secret::new),
        event_id: row.try_get("event_id")?,
        category: row.try_get("category_name")?,
        color: row.try_get::<i64, _>("category_color")? as u32,
        emoji: row.try_get("category_emoji")?,
        description: row.try_get("description")?,
        fields: super::parse_json(row.try_get("fields")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// [`DeliveryQueue`] for a store. Each backend gives `self.writes`, its group commit, and
/// `self.read_claimed(ids)`, the claimed deliveries' rows.
macro_rules! queue_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::queue::DeliveryQueue for $store {
            async fn claim_due(
                &self,
                owner: &str,
                provider: &str,
                now: $crate::model::Millis,
                lease_until: $crate::model::Millis,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::ClaimedDelivery>> {
                let ids = self
                    .writes
                    .claim(owner, provider, now, lease_until, limit)
                    .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                self.read_claimed(&ids).await
            }

            async fn finish_delivery(
                &self,
                delivery_id: i64,
                owner: &str,
                attempt: Option<&$crate::store::AttemptLog>,
                update: &$crate::store::DeliveryUpdate,
            ) -> $crate::store::Result<bool> {
                self.writes
                    .finish(delivery_id, owner, attempt, update)
                    .await
            }

            async fn extend_leases(
                &self,
                owner: &str,
                until: $crate::model::Millis,
            ) -> $crate::store::Result<u64> {
                let done = sqlx::query(
                    "UPDATE deliveries SET lease_expires_at = $1 \
                     WHERE lease_owner = $2 AND status = 'PENDING'",
                )
                .bind(until)
                .bind(owner)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected())
            }

            async fn queue_stats(
                &self,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<$crate::store::QueueStats> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT CASE \
                       WHEN status <> 'PENDING' THEN lower(status) \
                       WHEN lease_expires_at > $1 THEN 'leased' \
                       WHEN waiting_reason IS NOT NULL THEN 'waiting' \
                       WHEN next_attempt_at <= $1 THEN 'due' \
                       ELSE 'scheduled' END AS state, COUNT(*) FROM deliveries \
                     GROUP BY 1 ORDER BY 1",
                )
                .bind(now)
                .fetch_all(self.reads())
                .await?;
                let oldest_pending: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(queued_at) FROM deliveries WHERE status = 'PENDING'",
                )
                .fetch_one(self.reads())
                .await?;
                Ok($crate::store::QueueStats {
                    by_state: rows,
                    oldest_pending,
                })
            }

            async fn release(&self, delivery_id: i64, owner: &str) -> $crate::store::Result<()> {
                sqlx::query(
                    "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = $1 AND lease_owner = $2",
                )
                .bind(delivery_id)
                .bind(owner)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn next_due(&self) -> $crate::store::Result<Option<$crate::model::Millis>> {
                // Leased deliveries are left out: their lease outlives the wait (which is at
                // most delivery.poll_interval) unless their worker died.
                Ok(sqlx::query_scalar(
                    "SELECT next_attempt_at FROM deliveries WHERE status = 'PENDING' \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
                     ORDER BY next_attempt_at LIMIT 1",
                )
                .bind($crate::model::now_millis())
                .fetch_optional(self.reads())
                .await?)
            }
        }
    };
}
pub(super) use queue_for;
