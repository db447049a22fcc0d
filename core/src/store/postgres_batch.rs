//! PostgreSQL's [`BatchWriter`]: a batch of intake jobs and delivery results in one transaction,
//! so concurrent requests share one commit (one WAL flush) and a handful of statements.
//!
//! Other relay processes write the same rows, so the batch takes its locks in a fixed order:
//! the deliveries it finishes (the delivered ones by id, then the rest), their events (by id),
//! then the intake lock of each account (sorted). A deadlock with a process that locks otherwise fails the batch, and each job
//! is then written on its own.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Row};

use super::group_commit::{
    BatchWriter, ClaimJob, FAIR_WINDOW, FinishJob, IntakeJob, IntakeLookups, QueuedDelivery,
    Written, held_results, plan_intake,
};
use super::{
    DeliveryUpdate, FIND_IDEMPOTENT, IDEMPOTENCY_WINDOW_MS, IntakeResult, QUEUE_ENDS, Result,
    STORED_COUNT, events_counted,
};
use crate::model::{AccountId, DeliveryStatus, EventId, Millis, now_millis};

pub struct PgBatchWriter {
    pub pool: PgPool,
}

#[async_trait]
impl BatchWriter for PgBatchWriter {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
        claims: &[ClaimJob],
    ) -> Result<Written> {
        let mut tx = self.pool.begin().await?;
        // Intake last: it ends with the account's quota row, which every batch of that account
        // updates, so the row stays locked only until the commit that follows.
        let finishes = write_finishes(&mut tx, finishes).await?;
        let mut leased = Vec::with_capacity(claims.len());
        for claim in claims {
            leased.push(lease_due(&mut tx, claim).await?);
        }
        let intake = write_intake(&mut tx, intake).await?;
        tx.commit().await?;
        Ok(Written {
            intake,
            finishes,
            claims: leased,
        })
    }
}

async fn write_intake(conn: &mut PgConnection, jobs: &[IntakeJob]) -> Result<Vec<IntakeResult>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    lock_accounts(conn, jobs).await?;
    let plan = plan_intake(&mut Lookups(&mut *conn), jobs).await?;
    insert_events(conn, &plan.accepted).await?;
    insert_deliveries(conn, &plan.deliveries).await?;
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

/// Intake's reads and writes inside the batch's transaction.
struct Lookups<'c>(&'c mut PgConnection);

