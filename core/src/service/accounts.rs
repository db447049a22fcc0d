//! An account's settings and channels, as the API and the dashboard both show and change them.

use crate::app::AppState;
use crate::model::{Account, AccountId};
use crate::provider::{AccountField, ChannelStatus, ProviderRegistration};
use crate::store::{AccountChanges, StoreError};

/// One channel of an account: the `channels` entries of `GET /account`, and the dashboard's
/// settings page.
pub struct ChannelState {
    pub registration: &'static ProviderRegistration,
    /// Whether events are delivered through it.
    pub enabled: bool,
    /// Account fields it still needs.
    pub missing: Vec<&'static AccountField>,
    /// The provider's view: why it waits, and state it adds (Telegram: `linked`, `linkUrl`).
    pub status: ChannelStatus,
}

impl ChannelState {
    /// Enabled, with every account field it needs, and not waiting.
    pub fn ready(&self) -> bool {
        self.enabled && self.missing.is_empty() && self.status.waiting.is_none()
    }
}

/// Every channel of `account`, in provider order.
pub async fn channel_states(
    state: &AppState,
    account: &Account,
) -> Result<Vec<ChannelState>, StoreError> {
    let mut channels = Vec::with_capacity(state.providers.len());
    for entry in &state.providers {
        let registration = entry.registration;
        channels.push(ChannelState {
            registration,
            enabled: registration.enabled_for(account),
            missing: registration
                .account_fields
                .iter()
                .filter(|f| !account.fields.contains_key(f.name))
                .collect(),
            status: state.channel_status(entry, account).await?,
        });
    }
    Ok(channels)
}

/// Applies validated changes (from [`parse_account_update`]) and wakes the delivery workers, so
/// deliveries waiting for these settings are looked at again; the account as it is afterwards.
pub async fn apply_account_update(
    state: &AppState,
    account_id: &AccountId,
    changes: &AccountChanges,
) -> Result<Option<Account>, StoreError> {
    let updated = state.store().update_account(account_id, changes).await?;
    if updated.is_some() {
        state.work_ready.notify_one();
    }
    Ok(updated)
}

/// Replaces the signing secret of `account`'s channel `provider` with a new one; false when no
/// linked provider of that id keeps channel secrets.
pub async fn rotate_channel_secret(
    state: &AppState,
    account: &Account,
    provider: &str,
) -> Result<bool, StoreError> {
    let Some(make) = state
        .provider(provider)
        .and_then(|entry| entry.registration.channel_secret)
    else {
        return Ok(false);
    };
    state
        .store()
        .replace_channel_secret(&account.id, provider, &make())
        .await?;
    Ok(true)
}
