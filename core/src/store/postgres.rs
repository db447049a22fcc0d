//! Storage on PostgreSQL: the scale-out backend, for many relay processes on one database.
//!
//! Same behaviour as [`SqliteStore`](super::SqliteStore), query for query. Where SQLite relies on
//! its single writer to make read-then-write checks hold, this backend serialises explicitly:
//!
//! - migrations run in one transaction under a database-wide advisory lock, so processes that
//!   start together apply each migration exactly once;
//! - event intake and category creation take a per-account advisory transaction lock first, so
//!   two processes never both pass a quota or category limit, nor both accept one
//!   `Idempotency-Key` (the key is re-checked under the lock);
//! - due deliveries are claimed with `FOR UPDATE SKIP LOCKED`, so concurrent workers never get
//!   the same delivery and never wait on each other;
//! - finishing a delivery locks it (the lease is checked on the locked row) and then the event row
//!   before its status is recomputed, so two deliveries of one event finishing at once cannot
//!   leave it PENDING.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::group_commit::GroupCommit;
use super::migrations::{self, Migration, migrations};
use super::postgres_batch::{PgBatchWriter, refresh_event_statuses};
use super::*;
use super::{
    accounts, activity, categories, cluster, dashboard, keys, links, provider_values, retention,
    sessions,
};

pub(super) const MIGRATIONS: &[Migration] = migrations!("postgres":
    "0001_initial",
    "0002_idempotency",
    "0003_processes",
    "0004_account_versions",
    "0005_delivery_queue",
    "0006_dashboard",
    "0007_events_fillfactor",
    "0008_used_link_tokens",
    "0009_session_keys",
    "0010_fair_queue",
    "0011_explicit_channels",
    "0012_channel_secrets",
    "0013_category_channels",
    "0014_account_disabled",
    "0015_api_activity",
    "0016_failed_deliveries",
    "0017_key_names",
);

// UNPREPARED: the hot statements that join an array of ids with a table that grows (claimed
// deliveries, delivered ones, event statuses) are sent with `.persistent(false)`, planned for each
// call's ids. Kept prepared, PostgreSQL settles on a generic plan made from the statistics of the
// moment: in a new database, which fills much faster than autovacuum analyses it, that plan was a
// hash join over a scan of the whole table, and stayed so as the table grew (5-9 ms a batch
// instead of a few index probes; auto_explain over a benchmark run). Planning only these beats
// planning everything (`plan_cache_mode = force_custom_plan`, which made planning a third of the
// server's CPU). Lookups that can be written as LATERAL subqueries by id are, and need neither.

/// Batches written side by side by one process.
const PG_WRITERS: usize = 3;

/// Advisory lock held (for one transaction) while migrations are checked and applied.
const MIGRATION_LOCK: i64 = 0x5069_6e67_5069_6c6f; // "PingPilo"

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// Intake, delivery results and claims, committed in groups.
    writes: GroupCommit,
    health: Arc<Health>,
}

impl PgStore {
    /// Connects to the database at a `postgres://` (or `postgresql://`) URL and brings its schema
    /// up to date, with the default options and a pool of `max_connections`. The database itself
    /// must exist.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        Self::open_with(url, &StoreOptions::with_connections(max_connections)).await
    }

    /// [`PgStore::open`] with the given options. Every connection waits for a lock at most
    /// `busy_timeout` (PostgreSQL's `lock_timeout`), and a request for a pooled connection as
    /// long.
    pub async fn open_with(url: &str, store: &StoreOptions) -> Result<Self> {
        let lock_timeout = format!("{}ms", store.busy_timeout.as_millis());
        let options =
            PgConnectOptions::from_str(url)?.options([("lock_timeout", lock_timeout.as_str())]);
        Self::connect(options, store).await
    }

    async fn connect(options: PgConnectOptions, store: &StoreOptions) -> Result<Self> {
        let max_connections = store.max_connections;
        let database = options.get_database().unwrap_or("(default)").to_string();
        let host = options.get_host().to_string();
        let report = |err: sqlx::Error| {
            tracing::error!(%host, %database, error = %err, "cannot connect to PostgreSQL");
            err
        };
        // One plain connection first: a pool retries until its acquire timeout and then reports
        // only "timed out", where this reports the cause (refused, no such database, auth).
        PgConnection::connect_with(&options)
            .await
            .map_err(report)?
            .close()
            .await
            .map_err(report)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(store.busy_timeout)
            .connect_with(options)
            .await
            .map_err(report)?;
        let health = Arc::new(Health::default());
        let store = Self {
            writes: GroupCommit::start(
                PgBatchWriter { pool: pool.clone() },
                PG_WRITERS,
                health.clone(),
            ),
            pool,
            health,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet, all in one transaction under an advisory lock,
    /// once those already applied check out (see `migrations.rs`): processes starting together
    /// wait for the first one and then find nothing left to do.
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Another process's migrations may take longer than a request's lock wait.
        sqlx::query("SET LOCAL lock_timeout = 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
             ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT; \
             ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS applied_by TEXT",
        )
        .execute(&mut *tx)
        .await?;
        migrations::apply_pending!(tx, MIGRATIONS);
        tx.commit().await?;
        Ok(())
    }
}

