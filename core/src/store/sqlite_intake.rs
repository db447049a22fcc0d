//! Group commit for SQLite intake: one task owns intake writes; each request sends its event
//! down a channel and awaits its own result, and the task commits every event waiting at that
//! moment in one transaction. Nothing is answered before its commit, so "durable when answered"
//! holds, while concurrent requests share the cost of a commit.

use std::collections::HashMap;

use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{IDEMPOTENCY_WINDOW_MS, IntakeResult, NewEvent, Result, StoreError, json_text};
use crate::model::{Category, Millis, month_key, new_event_id};

/// Most events committed together.
const MAX_BATCH: usize = 256;
/// Requests waiting for the writer before new ones wait for room.
const QUEUE: usize = 4096;

/// An event to write, owned so it can travel to the writer task.
pub struct IntakeJob {
    account_id: String,
    category: Category,
    description: String,
    fields: String,
    providers: Vec<&'static str>,
    events_limit: Option<u64>,
    now: Millis,
    idempotency: Option<(String, String)>,
    reply: oneshot::Sender<Result<IntakeResult>>,
}

#[derive(Clone)]
pub struct IntakeWriter {
    jobs: mpsc::Sender<IntakeJob>,
}

impl IntakeWriter {
    /// Starts the writer task on `pool` (the store's single writer connection).
    pub fn start(pool: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Commits the event (with its deliveries, quota count and idempotency key) and returns
    /// once it is committed, or why it was not.
    pub async fn insert(&self, event: &NewEvent<'_>) -> Result<IntakeResult> {
        let (reply, answer) = oneshot::channel();
        let job = IntakeJob {
            account_id: event.account_id.to_string(),
            category: event.category.clone(),
            description: event.description.to_string(),
            fields: json_text(event.fields),
            providers: event.providers.to_vec(),
            events_limit: event.events_limit,
            now: event.now,
            idempotency: event
                .idempotency
                .map(|key| (key.key.to_string(), key.request_hash.to_string())),
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Corrupt("the intake writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the intake writer dropped a request".into()))?
    }
}

async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<IntakeJob>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match write_batch(&pool, &batch).await {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            // One bad event must not fail its neighbours: write each on its own.
            Err(_) if batch.len() > 1 => {
                for job in batch {
                    let result = write_batch(&pool, std::slice::from_ref(&job))
                        .await
                        .map(|mut results| results.remove(0));
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Corrupt(format!(
                        "intake write failed: {err}"
                    ))));
                }
            }
        }
    }
}

/// Writes a batch in one transaction; the quota of each account is read once and written once.
async fn write_batch(pool: &SqlitePool, batch: &[IntakeJob]) -> Result<Vec<IntakeResult>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut used: HashMap<(String, String), i64> = HashMap::new();
    let mut results = Vec::with_capacity(batch.len());
    let mut any_key = false;
    for job in batch {
        results.push(write_one(&mut tx, job, &mut used).await?);
        any_key |= job.idempotency.is_some();
    }
    for ((account_id, month), events) in used.iter().filter(|(_, n)| **n > 0) {
        sqlx::query(
            "INSERT INTO quota_usage (account_id, month, events) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, month) DO UPDATE SET events = ?3",
        )
        .bind(account_id)
        .bind(month)
        .bind(events)
        .execute(&mut *tx)
        .await?;
    }
    if any_key {
        let oldest = batch.iter().map(|job| job.now).min().unwrap_or_default();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(oldest - IDEMPOTENCY_WINDOW_MS)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(results)
}

async fn write_one(
    tx: &mut Transaction<'_, Sqlite>,
    job: &IntakeJob,
    used: &mut HashMap<(String, String), i64>,
) -> Result<IntakeResult> {
    if let Some((key, hash)) = &job.idempotency {
        // Another request with the same key may have been written since the caller looked
        // (earlier in this batch, or in an earlier one).
        let earlier: Option<(String, String)> = sqlx::query_as(
            "SELECT request_hash, event_id FROM idempotency_keys \
             WHERE account_id = ? AND key = ? AND created_at >= ?",
        )
        .bind(&job.account_id)
        .bind(key)
        .bind(job.now - IDEMPOTENCY_WINDOW_MS)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((first_hash, event_id)) = earlier {
            return Ok(if first_hash == *hash {
                IntakeResult::Replayed { event_id }
            } else {
                IntakeResult::KeyConflict
            });
        }
    }
    let quota_key = (job.account_id.clone(), month_key(job.now));
    let count = match used.get(&quota_key) {
        Some(count) => *count,
        None => {
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT events FROM quota_usage WHERE account_id = ? AND month = ?",
            )
            .bind(&quota_key.0)
            .bind(&quota_key.1)
            .fetch_optional(&mut **tx)
            .await?;
            stored.unwrap_or(0).max(0)
        }
    };
    if job.events_limit.is_some_and(|limit| count as u64 >= limit) {
        used.entry(quota_key).or_insert(count);
        return Ok(IntakeResult::QuotaExceeded);
    }
    let event_id = new_event_id();
    let category = &job.category;
    sqlx::query(
        "INSERT INTO events (id, account_id, category_id, category_name, category_color, category_emoji, \
         description, fields, delivery_status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', ?)",
    )
    .bind(&event_id)
    .bind(&job.account_id)
    .bind(category.id)
    .bind(&category.name)
    .bind(category.color as i64)
    .bind(&category.emoji)
    .bind(&job.description)
    .bind(&job.fields)
    .bind(job.now)
    .execute(&mut **tx)
    .await?;
    for provider in &job.providers {
        sqlx::query(
            "INSERT INTO deliveries (event_id, account_id, provider, status, queued_at, next_attempt_at) \
             VALUES (?, ?, ?, 'PENDING', ?, ?)",
        )
        .bind(&event_id)
        .bind(&job.account_id)
        .bind(provider)
        .bind(job.now)
        .bind(job.now)
        .execute(&mut **tx)
        .await?;
    }
    used.insert(quota_key, count + 1);
    if let Some((key, hash)) = &job.idempotency {
        sqlx::query(
            "INSERT INTO idempotency_keys (account_id, key, request_hash, event_id, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
             event_id = excluded.event_id, created_at = excluded.created_at",
        )
        .bind(&job.account_id)
        .bind(key)
        .bind(hash)
        .bind(&event_id)
        .bind(job.now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(IntakeResult::Accepted { event_id })
}
