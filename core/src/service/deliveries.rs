//! An account's usage of its plan, and its failed deliveries put back in the queue.

use chrono::{DateTime, Utc};

use crate::app::AppState;
use crate::model::{Account, AccountId, EventId, Millis, next_month_start};
use crate::store::{EventFilter, StoreError};

/// Puts an event's failed deliveries back in the queue with a fresh attempt budget and wakes
/// the workers; how many were requeued, or `None` when the account has no such event.
pub async fn retry_failed_deliveries(
    state: &AppState,
    account_id: &AccountId,
    event_id: &EventId,
) -> Result<Option<u64>, StoreError> {
    let requeued = state.store().retry_event(account_id, event_id).await?;
    if requeued.is_some() {
        state.work_ready.notify_one();
    }
    Ok(requeued)
}

/// Puts the failed deliveries of every event the filter matches back in the queue (with a
/// channel, only those there) and wakes the workers; how many.
pub async fn retry_matching(
    state: &AppState,
    account_id: &AccountId,
    filter: &EventFilter,
) -> Result<u64, StoreError> {
    let requeued = state.store().retry_matching(account_id, filter).await?;
    if requeued > 0 {
        state.work_ready.notify_one();
    }
    Ok(requeued)
}

/// An account's plan limits and what is used of them (`GET /quota`, the dashboard's usage page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub plan: String,
    /// Events accepted this calendar month (UTC).
    pub events_used: u64,
    /// `None`: the plan has no limit.
    pub events_limit: Option<u64>,
    pub categories_used: u64,
    /// `None`: the plan has no limit.
    pub categories_limit: Option<u64>,
    /// When the monthly count starts again: the first of next month, 00:00 UTC.
    pub resets_at: DateTime<Utc>,
}

/// The quota of `account` at `now`.
pub async fn quota(state: &AppState, account: &Account, now: Millis) -> Result<Quota, StoreError> {
    let store = state.store();
    let limits = state.plan(&account.plan);
    Ok(Quota {
        plan: account.plan.clone(),
        events_used: store.events_used(&account.id, now).await?,
        events_limit: limits.events_per_month,
        categories_used: store.count_categories(&account.id).await?.max(0) as u64,
        categories_limit: limits.categories,
        resets_at: next_month_start(now),
    })
}
