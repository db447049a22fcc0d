//! Group commit: one task owns the backend's writes of event intake, delivery results and
//! delivery claims. Each caller sends its job down a channel and awaits its own result; the task
//! writes every job waiting at that moment in one transaction. Nothing is answered before its
//! commit, so "durable when answered" holds, while concurrent requests and deliveries share the
//! cost of a commit and of its statements.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    AttemptLog, DeliveryUpdate, Health, IntakeResult, NewEvent, Result, StoreError, json_text,
};
use crate::model::{AccountId, Category, EventId, Millis, month_key};

/// Most jobs written together.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer before new ones wait for room.
const QUEUE: usize = 8192;

/// An event to write, owned so it can travel to the writer task.
pub struct IntakeJob {
    pub account_id: AccountId,
    pub category: Category,
    pub description: String,
    /// The fields as JSON text.
    pub fields: String,
    pub providers: Vec<&'static str>,
    pub events_limit: Option<u64>,
    pub now: Millis,
    /// `(key, request hash)`.
    pub idempotency: Option<(String, String)>,
    /// `(API key hash, account version)` the caller decided from.
    pub verify: Option<(String, i64)>,
}

impl IntakeJob {
    fn new(event: &NewEvent<'_>) -> Self {
        Self {
            account_id: event.account_id.clone(),
            category: event.category.clone(),
            description: event.description.to_string(),
            fields: json_text(event.fields),
            providers: event.providers.to_vec(),
            events_limit: event.events_limit,
            now: event.now,
            idempotency: event
                .idempotency
                .map(|key| (key.key.to_string(), key.request_hash.to_string())),
            verify: event
                .decided_from
                .map(|seen| (seen.key_hash.to_string(), seen.account_version)),
        }
    }
}

/// A delivery's result to record.
pub struct FinishJob {
    pub delivery_id: i64,
    pub owner: String,
    pub attempt: Option<AttemptLog>,
    pub update: DeliveryUpdate,
}

/// Deliveries to lease: up to `limit` of `provider`'s due ones, to `owner` until `lease_until`.
pub struct ClaimJob {
    pub owner: String,
    pub provider: String,
    pub now: Millis,
    pub lease_until: Millis,
    pub limit: u32,
}

/// What a batch wrote, each job's result in the order of its kind.
#[derive(Default)]
pub struct Written {
    pub intake: Vec<IntakeResult>,
    /// `false` where the lease was lost to another worker.
    pub finishes: Vec<bool>,
    /// The ids of the deliveries each claim leased.
    pub claims: Vec<Vec<i64>>,
}

/// A backend's way of writing a batch: every job in one transaction, in an order of the
/// backend's choosing (a claim may or may not lease deliveries the same batch queued).
#[async_trait]
pub trait BatchWriter: Send + Sync + 'static {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
        claims: &[ClaimJob],
    ) -> Result<Written>;
}

/// The reads and writes that deciding a batch's intake needs, from each backend.
#[async_trait]
pub trait IntakeLookups: Send {
    /// `(key hash, account version)` of those of these API keys that are still live.
    async fn live_versions(&mut self, key_hashes: &[&str]) -> Result<Vec<(String, i64)>>;
    /// The request hash and event of an `Idempotency-Key` used within the window.
    async fn earlier_use(
        &mut self,
        account_id: &AccountId,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, EventId)>>;
    /// Events counted for the account in `month` so far (never below zero).
    async fn stored_count(&mut self, account_id: &AccountId, month: &str) -> Result<i64>;
    /// Where `provider`'s fair queue stands for `account_id`: the lowest `fair_key` pending on
    /// the provider (its front) and the highest of the account's pending deliveries there (the
    /// end of its lane), each `None` when there is none.
    async fn queue_ends(
        &mut self,
        provider: &str,
        account_id: &AccountId,
    ) -> Result<(Option<i64>, Option<i64>)>;
    /// Records an `Idempotency-Key`'s first use.
    async fn remember_key(
        &mut self,
        job: &IntakeJob,
        key: &str,
        request_hash: &str,
        event_id: &EventId,
    ) -> Result<()>;
}

