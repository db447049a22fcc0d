//! Dashboard sign-in: sessions and one-time sign-in links. One text for both backends (see
//! `sql.rs`).

use async_trait::async_trait;

use super::Result;
use crate::model::{AccountId, KeyId, Millis};

/// A signed-in dashboard session, found by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub account_id: AccountId,
    /// Every form of this session carries it; a post without it is refused.
    pub csrf_token: String,
    pub expires_at: Millis,
    /// The API key it was signed in with: the session ends when the key is revoked. `None` for a
    /// one-time link, which no key revocation ends.
    pub key_id: Option<KeyId>,
}

#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a new session (by the hash of its id) and forgets every expired one.
    async fn create_session(
        &self,
        id_hash: &str,
        session: &SessionRecord,
        now: Millis,
    ) -> Result<()>;

    /// The session with this id hash, unless it has expired, the key it was signed in with is
    /// revoked, or its account is gone.
    async fn session(&self, id_hash: &str, now: Millis) -> Result<Option<SessionRecord>>;

    /// Signs a session out; nothing happens when it is unknown.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;

    /// Signs out every session of an account ("sign out everywhere"); how many of them were
    /// still open at `now`.
    async fn delete_account_sessions(&self, account_id: &AccountId, now: Millis) -> Result<u64>;

    /// Stores a one-time sign-in link for an account (by the hash of its token) and forgets every
    /// expired one.
    async fn create_login_link(
        &self,
        token_hash: &str,
        account_id: &AccountId,
        now: Millis,
        expires_at: Millis,
    ) -> Result<()>;

    /// Uses up a sign-in link: its account when the link exists, has not expired and was not used
    /// before; a second call with the same token gives `None`, even when both race.
    async fn redeem_login_link(&self, token_hash: &str, now: Millis) -> Result<Option<AccountId>>;
}

/// [`Sessions`] for a store.
macro_rules! sessions_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::sessions::Sessions for $store {
            async fn create_session(
                &self,
                id_hash: &str,
                session: &$crate::store::SessionRecord,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<()> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
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

            async fn session(
                &self,
                id_hash: &str,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<Option<$crate::store::SessionRecord>> {
                use sqlx::Row as _;
                // A revoked key's sessions are deleted with it; the lookup checks the key as
                // well, so that a session started while its key was being revoked ends too.
                let row = sqlx::query(
                    "SELECT s.account_id, s.csrf_token, s.expires_at, s.key_id \
                     FROM dashboard_sessions s WHERE s.id_hash = $1 AND s.expires_at > $2 \
                     AND (s.key_id IS NULL OR EXISTS (SELECT 1 FROM api_keys k \
                     WHERE k.id = s.key_id AND k.account_id = s.account_id \
                     AND k.revoked_at IS NULL))",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(self.reads())
                .await?;
                row.map(|row| {
                    Ok($crate::store::SessionRecord {
                        account_id: row.try_get("account_id")?,
                        csrf_token: row.try_get("csrf_token")?,
                        expires_at: row.try_get("expires_at")?,
                        key_id: row.try_get("key_id")?,
                    })
                })
                .transpose()
            }

            async fn delete_session(&self, id_hash: &str) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn delete_account_sessions(
                &self,
                account_id: &$crate::model::AccountId,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<u64> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                // The sessions that had ended already go first, so that the count is of open
                // ones.
                sqlx::query(
                    "DELETE FROM dashboard_sessions WHERE account_id = $1 \
                     AND (expires_at <= $2 OR EXISTS (SELECT 1 FROM api_keys k \
                     WHERE k.id = dashboard_sessions.key_id AND k.revoked_at IS NOT NULL))",
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
                account_id: &$crate::model::AccountId,
                now: $crate::model::Millis,
                expires_at: $crate::model::Millis,
            ) -> $crate::store::Result<()> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
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

            async fn redeem_login_link(
                &self,
                token_hash: &str,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<Option<$crate::model::AccountId>> {
                // One statement: two redemptions cannot both see the link unused (SQLite runs
                // one writer; on PostgreSQL the second waits for the row and finds it used).
                Ok(sqlx::query_scalar(
                    "UPDATE login_links SET used_at = $1 \
                     WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
                     RETURNING account_id",
                )
                .bind(now)
                .bind(token_hash)
                .fetch_optional(&mut *self.write_conn().await?)
                .await?)
            }
        }
    };
}
pub(super) use sessions_for;
