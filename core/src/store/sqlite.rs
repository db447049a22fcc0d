//! Storage on SQLite: one writer connection (every write is serialised, so read-then-write checks
//! such as quotas hold under concurrency; intake, delivery results and claims are committed in
//! groups on it), a pool of readers, WAL journal.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use pingpilot_config::SqliteSynchronous as Synchronous;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::group_commit::GroupCommit;
use super::migrations::{self, Migration, migrations};
use super::sqlite_batch::{SqliteBatchWriter, refresh_event_status};
use super::sqlite_writer::Writer;
use super::*;
use super::{
    accounts, activity, categories, cluster, dashboard, keys, links, provider_values, retention,
    sessions,
};

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
    "0010_explicit_channels",
    "0011_channel_secrets",
    "0012_category_channels",
    "0013_account_disabled",
    "0014_api_activity",
    "0015_failed_deliveries",
    "0016_key_names",
);

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
        // A new file can give deleted rows' space back (see `Space`); the pragma must come
        // before its first table, and changes nothing in an existing file.
        let mut connection = connect
            .clone()
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .connect()
            .await?;
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

/// What `events.rs` and `queue.rs` leave to this backend.
impl SqliteStore {
    /// The claimed deliveries' rows, read on a reader, away from the writer. The ids go in as
    /// one JSON array: one statement for any number of them, rather than a variant per count
    /// in every reader's statement cache.
    async fn read_claimed(&self, ids: &[i64]) -> Result<Vec<ClaimedDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.provider, d.attempts, d.queued_at, d.account_id, a.fields AS account_fields, a.disabled_at AS account_disabled_at, \
             l.link_token, l.state AS link_state, l.secret AS link_secret, e.id AS event_id, e.category_name, e.category_color, \
             e.category_emoji, e.description, e.fields, e.created_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id JOIN accounts a ON a.id = d.account_id \
             LEFT JOIN channel_links l ON l.account_id = d.account_id AND l.provider = d.provider \
             WHERE d.id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_text(&ids))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(queue::claimed_from_row).collect()
    }

    /// Recomputes the events' delivery statuses (see `sqlite_batch.rs`).
    async fn refresh_event_statuses(
        conn: &mut SqliteConnection,
        event_ids: &[EventId],
    ) -> Result<()> {
        for event_id in event_ids {
            refresh_event_status(conn, event_id).await?;
        }
        Ok(())
    }
}

accounts::accounts_for!(SqliteStore, lock_row = "");
keys::keys_for!(SqliteStore);
categories::categories_for!(SqliteStore, lock_row = "");
links::links_for!(SqliteStore, lock_row = "");
cluster::cluster_for!(SqliteStore, skip_locked = "");
provider_values::provider_values_for!(SqliteStore);
sessions::sessions_for!(SqliteStore);
events::events_for!(SqliteStore);
queue::queue_for!(SqliteStore);
retention::retention_for!(SqliteStore);
activity::activity_for!(SqliteStore);
dashboard::dashboard_for!(
    SqliteStore,
    ids_in = "IN (SELECT value FROM json_each($2))",
    bind_ids = super::json_text::<[crate::model::EventId]>
);

#[async_trait::async_trait]
impl retention::Space for SqliteStore {
    async fn shrink(&self, pages: u32) -> Result<Option<u64>> {
        let mut conn = self.writer.lock().await?;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await?;
        if mode != INCREMENTAL_VACUUM {
            return Ok(None);
        }
        let before = file_bytes(&mut conn).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("PRAGMA incremental_vacuum({pages})")))
            .execute(&mut *conn)
            .await?;
        let after = file_bytes(&mut conn).await?;
        Ok(Some(before.saturating_sub(after)))
    }

    async fn compact(&self) -> Result<Option<u64>> {
        let mut conn = self.writer.lock().await?;
        let before = file_bytes(&mut conn).await?;
        sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            .execute(&mut *conn)
            .await?;
        let after = file_bytes(&mut conn).await?;
        Ok(Some(before.saturating_sub(after)))
    }
}

/// `PRAGMA auto_vacuum`'s value for incremental vacuum.
const INCREMENTAL_VACUUM: i64 = 2;

/// The database file's size in bytes: its pages times their size.
async fn file_bytes(conn: &mut SqliteConnection) -> Result<u64> {
    let (pages, size): (i64, i64) =
        sqlx::query_as("SELECT page_count, page_size FROM pragma_page_count, pragma_page_size")
            .fetch_one(&mut *conn)
            .await?;
    Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
}

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
    migrations::apply_pending!(tx, MIGRATIONS);
    tx.commit().await?;
    Ok(())
}