/// What a batch's intake comes to: each job's result, the events to insert with their new ids,
/// their deliveries, and how many events to count per (account, month), sorted.
pub struct IntakePlan<'j> {
    pub results: Vec<IntakeResult>,
    pub accepted: Vec<(&'j IntakeJob, EventId)>,
    pub deliveries: Vec<QueuedDelivery<'j>>,
    pub counts: Vec<((&'j AccountId, String), i64)>,
}

/// A delivery a batch queues, with its place in its provider's queue.
pub struct QueuedDelivery<'j> {
    pub event_id: EventId,
    pub account_id: &'j AccountId,
    pub provider: &'static str,
    pub queued_at: Millis,
    pub fair_key: i64,
}

/// How much of a provider's queue a claim looks through for due deliveries in queue order.
/// The front holds each account's next deliveries, so a quiet account's is among the first;
/// deliveries that are not due (retries, waiting channels) can fill it for a while.
pub const FAIR_WINDOW: i64 = 1000;

/// Places new deliveries in their provider's fair queue: each goes behind its account's other
/// pending deliveries there, and never before the front of the queue. A quiet account's
/// delivery lands at the front; a busy account's go one after another behind its own, so
/// claims in key order take the accounts in turn (start-time fair queuing; the keys are the
/// rounds). Each lane is read once per batch.
#[derive(Default)]
struct FairQueue<'j> {
    /// `(provider, account)` → the key its next delivery gets.
    next: HashMap<(&'static str, &'j AccountId), i64>,
}

impl<'j> FairQueue<'j> {
    async fn place(
        &mut self,
        db: &mut impl IntakeLookups,
        provider: &'static str,
        account_id: &'j AccountId,
    ) -> Result<i64> {
        let key = match self.next.get(&(provider, account_id)) {
            Some(key) => *key,
            None => {
                let (front, lane_end) = db.queue_ends(provider, account_id).await?;
                next_fair_key(front, lane_end)
            }
        };
        self.next.insert((provider, account_id), key + 1);
        Ok(key)
    }
}

/// The key of a delivery queued behind `lane_end` with the queue's front at `front`.
pub fn next_fair_key(front: Option<i64>, lane_end: Option<i64>) -> i64 {
    front.unwrap_or(0).max(lane_end.map_or(0, |end| end + 1))
}

/// The API keys a batch's intake was checked against, sorted, once each.
fn verified_key_hashes(jobs: &[IntakeJob]) -> Vec<&str> {
    let mut key_hashes: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job.verify.as_ref().map(|(hash, _)| hash.as_str()))
        .collect();
    key_hashes.sort_unstable();
    key_hashes.dedup();
    key_hashes
}

/// Decides each intake job of a batch in order, inside the batch's transaction: stale copies,
/// idempotent repeats (of earlier batches or earlier in this one) and the quota, counted across
/// the batch.
pub async fn plan_intake<'j>(
    db: &mut impl IntakeLookups,
    jobs: &'j [IntakeJob],
) -> Result<IntakePlan<'j>> {
    // The account version behind each live API key the batch was checked against.
    let key_hashes = verified_key_hashes(jobs);
    let versions: HashMap<String, i64> = if key_hashes.is_empty() {
        HashMap::new()
    } else {
        db.live_versions(&key_hashes).await?.into_iter().collect()
    };
    // Events counted so far per (account, month): for limited accounts, from the stored count.
    let mut counted: HashMap<(&AccountId, String), i64> = HashMap::new();
    let mut added: HashMap<(&AccountId, String), i64> = HashMap::new();
    let mut accepted = Vec::with_capacity(jobs.len());
    let mut deliveries = Vec::with_capacity(jobs.len());
    let mut queue = FairQueue::default();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some((key_hash, version)) = &job.verify
            && versions.get(key_hash.as_str()) != Some(version)
        {
            results.push(IntakeResult::Stale);
            continue;
        }
        if let Some((key, hash)) = &job.idempotency
            && let Some((first_hash, event_id)) =
                db.earlier_use(&job.account_id, key, job.now).await?
        {
            results.push(if first_hash == *hash {
                IntakeResult::Replayed { event_id }
            } else {
                IntakeResult::KeyConflict
            });
            continue;
        }
        let quota_key = (&job.account_id, month_key(job.now));
        if let Some(limit) = job.events_limit {
            let count = match counted.get(&quota_key) {
                Some(count) => *count,
                None => db.stored_count(quota_key.0, &quota_key.1).await?,
            };
            if count as u64 >= limit {
                counted.insert(quota_key, count);
                results.push(IntakeResult::QuotaExceeded);
                continue;
            }
            counted.insert(quota_key.clone(), count + 1);
        }
        *added.entry(quota_key).or_default() += 1;
        // Its time is the event's `created_at`: retention finds old events by their id.
        let event_id = EventId::generate_at(job.now);
        if let Some((key, hash)) = &job.idempotency {
            db.remember_key(job, key, hash, &event_id).await?;
        }
        for provider in &job.providers {
            deliveries.push(QueuedDelivery {
                event_id: event_id.clone(),
                account_id: &job.account_id,
                provider,
                queued_at: job.now,
                fair_key: queue.place(db, provider, &job.account_id).await?,
            });
        }
        accepted.push((job, event_id.clone()));
        results.push(IntakeResult::Accepted { event_id });
    }
    let mut counts: Vec<_> = added.into_iter().collect();
    counts.sort_unstable();
    Ok(IntakePlan {
        results,
        accepted,
        deliveries,
        counts,
    })
}