/// What `events.rs` and `queue.rs` leave to this backend.
impl PgStore {
    /// The claimed deliveries' rows.
    async fn read_claimed(&self, ids: &[i64]) -> Result<Vec<ClaimedDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.provider, d.attempts, d.queued_at, d.account_id, \
             a.fields AS account_fields, a.disabled_at AS account_disabled_at, l.link_token, l.state AS link_state, l.secret AS link_secret, e.id AS event_id, \
             e.category_name, e.category_color, e.category_emoji, e.description, e.fields, \
             e.created_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN accounts a ON a.id = d.account_id \
             LEFT JOIN channel_links l ON l.account_id = d.account_id AND l.provider = d.provider \
             JOIN unnest($1::bigint[]) AS u(id) ON u.id = d.id ORDER BY d.next_attempt_at, d.id",
        )
        // See UNPREPARED.
        .persistent(false)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(queue::claimed_from_row).collect()
    }

    /// Recomputes the events' delivery statuses (see `postgres_batch.rs`).
    async fn refresh_event_statuses(conn: &mut PgConnection, event_ids: &[EventId]) -> Result<()> {
        refresh_event_statuses(conn, event_ids).await
    }
}

accounts::accounts_for!(PgStore, lock_row = " FOR NO KEY UPDATE");
keys::keys_for!(PgStore);
categories::categories_for!(PgStore, lock_row = " FOR NO KEY UPDATE");
links::links_for!(PgStore, lock_row = " FOR UPDATE OF l");
cluster::cluster_for!(PgStore, skip_locked = " FOR UPDATE SKIP LOCKED");
provider_values::provider_values_for!(PgStore);
sessions::sessions_for!(PgStore);
events::events_for!(PgStore);
queue::queue_for!(PgStore);
retention::retention_for!(PgStore);
activity::activity_for!(PgStore);

/// PostgreSQL reuses deleted rows' space itself (autovacuum).
#[async_trait::async_trait]
impl retention::Space for PgStore {
    async fn shrink(&self, _pages: u32) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn compact(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}
dashboard::dashboard_for!(
    PgStore,
    ids_in = "= ANY($2)",
    bind_ids = <[crate::model::EventId]>::to_vec
);

/// A PostgreSQL database of a test's own, on the server `PINGPILOT_TEST_POSTGRES_URL` names.
#[cfg(test)]
pub(super) mod testing {
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    pub const URL_VAR: &str = "PINGPILOT_TEST_POSTGRES_URL";

    /// `url` with its database (path) replaced by `name`, query string kept.
    pub fn with_database(url: &str, name: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let authority_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        let mut out = format!("{}/{}", &base[..authority_end], name);
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }

    /// A database of its own, dropped (best effort) when the test ends, even by a panic.
    pub struct TestDb {
        admin_url: String,
        name: String,
        pub url: String,
    }

    impl TestDb {
        pub async fn create() -> Option<Self> {
            let Ok(admin_url) = std::env::var(URL_VAR) else {
                eprintln!("{URL_VAR} not set: PostgreSQL test skipped");
                return None;
            };
            let name = format!("pp_{}", ulid::Ulid::new().to_string().to_lowercase());
            let mut conn = PgConnection::connect(&admin_url).await.expect("connect");
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
            conn.close().await.ok();
            let url = with_database(&admin_url, &name);
            Some(Self {
                admin_url,
                name,
                url,
            })
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let admin_url = self.admin_url.clone();
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let dropper = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await;
                        let _ = conn.close().await;
                    }
                });
            });
            let _ = dropper.join();
        }
    }
}

/// What only PostgreSQL has: processes migrating at once, a server without the database. These
/// run only when `PINGPILOT_TEST_POSTGRES_URL` is set; the contract's tests, on both backends,
/// are in `contract/`.
#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::{TestDb, URL_VAR, with_database};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_migrations_are_idempotent_and_safe_concurrently() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move { PgStore::open(&url, 2).await }));
        }
        for task in tasks {
            task.await.expect("join").expect("concurrent open");
        }
        // Through the backend-picking entry point, twice more.
        let store = open(&db.url, &StoreOptions::with_connections(2))
            .await
            .expect("open again");
        store.ping().await.expect("ping");
        let store = PgStore::open(&db.url, 2).await.expect("open again");
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&store.pool)
                .await
                .expect("versions");
        let expected: Vec<i64> = MIGRATIONS.iter().map(Migration::version).collect();
        assert_eq!(versions, expected);
        store.pool.close().await;
    }

    #[tokio::test]
    async fn postgres_open_reports_a_missing_database() {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            return;
        };
        let url = with_database(&admin_url, "pp_does_not_exist");
        let started = std::time::Instant::now();
        let err = match PgStore::open(&url, 2).await {
            Ok(_) => panic!("opened a database that does not exist"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("does not exist"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn postgres_test_urls_swap_the_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "pp_x"),
            "postgres://u@h:5432/pp_x"
        );
        assert_eq!(
            with_database("postgres://u@h", "pp_x"),
            "postgres://u@h/pp_x"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "pp_x"),
            "postgresql://h/pp_x?sslmode=disable"
        );
    }
}
