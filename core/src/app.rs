//! Wiring: the shared state of a running relay, and the server with its workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use pingpilot_config::{Config, Settings};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::model::{Account, AccountId, PlanLimits, hash_api_key, now_millis};
use crate::provider::kit::secret::Secret;
use crate::provider::{
    self, ChannelContext, ChannelStatus, HostError, LinkOutcome, LinkRequest, Provider,
    ProviderHost, ProviderRegistration, ProviderSetup,
};
use crate::service::activity::ActivityCounter;
use crate::service::intake_cache::IntakeCache;
use crate::service::intake_rate::IntakeRate;
use crate::store::{Authenticated, Store, StoreError};

/// The property of an account's channel entry that shows its secret.
pub const SIGNING_SECRET: &str = "signingSecret";

pub const PROJECT_URL: &str = "https://github.com/pingpilot/pingpilot";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How stale a key's `lastUsedAt` may get before a request writes it again.
pub(crate) const KEY_TOUCH_INTERVAL_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] pingpilot_config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A linked provider, built from its configuration.
pub struct ProviderEntry {
    pub registration: &'static ProviderRegistration,
    pub provider: Arc<dyn Provider>,
}

pub struct AppState {
    pub settings: Settings,
    store: Store,
    pub providers: Vec<ProviderEntry>,
    /// Wakes the delivery workers when new work is committed.
    pub work_ready: Arc<Notify>,
    /// This process's id among the relay processes sharing the database.
    pub process_id: String,
    /// Live relay processes on this database, from the heartbeats (at least 1).
    pub process_count: Arc<AtomicU32>,
    /// Bumped whenever this process records a delivery result (for `?wait=`).
    pub delivery_results: watch::Sender<u64>,
    pub metrics: Metrics,
    /// Accounts by API key hash, for intake.
    pub(crate) intake_cache: IntakeCache,
    /// Each account's intake rate (`plans.<name>.events_per_second`).
    pub(crate) intake_rate: IntakeRate,
    /// API requests counted for the activity record, not written yet.
    pub(crate) activity: ActivityCounter,
}

/// What a request authenticated as.
pub struct Caller {
    pub account: Account,
}

/// The linked providers built from the configuration, without a database (`config check`):
/// building them validates their settings.
pub fn offline_providers(config: &Config) -> Result<Vec<ProviderEntry>, AppError> {
    build_providers(config, Arc::new(NoHost))
}

impl AppState {
    /// Opens the database and builds every linked provider.
    pub async fn open(config: &Config) -> Result<Arc<Self>, AppError> {
        let store = open_store(config).await?;
        Self::with_store(config, store)
    }

