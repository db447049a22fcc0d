//! SQLite's [`BatchWriter`]: a batch of intake jobs, delivery results and claims in one
//! `BEGIN IMMEDIATE` transaction, on a connection of its own that only the group-commit thread
//! uses (`GroupCommit::start_on_own_thread`). Its statements run right there, synchronously,
//! through rusqlite: sqlx would send each one to its connection's thread and wait to be woken,
//! and on a loaded machine those wake-ups cost more than the statements.
//! The other writes go through the store's sqlx writer connection; a batch holds that
//! connection's lock, so SQLite never sees two writers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::SqliteConnection;
use tokio::sync::Mutex;

use super::group_commit::{
    BatchWriter, ClaimJob, FAIR_WINDOW, FinishJob, IntakeJob, IntakeLookups, QueuedDelivery,
    Written, held_results, plan_intake,
};
use super::sqlite_checkpoint::Checkpointer;
use super::sqlite_connection::{ConnectionSettings, open_connection};
use super::sqlite_writer::Writer;
use super::{
    DeliveryUpdate, FIND_IDEMPOTENT, IDEMPOTENCY_WINDOW_MS, QUEUE_ENDS, Result, STORED_COUNT,
    events_counted,
};
use crate::model::{AccountId, EventId, Millis, now_millis};

/// Event `?1`'s status from its deliveries: PENDING while any is not final, DELIVERED when all
/// are delivered, FAILED otherwise.
const STATUS_REFRESH: &str = "UPDATE events SET delivery_status = CASE \
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'PENDING') THEN 'PENDING' \
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'FAILED') THEN 'FAILED' \
    ELSE 'DELIVERED' END WHERE id = ?1";

/// The batch's statements, one row each: prepared once and kept, so more rows cost a step
/// each and no new statement text.
const STATEMENT_CACHE: usize = 32;

pub struct SqliteBatchWriter {
    /// The store's sqlx writer connection, held for each batch so no other write overlaps it.
    writer: Writer,
    /// The batch's own connection. Only the group-commit thread locks it; the lock is there
    /// because the writer trait takes `&self`.
    conn: Mutex<Connection>,
    /// Where and how `conn` was opened, to open it again when a failure leaves it unusable.
    path: PathBuf,
    settings: ConnectionSettings,
    /// Checkpoints the WAL that `conn`'s commits grow. Declared after `conn`, so dropped after
    /// it, as [`Checkpointer::watch`] requires.
    checkpointer: Checkpointer,
}

impl SqliteBatchWriter {
    /// Opens the batch's connection to the database file the store's writer already set up
    /// (schema migrated, WAL journal), with the same settings as the store's connections, and
    /// starts the checkpointer its commits wake.
    pub fn open(writer: Writer, path: &Path, settings: ConnectionSettings) -> Result<Self> {
        Self::open_with(writer, path, settings, Checkpointer::start(path, settings)?)
    }

    fn open_with(
        writer: Writer,
        path: &Path,
        settings: ConnectionSettings,
        checkpointer: Checkpointer,
    ) -> Result<Self> {
        let conn = Self::connect(path, settings, &checkpointer)?;
        Ok(Self {
            writer,
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            settings,
            checkpointer,
        })
    }

    fn connect(
        path: &Path,
        settings: ConnectionSettings,
        checkpointer: &Checkpointer,
    ) -> Result<Connection> {
        let conn = open_connection(path, settings)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        checkpointer.watch(&conn);
        Ok(conn)
    }

    /// Ends what a failed batch left of its transaction; a connection that cannot be brought
    /// back out of it is replaced, so the next batch starts clean.
    fn recover(&self, conn: &mut Connection) {
        if conn.is_autocommit() {
            return;
        }
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %err, "could not roll back a failed batch");
        }
        if conn.is_autocommit() {
            return;
        }
        match Self::connect(&self.path, self.settings, &self.checkpointer) {
            Ok(fresh) => *conn = fresh,
            Err(err) => tracing::error!(error = %err, "could not reopen the batch connection"),
        }
    }
}

