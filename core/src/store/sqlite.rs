//! Storage on SQLite: one writer connection (every write is serialised, so read-then-write checks
//! such as quotas hold under concurrency; intake, delivery results and claims are committed in
//! groups on it), a pool of readers, WAL journal.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_config::SqliteSynchronous as Synchronous;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, QueryBuilder, Row, Sqlite};

use super::group_commit::GroupCommit;
use super::migrations::{self, Applied, Migration, migrations};
use super::sqlite_batch::{SqliteBatchWriter, refresh_event_status};
use super::*;
use super::{accounts, categories, cluster, dashboard, keys, links, provider_values, sessions};
use crate::model::*;

pub(super) const MIGRATIONS: &[Migration] = migrations!("sqlite":
    "0001_initial",
    "0002_idempotency",
    "0003_processes",
    "0004_account_versions",
    "0005_delivery_queue",
    "0006_dashboard",
    "0007_used_link_tokens",
    "0008_session_keys",
    "0009_fair_queue",
);

/// The writer connection, behind a lock rather than in a pool of one: a pool hands a
/// connection back through a spawned task that pings it first, two more waits on other threads
/// for every write, and the next writer waits for both. Group-committed batches write on a
/// connection of their own (`SqliteBatchWriter`) while holding this lock, so SQLite still sees
/// one writer at a time.
#[derive(Clone)]
pub(super) struct Writer {
    conn: Arc<tokio::sync::Mutex<SqliteConnection>>,
    /// To open a new connection in place of one a failure left inside a transaction.
    options: Arc<SqliteConnectOptions>,
    health: Arc<Health>,
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

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) writer: Writer,
    pub(super) readers: SqlitePool,
    /// Intake, delivery results and claims, committed in groups on the writer thread.
    writes: GroupCommit,
    health: Arc<Health>,
}

impl SqliteStore {
    /// Opens (creating when absent) the database at a `sqlite://` URL and brings its schema up to
    /// date, with the default options and `readers` read connections.
    pub async fn open(url: &str, readers: u32) -> Result<Self> {
        Self::open_with(url, &StoreOptions::with_connections(readers)).await
    }

    /// [`SqliteStore::open`] with the given options.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            // Batched statements differ by their number of rows: with sqlx's default of 100 the
            // writer kept preparing them again (intake alone 19,000 → 21,900 events/s).
            .statement_cache_capacity(600);
        let mut connection = connect.clone().connect().await?;
        migrate(&mut connection).await?;
        let health = Arc::new(Health::default());
        let writer = Writer {
            conn: Arc::new(tokio::sync::Mutex::new(connection)),
            options: Arc::new(connect.clone()),
            health: health.clone(),
        };
        let path = connect.get_filename().to_path_buf();
        let batches = SqliteBatchWriter::open(writer.clone(), &path, options.into())?;
        // Readers open only once the file and its schema exist.
        let readers = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect.create_if_missing(false).read_only(true))
            .await?;
        watch_file(&path, &health);
        Ok(Self {
            writes: GroupCommit::start_on_own_thread(batches, health.clone())?,
            writer,
            readers,
            health,
        })
    }
}

#[async_trait]
impl Storage for SqliteStore {
    // ----- accounts and keys -----

    // ----- channel links -----

    // ----- categories -----

    // ----- events -----

    async fn events_used(&self, account_id: &str, now: Millis) -> Result<u64> {
        Ok(stored_count(&self.readers, account_id, &month_key(now)).await? as u64)
    }

    /// Commits the event, one delivery per provider and the quota count together, unless the
    /// quota is used up.
    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<IntakeResult> {
        self.writes.insert(event).await
    }

