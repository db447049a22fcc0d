//! Categories: listing, creating within a limit, renaming and deleting them. One text for both
//! backends (see `sql.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::{CategoryChanges, CategoryCreate, CategoryUpdate, Result};
use crate::model::{AccountId, Category};

#[async_trait]
pub trait Categories: Send + Sync {
    async fn categories(&self, account_id: &AccountId) -> Result<Vec<Category>>;

    /// The category of that name (case-insensitive) without its statistics: what intake
    /// needs, cheap however many events the category has.
    async fn category_for_intake(
        &self,
        account_id: &AccountId,
        name: &str,
    ) -> Result<Option<Category>>;

    /// The category of that name, matched case-insensitively.
    async fn category(&self, account_id: &AccountId, name: &str) -> Result<Option<Category>>;

    async fn count_categories(&self, account_id: &AccountId) -> Result<i64>;

    /// Creates a category unless the name is taken or `limit` categories exist already.
    async fn create_category(
        &self,
        account_id: &AccountId,
        name: &str,
        color: u32,
        emoji: Option<&str>,
        channels: Option<&[String]>,
        limit: Option<u64>,
    ) -> Result<CategoryCreate>;

    async fn update_category(
        &self,
        account_id: &AccountId,
        name: &str,
        changes: &CategoryChanges,
    ) -> Result<CategoryUpdate>;

    async fn delete_category(&self, account_id: &AccountId, name: &str) -> Result<bool>;
}

/// A category with its statistics; the query goes on with `WHERE`.
pub(super) const CATEGORY_SELECT: &str = "SELECT c.id, c.name, c.color, c.emoji, c.channels, c.created_at, \
     (SELECT COUNT(*) FROM events e WHERE e.category_id = c.id) AS events_count, \
     (SELECT MAX(e.created_at) FROM events e WHERE e.category_id = c.id) AS last_ping \
     FROM categories c";

/// A row of [`CATEGORY_SELECT`], on either backend.
pub(super) fn category_from_row<R>(row: &R) -> Result<Category>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let channels: Option<String> = row.try_get("channels")?;
    Ok(Category {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        color: row.try_get::<i64, _>("color")? as u32,
        emoji: row.try_get("emoji")?,
        channels: channels.as_deref().map(super::parse_json).transpose()?,
        created_at: row.try_get("created_at")?,
        events_count: row.try_get("events_count")?,
        last_ping: row.try_get("last_ping")?,
    })
}