#[async_trait]
impl BatchWriter for SqliteBatchWriter {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
        claims: &[ClaimJob],
    ) -> Result<Written> {
        let _no_other_writer = self.writer.lock().await?;
        let mut conn = self.conn.lock().await;
        let written = write_transaction(&mut conn, intake, finishes, claims).await;
        if written.is_err() {
            // The transaction is ours to end: a failed statement leaves it open.
            self.recover(&mut conn);
        }
        written
    }
}

/// The whole batch in one transaction: the reads that decide it, intake's writes, the
/// deliveries' results with their events' statuses, then the claims, which may lease
/// deliveries the same batch queued.
async fn write_transaction(
    conn: &mut Connection,
    intake: &[IntakeJob],
    finishes: &[FinishJob],
    claims: &[ClaimJob],
) -> Result<Written> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let leased = leased_deliveries(conn, finishes)?;
    let plan = plan_intake(&mut Lookups { conn }, intake).await?;
    insert_events(conn, &plan.accepted)?;
    insert_deliveries(conn, &plan.deliveries)?;
    add_quota_counts(conn, &plan.counts)?;
    expire_idempotency_keys(conn, intake)?;
    let (finish_results, held, events) = held_results(finishes, leased);
    let now = now_millis();
    for job in held {
        record_result(conn, job, now)?;
    }
    let mut refresh = conn.prepare_cached(STATUS_REFRESH)?;
    for event_id in &events {
        refresh.execute([event_id])?;
    }
    drop(refresh);
    let claimed = claims
        .iter()
        .map(|claim| lease_due(conn, claim))
        .collect::<Result<Vec<_>>>()?;
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(Written {
        intake: plan.results,
        finishes: finish_results,
        claims: claimed,
    })
}

/// `delivery id → (event id, lease owner)` of the finished deliveries still pending.
fn leased_deliveries(
    conn: &Connection,
    finishes: &[FinishJob],
) -> Result<HashMap<i64, (EventId, String)>> {
    let mut statement = conn.prepare_cached(
        "SELECT event_id, lease_owner FROM deliveries WHERE id = ?1 AND status = 'PENDING'",
    )?;
    let mut leased = HashMap::with_capacity(finishes.len());
    for job in finishes {
        let row = statement
            .query_row([job.delivery_id], |row| {
                Ok((row.get::<_, EventId>(0)?, row.get::<_, Option<String>>(1)?))
            })
            .optional()?;
        if let Some((event_id, Some(owner))) = row {
            leased.insert(job.delivery_id, (event_id, owner));
        }
    }
    Ok(leased)
}

/// Intake's reads and writes inside the batch's transaction.
struct Lookups<'c> {
    conn: &'c mut Connection,
}