/// Which delivery results still hold their lease, given `delivery id → (event id, lease owner)`
/// of the pending ones: each job's answer, the held jobs, and their events (sorted, once each).
pub fn held_results(
    jobs: &[FinishJob],
    mut leased: HashMap<i64, (EventId, String)>,
) -> (Vec<bool>, Vec<&FinishJob>, Vec<EventId>) {
    let mut held = Vec::with_capacity(jobs.len());
    let mut results = Vec::with_capacity(jobs.len());
    let mut events = Vec::new();
    for job in jobs {
        // Taken out once used: a second result for the same claim is a lost lease.
        let owned = leased
            .get(&job.delivery_id)
            .is_some_and(|(_, owner)| *owner == job.owner);
        if owned && let Some((event_id, _)) = leased.remove(&job.delivery_id) {
            events.push(event_id);
        }
        if owned {
            held.push(job);
        }
        results.push(owned);
    }
    events.sort_unstable();
    events.dedup();
    (results, held, events)
}

enum Job {
    Intake(IntakeJob, oneshot::Sender<Result<IntakeResult>>),
    Finish(FinishJob, oneshot::Sender<Result<bool>>),
    Claim(ClaimJob, oneshot::Sender<Result<Vec<i64>>>),
}

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    health: Arc<Health>,
}

impl GroupCommit {
    /// Starts `writers` writer tasks taking batches from one queue: one for a database with a
    /// single writer (SQLite), a few where transactions run side by side (PostgreSQL), so one
    /// batch's round trips overlap another's.
    pub fn start(writer: impl BatchWriter, writers: usize, health: Arc<Health>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = Arc::new(writer);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(writer.clone(), queue.clone(), health.clone()));
        }
        Self { jobs, health }
    }

    /// Starts one writer on a thread of its own, with a single-threaded runtime: for a writer
    /// that does its work synchronously (SQLite's), which must not hold up the runtime that
    /// serves requests. Jobs still arrive and leave through the same channels.
    pub fn start_on_own_thread(writer: impl BatchWriter, health: Arc<Health>) -> Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        crate::spawn_on_own_thread(
            "pingpilot-writer",
            &mut tokio::runtime::Builder::new_current_thread(),
            run(
                Arc::new(writer),
                Arc::new(Mutex::new(queue)),
                health.clone(),
            ),
        )
        .map_err(StoreError::ThreadStart)?;
        Ok(Self { jobs, health })
    }

    /// Commits the event (with its deliveries, quota count and idempotency key) and returns
    /// once it is committed, or why it was not.
    pub async fn insert(&self, event: &NewEvent<'_>) -> Result<IntakeResult> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Intake(IntakeJob::new(event), reply)).await?;
        received(answer.await)
    }

    /// Records a delivery's attempt and new state, and its event's status.
    pub async fn finish(
        &self,
        delivery_id: i64,
        owner: &str,
        attempt: Option<&AttemptLog>,
        update: &DeliveryUpdate,
    ) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let job = FinishJob {
            delivery_id,
            owner: owner.to_string(),
            attempt: attempt.cloned(),
            update: update.clone(),
        };
        self.send(Job::Finish(job, reply)).await?;
        received(answer.await)
    }

    /// Leases up to `limit` of `provider`'s due deliveries to `owner` until `lease_until`, in
    /// the next batch and sharing its commit: the ids it leased.
    pub async fn claim(
        &self,
        owner: &str,
        provider: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<i64>> {
        let (reply, answer) = oneshot::channel();
        let job = ClaimJob {
            owner: owner.to_string(),
            provider: provider.to_string(),
            now,
            lease_until,
            limit,
        };
        self.send(Job::Claim(job, reply)).await?;
        received(answer.await)
    }

    async fn send(&self, job: Job) -> Result<()> {
        self.health.writable()?;
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))
    }
}

fn received<T>(answer: std::result::Result<Result<T>, oneshot::error::RecvError>) -> Result<T> {
    answer.map_err(|_| StoreError::Corrupt("the database writer dropped a request".into()))?
}

/// A batch's jobs sorted by kind, each beside the reply its caller awaits.
#[derive(Default)]
struct Sorted {
    intake: Vec<IntakeJob>,
    intake_replies: Vec<oneshot::Sender<Result<IntakeResult>>>,
    finishes: Vec<FinishJob>,
    finish_replies: Vec<oneshot::Sender<Result<bool>>>,
    claims: Vec<ClaimJob>,
    claim_replies: Vec<oneshot::Sender<Result<Vec<i64>>>>,
}