    pub fn with_store(config: &Config, store: Store) -> Result<Arc<Self>, AppError> {
        let work_ready = Arc::new(Notify::new());
        let process_id = format!("relay-{}", ulid::Ulid::new());
        let process_count = Arc::new(AtomicU32::new(1));
        let host: Arc<dyn ProviderHost> = Arc::new(StoreHost {
            store: store.clone(),
            wake: work_ready.clone(),
            process_id: process_id.clone(),
            process_count: process_count.clone(),
        });
        let providers = build_providers(config, host.clone())?;
        let state = Arc::new(Self {
            settings: config.settings.clone(),
            store,
            providers,
            work_ready,
            process_id,
            process_count,
            delivery_results: watch::Sender::new(0),
            metrics: Metrics::default(),
            intake_cache: IntakeCache::default(),
            intake_rate: IntakeRate::default(),
            activity: ActivityCounter::default(),
        });
        Ok(state)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn plan(&self, name: &str) -> PlanLimits {
        let plan = self.settings.plans.get(name);
        PlanLimits {
            events_per_month: plan.and_then(|p| p.events_per_month),
            categories: plan.and_then(|p| p.categories),
        }
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderEntry> {
        self.providers.iter().find(|p| p.registration.id == id)
    }

    /// Resolves an API key to its account and key id, noting (at most once a minute) that the
    /// key was used; `None` when unknown or revoked.
    pub async fn authenticate_key(&self, key: &str) -> Result<Option<Authenticated>, StoreError> {
        let store = self.store();
        let Some(found) = store.authenticate(&hash_api_key(key)).await? else {
            return Ok(None);
        };
        let now = now_millis();
        if found
            .key_last_used_at
            .is_none_or(|at| now - at >= KEY_TOUCH_INTERVAL_MS)
        {
            store.touch_key(&found.key_id, now).await?;
        }
        Ok(Some(found))
    }

    /// A channel's status for an account: the provider's view plus its account fields.
    pub async fn channel_status(
        &self,
        entry: &ProviderEntry,
        account: &Account,
    ) -> Result<ChannelStatus, StoreError> {
        let link = self.channel_link(entry, account).await?;
        let mut status = entry.provider.channel_status(&link.context(account));
        if let Some(secret) = &link.secret {
            status
                .extra
                .insert(SIGNING_SECRET.into(), Value::from(secret.expose()));
        }
        Ok(status)
    }

    /// What the provider sees of an account's channel beside the account's fields: for a
    /// provider that links chats, the link token and linked state; for one that signs, the
    /// channel's secret while the channel is on (made on first use).
    pub async fn channel_link(
        &self,
        entry: &ProviderEntry,
        account: &Account,
    ) -> Result<ChannelLink, StoreError> {
        let registration = entry.registration;
        let mut link = ChannelLink::default();
        if registration.uses_link_token {
            let (token, state) = self
                .store()
                .link_token(&account.id, registration.id)
                .await?;
            link.token = Some(token);
            link.state = state;
        }
        if registration.enabled_for(account) {
            link.secret = self.channel_secret(entry, &account.id).await?;
        }
        Ok(link)
    }

    /// The account's secret for a provider that keeps one (made now if it has none yet);
    /// `None` for the other providers.
    pub async fn channel_secret(
        &self,
        entry: &ProviderEntry,
        account_id: &AccountId,
    ) -> Result<Option<Secret>, StoreError> {
        let Some(make) = entry.registration.channel_secret else {
            return Ok(None);
        };
        let secret = self
            .store()
            .channel_secret(account_id, entry.registration.id, make)
            .await?;
        Ok(Some(Secret::new(secret)))
    }
}

/// An account's link with one provider, from [`AppState::channel_link`].
#[derive(Debug, Default)]
pub struct ChannelLink {
    pub token: Option<String>,
    pub state: Option<Value>,
    pub secret: Option<Secret>,
}

impl ChannelLink {
    /// The channel as the provider sees it for `account`.
    pub fn context<'a>(&'a self, account: &'a Account) -> ChannelContext<'a> {
        ChannelContext {
            account_id: &account.id,
            fields: &account.fields,
            link_token: self.token.as_deref(),
            state: self.state.as_ref(),
            secret: self.secret.as_ref(),
        }
    }
}

fn build_providers(
    config: &Config,
    host: Arc<dyn ProviderHost>,
) -> Result<Vec<ProviderEntry>, AppError> {
    // The settings that name providers are checked with the providers.
    provider::default_channels(&config.settings)?;
    provider::registered()
        .into_iter()
        .map(|registration| {
            let provider = (registration.build)(ProviderSetup {
                section: config.provider_section(registration.id),
                host: host.clone(),
                project_url: PROJECT_URL,
                version: VERSION,
            })?;
            Ok(ProviderEntry {
                registration,
                provider,
            })
        })
        .collect()
}

/// Opens the configured database, creating it and bringing its schema up to date.
pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    let db = &config.settings.database;
    Ok(crate::store::open(&db.url, &crate::store::StoreOptions::from_settings(db)).await?)
}

/// A host for providers built without a database; they are not run.
struct NoHost;

#[async_trait]
impl ProviderHost for NoHost {
    async fn link_account(
        &self,
        _: &'static str,
        _: LinkRequest<'_>,
    ) -> Result<LinkOutcome, HostError> {
        Err(HostError("no database".into()))
    }
    async fn load_value(&self, _: &'static str, _: &str) -> Result<Option<String>, HostError> {
        Err(HostError("no database".into()))
    }
    async fn save_value(&self, _: &'static str, _: &str, _: &str) -> Result<(), HostError> {
        Err(HostError("no database".into()))
    }
}

struct StoreHost {
    store: Store,
    wake: Arc<Notify>,
    process_id: String,
    process_count: Arc<AtomicU32>,
}

#[async_trait]
impl ProviderHost for StoreHost {
    async fn link_account(
        &self,
        provider: &'static str,
        request: LinkRequest<'_>,
    ) -> Result<LinkOutcome, HostError> {
        let outcome = self
            .store
            .link_account(provider, &request)
            .await
            .map_err(|e| HostError(e.to_string()))?;
        if matches!(outcome, LinkOutcome::Linked { .. }) {
            // Deliveries that waited for the link are due now.
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn load_value(
        &self,
        provider: &'static str,
        key: &str,
    ) -> Result<Option<String>, HostError> {
        self.store
            .provider_value(provider, key)
            .await
            .map_err(|e| HostError(e.to_string()))
    }

    async fn save_value(
        &self,
        provider: &'static str,
        key: &str,
        value: &str,
    ) -> Result<(), HostError> {
        self.store
            .set_provider_value(provider, key, value)
            .await
            .map_err(|e| HostError(e.to_string()))
    }

    fn process_count(&self) -> u32 {
        self.process_count.load(Ordering::Relaxed).max(1)
    }

    async fn hold_lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool, HostError> {
        let now = now_millis();
        self.store
            .acquire_lease(name, &self.process_id, now, now + ttl.as_millis() as i64)
            .await
            .map_err(|e| HostError(e.to_string()))
    }
}
