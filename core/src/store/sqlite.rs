//! Storage on SQLite: one writer connection (every write is serialised, so read-then-write checks
//! such as quotas hold under concurrency; intake, delivery results and claims are committed in
//! groups on it), a pool of readers, WAL journal.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_config::SqliteSynchronous as Synchronous;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, QueryBuilder, Row, Sqlite};

use super::group_commit::GroupCommit;
use super::migrations::{self, Applied, Migration, migrations};
use super::sqlite_batch::{SqliteBatchWriter, refresh_event_status};
use super::*;
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

const CATEGORY_SELECT: &str = "SELECT c.id, c.name, c.color, c.emoji, c.created_at, \
        (SELECT COUNT(*) FROM events e WHERE e.category_id = c.id) AS events_count, \
        (SELECT MAX(e.created_at) FROM events e WHERE e.category_id = c.id) AS last_ping \
        FROM categories c";

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

    async fn find_link(
        &self,
        account_id: &str,
        provider: &str,
    ) -> Result<Option<(String, Option<Value>)>> {
        let row = sqlx::query(
            "SELECT link_token, state FROM channel_links WHERE account_id = ? AND provider = ?",
        )
        .bind(account_id)
        .bind(provider)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(link_from_row).transpose()
    }
}

#[async_trait]
impl Storage for SqliteStore {
    fn health(&self) -> &Health {
        &self.health
    }

