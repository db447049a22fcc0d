//! What needs the account owner's action, each with where to fix it: the dashboard's banner.

use chrono::{DateTime, Utc};

use super::accounts::channel_states;
use super::activity::{rate_limited, refused_events};
use super::deliveries::quota;
use super::intake::account_refusal;
use crate::app::AppState;
use crate::model::{Account, Millis};
use crate::store::StoreError;

/// From this share of the monthly events on, the quota is worth a warning.
const QUOTA_WARNING_PERCENT: u64 = 80;

/// How far back failed deliveries and refused events are counted.
pub const FAILED_WINDOW_MS: Millis = 24 * 3600 * 1000;
/// How far back slowed-down events are counted: the rate is a matter of the moment.
pub const RATE_WINDOW_MS: Millis = 3600 * 1000;

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
    /// Events sent to a category (`None`: a body that named none) were refused, and none has
    /// got through there since; the latest refusal's status and message.
    CategoryRefused {
        category: Option<String>,
        status: u16,
        message: String,
        count: u64,
    },
    /// Events came faster than the plan's rate and were answered 429 in the last hour.
    RateLimited { count: u64 },
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
        matches!(
            self,
            Self::EventsRefused { .. } | Self::QuotaReached { .. } | Self::CategoryRefused { .. }
        )
    }
}

/// What needs action on `account` at `now`, the most pressing first.
pub async fn attention(
    state: &AppState,
    account: &Account,
    now: Millis,
) -> Result<Vec<Attention>, StoreError> {
    let mut found = Vec::new();
    let refusal = account_refusal(state, account);
    if let Some(message) = refusal {
        found.push(Attention::EventsRefused { message });
    }
    // What the account-wide refusal explains already is not said again per category.
    for refused in refused_events(state, &account.id, now - FAILED_WINDOW_MS).await? {
        if Some(refused.message.as_str()) != refusal {
            found.push(Attention::CategoryRefused {
                category: refused.category,
                status: refused.status,
                message: refused.message,
                count: refused.count,
            });
        }
    }
    let slowed = rate_limited(state, &account.id, now - RATE_WINDOW_MS).await?;
    if slowed > 0 {
        found.push(Attention::RateLimited { count: slowed });
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