    /// The event an `Idempotency-Key` was first used for within the window, with its request
    /// hash.
    async fn idempotent_event(
        &self,
        account_id: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>> {
        let mut conn = self.readers.acquire().await?;
        find_idempotent(&mut conn, account_id, key, now).await
    }

    /// The event's delivery status, `None` when there is no such event.
    async fn event_status(&self, event_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT delivery_status FROM events WHERE id = ?")
                .bind(event_id)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn events(&self, account_id: &str, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM events WHERE account_id = ");
        query.push_bind(account_id.to_string());
        if let Some(category) = &filter.category {
            query
                .push(" AND category_name = lower(")
                .push_bind(category.clone())
                .push(")");
        }
        if let Some(status) = filter.status {
            query
                .push(" AND delivery_status = ")
                .push_bind(status.as_str());
        }
        if let Some(since) = filter.since {
            query.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            query.push(" AND created_at < ").push_bind(until);
        }
        if let Some(before) = &filter.before_id {
            query.push(" AND id < ").push_bind(before.clone());
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(filter.limit as i64);
        let rows = query.build().fetch_all(&self.readers).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn event(
        &self,
        account_id: &str,
        event_id: &str,
    ) -> Result<Option<(EventRecord, Vec<DeliveryRecord>)>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ? AND account_id = ?")
            .bind(event_id)
            .bind(account_id)
            .fetch_optional(&self.readers)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let event = event_from_row(&row)?;
        let delivery_rows = sqlx::query("SELECT * FROM deliveries WHERE event_id = ? ORDER BY id")
            .bind(event_id)
            .fetch_all(&self.readers)
            .await?;
        let attempt_rows = sqlx::query(
            "SELECT a.* FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.event_id = ? ORDER BY a.id",
        )
        .bind(event_id)
        .fetch_all(&self.readers)
        .await?;
        let mut deliveries = Vec::new();
        for row in &delivery_rows {
            let id: i64 = row.try_get("id")?;
            let mut attempts = Vec::new();
            for attempt in &attempt_rows {
                if attempt.try_get::<i64, _>("delivery_id")? == id {
                    attempts.push(AttemptRecord {
                        started_at: attempt.try_get("started_at")?,
                        duration_ms: attempt.try_get("duration_ms")?,
                        http_status: attempt.try_get("http_status")?,
                        error: attempt.try_get("error")?,
                    });
                }
            }
            let status: String = row.try_get("status")?;
            deliveries.push(DeliveryRecord {
                provider: row.try_get("provider")?,
                next_attempt_at: (status == "PENDING")
                    .then(|| row.try_get("next_attempt_at"))
                    .transpose()?,
                status,
                attempts,
                last_error: row.try_get("last_error")?,
                waiting_reason: row.try_get("waiting_reason")?,
                delivered_at: row.try_get("delivered_at")?,
            });
        }
        Ok(Some((event, deliveries)))
    }

    /// Re-queues the event's failed deliveries; `None` when there is no such event.
    async fn retry_event(&self, account_id: &str, event_id: &str) -> Result<Option<u64>> {
        let now = now_millis();
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM events WHERE id = ? AND account_id = ?")
                .bind(event_id)
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Ok(None);
        }
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'PENDING', attempts = 0, queued_at = ?1, next_attempt_at = ?1, \
             lease_owner = NULL, lease_expires_at = NULL WHERE event_id = ?2 AND status = 'FAILED'",
        )
        .bind(now)
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
        refresh_event_status(&mut tx, event_id).await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected()))
    }

    // ----- delivery queue -----

    /// Leases up to `limit` due deliveries to `owner` until `lease_until`, in the next batch
    /// on the writer; their rows are then read on a reader, away from the writer.
    async fn claim_due(
        &self,
        owner: &str,
        provider: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let ids = self
            .writes
            .claim(owner, provider, now, lease_until, limit)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The ids go in as one JSON array: one statement for any number of them, rather than a
        // variant per count in every reader's statement cache.
        let rows = sqlx::query(
            "SELECT d.id, d.provider, d.attempts, d.queued_at, d.account_id, a.fields AS account_fields, \
             l.link_token, l.state AS link_state, e.id AS event_id, e.category_name, e.category_color, \
             e.category_emoji, e.description, e.fields, e.created_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id JOIN accounts a ON a.id = d.account_id \
             LEFT JOIN channel_links l ON l.account_id = d.account_id AND l.provider = d.provider \
             WHERE d.id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_text(&ids))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(claimed_from_row).collect()
    }

    /// Records one attempt (when something was sent) and the delivery's new state, then the
    /// event's status. Ignored when the lease was lost to another worker.
    async fn finish_delivery(
        &self,
        delivery_id: i64,
        owner: &str,
        attempt: Option<&AttemptLog>,
        update: &DeliveryUpdate,
    ) -> Result<bool> {
        self.writes
            .finish(delivery_id, owner, attempt, update)
            .await
    }

    /// Extends the leases of every delivery `owner` is still working on.
    async fn extend_leases(&self, owner: &str, until: Millis) -> Result<u64> {
        let done = sqlx::query("UPDATE deliveries SET lease_expires_at = ? WHERE lease_owner = ? AND status = 'PENDING'")
            .bind(until)
            .bind(owner)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deliveries by state: `leased` (being sent), `waiting` (channel not ready), `due`,
    /// `scheduled` (retry later), `delivered`, `failed`.
    async fn queue_stats(&self, now: Millis) -> Result<QueueStats> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT CASE \
               WHEN status <> 'PENDING' THEN lower(status) \
               WHEN lease_expires_at > ?1 THEN 'leased' \
               WHEN waiting_reason IS NOT NULL THEN 'waiting' \
               WHEN next_attempt_at <= ?1 THEN 'due' \
               ELSE 'scheduled' END AS state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state",
        )
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        let oldest_pending: Option<i64> =
            sqlx::query_scalar("SELECT MIN(queued_at) FROM deliveries WHERE status = 'PENDING'")
                .fetch_one(&self.readers)
                .await?;
        Ok(QueueStats {
            by_state: rows,
            oldest_pending,
        })
    }

    /// Gives a claimed delivery back untouched (shutdown).
    async fn release(&self, delivery_id: i64, owner: &str) -> Result<()> {
        sqlx::query("UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?")
            .bind(delivery_id)
            .bind(owner)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    /// When the next delivery falls due (for the worker's sleep).
    async fn next_due(&self) -> Result<Option<Millis>> {
        // Leased deliveries are left out: their lease outlives the wait (which is at most
        // delivery.poll_interval) unless their worker died.
        Ok(sqlx::query_scalar(
            "SELECT next_attempt_at FROM deliveries WHERE status = 'PENDING' \
             AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ORDER BY next_attempt_at LIMIT 1",
        )
        .bind(now_millis())
        .fetch_optional(&self.readers)
        .await?)
    }
}

