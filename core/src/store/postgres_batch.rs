//! PostgreSQL's [`BatchWriter`]: a batch of intake jobs and delivery results in one transaction,
//! so concurrent requests share one commit (one WAL flush) and a handful of statements.
//!
//! Other relay processes write the same rows, so the batch takes its locks in a fixed order:
//! the intake lock of each account (sorted), then the deliveries it finishes (by id), then their
//! events (by id). A deadlock with a process that locks otherwise fails the batch, and each job
//! is then written on its own.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use super::group_commit::{
    BatchWriter, FinishJob, IntakeJob, IntakeLookups, held_results, plan_intake,
};
use super::postgres::{INTAKE_LOCK_CLASS, find_idempotent};
use super::{DeliveryUpdate, IDEMPOTENCY_WINDOW_MS, IntakeResult, Result};
use crate::model::{Millis, now_millis};

/// Rows per multi-row statement, well inside PostgreSQL's limit on bound values.
const ROWS_PER_STATEMENT: usize = 1000;

pub struct PgBatchWriter {
    pub pool: PgPool,
}

#[async_trait]
impl BatchWriter for PgBatchWriter {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
    ) -> Result<(Vec<IntakeResult>, Vec<bool>)> {
        let mut tx = self.pool.begin().await?;
        // Intake last: it ends with the account's quota row, which every batch of that account
        // updates, so the row stays locked only until the commit that follows.
        let finish_results = write_finishes(&mut tx, finishes).await?;
        let intake_results = write_intake(&mut tx, intake).await?;
        tx.commit().await?;
        Ok((intake_results, finish_results))
    }
}

async fn write_intake(conn: &mut PgConnection, jobs: &[IntakeJob]) -> Result<Vec<IntakeResult>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    lock_accounts(conn, jobs).await?;
    let versions = current_versions(conn, jobs).await?;
    let plan = plan_intake(&mut Lookups(&mut *conn), jobs, &versions).await?;
    let accepted = plan.accepted;
    insert_events(conn, &accepted).await?;
    insert_deliveries(conn, &accepted).await?;
    if let Some(oldest) = jobs
        .iter()
        .filter(|job| job.idempotency.is_some())
        .map(|job| job.now)
        .min()
    {
        // Expired keys of any account; rows another intake is removing are left to it.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE (account_id, key) IN \
             (SELECT account_id, key FROM idempotency_keys WHERE created_at < $1 \
              FOR UPDATE SKIP LOCKED)",
        )
        .bind(oldest - IDEMPOTENCY_WINDOW_MS)
        .execute(&mut *conn)
        .await?;
    }
    for ((account_id, month), events) in plan.counts {
        sqlx::query(
            "INSERT INTO quota_usage (account_id, month, events) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, month) DO UPDATE \
             SET events = GREATEST(quota_usage.events, 0) + $3",
        )
        .bind(account_id)
        .bind(month)
        .bind(events)
        .execute(&mut *conn)
        .await?;
    }
    Ok(plan.results)
}

/// Checked intake (a quota or an idempotency key) for one account runs one transaction at a
/// time, across processes and writers: each later statement (READ COMMITTED) sees what the
/// previous holder committed. Sorted, so two batches never wait on each other in a circle.
async fn lock_accounts(conn: &mut PgConnection, jobs: &[IntakeJob]) -> Result<()> {
    let mut accounts: Vec<&str> = jobs
        .iter()
        .filter(|job| job.events_limit.is_some() || job.idempotency.is_some())
        .map(|job| job.account_id.as_str())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    if accounts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, hashtext(account_id)) FROM unnest($2::text[]) AS a(account_id)",
    )
    .bind(INTAKE_LOCK_CLASS)
    .bind(&accounts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The account version behind each live API key the batch was checked against.
async fn current_versions<'j>(
    conn: &mut PgConnection,
    jobs: &'j [IntakeJob],
) -> Result<HashMap<&'j str, i64>> {
    let mut hashes: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job.verify.as_ref().map(|(hash, _)| hash.as_str()))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut versions = HashMap::new();
    if hashes.is_empty() {
        return Ok(versions);
    }
    let rows = sqlx::query(
        "SELECT k.key_hash, a.version FROM api_keys k JOIN accounts a ON a.id = k.account_id \
         WHERE k.revoked_at IS NULL AND k.key_hash = ANY($1)",
    )
    .bind(&hashes)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let hash: String = row.try_get(0)?;
        if let Some(known) = hashes.iter().find(|known| **known == hash) {
            versions.insert(*known, row.try_get(1)?);
        }
    }
    Ok(versions)
}

/// Intake's reads and writes inside the batch's transaction.
struct Lookups<'c>(&'c mut PgConnection);

#[async_trait]
impl IntakeLookups for Lookups<'_> {
    async fn earlier_use(
        &mut self,
        account_id: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>> {
        find_idempotent(self.0, account_id, key, now).await
    }

    async fn stored_count(&mut self, account_id: &str, month: &str) -> Result<i64> {
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT events FROM quota_usage WHERE account_id = $1 AND month = $2",
        )
        .bind(account_id)
        .bind(month)
        .fetch_optional(&mut *self.0)
        .await?;
        Ok(stored.unwrap_or(0).max(0))
    }

    async fn remember_key(
        &mut self,
        job: &IntakeJob,
        key: &str,
        request_hash: &str,
        event_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO idempotency_keys (account_id, key, request_hash, event_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
             event_id = EXCLUDED.event_id, created_at = EXCLUDED.created_at",
        )
        .bind(&job.account_id)
        .bind(key)
        .bind(request_hash)
        .bind(event_id)
        .bind(job.now)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }
}