    async fn write_heartbeat(&self, process_id: &str, now: Millis, window_ms: i64) -> Result<u32> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO processes (id, last_seen) VALUES (?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(process_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM processes WHERE last_seen < ?")
            .bind(now - window_ms)
            .execute(&mut *tx)
            .await?;
        let alive: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM processes")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(alive.max(1) as u32)
    }

    async fn forget_process(&self, process_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM processes WHERE id = ?")
            .bind(process_id)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool> {
        let held = sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at <= ?4",
        )
        .bind(name)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(held.rows_affected() > 0)
    }

    async fn query_one(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    // ----- accounts and keys -----

    /// Creates an account with one API key; returns the account and the key in clear (the only
    /// time it exists outside the caller).
    async fn create_account(
        &self,
        name: &str,
        email: Option<&str>,
        plan: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<(Account, String)> {
        let account = Account {
            id: new_account_id(),
            name: name.to_string(),
            email: email.map(str::to_string),
            plan: plan.to_string(),
            fields: fields.clone(),
            channels: BTreeMap::new(),
            created_at: now_millis(),
        };
        let key = new_api_key();
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO accounts (id, name, email, plan, fields, channels, created_at) VALUES (?, ?, ?, ?, ?, '{}', ?)")
            .bind(&account.id)
            .bind(&account.name)
            .bind(&account.email)
            .bind(&account.plan)
            .bind(json_text(&account.fields))
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
        insert_key(&mut tx, &account.id, &key, account.created_at).await?;
        tx.commit().await?;
        Ok((account, key))
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn set_plan(&self, account_id: &str, plan: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE accounts SET plan = ? WHERE id = ?")
            .bind(plan)
            .bind(account_id)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Applies account changes; returns the account as it is afterwards. Deliveries waiting on
    /// this account are looked at again right away.
    async fn update_account(&self, id: &str, changes: &AccountChanges) -> Result<Option<Account>> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut account) = row.as_ref().map(account_from_row).transpose()? else {
            return Ok(None);
        };
        for (field, value) in &changes.fields {
            match value {
                Some(value) => account.fields.insert(field.clone(), value.clone()),
                None => account.fields.remove(field),
            };
        }
        account.channels.extend(changes.channels.clone());
        if let Some(name) = &changes.name {
            account.name = name.clone();
        }
        if let Some(email) = &changes.email {
            account.email = email.clone();
        }
        sqlx::query(
            "UPDATE accounts SET name = ?, email = ?, fields = ?, channels = ? WHERE id = ?",
        )
        .bind(&account.name)
        .bind(&account.email)
        .bind(json_text(&account.fields))
        .bind(json_text(&account.channels))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        wake_waiting(&mut tx, id, None).await?;
        tx.commit().await?;
        Ok(Some(account))
    }

    async fn authenticate(&self, key_hash: &str) -> Result<Option<Authenticated>> {
        let row = sqlx::query(
            "SELECT a.*, k.id AS key_id, k.last_used_at AS key_last_used_at FROM api_keys k \
             JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|row| {
            Ok(Authenticated {
                account: account_from_row(&row)?,
                key_id: row.try_get("key_id")?,
                key_last_used_at: row.try_get("key_last_used_at")?,
                account_version: row.try_get("version")?,
            })
        })
        .transpose()
    }

    async fn touch_key(&self, key_id: &str, at: Millis) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(key_id)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    /// Creates a key; `None` when the account does not exist.
    async fn create_key(&self, account_id: &str) -> Result<Option<(ApiKeyInfo, String)>> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = ?")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let key = new_api_key();
        let info = insert_key(&mut tx, account_id, &key, now_millis()).await?;
        tx.commit().await?;
        Ok(Some((info, key)))
    }

    async fn list_keys(&self, account_id: &str) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, prefix, created_at, last_used_at FROM api_keys \
             WHERE account_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKeyInfo {
                    id: row.try_get("id")?,
                    prefix: row.try_get("prefix")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// Revokes a key, limited to one account's keys when `account_id` is given. Returns whether a
    /// live key was revoked.
    async fn revoke_key(&self, key_id: &str, account_id: Option<&str>) -> Result<bool> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
             AND (?3 IS NULL OR account_id = ?3)",
        )
        .bind(now_millis())
        .bind(key_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        let revoked = done.rows_affected() > 0;
        if revoked {
            // Its dashboard sessions end with it (the session lookup would refuse them anyway;
            // this frees their rows at once).
            sqlx::query("DELETE FROM dashboard_sessions WHERE key_id = ?")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    // ----- channel links -----

    /// The account's link token for a provider, created on first use.
    async fn link_token(
        &self,
        account_id: &str,
        provider: &str,
    ) -> Result<(String, Option<Value>)> {
        if let Some(found) = self.find_link(account_id, provider).await? {
            return Ok(found);
        }
        let mut writer = self.writer.lock().await?;
        sqlx::query("INSERT OR IGNORE INTO channel_links (account_id, provider, link_token) VALUES (?, ?, ?)")
            .bind(account_id)
            .bind(provider)
            .bind(new_link_token())
            .execute(&mut *writer)
            .await?;
        let row = sqlx::query(
            "SELECT link_token, state FROM channel_links WHERE account_id = ? AND provider = ?",
        )
        .bind(account_id)
        .bind(provider)
        .fetch_one(&mut *writer)
        .await?;
        link_from_row(&row)
    }

    /// Links the account holding the token: checked, stored and the token replaced under
    /// `BEGIN IMMEDIATE`, so a second use of the token waits and then finds none.
    async fn link_account(&self, provider: &str, request: &LinkRequest<'_>) -> Result<LinkOutcome> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "SELECT a.id, a.name, a.fields, l.state FROM channel_links l \
             JOIN accounts a ON a.id = l.account_id WHERE l.provider = ? AND l.link_token = ?",
        )
        .bind(provider)
        .bind(request.link_token)
        .fetch_optional(&mut *tx)
        .await?;
        // Nothing changes unless linked; the rollbacks free the lock at once.
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(LinkOutcome::UnknownToken);
        };
        let account_id: String = row.try_get("id")?;
        let fields: BTreeMap<String, String> = parse_json(row.try_get("fields")?)?;
        if let Some(refusal) = link_refusal(&fields, request) {
            tx.rollback().await?;
            return Ok(refusal);
        }
        let previous: Option<String> = row.try_get("state")?;
        sqlx::query(
            "UPDATE channel_links SET state = ?, link_token = ? \
             WHERE account_id = ? AND provider = ?",
        )
        .bind(json_text(&request.state))
        .bind(new_link_token())
        .bind(&account_id)
        .bind(provider)
        .execute(&mut *tx)
        .await?;
        wake_waiting(&mut tx, &account_id, Some(provider)).await?;
        tx.commit().await?;
        Ok(LinkOutcome::Linked {
            account_name: row.try_get("name")?,
            previous_state: previous.as_deref().map(parse_json).transpose()?,
        })
    }

    async fn provider_value(&self, provider: &str, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM provider_values WHERE provider = ? AND key = ?")
                .bind(provider)
                .bind(key)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn set_provider_value(&self, provider: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO provider_values (provider, key, value) VALUES (?, ?, ?) \
             ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value",
        )
        .bind(provider)
        .bind(key)
        .bind(value)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(())
    }

    // ----- categories -----

    async fn categories(&self, account_id: &str) -> Result<Vec<Category>> {
        let sql = format!(
            "{} WHERE c.account_id = ? ORDER BY c.created_at, c.id",
            CATEGORY_SELECT
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(category_from_row).collect()
    }

    /// The category of that name, matched case-insensitively.
    async fn category(&self, account_id: &str, name: &str) -> Result<Option<Category>> {
        let sql = format!(
            "{} WHERE c.account_id = ? AND c.name = lower(?)",
            CATEGORY_SELECT
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(category_from_row).transpose()
    }

    async fn category_for_intake(&self, account_id: &str, name: &str) -> Result<Option<Category>> {
        let row = sqlx::query(
            "SELECT c.id, c.name, c.color, c.emoji, c.created_at, 0 AS events_count, NULL AS last_ping \
             FROM categories c WHERE c.account_id = ? AND c.name = lower(?)",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(category_from_row).transpose()
    }

    async fn count_categories(&self, account_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE account_id = ?")
                .bind(account_id)
                .fetch_one(&self.readers)
                .await?,
        )
    }

    async fn create_category(
        &self,
        account_id: &str,
        name: &str,
        color: u32,
        emoji: Option<&str>,
        limit: Option<u64>,
    ) -> Result<CategoryCreate> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let existing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE account_id = ?")
                .bind(account_id)
                .fetch_one(&mut *tx)
                .await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM categories WHERE account_id = ? AND name = ?")
                .bind(account_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Ok(CategoryCreate::Duplicate);
        }
        if limit.is_some_and(|limit| existing as u64 >= limit) {
            return Ok(CategoryCreate::LimitReached);
        }
        let created_at = now_millis();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO categories (account_id, name, color, emoji, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(account_id)
        .bind(name)
        .bind(color as i64)
        .bind(emoji)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CategoryCreate::Created(Category {
            id,
            name: name.to_string(),
            color,
            emoji: emoji.map(str::to_string),
            created_at,
            events_count: 0,
            last_ping: None,
        }))
    }

    async fn update_category(
        &self,
        account_id: &str,
        name: &str,
        changes: &CategoryChanges,
    ) -> Result<CategoryUpdate> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM categories WHERE account_id = ? AND name = lower(?)",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(CategoryUpdate::NotFound);
        };
        let mut update = QueryBuilder::<Sqlite>::new("UPDATE categories SET id = id");
        if let Some(new_name) = &changes.name {
            update.push(", name = ").push_bind(new_name.clone());
        }
        if let Some(color) = changes.color {
            update.push(", color = ").push_bind(color as i64);
        }
        if let Some(emoji) = &changes.emoji {
            update.push(", emoji = ").push_bind(emoji.clone());
        }
        update.push(" WHERE id = ").push_bind(id);
        match update.build().execute(&mut *tx).await {
            Err(err) if is_unique_violation(&err) => return Ok(CategoryUpdate::Duplicate),
            other => other?,
        };
        tx.commit().await?;
        let sql = format!("{} WHERE c.id = ?", CATEGORY_SELECT);
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *writer)
            .await?;
        Ok(CategoryUpdate::Updated(category_from_row(&row)?))
    }

    async fn delete_category(&self, account_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM categories WHERE account_id = ? AND name = lower(?)")
            .bind(account_id)
            .bind(name)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

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

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    account_id: &str,
    key: &str,
    now: Millis,
) -> Result<ApiKeyInfo> {
    let info = ApiKeyInfo {
        id: new_key_id(),
        prefix: key_prefix(key),
        created_at: now,
        last_used_at: None,
    };
    sqlx::query("INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(&info.id)
        .bind(account_id)
        .bind(hash_api_key(key))
        .bind(&info.prefix)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(info)
}

/// Makes deliveries waiting for a channel of the account due now.
async fn wake_waiting(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    account_id: &str,
    provider: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET next_attempt_at = ?1 WHERE account_id = ?2 AND status = 'PENDING' \
         AND waiting_reason IS NOT NULL AND (?3 IS NULL OR provider = ?3)",
    )
    .bind(now_millis())
    .bind(account_id)
    .bind(provider)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn account_from_row(row: &SqliteRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        plan: row.try_get("plan")?,
        fields: parse_json(row.try_get("fields")?)?,
        channels: parse_json(row.try_get("channels")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn category_from_row(row: &SqliteRow) -> Result<Category> {
    Ok(Category {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        color: row.try_get::<i64, _>("color")? as u32,
        emoji: row.try_get("emoji")?,
        created_at: row.try_get("created_at")?,
        events_count: row.try_get("events_count")?,
        last_ping: row.try_get("last_ping")?,
    })
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

fn link_from_row(row: &SqliteRow) -> Result<(String, Option<Value>)> {
    let state: Option<String> = row.try_get("state")?;
    Ok((
        row.try_get("link_token")?,
        state.as_deref().map(parse_json).transpose()?,
    ))
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