#[async_trait]
impl IntakeLookups for Lookups<'_> {
    async fn live_versions(&mut self, key_hashes: &[&str]) -> Result<Vec<(String, i64)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT a.version FROM api_keys k JOIN accounts a ON a.id = k.account_id \
             WHERE k.revoked_at IS NULL AND k.key_hash = ?1",
        )?;
        let mut versions = Vec::with_capacity(key_hashes.len());
        for hash in key_hashes {
            if let Some(version) = statement.query_row([hash], |row| row.get(0)).optional()? {
                versions.push((hash.to_string(), version));
            }
        }
        Ok(versions)
    }

    async fn earlier_use(
        &mut self,
        account_id: &AccountId,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, EventId)>> {
        Ok(self
            .conn
            .prepare_cached(FIND_IDEMPOTENT)?
            .query_row(
                params![account_id, key, now - IDEMPOTENCY_WINDOW_MS],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    async fn stored_count(&mut self, account_id: &AccountId, month: &str) -> Result<i64> {
        let stored: Option<i64> = self
            .conn
            .prepare_cached(STORED_COUNT)?
            .query_row(params![account_id, month], |row| row.get(0))
            .optional()?;
        Ok(events_counted(stored))
    }

    async fn queue_ends(
        &mut self,
        provider: &str,
        account_id: &AccountId,
    ) -> Result<(Option<i64>, Option<i64>)> {
        Ok(self
            .conn
            .prepare_cached(QUEUE_ENDS)?
            .query_row(params![provider, account_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?)
    }

    async fn remember_key(
        &mut self,
        job: &IntakeJob,
        key: &str,
        request_hash: &str,
        event_id: &EventId,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (account_id, key, request_hash, event_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account_id, key) DO UPDATE SET \
                 request_hash = excluded.request_hash, event_id = excluded.event_id, \
                 created_at = excluded.created_at",
            )?
            .execute(params![job.account_id, key, request_hash, event_id, job.now])?;
        Ok(())
    }
}

/// Each accepted event.
fn insert_events(conn: &Connection, accepted: &[(&IntakeJob, EventId)]) -> Result<()> {
    let mut event = conn.prepare_cached(
        "INSERT INTO events (id, account_id, category_id, category_name, category_color, \
         category_emoji, description, fields, delivery_status, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'PENDING', ?9)",
    )?;
    for (job, event_id) in accepted {
        let category = &job.category;
        event.execute(params![
            event_id,
            job.account_id,
            category.id,
            category.name,
            i64::from(category.color),
            category.emoji,
            job.description,
            job.fields,
            job.now,
        ])?;
    }
    Ok(())
}

/// The accepted events' deliveries, each at its place in its provider's queue.
fn insert_deliveries(conn: &Connection, deliveries: &[QueuedDelivery<'_>]) -> Result<()> {
    let mut delivery = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, account_id, provider, status, queued_at, \
         next_attempt_at, fair_key) VALUES (?1, ?2, ?3, 'PENDING', ?4, ?4, ?5)",
    )?;
    for queued in deliveries {
        delivery.execute(params![
            queued.event_id,
            queued.account_id,
            queued.provider,
            queued.queued_at,
            queued.fair_key,
        ])?;
    }
    Ok(())
}

fn add_quota_counts(conn: &Connection, counts: &[((&AccountId, String), i64)]) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO quota_usage (account_id, month, events) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id, month) DO UPDATE SET events = MAX(events, 0) + excluded.events",
    )?;
    for ((account_id, month), events) in counts {
        statement.execute(params![account_id, month, events])?;
    }
    Ok(())
}

/// Keys older than the idempotency window, as of the batch's oldest job that carries one.
fn expire_idempotency_keys(conn: &Connection, jobs: &[IntakeJob]) -> Result<()> {
    if let Some(oldest) = jobs
        .iter()
        .filter(|job| job.idempotency.is_some())
        .map(|job| job.now)
        .min()
    {
        conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
            .execute([oldest - IDEMPOTENCY_WINDOW_MS])?;
    }
    Ok(())
}

