//! SQLite's [`BatchWriter`]: a batch of intake jobs, delivery results and claims in one
//! `BEGIN IMMEDIATE` transaction on the store's single writer connection. Rows go in with
//! multi-row statements, and statements go together as multi-statement queries, with the
//! transaction's BEGIN and COMMIT among them: a batch costs three round trips to sqlx's
//! connection thread rather than a few per job. Each is a thread wake-up both ways, which costs
//! more than most of these statements, and the writer is held all the while.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Column, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::group_commit::{
    BatchWriter, ClaimJob, FinishJob, IntakeJob, IntakeLookups, Written, held_results, plan_intake,
    verified_key_hashes,
};
use super::sqlite::{Writer, find_idempotent, stored_count};
use super::{DeliveryUpdate, IDEMPOTENCY_WINDOW_MS, Result};
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
        claims: &[ClaimJob],
    ) -> Result<Written> {
        let mut writer = self.writer.lock().await;
        let written = write_transaction(&mut writer, intake, finishes, claims).await;
        if written.is_err() {
            // The transaction is ours to end: its BEGIN and COMMIT travel with the batch's
            // statements rather than through sqlx's `Transaction`. Without a transaction open
            // (it failed to begin, or to commit and SQLite ended it) this fails harmlessly.
            if let Err(err) = sqlx::query("ROLLBACK").execute(&mut *writer).await {
                tracing::debug!(error = %err, "no batch transaction to roll back");
            }
        }
        written
    }
}

/// A batch in three round trips in the common case: `BEGIN IMMEDIATE` with the reads that
/// decide the batch, then intake's writes, then the deliveries' writes and claims with the
/// `COMMIT`.
/// Only idempotency keys, limited plans and delivery outcomes other than delivered add
/// statements of their own.
async fn write_transaction(
    conn: &mut SqliteConnection,
    intake: &[IntakeJob],
    finishes: &[FinishJob],
    claims: &[ClaimJob],
) -> Result<Written> {
    let (versions, leased) = open_batch(conn, intake, finishes).await?;
    let plan = plan_intake(&mut Lookups { conn, versions }, intake).await?;
    let (finish_results, held, events) = held_results(finishes, leased);
    let mut delivered = Vec::with_capacity(held.len());
    for job in &held {
        match job.update {
            DeliveryUpdate::Delivered => delivered.push(job.delivery_id),
            _ => update_delivery(conn, job).await?,
        }
    }
    // Intake's writes and the deliveries' writes as two queries, not one: each query's text
    // depends on its own row counts, and one query for both would multiply the variants beyond
    // what the statement cache holds, so statements would be prepared again and again.
    let mut intake_writes = QueryBuilder::<Sqlite>::new("");
    push_events(&mut intake_writes, &plan.accepted);
    push_deliveries(&mut intake_writes, &plan.accepted);
    push_quota_counts(&mut intake_writes, &plan.counts);
    push_idempotency_expiry(&mut intake_writes, intake);
    execute_all(conn, intake_writes).await?;
    // Statuses after the deliveries they are read from; claims after the deliveries they may
    // lease.
    let mut last_writes = QueryBuilder::<Sqlite>::new("");
    push_attempts(&mut last_writes, &held);
    push_delivered(&mut last_writes, &delivered);
    push_status_refresh(&mut last_writes, &events);
    push_claims(&mut last_writes, claims);
    begin_statement(&mut last_writes, "COMMIT");
    let mut claimed = vec![Vec::new(); claims.len()];
    for row in last_writes.build().fetch_all(conn).await? {
        let (id, claim): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(ids) = claimed.get_mut(claim as usize) {
            ids.push(id);
        }
    }
    Ok(Written {
        intake: plan.results,
        finishes: finish_results,
        claims: claimed,
    })
}

