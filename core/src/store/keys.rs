//! API keys: checking, creating, listing and revoking them. One text for both backends (see
//! `sql.rs`).

use async_trait::async_trait;

use super::{ApiKeyInfo, Authenticated, Result};
use crate::model::{AccountId, KeyId, Millis};

#[async_trait]
pub trait Keys: Send + Sync {
    async fn authenticate(&self, key_hash: &str) -> Result<Option<Authenticated>>;

    async fn touch_key(&self, key_id: &KeyId, at: Millis) -> Result<()>;

    /// Creates a key, with its name if it has one; `None` when the account does not exist.
    async fn create_key(
        &self,
        account_id: &AccountId,
        name: Option<&str>,
    ) -> Result<Option<(ApiKeyInfo, String)>>;

    /// Names (or, with `None`, unnames) one of the account's live keys; `None` when it has no
    /// such key.
    async fn rename_key(
        &self,
        key_id: &KeyId,
        account_id: &AccountId,
        name: Option<&str>,
    ) -> Result<Option<ApiKeyInfo>>;

    async fn list_keys(&self, account_id: &AccountId) -> Result<Vec<ApiKeyInfo>>;

    /// Revokes a key, limited to one account's keys when `account_id` is given, and ends the
    /// dashboard sessions signed in with it. Returns whether a live key was revoked.
    async fn revoke_key(&self, key_id: &KeyId, account_id: Option<&AccountId>) -> Result<bool>;
}

/// [`Keys`] for a store.
macro_rules! keys_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::keys::Keys for $store {
            async fn authenticate(
                &self,
                key_hash: &str,
            ) -> $crate::store::Result<Option<$crate::store::Authenticated>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT a.*, k.id AS key_id, k.last_used_at AS key_last_used_at \
                     FROM api_keys k JOIN accounts a ON a.id = k.account_id \
                     WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(self.reads())
                .await?;
                row.map(|row| {
                    Ok($crate::store::Authenticated {
                        account: $crate::store::sql::account_from_row(&row)?,
                        key_id: row.try_get("key_id")?,
                        key_last_used_at: row.try_get("key_last_used_at")?,
                        account_version: row.try_get("version")?,
                    })
                })
                .transpose()
            }

            async fn touch_key(
                &self,
                key_id: &$crate::model::KeyId,
                at: $crate::model::Millis,
            ) -> $crate::store::Result<()> {
                sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(key_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(())
            }

            async fn create_key(
                &self,
                account_id: &$crate::model::AccountId,
                name: Option<&str>,
            ) -> $crate::store::Result<Option<($crate::store::ApiKeyInfo, String)>> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                        .bind(account_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    return Ok(None);
                }
                let key = $crate::model::new_api_key();
                let info =
                    Self::insert_key(&mut tx, account_id, &key, name, $crate::model::now_millis())
                        .await?;
                tx.commit().await?;
                Ok(Some((info, key)))
            }

            async fn list_keys(
                &self,
                account_id: &$crate::model::AccountId,
            ) -> $crate::store::Result<Vec<$crate::store::ApiKeyInfo>> {
                let rows = sqlx::query(
                    "SELECT id, name, prefix, created_at, last_used_at FROM api_keys \
                     WHERE account_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
                )
                .bind(account_id)
                .fetch_all(self.reads())
                .await?;
                rows.iter().map(Self::key_from_row).collect()
            }

            async fn rename_key(
                &self,
                key_id: &$crate::model::KeyId,
                account_id: &$crate::model::AccountId,
                name: Option<&str>,
            ) -> $crate::store::Result<Option<$crate::store::ApiKeyInfo>> {
                let row = sqlx::query(
                    "UPDATE api_keys SET name = $1 \
                     WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL \
                     RETURNING id, name, prefix, created_at, last_used_at",
                )
                .bind(name)
                .bind(key_id)
                .bind(account_id)
                .fetch_optional(&mut *self.write_conn().await?)
                .await?;
                row.as_ref().map(Self::key_from_row).transpose()
            }

            async fn revoke_key(
                &self,
                key_id: &$crate::model::KeyId,
                account_id: Option<&$crate::model::AccountId>,
            ) -> $crate::store::Result<bool> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                     AND (CAST($3 AS TEXT) IS NULL OR account_id = $3)",
                )
                .bind($crate::model::now_millis())
                .bind(key_id)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                let revoked = done.rows_affected() > 0;
                if revoked {
                    // Its dashboard sessions end with it (the session lookup would refuse them
                    // anyway; this frees their rows at once).
                    sqlx::query("DELETE FROM dashboard_sessions WHERE key_id = $1")
                        .bind(key_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }
        }

        impl $store {
            /// Stores a new key of the account (only its hash and prefix); what is shown of it.
            async fn insert_key(
                conn: &mut <Self as $crate::store::sql::Backend>::Connection,
                account_id: &$crate::model::AccountId,
                key: &str,
                name: Option<&str>,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<$crate::store::ApiKeyInfo> {
                let info = $crate::store::ApiKeyInfo {
                    id: $crate::model::KeyId::generate(),
                    name: name.map(str::to_string),
                    prefix: $crate::model::key_prefix(key),
                    created_at: now,
                    last_used_at: None,
                };
                sqlx::query(
                    "INSERT INTO api_keys (id, account_id, name, key_hash, prefix, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&info.id)
                .bind(account_id)
                .bind(&info.name)
                .bind($crate::model::hash_api_key(key))
                .bind(&info.prefix)
                .bind(now)
                .execute(conn)
                .await?;
                Ok(info)
            }

            fn key_from_row(
                row: &<<Self as $crate::store::sql::Backend>::Database as sqlx::Database>::Row,
            ) -> $crate::store::Result<$crate::store::ApiKeyInfo> {
                use sqlx::Row as _;
                Ok($crate::store::ApiKeyInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    prefix: row.try_get("prefix")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            }
        }
    };
}
pub(super) use keys_for;
