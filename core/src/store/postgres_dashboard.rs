//! [`DashboardStorage`] on PostgreSQL.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::dashboard::{DashboardStorage, DeliveryBadge, EventSample, SessionRecord};
use super::postgres::PgStore;
use super::{Result, parse_json};
use crate::model::Millis;

#[async_trait]
impl DashboardStorage for PgStore {
    async fn create_session(
        &self,
        id_hash: &str,
        session: &SessionRecord,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions \
             (id_hash, account_id, csrf_token, created_at, expires_at, key_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(&session.account_id)
        .bind(&session.csrf_token)
        .bind(now)
        .bind(session.expires_at)
        .bind(&session.key_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: Millis) -> Result<Option<SessionRecord>> {
        // A revoked key's sessions are deleted with it; the lookup checks the key as well, so
        // that a session started while its key was being revoked ends too.
        let row = sqlx::query(
            "SELECT s.account_id, s.csrf_token, s.expires_at, s.key_id FROM dashboard_sessions s \
             WHERE s.id_hash = $1 AND s.expires_at > $2 \
             AND (s.key_id IS NULL OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id \
             AND k.account_id = s.account_id AND k.revoked_at IS NULL))",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRecord {
                account_id: row.try_get("account_id")?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.try_get("expires_at")?,
                key_id: row.try_get("key_id")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_account_sessions(&self, account_id: &str, now: Millis) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        // The sessions that had ended already go first, so that the count is of open ones.
        sqlx::query(
            "DELETE FROM dashboard_sessions s WHERE s.account_id = $1 AND (s.expires_at <= $2 \
             OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id AND k.revoked_at IS NOT NULL))",
        )
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let open = sqlx::query("DELETE FROM dashboard_sessions WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(open.rows_affected())
    }

    async fn create_login_link(
        &self,
        token_hash: &str,
        account_id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM login_links WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_links (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn redeem_login_link(&self, token_hash: &str, now: Millis) -> Result<Option<String>> {
        // One statement: a concurrent redemption waits for this row's lock, then finds it used.
        Ok(sqlx::query_scalar(
            "UPDATE login_links SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING account_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn category_samples(
        &self,
        account_id: &str,
        category: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<EventSample>> {
        let rows = sqlx::query(
            "SELECT e.created_at, e.fields FROM categories c \
             JOIN events e ON e.category_id = c.id \
             WHERE c.account_id = $1 AND c.name = lower($2) \
             AND e.created_at >= $3 AND e.created_at < $4 \
             ORDER BY e.created_at, e.id",
        )
        .bind(account_id)
        .bind(category)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventSample {
                    created_at: row.try_get("created_at")?,
                    fields: parse_json(row.try_get("fields")?)?,
                })
            })
            .collect()
    }

    async fn category_counts_since(
        &self,
        account_id: &str,
        since: Millis,
    ) -> Result<BTreeMap<String, i64>> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.name, COUNT(*) FROM categories c \
             JOIN events e ON e.category_id = c.id \
             WHERE c.account_id = $1 AND e.created_at >= $2 \
             GROUP BY c.name",
        )
        .bind(account_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(counts.into_iter().collect())
    }

    async fn delivery_badges(
        &self,
        account_id: &str,
        event_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<DeliveryBadge>>> {
        let mut badges: BTreeMap<String, Vec<DeliveryBadge>> = BTreeMap::new();
        if event_ids.is_empty() {
            return Ok(badges);
        }
        let rows: Vec<(String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT d.event_id, d.provider, d.status, d.waiting_reason IS NOT NULL, \
             d.last_error IS NOT NULL FROM deliveries d \
             JOIN events e ON e.id = d.event_id \
             WHERE e.account_id = $1 AND d.event_id = ANY($2) \
             ORDER BY d.id",
        )
        .bind(account_id)
        .bind(event_ids)
        .fetch_all(&self.pool)
        .await?;
        for (event_id, provider, status, waiting, had_error) in rows {
            badges.entry(event_id).or_default().push(DeliveryBadge {
                provider,
                status,
                waiting,
                had_error,
            });
        }
        Ok(badges)
    }
}
