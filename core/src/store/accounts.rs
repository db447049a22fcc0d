//! Accounts: creating, reading and changing them. One text for both backends (see `sql.rs`).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{AccountChanges, Result};
use crate::model::{Account, AccountId, Millis};

#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account with one API key and `channels` switched on (every other channel is
    /// off); returns the account and the key in clear (the only time it exists outside the
    /// caller).
    async fn create_account(
        &self,
        name: &str,
        email: Option<&str>,
        plan: &str,
        fields: &BTreeMap<String, String>,
        channels: &[&str],
    ) -> Result<(Account, String)>;

    async fn list_accounts(&self) -> Result<Vec<Account>>;

    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;

    async fn set_plan(&self, account_id: &AccountId, plan: &str) -> Result<bool>;

    /// Disables the account from `at` (`Some`; an account already disabled keeps its time) or
    /// enables it (`None`), whose waiting deliveries are then due at once. Whether it exists.
    async fn set_disabled(&self, account_id: &AccountId, at: Option<Millis>) -> Result<bool>;

    /// Applies account changes; returns the account as it is afterwards. Deliveries waiting on
    /// this account are looked at again right away.
    async fn update_account(
        &self,
        id: &AccountId,
        changes: &AccountChanges,
    ) -> Result<Option<Account>>;
}

/// [`Accounts`] for a store; `$lock_row` locks the row read before an update until the commit
/// (empty on SQLite, whose write transaction holds the whole database).
macro_rules! accounts_for {
    ($store:ty, lock_row = $lock_row:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::accounts::Accounts for $store {
            async fn create_account(
                &self,
                name: &str,
                email: Option<&str>,
                plan: &str,
                fields: &std::collections::BTreeMap<String, String>,
                channels: &[&str],
            ) -> $crate::store::Result<($crate::model::Account, String)> {
                use $crate::store::sql::BeginWrite as _;
                let account = $crate::model::Account {
                    id: $crate::model::AccountId::generate(),
                    name: name.to_string(),
                    email: email.map(str::to_string),
                    plan: plan.to_string(),
                    fields: fields.clone(),
                    channels: channels.iter().map(|id| (id.to_string(), true)).collect(),
                    channels_explicit: true,
                    created_at: $crate::model::now_millis(),
                    disabled_at: None,
                };
                let key = $crate::model::new_api_key();
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                sqlx::query(
                    "INSERT INTO accounts \
                     (id, name, email, plan, fields, channels, channels_explicit, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7)",
                )
                .bind(&account.id)
                .bind(&account.name)
                .bind(&account.email)
                .bind(&account.plan)
                .bind($crate::store::json_text(&account.fields))
                .bind($crate::store::json_text(&account.channels))
                .bind(account.created_at)
                .execute(&mut *tx)
                .await?;
                Self::insert_key(&mut tx, &account.id, &key, None, account.created_at).await?;
                tx.commit().await?;
                Ok((account, key))
            }

            async fn list_accounts(&self) -> $crate::store::Result<Vec<$crate::model::Account>> {
                let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, id")
                    .fetch_all(self.reads())
                    .await?;
                rows.iter()
                    .map($crate::store::sql::account_from_row)
                    .collect()
            }

            async fn account(
                &self,
                id: &$crate::model::AccountId,
            ) -> $crate::store::Result<Option<$crate::model::Account>> {
                let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref()
                    .map($crate::store::sql::account_from_row)
                    .transpose()
            }

            async fn set_plan(
                &self,
                account_id: &$crate::model::AccountId,
                plan: &str,
            ) -> $crate::store::Result<bool> {
                let done = sqlx::query("UPDATE accounts SET plan = $1 WHERE id = $2")
                    .bind(plan)
                    .bind(account_id)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_disabled(
                &self,
                account_id: &$crate::model::AccountId,
                at: Option<$crate::model::Millis>,
            ) -> $crate::store::Result<bool> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let statement = match at {
                    Some(_) => "UPDATE accounts SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2",
                    None => "UPDATE accounts SET disabled_at = $1 WHERE id = $2",
                };
                let found = sqlx::query(statement)
                    .bind(at)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                if found && at.is_none() {
                    Self::wake_waiting(&mut tx, account_id, None).await?;
                }
                tx.commit().await?;
                Ok(found)
            }

            async fn update_account(
                &self,
                id: &$crate::model::AccountId,
                changes: &$crate::store::AccountChanges,
            ) -> $crate::store::Result<Option<$crate::model::Account>> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                // Concurrent changes apply one after the other.
                let row = sqlx::query(concat!("SELECT * FROM accounts WHERE id = $1", $lock_row))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mut account) = row
                    .as_ref()
                    .map($crate::store::sql::account_from_row)
                    .transpose()?
                else {
                    return Ok(None);
                };
                changes.apply_to(&mut account);
                sqlx::query(
                    "UPDATE accounts SET name = $1, email = $2, fields = $3, channels = $4 \
                     WHERE id = $5",
                )
                .bind(&account.name)
                .bind(&account.email)
                .bind($crate::store::json_text(&account.fields))
                .bind($crate::store::json_text(&account.channels))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Self::wake_waiting(&mut tx, id, None).await?;
                tx.commit().await?;
                Ok(Some(account))
            }
        }

        impl $store {
            /// Makes deliveries waiting for a channel of the account (or only `provider`'s) due
            /// now.
            pub(super) async fn wake_waiting(
                conn: &mut <Self as $crate::store::sql::Backend>::Connection,
                account_id: &$crate::model::AccountId,
                provider: Option<&str>,
            ) -> $crate::store::Result<()> {
                sqlx::query(
                    "UPDATE deliveries SET next_attempt_at = $1 WHERE account_id = $2 \
                     AND status = 'PENDING' AND waiting_reason IS NOT NULL \
                     AND (CAST($3 AS TEXT) IS NULL OR provider = $3)",
                )
                .bind($crate::model::now_millis())
                .bind(account_id)
                .bind(provider)
                .execute(conn)
                .await?;
                Ok(())
            }
        }
    };
}
pub(super) use accounts_for;