/// [`Categories`] for a store; `$lock_row` locks the row read before an update until the commit
/// (empty on SQLite, whose write transaction holds the whole database).
macro_rules! categories_for {
    ($store:ty, lock_row = $lock_row:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::categories::Categories for $store {
            async fn categories(
                &self,
                account_id: &$crate::model::AccountId,
            ) -> $crate::store::Result<Vec<$crate::model::Category>> {
                let sql = format!(
                    "{} WHERE c.account_id = $1 ORDER BY c.created_at, c.id",
                    $crate::store::categories::CATEGORY_SELECT
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .fetch_all(self.reads())
                    .await?;
                rows.iter()
                    .map($crate::store::categories::category_from_row)
                    .collect()
            }

            async fn category(
                &self,
                account_id: &$crate::model::AccountId,
                name: &str,
            ) -> $crate::store::Result<Option<$crate::model::Category>> {
                let sql = format!(
                    "{} WHERE c.account_id = $1 AND c.name = lower($2)",
                    $crate::store::categories::CATEGORY_SELECT
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .bind(name)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref()
                    .map($crate::store::categories::category_from_row)
                    .transpose()
            }

            async fn category_for_intake(
                &self,
                account_id: &$crate::model::AccountId,
                name: &str,
            ) -> $crate::store::Result<Option<$crate::model::Category>> {
                let row = sqlx::query(
                    "SELECT c.id, c.name, c.color, c.emoji, c.channels, c.created_at, \
                     CAST(0 AS BIGINT) AS events_count, CAST(NULL AS BIGINT) AS last_ping \
                     FROM categories c WHERE c.account_id = $1 AND c.name = lower($2)",
                )
                .bind(account_id)
                .bind(name)
                .fetch_optional(self.reads())
                .await?;
                row.as_ref()
                    .map($crate::store::categories::category_from_row)
                    .transpose()
            }

            async fn count_categories(
                &self,
                account_id: &$crate::model::AccountId,
            ) -> $crate::store::Result<i64> {
                Ok(
                    sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE account_id = $1")
                        .bind(account_id)
                        .fetch_one(self.reads())
                        .await?,
                )
            }

            async fn create_category(
                &self,
                account_id: &$crate::model::AccountId,
                name: &str,
                color: u32,
                emoji: Option<&str>,
                channels: Option<&[String]>,
                limit: Option<u64>,
            ) -> $crate::store::Result<$crate::store::CategoryCreate> {
                use $crate::store::CategoryCreate;
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                // One category creation per account at a time, so the limit check holds.
                Self::hold_account(
                    &mut tx,
                    $crate::store::sql::AccountLock::Categories,
                    account_id,
                )
                .await?;
                let existing: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE account_id = $1")
                        .bind(account_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let taken: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM categories WHERE account_id = $1 AND name = $2",
                )
                .bind(account_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    tx.rollback().await?;
                    return Ok(CategoryCreate::Duplicate);
                }
                if limit.is_some_and(|limit| existing as u64 >= limit) {
                    tx.rollback().await?;
                    return Ok(CategoryCreate::LimitReached);
                }
                let created_at = $crate::model::now_millis();
                let inserted = sqlx::query_scalar(
                    "INSERT INTO categories (account_id, name, color, emoji, channels, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(account_id)
                .bind(name)
                .bind(color as i64)
                .bind(emoji)
                .bind(channels.map($crate::store::json_text))
                .bind(created_at)
                .fetch_one(&mut *tx)
                .await;
                // A rename by update_category does not take the lock: the unique index decides
                // then.
                let id: i64 = match inserted {
                    Err(err) if $crate::store::is_unique_violation(&err) => {
                        return Ok(CategoryCreate::Duplicate);
                    }
                    other => other?,
                };
                tx.commit().await?;
                Ok(CategoryCreate::Created($crate::model::Category {
                    id,
                    name: name.to_string(),
                    color,
                    emoji: emoji.map(str::to_string),
                    channels: channels.map(<[String]>::to_vec),
                    created_at,
                    events_count: 0,
                    last_ping: None,
                }))
            }

            async fn update_category(
                &self,
                account_id: &$crate::model::AccountId,
                name: &str,
                changes: &$crate::store::CategoryChanges,
            ) -> $crate::store::Result<$crate::store::CategoryUpdate> {
                use $crate::store::CategoryUpdate;
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let id: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT id FROM categories WHERE account_id = $1 AND name = lower($2)",
                    $lock_row
                ))
                .bind(account_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else {
                    return Ok(CategoryUpdate::NotFound);
                };
                let mut update = sqlx::QueryBuilder::<
                    <Self as $crate::store::sql::Backend>::Database,
                >::new("UPDATE categories SET id = id");
                if let Some(new_name) = &changes.name {
                    update.push(", name = ").push_bind(new_name.clone());
                }
                if let Some(color) = changes.color {
                    update.push(", color = ").push_bind(color as i64);
                }
                if let Some(emoji) = &changes.emoji {
                    update.push(", emoji = ").push_bind(emoji.clone());
                }
                if let Some(channels) = &changes.channels {
                    update
                        .push(", channels = ")
                        .push_bind(channels.as_deref().map($crate::store::json_text));
                }
                update.push(" WHERE id = ").push_bind(id);
                match update.build().execute(&mut *tx).await {
                    Err(err) if $crate::store::is_unique_violation(&err) => {
                        return Ok(CategoryUpdate::Duplicate);
                    }
                    other => other?,
                };
                tx.commit().await?;
                let sql = format!(
                    "{} WHERE c.id = $1",
                    $crate::store::categories::CATEGORY_SELECT
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(CategoryUpdate::Updated(
                    $crate::store::categories::category_from_row(&row)?,
                ))
            }

            async fn delete_category(
                &self,
                account_id: &$crate::model::AccountId,
                name: &str,
            ) -> $crate::store::Result<bool> {
                let done = sqlx::query(
                    "DELETE FROM categories WHERE account_id = $1 AND name = lower($2)",
                )
                .bind(account_id)
                .bind(name)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}
pub(super) use categories_for;