accounts::accounts_for!(SqliteStore, lock_row = "");
keys::keys_for!(SqliteStore);
categories::categories_for!(SqliteStore, lock_row = "");
links::links_for!(SqliteStore, lock_row = "");
cluster::cluster_for!(SqliteStore, skip_locked = "");
provider_values::provider_values_for!(SqliteStore);
sessions::sessions_for!(SqliteStore);
dashboard::dashboard_for!(
    SqliteStore,
    ids_in = "IN (SELECT value FROM json_each($2))",
    bind_ids = super::json_text::<[String]>
);

/// How often the database file is looked for at its path.
const FILE_CHECK: Duration = Duration::from_secs(2);

/// Watches that the file the store opened is still the one at its path. Writes to a file
/// removed (or replaced) under a running relay would all go to an unlinked file, and a restart
/// would start from an empty database: while the file is not there, writes are refused and
/// readiness fails. Stops with the store.
fn watch_file(path: &Path, health: &Arc<Health>) {
    let Some(opened) = file_identity(path) else {
        return;
    };
    let path = path.to_path_buf();
    let health = Arc::downgrade(health);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FILE_CHECK);
        let mut gone = false;
        loop {
            tick.tick().await;
            let Some(health) = health.upgrade() else {
                break;
            };
            if (file_identity(&path) != Some(opened)) == gone {
                continue;
            }
            gone = !gone;
            if gone {
                let reason = format!(
                    "the database file {} was removed or replaced while the relay was \
                     running: writes are refused until it is back (restore it; a restart would \
                     start from an empty database)",
                    path.display()
                );
                tracing::error!("{reason}");
                health.refuse(Some(reason));
            } else {
                tracing::info!(path = %path.display(), "the database file is back: writes resume");
                health.refuse(None);
            }
        }
    });
}

