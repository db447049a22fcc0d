//! [`DashboardStorage`] on SQLite: writes go to the single writer connection, reads to the
//! readers.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::{Connection, Row};

use super::dashboard::{DashboardStorage, DeliveryBadge, EventSample, SessionRecord};
use super::sqlite::SqliteStore;
use super::{Result, json_text, parse_json};
use crate::model::Millis;

#[async_trait]
impl DashboardStorage for SqliteStore {
    async fn create_session(
        &self,
        id_hash: &str,
        session: &SessionRecord,
        now: Millis,
    ) -> Result<()> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions \
             (id_hash, account_id, csrf_token, created_at, expires_at, key_id) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
             WHERE s.id_hash = ? AND s.expires_at > ? \
             AND (s.key_id IS NULL OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id \
             AND k.account_id = s.account_id AND k.revoked_at IS NULL))",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.readers)
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
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    async fn delete_account_sessions(&self, account_id: &str, now: Millis) -> Result<u64> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        // The sessions that had ended already go first, so that the count is of open ones.
        sqlx::query(
            "DELETE FROM dashboard_sessions WHERE account_id = ?1 AND (expires_at <= ?2 \
             OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = key_id AND k.revoked_at IS NOT NULL))",
        )
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let open = sqlx::query("DELETE FROM dashboard_sessions WHERE account_id = ?")
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
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM login_links WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_links (token_hash, account_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?)",
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
        // One statement on the one writer connection: two redemptions cannot both see the link
        // unused.
        Ok(sqlx::query_scalar(
            "UPDATE login_links SET used_at = ?1 \
             WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1 \
             RETURNING account_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *self.writer.lock().await?)
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
             WHERE c.account_id = ? AND c.name = lower(?) \
             AND e.created_at >= ? AND e.created_at < ? \
             ORDER BY e.created_at, e.id",
        )
        .bind(account_id)
        .bind(category)
        .bind(from)
        .bind(to)
        .fetch_all(&self.readers)
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
             WHERE c.account_id = ? AND e.created_at >= ? \
             GROUP BY c.name",
        )
        .bind(account_id)
        .bind(since)
        .fetch_all(&self.readers)
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
        // The ids go in as one JSON array: one bound value however many there are.
        let rows: Vec<(String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT d.event_id, d.provider, d.status, d.waiting_reason IS NOT NULL, \
             d.last_error IS NOT NULL FROM deliveries d \
             JOIN events e ON e.id = d.event_id \
             WHERE e.account_id = ? AND d.event_id IN (SELECT value FROM json_each(?)) \
             ORDER BY d.id",
        )
        .bind(account_id)
        .bind(json_text(&event_ids))
        .fetch_all(&self.readers)
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