#[async_trait]
impl IntakeLookups for Lookups<'_> {
    async fn live_versions(&mut self, key_hashes: &[&str]) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT k.key_hash, a.version FROM unnest($1::text[]) AS u(hash) \
             JOIN api_keys k ON k.key_hash = u.hash JOIN accounts a ON a.id = k.account_id \
             WHERE k.revoked_at IS NULL",
        )
        .bind(key_hashes)
        .fetch_all(&mut *self.0)
        .await?)
    }

    async fn earlier_use(
        &mut self,
        account_id: &AccountId,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, EventId)>> {
        Ok(sqlx::query_as(FIND_IDEMPOTENT)
            .bind(account_id)
            .bind(key)
            .bind(now - IDEMPOTENCY_WINDOW_MS)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn stored_count(&mut self, account_id: &AccountId, month: &str) -> Result<i64> {
        let stored: Option<i64> = sqlx::query_scalar(STORED_COUNT)
            .bind(account_id)
            .bind(month)
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(events_counted(stored))
    }

    async fn queue_ends(
        &mut self,
        provider: &str,
        account_id: &AccountId,
    ) -> Result<(Option<i64>, Option<i64>)> {
        Ok(sqlx::query_as(QUEUE_ENDS)
            .bind(provider)
            .bind(account_id)
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn remember_key(
        &mut self,
        job: &IntakeJob,
        key: &str,
        request_hash: &str,
        event_id: &EventId,
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

// Rows go in as one array per column through `unnest`: the statement text is the same for any
// number of rows, so PostgreSQL prepares it once per connection instead of parsing and planning
// a new multi-row VALUES list for every batch.

async fn insert_events(conn: &mut PgConnection, accepted: &[(&IntakeJob, EventId)]) -> Result<()> {
    if accepted.is_empty() {
        return Ok(());
    }
    let column = |value: fn(&IntakeJob) -> &str| -> Vec<&str> {
        accepted.iter().map(|(job, _)| value(job)).collect()
    };
    let ids: Vec<&str> = accepted.iter().map(|(_, id)| id.as_str()).collect();
    let category_ids: Vec<i64> = accepted.iter().map(|(job, _)| job.category.id).collect();
    let colors: Vec<i64> = accepted
        .iter()
        .map(|(job, _)| i64::from(job.category.color))
        .collect();
    let emojis: Vec<Option<&str>> = accepted
        .iter()
        .map(|(job, _)| job.category.emoji.as_deref())
        .collect();
    let created: Vec<i64> = accepted.iter().map(|(job, _)| job.now).collect();
    sqlx::query(
        "INSERT INTO events (id, account_id, category_id, category_name, category_color, \
         category_emoji, description, fields, delivery_status, created_at) \
         SELECT id, account_id, category_id, category_name, category_color, category_emoji, \
         description, fields, 'PENDING', created_at FROM unnest($1::text[], $2::text[], \
         $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], \
         $9::bigint[]) AS r(id, account_id, category_id, category_name, category_color, \
         category_emoji, description, fields, created_at)",
    )
    .bind(&ids)
    .bind(column(|job| &job.account_id))
    .bind(&category_ids)
    .bind(column(|job| &job.category.name))
    .bind(&colors)
    .bind(&emojis)
    .bind(column(|job| &job.description))
    .bind(column(|job| &job.fields))
    .bind(&created)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_deliveries(
    conn: &mut PgConnection,
    deliveries: &[QueuedDelivery<'_>],
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    let account_ids: Vec<&str> = deliveries.iter().map(|d| d.account_id.as_str()).collect();
    let providers: Vec<&str> = deliveries.iter().map(|d| d.provider).collect();
    let queued: Vec<i64> = deliveries.iter().map(|d| d.queued_at).collect();
    let keys: Vec<i64> = deliveries.iter().map(|d| d.fair_key).collect();
    sqlx::query(
        "INSERT INTO deliveries (event_id, account_id, provider, status, queued_at, \
         next_attempt_at, fair_key) SELECT event_id, account_id, provider, 'PENDING', queued_at, \
         queued_at, fair_key FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
         $5::bigint[]) AS r(event_id, account_id, provider, queued_at, fair_key)",
    )
    .bind(&event_ids)
    .bind(&account_ids)
    .bind(&providers)
    .bind(&queued)
    .bind(&keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records attempts and new states; a result whose lease was lost to another worker is
/// ignored (`false`). Each update changes only rows still pending and leased to the job's
/// owner, and says which it changed: no separate pass locks the rows first.
async fn write_finishes(conn: &mut PgConnection, jobs: &[FinishJob]) -> Result<Vec<bool>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut changed = finish_delivered(conn, jobs).await?;
    for job in jobs
        .iter()
        .filter(|job| !matches!(job.update, DeliveryUpdate::Delivered))
    {
        if let Some(event_id) = update_delivery(conn, job).await? {
            changed.insert(job.delivery_id, (event_id, job.owner.clone()));
        }
    }
    let (results, held, events) = held_results(jobs, changed);
    insert_attempts(conn, &held).await?;
    refresh_event_statuses(conn, &events).await?;
    Ok(results)
}

/// The delivered ones in one statement (the common outcome): `delivery id → (event id,
/// owner)` of the rows it changed.
async fn finish_delivered(
    conn: &mut PgConnection,
    jobs: &[FinishJob],
) -> Result<HashMap<i64, (EventId, String)>> {
    let mut delivered: Vec<(i64, &str)> = jobs
        .iter()
        .filter(|job| matches!(job.update, DeliveryUpdate::Delivered))
        .map(|job| (job.delivery_id, job.owner.as_str()))
        .collect();
    if delivered.is_empty() {
        return Ok(HashMap::new());
    }
    // In id order, so two batches finishing the same rows lock them in the same order.
    delivered.sort_unstable();
    delivered.dedup();
    let (ids, owners): (Vec<i64>, Vec<&str>) = delivered.into_iter().unzip();
    // Not kept prepared, like the other statements that join an id array with a growing
    // table: see `UNPREPARED` in postgres.rs.
    let rows = sqlx::query(
        "UPDATE deliveries d SET lease_owner = NULL, lease_expires_at = NULL, \
         status = 'DELIVERED', delivered_at = $1, waiting_reason = NULL, \
         attempts = attempts + 1 FROM unnest($2::bigint[], $3::text[]) AS u(id, owner) \
         WHERE d.id = u.id AND d.status = 'PENDING' AND d.lease_owner = u.owner \
         RETURNING d.id, d.event_id, u.owner",
    )
    .persistent(false)
    .bind(now_millis())
    .bind(&ids)
    .bind(&owners)
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = HashMap::with_capacity(rows.len());
    for row in rows {
        changed.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(changed)
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
    if attempts.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = attempts.iter().map(|(id, _)| *id).collect();
    let started: Vec<i64> = attempts.iter().map(|(_, a)| a.started_at).collect();
    let durations: Vec<i64> = attempts.iter().map(|(_, a)| a.duration_ms).collect();
    let statuses: Vec<Option<i64>> = attempts
        .iter()
        .map(|(_, a)| a.http_status.map(i64::from))
        .collect();
    let errors: Vec<Option<&str>> = attempts.iter().map(|(_, a)| a.error.as_deref()).collect();
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, started_at, duration_ms, http_status, error) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])",
    )
    .bind(&ids)
    .bind(&started)
    .bind(&durations)
    .bind(&statuses)
    .bind(&errors)
    .execute(conn)
    .await?;
    Ok(())
}

/// Any outcome but delivered: one statement each (they are the rare ones). Every outcome gives
/// the lease back. The event id when the job still held its lease.
async fn update_delivery(conn: &mut PgConnection, job: &FinishJob) -> Result<Option<EventId>> {
    // The last two parameters of each are the delivery id and the owner it must be leased to.
    let query = match &job.update {
        DeliveryUpdate::Delivered => return Ok(None),
        DeliveryUpdate::Retry { at, counted, error } => sqlx::query(concat!(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, attempts = attempts + $2, last_error = $3, \
             waiting_reason = NULL, ",
            requeue_fair_key!("GREATEST"),
            " WHERE id = $4 AND status = 'PENDING' AND lease_owner = $5 RETURNING event_id"
        ))
        .bind(*at)
        .bind(i64::from(*counted))
        .bind(error),
        DeliveryUpdate::Failed { error } => sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             status = 'FAILED', last_error = $1, waiting_reason = NULL, \
             attempts = attempts + $2 \
             WHERE id = $3 AND status = 'PENDING' AND lease_owner = $4 RETURNING event_id",
        )
        .bind(error)
        .bind(i64::from(job.attempt.is_some())),
        DeliveryUpdate::Deferred { at } => sqlx::query(concat!(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, waiting_reason = NULL, ",
            requeue_fair_key!("GREATEST"),
            " WHERE id = $2 AND status = 'PENDING' AND lease_owner = $3 RETURNING event_id"
        ))
        .bind(*at),
        DeliveryUpdate::Waiting { at, reason } => sqlx::query(concat!(
            "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, \
             next_attempt_at = $1, waiting_reason = $2, ",
            requeue_fair_key!("GREATEST"),
            " WHERE id = $3 AND status = 'PENDING' AND lease_owner = $4 RETURNING event_id"
        ))
        .bind(*at)
        .bind(reason),
    };
    Ok(query
        .bind(job.delivery_id)
        .bind(&job.owner)
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// PENDING while any delivery is not final, DELIVERED when all are delivered, FAILED otherwise.
/// The events are locked first (in id order): a process finishing another delivery of the same
/// event then waits, and its update sees this one's result.
pub(super) async fn refresh_event_statuses(
    conn: &mut PgConnection,
    event_ids: &[EventId],
) -> Result<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    // Each lookup is a LATERAL subquery by id, which the planner cannot turn into a join: a
    // join of the ids with the table became a hash join over a scan of the whole table whenever
    // the statistics still described the table as small (a new database fills faster than
    // autovacuum analyses it), 8 ms a batch instead of a few index probes.
    // `event_ids` is sorted, so the locks are taken in id order.
    sqlx::query(
        "SELECT e.id FROM unnest($1::text[]) AS u(id) CROSS JOIN LATERAL \
         (SELECT id FROM events WHERE id = u.id FOR NO KEY UPDATE) AS e",
    )
    .bind(event_ids)
    .execute(&mut *conn)
    .await?;
    // Computed first, then written by id: in one statement, the planner's generic plan hashes
    // every FAILED delivery of the table (correlated EXISTS) or scans every event (a join).
    let rows = sqlx::query(
        "SELECT u.id, d.pending, d.failed FROM unnest($1::text[]) AS u(id) CROSS JOIN LATERAL \
         (SELECT bool_or(status = 'PENDING') AS pending, bool_or(status = 'FAILED') AS failed \
          FROM deliveries WHERE event_id = u.id) AS d WHERE d.pending IS NOT NULL",
    )
    .bind(event_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    for row in rows {
        let (pending, failed): (bool, bool) = (row.try_get(1)?, row.try_get(2)?);
        ids.push(row.try_get::<String, _>(0)?);
        let status = match (pending, failed) {
            (true, _) => DeliveryStatus::Pending,
            (false, true) => DeliveryStatus::Failed,
            (false, false) => DeliveryStatus::Delivered,
        };
        statuses.push(status.as_str());
    }
    // Not kept prepared: see `UNPREPARED` in postgres.rs.
    sqlx::query(
        "UPDATE events e SET delivery_status = u.status \
         FROM unnest($1::text[], $2::text[]) AS u(id, status) WHERE e.id = u.id",
    )
    .persistent(false)
    .bind(&ids)
    .bind(&statuses)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// First key of the two-key advisory locks taken per account (the second is a hash of the id).
/// The two-key form never collides with the one-key migration lock (`postgres.rs`).
pub(super) const INTAKE_LOCK_CLASS: i32 = 0x5050_0001;

/// Leases a claim's due deliveries: their ids. Rows another worker is claiming or finishing are
/// skipped, not waited for; a row updated meanwhile is re-checked against the conditions once
/// locked.
pub(super) async fn lease_due(conn: &mut PgConnection, claim: &ClaimJob) -> Result<Vec<i64>> {
    // In queue order among the front of the queue (see the 0010 migration), then, for the
    // slots left, the longest due anywhere: a front of deliveries not due yet must not stall.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "WITH front AS ( \
           SELECT id, fair_key FROM deliveries WHERE status = 'PENDING' AND provider = $5 \
           ORDER BY fair_key LIMIT $6), \
         due AS ( \
           SELECT d.id FROM front f JOIN deliveries d ON d.id = f.id \
           WHERE d.status = 'PENDING' AND d.next_attempt_at <= $3 \
           AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $3) \
           ORDER BY f.fair_key LIMIT $4 FOR UPDATE OF d SKIP LOCKED) \
         UPDATE deliveries d SET lease_owner = $1, lease_expires_at = $2 FROM due \
         WHERE d.id = due.id RETURNING d.id",
    )
    .bind(&claim.owner)
    .bind(claim.lease_until)
    .bind(claim.now)
    .bind(i64::from(claim.limit))
    .bind(&claim.provider)
    .bind(FAIR_WINDOW)
    .fetch_all(&mut *conn)
    .await?;
    let left = i64::from(claim.limit) - ids.len() as i64;
    if left > 0 {
        ids.extend(
            sqlx::query_scalar::<_, i64>(
                "WITH due AS ( \
                   SELECT id FROM deliveries WHERE status = 'PENDING' AND provider = $5 \
                   AND next_attempt_at <= $3 \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries d SET lease_owner = $1, lease_expires_at = $2 FROM due \
                 WHERE d.id = due.id RETURNING d.id",
            )
            .bind(&claim.owner)
            .bind(claim.lease_until)
            .bind(claim.now)
            .bind(left)
            .bind(&claim.provider)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(ids)
}