/// The device and inode of the file at `path`: which file it is, whatever its name.
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Brings the schema up to date in one `BEGIN IMMEDIATE` transaction, once the migrations
/// already applied check out (see `migrations.rs`): processes that open the file together take
/// turns, and the later ones find nothing left to do.
async fn migrate(connection: &mut SqliteConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, \
         applied_at INTEGER NOT NULL, checksum TEXT, applied_by TEXT)",
    )
    .execute(&mut *connection)
    .await?;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    // Tables made before checksums were recorded.
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('schema_migrations')")
            .fetch_all(&mut *tx)
            .await?;
    for column in ["checksum", "applied_by"] {
        if !columns.iter().any(|name| name == column) {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "ALTER TABLE schema_migrations ADD COLUMN {column} TEXT"
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    let applied: Vec<Applied> = sqlx::query_as(migrations::READ_APPLIED)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(version, checksum, applied_by)| Applied {
            version,
            checksum,
            applied_by,
        })
        .collect();
    for migration in migrations::to_apply(MIGRATIONS, &applied)? {
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
        sqlx::query(migrations::RECORD)
            .bind(migration.version())
            .bind(now_millis())
            .bind(migration.checksum())
            .bind(migrations::APPLIED_BY)
            .execute(&mut *tx)
            .await?;
    }
    for (checksum, version) in migrations::unrecorded_checksums(MIGRATIONS, &applied) {
        sqlx::query(migrations::RECORD_CHECKSUM)
            .bind(checksum)
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `(account id, month)` → events counted.
pub(super) const STORED_COUNT: &str =
    "SELECT events FROM quota_usage WHERE account_id = ?1 AND month = ?2";

/// `(account id, key, oldest time in the window)` → request hash and event id.
pub(super) const FIND_IDEMPOTENT: &str = "SELECT request_hash, event_id FROM idempotency_keys \
     WHERE account_id = ?1 AND key = ?2 AND created_at >= ?3";

/// Events counted for the account in `month` so far (never below zero).
pub(super) async fn stored_count<'c>(
    conn: impl sqlx::Executor<'c, Database = Sqlite>,
    account_id: &str,
    month: &str,
) -> Result<i64> {
    let stored: Option<i64> = sqlx::query_scalar(STORED_COUNT)
        .bind(account_id)
        .bind(month)
        .fetch_optional(conn)
        .await?;
    Ok(stored.unwrap_or(0).max(0))
}

pub(super) async fn find_idempotent(
    conn: &mut sqlx::SqliteConnection,
    account_id: &str,
    key: &str,
    now: Millis,
) -> Result<Option<(String, String)>> {
    Ok(sqlx::query_as(FIND_IDEMPOTENT)
        .bind(account_id)
        .bind(key)
        .bind(now - IDEMPOTENCY_WINDOW_MS)
        .fetch_optional(conn)
        .await?)
}

fn event_from_row(row: &SqliteRow) -> Result<EventRecord> {
    Ok(EventRecord {
        id: row.try_get("id")?,
        category: row.try_get("category_name")?,
        description: row.try_get("description")?,
        fields: parse_json(row.try_get("fields")?)?,
        delivery_status: row.try_get("delivery_status")?,
        created_at: row.try_get("created_at")?,
    })
}

fn claimed_from_row(row: &SqliteRow) -> Result<ClaimedDelivery> {
    let link_state: Option<String> = row.try_get("link_state")?;
    Ok(ClaimedDelivery {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
        queued_at: row.try_get("queued_at")?,
        account_id: row.try_get("account_id")?,
        account_fields: parse_json(row.try_get("account_fields")?)?,
        link_token: row.try_get("link_token")?,
        link_state: link_state.as_deref().map(parse_json).transpose()?,
        event_id: row.try_get("event_id")?,
        category: row.try_get("category_name")?,
        color: row.try_get::<i64, _>("category_color")? as u32,
        emoji: row.try_get("category_emoji")?,
        description: row.try_get("description")?,
        fields: parse_json(row.try_get("fields")?)?,
        created_at: row.try_get("created_at")?,
    })
}
