//! What the queries written once for both backends need of each one. A role module
//! (`accounts.rs`, `keys.rs`, …) holds its queries in one macro body, invoked once per backend:
//! one text, compiled for SQLite and for PostgreSQL. Placeholders are `$1`, `$2`, … on both
//! (sqlx binds SQLite's `$N` by its number). Inside such a body a store offers:
//!
//! - `self.reads()`: the pool reads go through (SQLite's readers; PostgreSQL's pool);
//! - `self.write_conn().await?`: the connection writes go through (SQLite's one writer, behind
//!   its lock; a PostgreSQL pool connection), and on it `begin_write()`: a transaction that
//!   holds the write lock from its start on SQLite (`BEGIN IMMEDIATE`), so read-then-write
//!   holds there; PostgreSQL statements lock the rows they need (the macro's backend words).

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Postgres, Row, Sqlite, SqliteConnection, Transaction};

use super::Result;
use super::{PgStore, SqliteStore};
use crate::model::{Account, AccountId};

/// A connection that writes begin on.
#[async_trait]
pub(super) trait BeginWrite: Send {
    type Database: sqlx::Database;

    async fn begin_write(&mut self) -> Result<Transaction<'_, Self::Database>>;
}

#[async_trait]
impl BeginWrite for tokio::sync::MutexGuard<'_, SqliteConnection> {
    type Database = Sqlite;

    async fn begin_write(&mut self) -> Result<Transaction<'_, Sqlite>> {
        Ok((**self).begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl BeginWrite for PoolConnection<Postgres> {
    type Database = Postgres;

    async fn begin_write(&mut self) -> Result<Transaction<'_, Postgres>> {
        Ok((**self).begin().await?)
    }
}

/// The words a shared query text needs that differ between the two SQL dialects.
pub(super) trait Dialect: sqlx::Database {
    /// `LIKE` that ignores case: SQLite's own `LIKE` does for ASCII letters, PostgreSQL needs
    /// `ILIKE`. (`lower()` on both sides would copy every text compared, twice as slow.)
    const LIKE_ANY_CASE: &'static str;
}

impl Dialect for Sqlite {
    const LIKE_ANY_CASE: &'static str = "LIKE";
}

impl Dialect for Postgres {
    const LIKE_ANY_CASE: &'static str = "ILIKE";
}

/// A store's database types.
pub(super) trait Backend {
    type Database: sqlx::Database;
    type Connection;
}

impl Backend for SqliteStore {
    type Database = Sqlite;
    type Connection = SqliteConnection;
}

impl Backend for PgStore {
    type Database = Postgres;
    type Connection = sqlx::PgConnection;
}

/// What a write transaction holds an account for, against others doing the same to it at once:
/// a PostgreSQL advisory lock until the transaction ends (SQLite's write transaction holds the
/// whole database already).
#[derive(Debug, Clone, Copy)]
pub(super) enum AccountLock {
    /// Creating a category, so the plan's limit holds.
    Categories,
}

impl AccountLock {
    /// The lock's class, the first key of PostgreSQL's two-key advisory locks (the second is a
    /// hash of the account id); apart from `postgres_batch.rs`'s `INTAKE_LOCK_CLASS`.
    fn class(self) -> i32 {
        match self {
            Self::Categories => 0x5050_0002,
        }
    }
}

impl SqliteStore {
    pub(super) async fn hold_account(
        _conn: &mut SqliteConnection,
        _lock: AccountLock,
        _account_id: &AccountId,
    ) -> Result<()> {
        Ok(())
    }
}

impl PgStore {
    pub(super) async fn hold_account(
        conn: &mut sqlx::PgConnection,
        lock: AccountLock,
        account_id: &AccountId,
    ) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(lock.class())
            .bind(account_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl SqliteStore {
    pub(super) fn reads(&self) -> &sqlx::SqlitePool {
        &self.readers
    }

    pub(super) async fn write_conn(&self) -> Result<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        self.writer.lock().await
    }
}

impl PgStore {
    pub(super) fn reads(&self) -> &sqlx::PgPool {
        &self.pool
    }

    pub(super) async fn write_conn(&self) -> Result<PoolConnection<Postgres>> {
        Ok(self.pool.acquire().await?)
    }
}

/// An `accounts` row (`SELECT a.*` or `SELECT *`), on either backend.
pub(super) fn account_from_row<R>(row: &R) -> Result<Account>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        plan: row.try_get("plan")?,
        fields: super::parse_json(&row.try_get::<String, _>("fields")?)?,
        channels: super::parse_json(&row.try_get::<String, _>("channels")?)?,
        channels_explicit: row.try_get("channels_explicit")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}