async fn insert_events(conn: &mut PgConnection, accepted: &[(&IntakeJob, String)]) -> Result<()> {
    for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO events (id, account_id, category_id, category_name, category_color, \
             category_emoji, description, fields, delivery_status, created_at) ",
        );
        query.push_values(chunk, |mut row, (job, event_id)| {
            row.push_bind(event_id)
                .push_bind(&job.account_id)
                .push_bind(job.category.id)
                .push_bind(&job.category.name)
                .push_bind(i64::from(job.category.color))
                .push_bind(&job.category.emoji)
                .push_bind(&job.description)
                .push_bind(&job.fields)
                .push("'PENDING'")
                .push_bind(job.now);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_deliveries(
    conn: &mut PgConnection,
    accepted: &[(&IntakeJob, String)],
) -> Result<()> {
    let rows: Vec<(&IntakeJob, &str, &str)> = accepted
        .iter()
        .flat_map(|(job, event_id)| {
            job.providers
                .iter()
                .map(move |provider| (*job, event_id.as_str(), *provider))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO deliveries (event_id, account_id, provider, status, queued_at, \
             next_attempt_at) ",
        );
        query.push_values(chunk, |mut row, (job, event_id, provider)| {
            row.push_bind(*event_id)
                .push_bind(&job.account_id)
                .push_bind(*provider)
                .push("'PENDING'")
                .push_bind(job.now)
                .push_bind(job.now);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records attempts and new states; a result whose lease was lost to another worker is
/// ignored (`false`).
async fn write_finishes(conn: &mut PgConnection, jobs: &[FinishJob]) -> Result<Vec<bool>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let leased = lock_leased(conn, jobs).await?;
    let (results, held, events) = held_results(jobs, leased);
    insert_attempts(conn, &held).await?;
    let delivered: Vec<i64> = held
        .iter()
        .filter(|job| matches!(job.update, DeliveryUpdate::Delivered))
        .map(|job| job.delivery_id)
        .collect();
    if !delivered.is_empty() {
        sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             status = 'DELIVERED', delivered_at = $1, waiting_reason = NULL, \
             attempts = attempts + 1 WHERE id = ANY($2)",
        )
        .bind(now_millis())
        .bind(&delivered)
        .execute(&mut *conn)
        .await?;
    }
    for job in held
        .iter()
        .filter(|job| !matches!(job.update, DeliveryUpdate::Delivered))
    {
        update_delivery(conn, job).await?;
    }
    refresh_event_statuses(conn, &events).await?;
    Ok(results)
}

/// `delivery id → (event id, lease owner)` of the jobs' deliveries still pending and leased,
/// locked until commit (a worker taking over an expired lease waits for them or skips them).
async fn lock_leased(
    conn: &mut PgConnection,
    jobs: &[FinishJob],
) -> Result<HashMap<i64, (String, String)>> {
    let mut ids: Vec<i64> = jobs.iter().map(|job| job.delivery_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT id, event_id, lease_owner FROM deliveries WHERE id = ANY($1) \
         AND status = 'PENDING' AND lease_owner IS NOT NULL ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = HashMap::with_capacity(rows.len());
    for row in rows {
        leased.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(leased)
}

async fn insert_attempts(conn: &mut PgConnection, held: &[&FinishJob]) -> Result<()> {
    let attempts: Vec<_> = held
        .iter()
        .filter_map(|job| {
            job.attempt
                .as_ref()
                .map(|attempt| (job.delivery_id, attempt))
        })
        .collect();
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO delivery_attempts (delivery_id, started_at, duration_ms, http_status, \
             error) ",
        );
        query.push_values(chunk, |mut row, (delivery_id, attempt)| {
            row.push_bind(*delivery_id)
                .push_bind(attempt.started_at)
                .push_bind(attempt.duration_ms)
                .push_bind(attempt.http_status.map(i64::from))
                .push_bind(&attempt.error);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Any outcome but delivered: one statement each (they are the rare ones). Every outcome gives
/// the lease back.
async fn update_delivery(conn: &mut PgConnection, job: &FinishJob) -> Result<()> {
    let query = match &job.update {
        DeliveryUpdate::Delivered => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             status = 'DELIVERED', delivered_at = $1, waiting_reason = NULL, \
             attempts = attempts + 1 WHERE id = $2",
        )
        .bind(now_millis()),
        DeliveryUpdate::Retry { at, counted, error } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, attempts = attempts + $2, last_error = $3, \
             waiting_reason = NULL WHERE id = $4",
        )
        .bind(*at)
        .bind(i64::from(*counted))
        .bind(error),
        DeliveryUpdate::Failed { error } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             status = 'FAILED', last_error = $1, waiting_reason = NULL, \
             attempts = attempts + $2 WHERE id = $3",
        )
        .bind(error)
        .bind(i64::from(job.attempt.is_some())),
        DeliveryUpdate::Deferred { at } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, waiting_reason = NULL WHERE id = $2",
        )
        .bind(*at),
        DeliveryUpdate::Waiting { at, reason } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, waiting_reason = $2 WHERE id = $3",
        )
        .bind(*at)
        .bind(reason),
    };
    query.bind(job.delivery_id).execute(conn).await?;
    Ok(())
}

/// PENDING while any delivery is not final, DELIVERED when all are delivered, FAILED otherwise.
/// The events are locked first (in id order): a process finishing another delivery of the same
/// event then waits, and its update sees this one's result.
pub(super) async fn refresh_event_statuses(
    conn: &mut PgConnection,
    event_ids: &[String],
) -> Result<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT id FROM events WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(event_ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE events SET delivery_status = CASE \
           WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'PENDING') THEN 'PENDING' \
           WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'FAILED') THEN 'FAILED' \
           ELSE 'DELIVERED' END WHERE id = ANY($1)",
    )
    .bind(event_ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
