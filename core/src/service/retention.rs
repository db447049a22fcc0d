//! Deleting what is no longer kept: events past `retention.events` (a background task, or
//! `pingpilot prune` on demand) and the accounts an operator deletes. Rows go in small
//! batches, each its own transaction, so intake's writes get in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingpilot_config::RetentionSettings;
use tokio::sync::watch;

use crate::app::AppState;
use crate::model::{AccountId, Millis, now_millis};
use crate::store::{EventScope, Removed, Store, StoreError};

/// Pages one incremental-vacuum step gives back (4 MiB at SQLite's default page size): a short
/// hold of the writer.
const SHRINK_PAGES: u32 = 1024;

/// The shortest pause between two batches, which lets waiting writes go first. The pause is
/// never shorter than the batch took either, so retention holds the database's writer at most
/// half of the time.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// The lease that lets one relay process at a time run retention on a shared database.
const LEASE: &str = "retention";

/// What one pass removed.
#[derive(Debug, Clone, Copy)]
pub struct Pruned {
    /// Events created before this time (and not pending) were deleted.
    pub before: Millis,
    pub removed: Removed,
    /// Bytes the SQLite file gave back; `None` where the database keeps its file size itself
    /// (PostgreSQL) or the file predates incremental vacuum.
    pub bytes_freed: Option<u64>,
}

/// The time before which events go at `now`; `None` when events are kept forever.
pub fn cutoff(settings: &RetentionSettings, now: Millis) -> Option<Millis> {
    let age = Millis::try_from(settings.max_age()?.as_millis()).unwrap_or(Millis::MAX);
    Some(now.saturating_sub(age))
}

/// What [`prune`] would delete at `now`.
pub async fn count(
    store: &Store,
    settings: &RetentionSettings,
    now: Millis,
) -> Result<Option<Pruned>, StoreError> {
    let Some(before) = cutoff(settings, now) else {
        return Ok(None);
    };
    Ok(Some(Pruned {
        before,
        removed: store.count_events(EventScope::OlderThan(before)).await?,
        bytes_freed: None,
    }))
}

/// Deletes the events past retention at `now`, batch by batch (`each_batch` hears of each, and
/// how long its transaction took), then gives the space back; `None` when events are kept
/// forever.
pub async fn prune(
    store: &Store,
    settings: &RetentionSettings,
    now: Millis,
    each_batch: impl FnMut(Removed, Duration),
) -> Result<Option<Pruned>, StoreError> {
    let Some(before) = cutoff(settings, now) else {
        return Ok(None);
    };
    let scope = EventScope::OlderThan(before);
    let removed = delete_in_batches(store, scope, settings.batch, each_batch).await?;
    let bytes_freed = shrink(store).await?;
    Ok(Some(Pruned {
        before,
        removed,
        bytes_freed,
    }))
}

/// Deletes an account and all its data: disabled first, so that nothing new arrives, then its
/// events batch by batch, then the rest. `None` when there is no such account.
pub async fn delete_account(
    store: &Store,
    account_id: &AccountId,
    batch: u32,
) -> Result<Option<Removed>, StoreError> {
    if !store.set_disabled(account_id, Some(now_millis())).await? {
        return Ok(None);
    }
    let scope = EventScope::OfAccount(account_id);
    let removed = delete_in_batches(store, scope, batch, |_, _| {}).await?;
    store.delete_account_row(account_id).await?;
    Ok(Some(removed))
}

async fn delete_in_batches(
    store: &Store,
    scope: EventScope<'_>,
    batch: u32,
    mut each_batch: impl FnMut(Removed, Duration),
) -> Result<Removed, StoreError> {
    let mut total = Removed::default();
    loop {
        let clock = Instant::now();
        let removed = store.delete_events(scope, batch).await?;
        let took = clock.elapsed();
        each_batch(removed, took);
        total.add(removed);
        if removed.events < u64::from(batch) {
            return Ok(total);
        }
        tokio::time::sleep(took.max(BATCH_PAUSE)).await;
    }
}

/// Gives the free pages back step by step; the bytes given back.
async fn shrink(store: &Store) -> Result<Option<u64>, StoreError> {
    let mut freed = None;
    loop {
        let clock = Instant::now();
        let Some(bytes) = store.shrink(SHRINK_PAGES).await? else {
            break;
        };
        *freed.get_or_insert(0) += bytes;
        if bytes == 0 {
            break;
        }
        tokio::time::sleep(clock.elapsed().max(BATCH_PAUSE)).await;
    }
    Ok(freed)
}

/// The background task: a pass at start and every `retention.interval`, by one process at a
/// time, until `shutdown` (which also ends a pass between two batches).
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let settings = state.settings.retention.clone();
    if settings.max_age().is_none() {
        return;
    }
    let interval = settings.interval.get();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = pass(&state, &settings, interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn pass(state: &AppState, settings: &RetentionSettings, interval: Duration) {
    let store = state.store();
    let now = now_millis();
    // Held past the next tick, so that the process that has it keeps it and the others only
    // take over when it is gone.
    let until = now.saturating_add(Millis::try_from(interval.as_millis() * 2).unwrap_or(i64::MAX));
    match store
        .acquire_lease(LEASE, &state.process_id, now, until)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(error = %err, "retention: could not take its lease; trying next time");
            return;
        }
    }
    let mut longest_batch = Duration::ZERO;
    let result = prune(store, settings, now, |removed, took| {
        state.metrics.retention(removed);
        longest_batch = longest_batch.max(took);
    })
    .await;
    match result {
        Ok(Some(pruned)) if pruned.removed.events > 0 => tracing::info!(
            events = pruned.removed.events,
            deliveries = pruned.removed.deliveries,
            attempts = pruned.removed.attempts,
            bytes_freed = pruned.bytes_freed,
            longest_batch_ms = longest_batch.as_millis() as u64,
            "retention: deleted events past retention.events"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "retention: stopped; trying again next time"),
    }
}
