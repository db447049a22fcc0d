//! SQLite's [`BatchWriter`]: a batch of intake jobs and delivery results in one `BEGIN IMMEDIATE`
//! transaction on the store's single writer connection. Rows go in with multi-row statements, and
//! a batch's writes go together as one multi-statement query, so a batch costs a handful of round
//! trips to sqlx's connection thread rather than a few per job: each is a thread wake-up both
//! ways, which costs more than most of these statements.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::group_commit::{
    BatchWriter, FinishJob, IntakeJob, IntakeLookups, held_results, plan_intake,
};
use super::sqlite::{Writer, find_idempotent, stored_count};
use super::{DeliveryUpdate, IDEMPOTENCY_WINDOW_MS, IntakeResult, Result};
use crate::model::{Millis, now_millis};

/// Rows per multi-row statement, well inside SQLite's limit on bound values.
const ROWS_PER_STATEMENT: usize = 200;

pub struct SqliteBatchWriter {
    pub writer: Writer,
}

#[async_trait]
impl BatchWriter for SqliteBatchWriter {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
    ) -> Result<(Vec<IntakeResult>, Vec<bool>)> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let intake_results = write_intake(&mut tx, intake).await?;
        let finish_results = write_finishes(&mut tx, finishes).await?;
        tx.commit().await?;
        Ok((intake_results, finish_results))
    }
}

async fn write_intake(
    conn: &mut SqliteConnection,
    jobs: &[IntakeJob],
) -> Result<Vec<IntakeResult>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let plan = plan_intake(&mut Lookups(&mut *conn), jobs).await?;
    // Events, deliveries and quota counts in one multi-statement query: one round trip. Its
    // text depends only on the batch's size, so few variants reach the statement cache.
    let mut writes = QueryBuilder::<Sqlite>::new("");
    push_events(&mut writes, &plan.accepted);
    push_deliveries(&mut writes, &plan.accepted);
    push_quota_counts(&mut writes, &plan.counts);
    execute_all(conn, writes).await?;
    if let Some(oldest) = jobs
        .iter()
        .filter(|job| job.idempotency.is_some())
        .map(|job| job.now)
        .min()
    {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(oldest - IDEMPOTENCY_WINDOW_MS)
            .execute(&mut *conn)
            .await?;
    }
    Ok(plan.results)
}

/// Intake's reads and writes inside the batch's transaction.
struct Lookups<'c>(&'c mut SqliteConnection);

#[async_trait]
impl IntakeLookups for Lookups<'_> {
    async fn live_versions(&mut self, key_hashes: &[&str]) -> Result<Vec<(String, i64)>> {
        let mut versions = Vec::with_capacity(key_hashes.len());
        for chunk in key_hashes.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT k.key_hash, a.version FROM api_keys k \
                 JOIN accounts a ON a.id = k.account_id \
                 WHERE k.revoked_at IS NULL AND k.key_hash IN (",
            );
            let mut list = query.separated(", ");
            for hash in chunk {
                list.push_bind(*hash);
            }
            query.push(")");
            versions.extend(query.build_query_as().fetch_all(&mut *self.0).await?);
        }
        Ok(versions)
    }

    async fn earlier_use(
        &mut self,
        account_id: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>> {
        find_idempotent(self.0, account_id, key, now).await
    }

    async fn stored_count(&mut self, account_id: &str, month: &str) -> Result<i64> {
        stored_count(&mut *self.0, account_id, month).await
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
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET \
             request_hash = excluded.request_hash, event_id = excluded.event_id, \
             created_at = excluded.created_at",
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

/// Runs the statements a builder collected, if any.
async fn execute_all(
    conn: &mut SqliteConnection,
    mut statements: QueryBuilder<Sqlite>,
) -> Result<()> {
    if !statements.sql().as_str().is_empty() {
        statements.build().execute(conn).await?;
    }
    Ok(())
}

/// Appends a statement to a multi-statement query. Parameters must stay anonymous (`?`): sqlx
/// numbers those across statements, while `?N` would count within one.
fn begin_statement(query: &mut QueryBuilder<Sqlite>, sql: &str) {
    if !query.sql().as_str().is_empty() {
        query.push("; ");
    }
    query.push(sql);
}

fn push_events(query: &mut QueryBuilder<Sqlite>, accepted: &[(&IntakeJob, String)]) {
    for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            query,
            "INSERT INTO events (id, account_id, category_id, category_name, category_color, \
             category_emoji, description, fields, delivery_status, created_at) ",
        );
        query.push_values(chunk, |mut row, (job, event_id)| {
            row.push_bind(event_id.as_str())
                .push_bind(job.account_id.as_str())
                .push_bind(job.category.id)
                .push_bind(job.category.name.as_str())
                .push_bind(i64::from(job.category.color))
                .push_bind(job.category.emoji.as_deref())
                .push_bind(job.description.as_str())
                .push_bind(job.fields.as_str())
                .push("'PENDING'")
                .push_bind(job.now);
        });
    }
}

fn push_deliveries(query: &mut QueryBuilder<Sqlite>, accepted: &[(&IntakeJob, String)]) {
    let rows: Vec<(&IntakeJob, &str, &str)> = accepted
        .iter()
        .flat_map(|(job, event_id)| {
            job.providers
                .iter()
                .map(move |provider| (*job, event_id.as_str(), *provider))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            query,
            "INSERT INTO deliveries (event_id, account_id, provider, status, queued_at, \
             next_attempt_at) ",
        );
        query.push_values(chunk, |mut row, (job, event_id, provider)| {
            row.push_bind(*event_id)
                .push_bind(job.account_id.as_str())
                .push_bind(*provider)
                .push("'PENDING'")
                .push_bind(job.now)
                .push_bind(job.now);
        });
    }
}

