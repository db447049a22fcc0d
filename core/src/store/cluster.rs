//! The relay processes sharing a database: who is alive, named leases, and whether the database
//! answers. One text for both backends (see `sql.rs`).

use async_trait::async_trait;

use super::{Health, Result, StoreError};
use crate::model::Millis;

#[async_trait]
pub trait Cluster: Send + Sync {
    /// Whether writes are refused or failing, kept up to date by the writes themselves.
    fn health(&self) -> &Health;

    /// Notes that relay process `process_id` is alive at `now`, forgets processes silent for
    /// longer than `window_ms`, and returns how many are alive (this one included). A write
    /// every few seconds, which keeps [`Cluster::health`] current when nothing else writes.
    async fn heartbeat(&self, process_id: &str, now: Millis, window_ms: i64) -> Result<u32> {
        let alive = self.write_heartbeat(process_id, now, window_ms).await;
        self.health().note(&alive);
        alive
    }

    /// The heartbeat's write (see [`Cluster::heartbeat`]).
    async fn write_heartbeat(&self, process_id: &str, now: Millis, window_ms: i64) -> Result<u32>;

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

    /// Ready: writes are neither refused nor failing, and the database answers a query.
    async fn ping(&self) -> Result<()> {
        if let Some(problem) = self.health().problem() {
            return Err(StoreError::Unavailable(problem));
        }
        self.query_one().await
    }

    /// A trivial query, answered by the database.
    async fn query_one(&self) -> Result<()>;
}

/// [`Cluster`] for a store; `$skip_locked` makes a process skip, not wait for, rows another is
/// deleting (empty on SQLite, whose writes never overlap).
macro_rules! cluster_for {
    ($store:ty, skip_locked = $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::cluster::Cluster for $store {
            fn health(&self) -> &$crate::store::Health {
                &self.health
            }

            async fn write_heartbeat(
                &self,
                process_id: &str,
                now: $crate::model::Millis,
                window_ms: i64,
            ) -> $crate::store::Result<u32> {
                use $crate::store::sql::BeginWrite as _;
                let cutoff = now - window_ms;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                sqlx::query(
                    "INSERT INTO processes (id, last_seen) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                )
                .bind(process_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(concat!(
                    "DELETE FROM processes WHERE id IN \
                     (SELECT id FROM processes WHERE last_seen < $1",
                    $skip_locked,
                    ")"
                ))
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                let alive: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM processes WHERE last_seen >= $1")
                        .bind(cutoff)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(alive.max(1) as u32)
            }

            async fn forget_process(&self, process_id: &str) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM processes WHERE id = $1")
                    .bind(process_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn acquire_lease(
                &self,
                name: &str,
                owner: &str,
                now: $crate::model::Millis,
                until: $crate::model::Millis,
            ) -> $crate::store::Result<bool> {
                let held = sqlx::query(
                    "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                     WHERE leases.owner = excluded.owner OR leases.expires_at <= $4",
                )
                .bind(name)
                .bind(owner)
                .bind(until)
                .bind(now)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(held.rows_affected() > 0)
            }

            async fn query_one(&self) -> $crate::store::Result<()> {
                sqlx::query("SELECT 1").execute(self.reads()).await?;
                Ok(())
            }
        }
    };
}
pub(super) use cluster_for;
