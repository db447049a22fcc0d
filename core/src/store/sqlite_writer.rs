//! The SQLite store's one writer connection (sqlx), shared by its writes and held by each
//! group-commit batch so that no other write overlaps it.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::{Health, Result};

/// The writer connection, behind a lock rather than in a pool of one: a pool hands a
/// connection back through a spawned task that pings it first, two more waits on other threads
/// for every write, and the next writer waits for both. Group-committed batches write on a
/// connection of their own (`SqliteBatchWriter`) while holding this lock, so SQLite still sees
/// one writer at a time.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) conn: Arc<tokio::sync::Mutex<SqliteConnection>>,
    /// To open a new connection in place of one a failure left inside a transaction.
    pub(super) options: Arc<SqliteConnectOptions>,
    pub(super) health: Arc<Health>,
}

impl Writer {
    /// The writer connection, once writes are allowed, and never one left inside a
    /// transaction: when a statement or COMMIT fails (a full disk, a lock held too long)
    /// SQLite may end the transaction itself, sqlx's rollback then fails and sqlx counts the
    /// transaction as open for good ("begin_with at non-zero transaction depth"). Such a
    /// connection is replaced, so writes recover by themselves once the cause is gone.
    pub(super) async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        self.health.writable()?;
        let mut conn = self.conn.lock().await;
        if conn.is_in_transaction() {
            // A dropped transaction's rollback is queued on the connection: let it run first.
            let _ = conn.ping().await;
        }
        if conn.is_in_transaction() {
            tracing::warn!(
                "the database writer was left inside a failed transaction: reopening it"
            );
            *conn = self.options.connect().await?;
        }
        Ok(conn)
    }
}
