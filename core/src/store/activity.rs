//! The record of API requests shown on the dashboard's Activity page: one row per kind of
//! request and minute, with its count. One text for both backends (see `sql.rs`).

use async_trait::async_trait;

use super::Result;
use crate::model::{AccountId, Millis};

/// Requests of one kind in one minute: what the record holds and what is added to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub account_id: AccountId,
    /// The shown part of the API key the requests were made with.
    pub key_prefix: String,
    pub method: String,
    /// The path, without its query.
    pub path: String,
    pub status: u16,
    /// The `message` of a refusal.
    pub message: Option<String>,
    /// The address the requests came from.
    pub client: Option<String>,
    /// The category an event was sent to, when the body named one.
    pub category: Option<String>,
    pub count: u64,
    pub first_at: Millis,
    pub last_at: Millis,
}

impl ActivityRow {
    /// The minute the requests fall in: rows of one kind and minute are one row.
    pub fn minute(&self) -> i64 {
        self.first_at.div_euclid(60_000)
    }

    /// What tells this kind of request from others of its account.
    pub fn digest(&self) -> String {
        let parts = [
            self.key_prefix.as_str(),
            self.method.as_str(),
            self.path.as_str(),
            &self.status.to_string(),
            self.message.as_deref().unwrap_or("\u{0}"),
            self.client.as_deref().unwrap_or("\u{0}"),
            self.category.as_deref().unwrap_or("\u{0}"),
        ];
        let mut digest = crate::model::hash_api_key(&parts.join("\u{1f}"));
        digest.truncate(32);
        digest
    }
}

/// Which statuses a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    Any,
    /// Below 400.
    Accepted,
    /// 400 and above.
    Refused,
    Exactly(u16),
}

impl StatusFilter {
    /// The lowest and highest status shown.
    pub(super) fn bounds(self) -> (i32, i32) {
        match self {
            Self::Any => (0, 999),
            Self::Accepted => (0, 399),
            Self::Refused => (400, 999),
            Self::Exactly(status) => (i32::from(status), i32::from(status)),
        }
    }
}

/// A page of an account's record, newest first.
#[derive(Debug, Clone, Default)]
pub struct ActivityQuery {
    /// Only requests made with the key of this prefix.
    pub key_prefix: Option<String>,
    pub status: StatusFilter,
    pub offset: u32,
    pub limit: u32,
}

#[async_trait]
pub trait Activity: Send + Sync {
    /// Adds requests to the record in one transaction: a row of a kind and minute already
    /// recorded adds its count to it. Rows of accounts that are gone are left out.
    async fn record_activity(&self, rows: &[ActivityRow]) -> Result<()>;

    /// Deletes what was last seen before `before`, and of each of `accounts` all but its
    /// `keep` newest rows; how many rows went.
    async fn trim_activity(&self, before: Millis, accounts: &[AccountId], keep: u32)
    -> Result<u64>;

    /// A page of the account's record, most recently seen first, and how many rows match.
    async fn activity(
        &self,
        account_id: &AccountId,
        query: &ActivityQuery,
    ) -> Result<(Vec<ActivityRow>, u64)>;

    /// The key prefixes in the account's record, sorted.
    async fn activity_keys(&self, account_id: &AccountId) -> Result<Vec<String>>;

    /// The account's requests of `method` on `paths` seen at or after `since`, summed per status,
    /// message and category (`first_at`: the earliest, `last_at`: the latest; no key, path or
    /// client).
    async fn activity_outcomes(
        &self,
        account_id: &AccountId,
        method: &str,
        paths: &[&str],
        since: Millis,
    ) -> Result<Vec<ActivityRow>>;
}

/// An `api_activity` row, on either backend.
pub(super) fn activity_from_row<R>(row: &R) -> Result<ActivityRow>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ActivityRow {
        account_id: row.try_get("account_id")?,
        key_prefix: row.try_get("key_prefix")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: u16::try_from(row.try_get::<i32, _>("status")?).unwrap_or(0),
        message: row.try_get("message")?,
        client: row.try_get("client")?,
        category: row.try_get("category")?,
        count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
        first_at: row.try_get("first_at")?,
        last_at: row.try_get("last_at")?,
    })
}

/// The rows a listing shows: `$1` is the account, `$2` the key prefix (`''` for every key), `$3`
/// and `$4` the lowest and highest status.
macro_rules! matching {
    () => {
        "FROM api_activity WHERE account_id = $1 AND ($2 = '' OR key_prefix = $2) \
         AND status BETWEEN $3 AND $4"
    };
}
pub(super) use matching;