/// A delivery's attempt, if one was made, and its new state. Every outcome gives the lease
/// back.
fn record_result(conn: &Connection, job: &FinishJob, now: Millis) -> Result<()> {
    if let Some(attempt) = &job.attempt {
        conn.prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, started_at, duration_ms, http_status, \
             error) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            job.delivery_id,
            attempt.started_at,
            attempt.duration_ms,
            attempt.http_status,
            attempt.error,
        ])?;
    }
    let id = job.delivery_id;
    match &job.update {
        DeliveryUpdate::Delivered => conn
            .prepare_cached(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
                 status = 'DELIVERED', waiting_reason = NULL, attempts = attempts + 1, \
                 delivered_at = ?1 WHERE id = ?2",
            )?
            .execute(params![now, id]),
        DeliveryUpdate::Retry { at, counted, error } => conn
            .prepare_cached(concat!(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
                 next_attempt_at = ?1, attempts = attempts + ?2, last_error = ?3, \
                 waiting_reason = NULL, ",
                requeue_fair_key!("max"),
                " WHERE id = ?4"
            ))?
            .execute(params![at, i64::from(*counted), error, id]),
        DeliveryUpdate::Failed { error } => conn
            .prepare_cached(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
                 status = 'FAILED', last_error = ?1, waiting_reason = NULL, \
                 attempts = attempts + ?2 WHERE id = ?3",
            )?
            .execute(params![error, i64::from(job.attempt.is_some()), id]),
        DeliveryUpdate::Deferred { at } => conn
            .prepare_cached(concat!(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
                 next_attempt_at = ?1, waiting_reason = NULL, ",
                requeue_fair_key!("max"),
                " WHERE id = ?2"
            ))?
            .execute(params![at, id]),
        DeliveryUpdate::Waiting { at, reason } => conn
            .prepare_cached(concat!(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
                 next_attempt_at = ?1, waiting_reason = ?2, ",
                requeue_fair_key!("max"),
                " WHERE id = ?3"
            ))?
            .execute(params![at, reason, id]),
    }?;
    Ok(())
}

/// Leases up to the claim's limit of its provider's due deliveries: in queue order among the
/// first [`FAIR_WINDOW`] of the queue, then, for the slots left, the longest due anywhere (a
/// queue whose front holds only deliveries that are not due yet must not stall). Their ids.
fn lease_due(conn: &Connection, claim: &ClaimJob) -> Result<Vec<i64>> {
    let mut ids = lease(
        conn,
        "UPDATE deliveries SET lease_owner = ?1, lease_expires_at = ?2 WHERE id IN (\
         SELECT id FROM (SELECT id, fair_key, next_attempt_at, lease_expires_at FROM deliveries \
           WHERE status = 'PENDING' AND provider = ?3 ORDER BY fair_key LIMIT ?6) \
         WHERE next_attempt_at <= ?4 AND (lease_expires_at IS NULL OR lease_expires_at <= ?4) \
         ORDER BY fair_key LIMIT ?5) RETURNING id",
        claim,
        claim.limit,
        Some(FAIR_WINDOW),
    )?;
    let left = claim.limit.saturating_sub(ids.len() as u32);
    if left > 0 {
        ids.extend(lease(
            conn,
            "UPDATE deliveries SET lease_owner = ?1, lease_expires_at = ?2 WHERE id IN (\
             SELECT id FROM deliveries WHERE status = 'PENDING' AND provider = ?3 \
             AND next_attempt_at <= ?4 AND (lease_expires_at IS NULL OR lease_expires_at <= ?4) \
             ORDER BY next_attempt_at LIMIT ?5) RETURNING id",
            claim,
            left,
            None,
        )?);
    }
    Ok(ids)
}

/// Runs a claim's statement: `?1` owner, `?2` lease end, `?3` provider, `?4` now, `?5` how
/// many, and `?6` the window when there is one.
fn lease(
    conn: &Connection,
    sql: &str,
    claim: &ClaimJob,
    limit: u32,
    window: Option<i64>,
) -> Result<Vec<i64>> {
    let mut statement = conn.prepare_cached(sql)?;
    let limit = i64::from(limit);
    let mut params = params![
        claim.owner,
        claim.lease_until,
        claim.provider,
        claim.now,
        limit
    ]
    .to_vec();
    if let Some(window) = &window {
        params.push(window);
    }
    let ids = statement
        .query_map(params.as_slice(), |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// Refreshes an event's status from its deliveries (see [`STATUS_REFRESH`]), on the store's
/// sqlx writer connection.
pub(super) async fn refresh_event_status(
    conn: &mut SqliteConnection,
    event_id: &EventId,
) -> Result<()> {
    sqlx::query(STATUS_REFRESH)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[path = "sqlite_batch_tests.rs"]
mod tests;
