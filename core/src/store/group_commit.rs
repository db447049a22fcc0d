//! Group commit: one task owns the backend's writes of event intake and delivery results. Each
//! caller sends its job down a channel and awaits its own result; the task writes every job
//! waiting at that moment in one transaction. Nothing is answered before its commit, so "durable
//! when answered" holds, while concurrent requests and deliveries share the cost of a commit and
//! of its statements.

use async_trait::async_trait;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{AttemptLog, DeliveryUpdate, IntakeResult, NewEvent, Result, StoreError, json_text};
use crate::model::{Category, Millis};

/// Most jobs written together.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer before new ones wait for room.
const QUEUE: usize = 8192;

/// An event to write, owned so it can travel to the writer task.
pub struct IntakeJob {
    pub account_id: String,
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

/// A backend's way of writing a batch: every job in one transaction, each one's result in
/// order. A finish answers `false` when the lease was lost to another worker.
#[async_trait]
pub trait BatchWriter: Send + Sync + 'static {
    async fn write_batch(
        &self,
        intake: &[IntakeJob],
        finishes: &[FinishJob],
    ) -> Result<(Vec<IntakeResult>, Vec<bool>)>;
}

enum Job {
    Intake(IntakeJob, oneshot::Sender<Result<IntakeResult>>),
    Finish(FinishJob, oneshot::Sender<Result<bool>>),
}

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts `writers` writer tasks taking batches from one queue: one for a database with a
    /// single writer (SQLite), a few where transactions run side by side (PostgreSQL), so one
    /// batch's round trips overlap another's.
    pub fn start(writer: impl BatchWriter, writers: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = Arc::new(writer);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(writer.clone(), queue.clone()));
        }
        Self { jobs }
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

    async fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Corrupt("the database writer has stopped".into()))
    }
}

fn received<T>(answer: std::result::Result<Result<T>, oneshot::error::RecvError>) -> Result<T> {
    answer.map_err(|_| StoreError::Corrupt("the database writer dropped a request".into()))?
}

async fn run<W: BatchWriter>(writer: Arc<W>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    // The queue is held only while taking a batch: the next writer takes the jobs that arrive
    // while this one writes.
    while queue.lock().await.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let mut intake = Vec::new();
        let mut intake_replies = Vec::new();
        let mut finishes = Vec::new();
        let mut finish_replies = Vec::new();
        for job in waiting.drain(..) {
            match job {
                Job::Intake(job, reply) => {
                    intake.push(job);
                    intake_replies.push(reply);
                }
                Job::Finish(job, reply) => {
                    finishes.push(job);
                    finish_replies.push(reply);
                }
            }
        }
        match writer.write_batch(&intake, &finishes).await {
            Ok((intake_results, finish_results)) => {
                answer_all(intake_replies, intake_results);
                answer_all(finish_replies, finish_results);
            }
            // One bad job must not fail its neighbours: write each on its own.
            Err(_) if intake.len() + finishes.len() > 1 => {
                for (job, reply) in intake.iter().zip(intake_replies) {
                    let result = writer
                        .write_batch(std::slice::from_ref(job), &[])
                        .await
                        .and_then(|(results, _)| only(results));
                    let _ = reply.send(result);
                }
                for (job, reply) in finishes.iter().zip(finish_replies) {
                    let result = writer
                        .write_batch(&[], std::slice::from_ref(job))
                        .await
                        .and_then(|(_, results)| only(results));
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let message = format!("database write failed: {err}");
                for reply in intake_replies {
                    let _ = reply.send(Err(StoreError::Corrupt(message.clone())));
                }
                for reply in finish_replies {
                    let _ = reply.send(Err(StoreError::Corrupt(message.clone())));
                }
            }
        }
    }
}

fn only<T>(results: Vec<T>) -> Result<T> {
    results
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("the database writer gave no result".into()))
}

fn answer_all<T>(replies: Vec<oneshot::Sender<Result<T>>>, results: Vec<T>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have hung up; what was committed stays committed.
        let _ = reply.send(Ok(result));
    }
}