impl Sorted {
    fn push(&mut self, job: Job) {
        match job {
            Job::Intake(job, reply) => {
                self.intake.push(job);
                self.intake_replies.push(reply);
            }
            Job::Finish(job, reply) => {
                self.finishes.push(job);
                self.finish_replies.push(reply);
            }
            Job::Claim(job, reply) => {
                self.claims.push(job);
                self.claim_replies.push(reply);
            }
        }
    }

    fn len(&self) -> usize {
        self.intake.len() + self.finishes.len() + self.claims.len()
    }
}

async fn run<W: BatchWriter>(
    writer: Arc<W>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    health: Arc<Health>,
) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    // The queue is held only while taking a batch: the next writer takes the jobs that arrive
    // while this one writes.
    while queue.lock().await.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let mut batch = Sorted::default();
        for job in waiting.drain(..) {
            batch.push(job);
        }
        let written = writer
            .write_batch(&batch.intake, &batch.finishes, &batch.claims)
            .await;
        health.note(&written);
        match written {
            Ok(written) => {
                answer_all(batch.intake_replies, written.intake);
                answer_all(batch.finish_replies, written.finishes);
                answer_all(batch.claim_replies, written.claims);
            }
            // One bad job must not fail its neighbours: write each on its own. Not when the
            // database itself cannot write (locked, full): each job would wait and fail again.
            Err(err) if batch.len() > 1 && !err.is_unavailable() => {
                write_one_by_one(&*writer, batch).await
            }
            Err(err) => {
                fail_all(batch.intake_replies, &err);
                fail_all(batch.finish_replies, &err);
                fail_all(batch.claim_replies, &err);
            }
        }
    }
}

async fn write_one_by_one<W: BatchWriter>(writer: &W, batch: Sorted) {
    for (job, reply) in batch.intake.iter().zip(batch.intake_replies) {
        let result = writer
            .write_batch(std::slice::from_ref(job), &[], &[])
            .await
            .and_then(|written| only(written.intake));
        let _ = reply.send(result);
    }
    for (job, reply) in batch.finishes.iter().zip(batch.finish_replies) {
        let result = writer
            .write_batch(&[], std::slice::from_ref(job), &[])
            .await
            .and_then(|written| only(written.finishes));
        let _ = reply.send(result);
    }
    for (job, reply) in batch.claims.iter().zip(batch.claim_replies) {
        let result = writer
            .write_batch(&[], &[], std::slice::from_ref(job))
            .await
            .and_then(|written| only(written.claims));
        let _ = reply.send(result);
    }
}

fn only<T>(results: Vec<T>) -> Result<T> {
    results
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("the database writer gave no result".into()))
}

fn fail_all<T>(replies: Vec<oneshot::Sender<Result<T>>>, err: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(err.for_each_caller()));
    }
}

fn answer_all<T>(replies: Vec<oneshot::Sender<Result<T>>>, results: Vec<T>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have hung up; what was committed stays committed.
        let _ = reply.send(Ok(result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_goes_behind_its_account_and_never_before_the_front() {
        // An empty queue, then an account's first delivery at the front of a busy queue.
        assert_eq!(next_fair_key(None, None), 0);
        assert_eq!(next_fair_key(Some(700), None), 700);
        // A busy account: behind its own.
        assert_eq!(next_fair_key(Some(700), Some(5_000)), 5_001);
        // An account whose last key the front has passed: at the front again.
        assert_eq!(next_fair_key(Some(700), Some(10)), 700);
    }

    fn finish(delivery_id: i64, owner: &str) -> FinishJob {
        FinishJob {
            delivery_id,
            owner: owner.into(),
            attempt: None,
            update: DeliveryUpdate::Delivered,
        }
    }

    #[test]
    fn only_results_that_still_hold_their_lease_count() {
        let jobs = [
            finish(1, "w1"),
            finish(2, "w1"),
            finish(3, "w1"),
            finish(1, "w1"),
            finish(4, "w1"),
            // A stale worker's result does not use up the lease of the one holding it.
            finish(5, "w1"),
            finish(5, "w2"),
        ];
        let leased = HashMap::from([
            (1, (EventId::from("evt_b"), "w1".to_string())),
            // Taken over by another worker after the lease expired.
            (2, (EventId::from("evt_a"), "w2".to_string())),
            (4, (EventId::from("evt_b"), "w1".to_string())),
            (5, (EventId::from("evt_c"), "w2".to_string())),
        ]);
        let (results, held, events) = held_results(&jobs, leased);
        // 3 is no longer pending; the second result for 1 comes after the first used the lease.
        assert_eq!(results, [true, false, false, false, true, false, true]);
        assert_eq!(
            held.iter().map(|job| job.delivery_id).collect::<Vec<_>>(),
            [1, 4, 5]
        );
        assert_eq!(events, ["evt_b", "evt_c"]);
    }
}
