//! What needs the account owner's action, each with where to fix it: the dashboard's banner.

use chrono::{DateTime, Utc};

use super::accounts::channel_states;
use super::deliveries::quota;
use super::intake::account_refusal;
use crate::app::AppState;
use crate::model::{Account, Millis};
use crate::store::StoreError;

/// From this share of the monthly events on, the quota is worth a warning.
const QUOTA_WARNING_PERCENT: u64 = 80;

/// How far back failed deliveries are counted.
pub const FAILED_WINDOW_MS: Millis = 24 * 3600 * 1000;

/// One thing that needs action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    /// Every event is refused with intake's exact 403 message.
    EventsRefused { message: &'static str },
    /// The month's events are used up: intake answers 429 until `resets_at`.
    QuotaReached {
        limit: u64,
        resets_at: DateTime<Utc>,
    },
    /// Most of the month's events are used.
    QuotaNearlyUsed { used: u64, limit: u64 },
    /// Deliveries of the last day's events failed.
    DeliveriesFailed { count: u64 },
    /// A channel that is on cannot deliver now; its deliveries wait.
    ChannelWaiting {
        channel: &'static str,
        reason: String,
    },
}

impl Attention {
    /// Whether nothing gets through until it is fixed (rather than a warning).
    pub fn blocks_events(&self) -> bool {
        matches!(self, Self::EventsRefused { .. } | Self::QuotaReached { .. })
    }
}

/// What needs action on `account` at `now`, the most pressing first.
pub async fn attention(
    state: &AppState,
    account: &Account,
    now: Millis,
) -> Result<Vec<Attention>, StoreError> {
    let mut found = Vec::new();
    if let Some(message) = account_refusal(state, account) {
        found.push(Attention::EventsRefused { message });
    }
    let quota = quota(state, account, now).await?;
    if let Some(limit) = quota.events_limit {
        if quota.events_used >= limit {
            found.push(Attention::QuotaReached {
                limit,
                resets_at: quota.resets_at,
            });
        } else if quota.events_used * 100 >= limit * QUOTA_WARNING_PERCENT {
            found.push(Attention::QuotaNearlyUsed {
                used: quota.events_used,
                limit,
            });
        }
    }
    let failed = state
        .store()
        .failed_deliveries_since(&account.id, now - FAILED_WINDOW_MS)
        .await?;
    if failed > 0 {
        found.push(Attention::DeliveriesFailed { count: failed });
    }
    for channel in channel_states(state, account).await? {
        if let (true, Some(reason)) = (channel.enabled, channel.status.waiting) {
            found.push(Attention::ChannelWaiting {
                channel: channel.registration.display_name,
                reason,
            });
        }
    }
    Ok(found)
}