/// Begins the batch's transaction and, in the same round trip, reads the account version behind
/// each API key the intake was checked against and `delivery id → (event id, lease owner)` of
/// the finished deliveries still pending.
async fn open_batch(
    conn: &mut SqliteConnection,
    intake: &[IntakeJob],
    finishes: &[FinishJob],
) -> Result<(Vec<(String, i64)>, HashMap<i64, (String, String)>)> {
    let mut query = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE");
    for chunk in verified_key_hashes(intake).chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            &mut query,
            "SELECT k.key_hash, a.version FROM api_keys k \
             JOIN accounts a ON a.id = k.account_id \
             WHERE k.revoked_at IS NULL AND k.key_hash IN (",
        );
        let mut list = query.separated(", ");
        for hash in chunk {
            list.push_bind(*hash);
        }
        query.push(")");
    }
    for chunk in finishes.chunks(ROWS_PER_STATEMENT) {
        begin_statement(
            &mut query,
            // By id alone: a condition on status would let SQLite walk the queue index instead.
            "SELECT id, event_id, lease_owner, status FROM deliveries WHERE id IN (",
        );
        let mut list = query.separated(", ");
        for job in chunk {
            list.push_bind(job.delivery_id);
        }
        query.push(")");
    }
    let mut versions = Vec::new();
    let mut leased = HashMap::with_capacity(finishes.len());
    // One result set for both kinds of statement: rows tell by their first column.
    for row in query.build().fetch_all(&mut *conn).await? {
        if row.column(0).name() == "key_hash" {
            versions.push((row.try_get(0)?, row.try_get(1)?));
            continue;
        }
        let owner: Option<String> = row.try_get(2)?;
        let status: String = row.try_get(3)?;
        if let (Some(owner), "PENDING") = (owner, status.as_str()) {
            leased.insert(row.try_get(0)?, (row.try_get(1)?, owner));
        }
    }
    Ok((versions, leased))
}

/// Intake's reads and writes inside the batch's transaction.
struct Lookups<'c> {
    conn: &'c mut SqliteConnection,
    /// Read when the batch began.
    versions: Vec<(String, i64)>,
}