fn push_quota_counts(query: &mut QueryBuilder<Sqlite>, counts: &[((&str, String), i64)]) {
    for ((account_id, month), events) in counts {
        begin_statement(
            query,
            "INSERT INTO quota_usage (account_id, month, events) VALUES (",
        );
        query
            .push_bind(*account_id)
            .push(", ")
            .push_bind(month.as_str())
            .push(", ")
            .push_bind(*events)
            .push(
                ") ON CONFLICT (account_id, month) DO UPDATE SET \
                 events = MAX(events, 0) + excluded.events",
            );
    }
}

/// Records attempts and new states; a result whose lease was lost to another worker is
/// ignored (`false`).
async fn write_finishes(conn: &mut SqliteConnection, jobs: &[FinishJob]) -> Result<Vec<bool>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let leased = leased_deliveries(conn, jobs).await?;
    let (results, held, events) = held_results(jobs, leased);
    // The rare outcomes one statement each, then attempts, deliveries and event statuses in one
    // round trip (statuses last: they read the deliveries).
    let mut delivered = Vec::with_capacity(held.len());
    for job in &held {
        match job.update {
            DeliveryUpdate::Delivered => delivered.push(job.delivery_id),
            _ => update_delivery(conn, job).await?,
        }
    }
    let mut writes = QueryBuilder::<Sqlite>::new("");
    push_attempts(&mut writes, &held);
    push_delivered(&mut writes, &delivered);
    push_status_refresh(&mut writes, &events);
    execute_all(conn, writes).await?;
    Ok(results)
}

/// `delivery id → (event id, lease owner)` of the jobs' deliveries still pending.
async fn leased_deliveries(
    conn: &mut SqliteConnection,
    jobs: &[FinishJob],
) -> Result<HashMap<i64, (String, String)>> {
    let mut leased = HashMap::with_capacity(jobs.len());
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            // By id alone: a condition on status would let SQLite walk the queue index instead.
            "SELECT id, event_id, lease_owner, status FROM deliveries WHERE id IN (",
        );
        let mut list = query.separated(", ");
        for job in chunk {
            list.push_bind(job.delivery_id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            let owner: Option<String> = row.try_get(2)?;
            let status: String = row.try_get(3)?;
            if let (Some(owner), "PENDING") = (owner, status.as_str()) {
                leased.insert(row.try_get(0)?, (row.try_get(1)?, owner));
            }
        }
    }
    Ok(leased)
}

fn push_attempts(query: &mut QueryBuilder<Sqlite>, held: &[&FinishJob]) {
    let attempts: Vec<_> = held
        .iter()
        .filter_map(|job| {
            job.attempt
                .as_ref()
                .map(|attempt| (job.delivery_id, attempt))
        })
        .collect();
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            query,
            "INSERT INTO delivery_attempts (delivery_id, started_at, duration_ms, http_status, \
             error) ",
        );
        query.push_values(chunk, |mut row, (delivery_id, attempt)| {
            row.push_bind(*delivery_id)
                .push_bind(attempt.started_at)
                .push_bind(attempt.duration_ms)
                .push_bind(attempt.http_status.map(i64::from))
                .push_bind(attempt.error.as_deref());
        });
    }
}

fn push_delivered(query: &mut QueryBuilder<Sqlite>, ids: &[i64]) {
    let now = now_millis();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            query,
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             status = 'DELIVERED', waiting_reason = NULL, attempts = attempts + 1, delivered_at = ",
        );
        query.push_bind(now).push(" WHERE id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
    }
}

/// Any outcome but delivered: one statement each (they are the rare ones). Every outcome gives
/// the lease back.
async fn update_delivery(conn: &mut SqliteConnection, job: &FinishJob) -> Result<()> {
    let query = match &job.update {
        DeliveryUpdate::Delivered => {
            let mut query = QueryBuilder::<Sqlite>::new("");
            push_delivered(&mut query, &[job.delivery_id]);
            return execute_all(conn, query).await;
        }
        DeliveryUpdate::Retry { at, counted, error } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?1, \
             attempts = attempts + ?2, last_error = ?3, waiting_reason = NULL WHERE id = ?4",
        )
        .bind(*at)
        .bind(i64::from(*counted))
        .bind(error),
        DeliveryUpdate::Failed { error } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, status = 'FAILED', \
             last_error = ?1, waiting_reason = NULL, attempts = attempts + ?2 WHERE id = ?3",
        )
        .bind(error)
        .bind(i64::from(job.attempt.is_some())),
        DeliveryUpdate::Deferred { at } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?1, \
             waiting_reason = NULL WHERE id = ?2",
        )
        .bind(*at),
        DeliveryUpdate::Waiting { at, reason } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?1, \
             waiting_reason = ?2 WHERE id = ?3",
        )
        .bind(*at)
        .bind(reason),
    };
    query.bind(job.delivery_id).execute(conn).await?;
    Ok(())
}

/// PENDING while any delivery is not final, DELIVERED when all are delivered, FAILED otherwise.
pub(super) async fn refresh_event_statuses(
    conn: &mut SqliteConnection,
    event_ids: &[String],
) -> Result<()> {
    let mut query = QueryBuilder::<Sqlite>::new("");
    push_status_refresh(&mut query, event_ids);
    execute_all(conn, query).await
}

fn push_status_refresh(query: &mut QueryBuilder<Sqlite>, event_ids: &[String]) {
    for chunk in event_ids.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            query,
            "UPDATE events SET delivery_status = CASE \
               WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'PENDING') THEN 'PENDING' \
               WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'FAILED') THEN 'FAILED' \
               ELSE 'DELIVERED' END WHERE id IN (",
        );
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        query.push(")");
    }
}
