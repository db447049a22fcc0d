//! Channel links: the token an account's chat uses to link itself with a provider, and the
//! link it makes. One text for both backends (see `sql.rs`).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;

use super::Result;
use crate::model::AccountId;
use crate::provider::{LinkOutcome, LinkRequest};

#[async_trait]
pub trait Links: Send + Sync {
    /// The account's link token for a provider, created on first use, with the provider state
    /// of its link (`None` until linked).
    async fn link_token(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> Result<(String, Option<Value>)>;

    /// Links the account holding `request.link_token`, in one transaction: refuses when the
    /// account does not pass `request.must_match`; otherwise stores the provider state, replaces
    /// the token with a fresh one and wakes the account's waiting deliveries on that provider.
    /// Of two calls with one token, only the first links; the other finds no such token.
    async fn link_account(&self, provider: &str, request: &LinkRequest<'_>) -> Result<LinkOutcome>;

    /// The account's secret for a provider's channel, made with `make` and kept when it has
    /// none yet. Of two callers racing, both get the first one kept.
    async fn channel_secret(
        &self,
        account_id: &AccountId,
        provider: &str,
        make: fn() -> String,
    ) -> Result<String>;

    /// Replaces the account's secret for a provider's channel with `secret`.
    async fn replace_channel_secret(
        &self,
        account_id: &AccountId,
        provider: &str,
        secret: &str,
    ) -> Result<()>;
}

/// A `channel_links` row's token and state, on either backend.
pub(super) fn link_from_row<R>(row: &R) -> Result<(String, Option<Value>)>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: Option<String> = row.try_get("state")?;
    Ok((
        row.try_get("link_token")?,
        state.as_deref().map(super::parse_json).transpose()?,
    ))
}

/// [`Links`] for a store; `$lock_row` locks the link read until the commit (empty on SQLite,
/// whose write transaction holds the whole database).
macro_rules! links_for {
    ($store:ty, lock_row = $lock_row:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::links::Links for $store {
            async fn link_token(
                &self,
                account_id: &$crate::model::AccountId,
                provider: &str,
            ) -> $crate::store::Result<(String, Option<serde_json::Value>)> {
                const FIND: &str = "SELECT link_token, state FROM channel_links \
                     WHERE account_id = $1 AND provider = $2";
                let found = sqlx::query(FIND)
                    .bind(account_id)
                    .bind(provider)
                    .fetch_optional(self.reads())
                    .await?;
                if let Some(row) = found {
                    return $crate::store::links::link_from_row(&row);
                }
                // Two callers racing both insert; the loser's row is dropped and both read the
                // winner's.
                let mut conn = self.write_conn().await?;
                sqlx::query(
                    "INSERT INTO channel_links (account_id, provider, link_token) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(account_id)
                .bind(provider)
                .bind($crate::model::new_link_token())
                .execute(&mut *conn)
                .await?;
                let row = sqlx::query(FIND)
                    .bind(account_id)
                    .bind(provider)
                    .fetch_one(&mut *conn)
                    .await?;
                $crate::store::links::link_from_row(&row)
            }

            async fn link_account(
                &self,
                provider: &str,
                request: &$crate::provider::LinkRequest<'_>,
            ) -> $crate::store::Result<$crate::provider::LinkOutcome> {
                use sqlx::Row as _;
                use $crate::provider::LinkOutcome;
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let row = sqlx::query(concat!(
                    "SELECT a.id, a.name, a.fields, l.state FROM channel_links l \
                     JOIN accounts a ON a.id = l.account_id \
                     WHERE l.provider = $1 AND l.link_token = $2",
                    $lock_row
                ))
                .bind(provider)
                .bind(request.link_token)
                .fetch_optional(&mut *tx)
                .await?;
                // Nothing changes unless linked; the rollbacks free the lock at once.
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(LinkOutcome::UnknownToken);
                };
                let account_id: $crate::model::AccountId = row.try_get("id")?;
                let fields: std::collections::BTreeMap<String, String> =
                    $crate::store::parse_json(row.try_get("fields")?)?;
                if let Some(refusal) = $crate::store::link_refusal(&fields, request) {
                    tx.rollback().await?;
                    return Ok(refusal);
                }
                let previous: Option<String> = row.try_get("state")?;
                sqlx::query(
                    "UPDATE channel_links SET state = $1, link_token = $2 \
                     WHERE account_id = $3 AND provider = $4",
                )
                .bind($crate::store::json_text(&request.state))
                .bind($crate::model::new_link_token())
                .bind(&account_id)
                .bind(provider)
                .execute(&mut *tx)
                .await?;
                Self::wake_waiting(&mut tx, &account_id, Some(provider)).await?;
                tx.commit().await?;
                Ok(LinkOutcome::Linked {
                    account_name: row.try_get("name")?,
                    previous_state: previous
                        .as_deref()
                        .map($crate::store::parse_json)
                        .transpose()?,
                })
            }

            async fn channel_secret(
                &self,
                account_id: &$crate::model::AccountId,
                provider: &str,
                make: fn() -> String,
            ) -> $crate::store::Result<String> {
                const FIND: &str = "SELECT secret FROM channel_links \
                     WHERE account_id = $1 AND provider = $2";
                let found: Option<Option<String>> = sqlx::query_scalar(FIND)
                    .bind(account_id)
                    .bind(provider)
                    .fetch_optional(self.reads())
                    .await?;
                if let Some(Some(secret)) = found {
                    return Ok(secret);
                }
                let mut conn = self.write_conn().await?;
                sqlx::query(
                    "INSERT INTO channel_links (account_id, provider, link_token, secret) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, provider) \
                     DO UPDATE SET secret = COALESCE(channel_links.secret, excluded.secret)",
                )
                .bind(account_id)
                .bind(provider)
                .bind($crate::model::new_link_token())
                .bind(make())
                .execute(&mut *conn)
                .await?;
                let kept: Option<String> = sqlx::query_scalar(FIND)
                    .bind(account_id)
                    .bind(provider)
                    .fetch_one(&mut *conn)
                    .await?;
                kept.ok_or_else(|| {
                    $crate::store::StoreError::Corrupt("a channel secret was not kept".into())
                })
            }

            async fn replace_channel_secret(
                &self,
                account_id: &$crate::model::AccountId,
                provider: &str,
                secret: &str,
            ) -> $crate::store::Result<()> {
                let mut conn = self.write_conn().await?;
                sqlx::query(
                    "INSERT INTO channel_links (account_id, provider, link_token, secret) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, provider) \
                     DO UPDATE SET secret = excluded.secret",
                )
                .bind(account_id)
                .bind(provider)
                .bind($crate::model::new_link_token())
                .bind(secret)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }
    };
}
pub(super) use links_for;