#[async_trait]
impl IntakeLookups for Lookups<'_> {
    async fn live_versions(&mut self, _key_hashes: &[&str]) -> Result<Vec<(String, i64)>> {
        // The same keys (`verified_key_hashes`), read by `open_batch`.
        Ok(std::mem::take(&mut self.versions))
    }

    async fn earlier_use(
        &mut self,
        account_id: &str,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, String)>> {
        find_idempotent(self.conn, account_id, key, now).await
    }

    async fn stored_count(&mut self, account_id: &str, month: &str) -> Result<i64> {
        stored_count(&mut *self.conn, account_id, month).await
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
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

/// Leases each claim's deliveries; the rows they return are `(delivery id, claim's index)`.
fn push_claims(query: &mut QueryBuilder<Sqlite>, claims: &[ClaimJob]) {
    for (index, claim) in claims.iter().enumerate() {
        begin_statement(query, "UPDATE deliveries SET lease_owner = ");
        query
            .push_bind(claim.owner.as_str())
            .push(", lease_expires_at = ")
            .push_bind(claim.lease_until)
            .push(
                " WHERE id IN (SELECT id FROM deliveries WHERE status = 'PENDING' AND provider = ",
            )
            .push_bind(claim.provider.as_str())
            .push(" AND next_attempt_at <= ")
            .push_bind(claim.now)
            .push(" AND (lease_expires_at IS NULL OR lease_expires_at <= ")
            .push_bind(claim.now)
            .push(") ORDER BY next_attempt_at LIMIT ")
            .push_bind(i64::from(claim.limit))
            .push(format!(") RETURNING id, {index}"));
    }
}

/// Keys older than the idempotency window, as of the batch's oldest job that carries one.
fn push_idempotency_expiry(query: &mut QueryBuilder<Sqlite>, jobs: &[IntakeJob]) {
    if let Some(oldest) = jobs
        .iter()
        .filter(|job| job.idempotency.is_some())
        .map(|job| job.now)
        .min()
    {
        begin_statement(query, "DELETE FROM idempotency_keys WHERE created_at < ");
        query.push_bind(oldest - IDEMPOTENCY_WINDOW_MS);
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{CategoryCreate, IntakeResult, Storage};

    /// A store with an account and a category, and a batch writer on its writer connection.
    struct Setup {
        _dir: tempfile::TempDir,
        store: SqliteStore,
        writer: SqliteBatchWriter,
        account_id: String,
        category: crate::model::Category,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("batch.db").display());
        let store = SqliteStore::open(&url, 2).await.expect("open");
        let (account, _) = store
            .create_account("Test", None, "free", &BTreeMap::new())
            .await
            .expect("account");
        let category = match store
            .create_category(&account.id, "sale", 0x00ff00, None, None)
            .await
            .expect("category")
        {
            CategoryCreate::Created(category) => category,
            other => panic!("{other:?}"),
        };
        let writer = SqliteBatchWriter {
            writer: store.writer.clone(),
        };
        Setup {
            _dir: dir,
            store,
            writer,
            account_id: account.id,
            category,
        }
    }

    fn intake(account_id: &str, category: &crate::model::Category, now: Millis) -> IntakeJob {
        IntakeJob {
            account_id: account_id.to_string(),
            category: category.clone(),
            description: "something happened".into(),
            fields: "{}".into(),
            providers: vec!["discord"],
            events_limit: None,
            now,
            idempotency: None,
            verify: None,
        }
    }

    fn claim(owner: &str, now: Millis, limit: u32) -> ClaimJob {
        ClaimJob {
            owner: owner.into(),
            provider: "discord".into(),
            now,
            lease_until: now + 30_000,
            limit,
        }
    }

    #[tokio::test]
    async fn claims_in_one_batch_lease_apart_what_the_batch_queued() {
        let setup = setup().await;
        let now = now_millis();
        let jobs: Vec<_> = (0..5)
            .map(|_| intake(&setup.account_id, &setup.category, now))
            .collect();
        let claims = [
            claim("w1", now, 3),
            claim("w2", now, 3),
            claim("w3", now, 3),
        ];
        let written = setup
            .writer
            .write_batch(&jobs, &[], &claims)
            .await
            .expect("batch");
        assert!(
            written
                .intake
                .iter()
                .all(|result| matches!(result, IntakeResult::Accepted { .. }))
        );
        let sizes: Vec<usize> = written.claims.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2, 0]);
        let leased: HashSet<i64> = written.claims.iter().flatten().copied().collect();
        assert_eq!(
            leased.len(),
            5,
            "a delivery leased twice: {:?}",
            written.claims
        );
        // Each claim's leases went to its own owner.
        for (ids, owner) in written.claims.iter().zip(["w1", "w2"]) {
            for id in ids {
                let holder: String =
                    sqlx::query_scalar("SELECT lease_owner FROM deliveries WHERE id = ?")
                        .bind(id)
                        .fetch_one(&setup.store.readers)
                        .await
                        .expect("lease owner");
                assert_eq!(holder, owner);
            }
        }
    }

    #[tokio::test]
    async fn a_failed_batch_is_rolled_back_and_the_writer_stays_usable() {
        let setup = setup().await;
        let now = now_millis();
        let mut unknown = intake(&setup.account_id, &setup.category, now);
        unknown.account_id = "acct_missing".into();
        let jobs = [intake(&setup.account_id, &setup.category, now), unknown];
        assert!(setup.writer.write_batch(&jobs, &[], &[]).await.is_err());
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&setup.store.readers)
            .await
            .expect("count");
        assert_eq!(events, 0, "the batch's first event outlived its failure");
        let written = setup
            .writer
            .write_batch(&jobs[..1], &[], &[claim("w1", now, 10)])
            .await
            .expect("the next batch");
        assert_eq!(written.claims, [vec![1]]);
    }
}