/// [`Activity`] for a store.
macro_rules! activity_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::activity::Activity for $store {
            async fn record_activity(
                &self,
                rows: &[$crate::store::ActivityRow],
            ) -> $crate::store::Result<()> {
                use $crate::store::sql::BeginWrite as _;
                if rows.is_empty() {
                    return Ok(());
                }
                // In a stable order, so that processes writing the same rows at once take
                // their locks in the same order.
                let mut rows: Vec<_> = rows.iter().map(|row| (row.digest(), row)).collect();
                rows.sort_by(|(a_digest, a), (b_digest, b)| {
                    (&a.account_id, a.minute(), a_digest).cmp(&(
                        &b.account_id,
                        b.minute(),
                        b_digest,
                    ))
                });
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                for (digest, row) in rows {
                    sqlx::query(
                        "INSERT INTO api_activity (account_id, minute, digest, key_prefix, \
                         method, path, status, message, client, category, count, first_at, \
                         last_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
                         WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
                         ON CONFLICT (account_id, minute, digest) DO UPDATE SET \
                         count = api_activity.count + excluded.count, \
                         last_at = CASE WHEN excluded.last_at > api_activity.last_at \
                         THEN excluded.last_at ELSE api_activity.last_at END",
                    )
                    .bind(&row.account_id)
                    .bind(row.minute())
                    .bind(digest)
                    .bind(&row.key_prefix)
                    .bind(&row.method)
                    .bind(&row.path)
                    .bind(i32::from(row.status))
                    .bind(&row.message)
                    .bind(&row.client)
                    .bind(&row.category)
                    .bind(i64::try_from(row.count).unwrap_or(i64::MAX))
                    .bind(row.first_at)
                    .bind(row.last_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn trim_activity(
                &self,
                before: $crate::model::Millis,
                accounts: &[$crate::model::AccountId],
                keep: u32,
            ) -> $crate::store::Result<u64> {
                use $crate::store::sql::BeginWrite as _;
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let mut deleted = sqlx::query("DELETE FROM api_activity WHERE last_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                for account_id in accounts {
                    deleted += sqlx::query(
                        "DELETE FROM api_activity WHERE account_id = $1 AND id IN \
                         (SELECT id FROM api_activity WHERE account_id = $1 \
                         ORDER BY last_at DESC, id DESC LIMIT 1000000000 OFFSET $2)",
                    )
                    .bind(account_id)
                    .bind(i64::from(keep))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn activity(
                &self,
                account_id: &$crate::model::AccountId,
                query: &$crate::store::ActivityQuery,
            ) -> $crate::store::Result<(Vec<$crate::store::ActivityRow>, u64)> {
                use sqlx::Row as _;
                let (lowest, highest) = query.status.bounds();
                let key = query.key_prefix.as_deref().unwrap_or("");
                let rows = sqlx::query(concat!(
                    "SELECT * ",
                    $crate::store::activity::matching!(),
                    " ORDER BY last_at DESC, id DESC LIMIT $5 OFFSET $6"
                ))
                .bind(account_id)
                .bind(key)
                .bind(lowest)
                .bind(highest)
                .bind(i64::from(query.limit))
                .bind(i64::from(query.offset))
                .fetch_all(self.reads())
                .await?;
                let total: i64 = sqlx::query(concat!(
                    "SELECT COUNT(*) ",
                    $crate::store::activity::matching!()
                ))
                .bind(account_id)
                .bind(key)
                .bind(lowest)
                .bind(highest)
                .fetch_one(self.reads())
                .await?
                .try_get(0)?;
                let rows = rows
                    .iter()
                    .map($crate::store::activity::activity_from_row)
                    .collect::<$crate::store::Result<_>>()?;
                Ok((rows, u64::try_from(total).unwrap_or(0)))
            }

            async fn activity_keys(
                &self,
                account_id: &$crate::model::AccountId,
            ) -> $crate::store::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT key_prefix FROM api_activity WHERE account_id = $1 \
                     ORDER BY key_prefix",
                )
                .bind(account_id)
                .fetch_all(self.reads())
                .await?)
            }

            async fn activity_outcomes(
                &self,
                account_id: &$crate::model::AccountId,
                method: &str,
                paths: &[&str],
                since: $crate::model::Millis,
            ) -> $crate::store::Result<Vec<$crate::store::ActivityRow>> {
                let mut found = Vec::new();
                for path in paths {
                    let rows = sqlx::query(
                        "SELECT account_id, '' AS key_prefix, method, path, status, message, \
                         NULL AS client, category, CAST(SUM(count) AS BIGINT) AS count, \
                         MIN(first_at) AS first_at, MAX(last_at) AS last_at \
                         FROM api_activity WHERE account_id = $1 AND last_at >= $2 \
                         AND method = $3 AND path = $4 \
                         GROUP BY account_id, method, path, status, message, category",
                    )
                    .bind(account_id)
                    .bind(since)
                    .bind(method)
                    .bind(path)
                    .fetch_all(self.reads())
                    .await?;
                    for row in &rows {
                        found.push($crate::store::activity::activity_from_row(row)?);
                    }
                }
                Ok(found)
            }
        }
    };
}
pub(super) use activity_for;
