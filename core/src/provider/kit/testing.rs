//! The test kit (feature `samples`): what a provider's own tests need besides a stand-in for its
//! service, so they stay short: a host with nothing linked, a provider built from TOML settings
//! as the relay builds it, a sample event, and an account's channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::secret::Secret;
use crate::lock;
use crate::model::AccountId;
use crate::provider::{
    ChannelContext, DeliveryOutcome, DeliveryRequest, EventMessage, HostError, LinkOutcome,
    LinkRequest, Provider, ProviderHost, ProviderRegistration, ProviderSection, ProviderSetup,
    registered,
};

/// A relay with no account to link and `processes` live processes (1 unless set); provider
/// values are kept in memory.
#[derive(Default)]
pub struct TestHost {
    values: Mutex<HashMap<(String, String), String>>,
    /// 0 reads as 1.
    processes: AtomicU32,
}

impl TestHost {
    /// A host reporting `count` live relay processes.
    pub fn with_processes(count: u32) -> Arc<Self> {
        let host = Self::default();
        host.set_processes(count);
        Arc::new(host)
    }

    /// Processes join or leave.
    pub fn set_processes(&self, count: u32) {
        self.processes.store(count, Ordering::Relaxed);
    }
}

#[async_trait]
impl ProviderHost for TestHost {
    async fn link_account(
        &self,
        _provider: &'static str,
        _request: LinkRequest<'_>,
    ) -> Result<LinkOutcome, HostError> {
        Ok(LinkOutcome::UnknownToken)
    }

    async fn load_value(
        &self,
        provider: &'static str,
        key: &str,
    ) -> Result<Option<String>, HostError> {
        Ok(lock(&self.values)
            .get(&(provider.to_string(), key.to_string()))
            .cloned())
    }

    async fn save_value(
        &self,
        provider: &'static str,
        key: &str,
        value: &str,
    ) -> Result<(), HostError> {
        lock(&self.values).insert((provider.to_string(), key.to_string()), value.to_string());
        Ok(())
    }

    fn process_count(&self) -> u32 {
        self.processes.load(Ordering::Relaxed).max(1)
    }
}

/// The registration of the linked provider `id`.
pub fn registration(id: &str) -> &'static ProviderRegistration {
    registered()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("provider {id} is not linked into this test"))
}

/// Provider `id` built from `toml` (its `providers.<id>` section) as the relay builds it.
pub fn build(id: &str, toml: &str) -> Result<Arc<dyn Provider>, crate::provider::ConfigError> {
    (registration(id).build)(ProviderSetup {
        section: ProviderSection::from_toml(id, toml),
        host: Arc::new(TestHost::default()),
        project_url: "https://example.test/pingpilot",
        version: "1.2.3",
    })
}

/// A `sale` event with an emoji, a description and three fields of each kind.
pub fn sale() -> EventMessage {
    let mut fields = Map::new();
    fields.insert("plan".into(), json!("pro"));
    fields.insert("amount".into(), json!(99.99));
    fields.insert("recurring".into(), json!(true));
    EventMessage {
        event_id: "evt_01JJ5Q7Y2K8D4M6N3P9R0S1T2V".into(),
        category: "sale".into(),
        emoji: Some("💰".into()),
        color: 0xFFAA00,
        description: "New purchase completed".into(),
        fields,
        created_at: Utc
            .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
            .single()
            .expect("a valid time"),
    }
}

/// An account's channel: its account fields, and what the relay keeps for it.
pub struct TestChannel {
    pub account_id: AccountId,
    pub fields: BTreeMap<String, String>,
    pub link_token: Option<String>,
    pub state: Option<Value>,
    pub secret: Option<Secret>,
}

impl TestChannel {
    /// A channel with these account fields (`[("webhookUrl", "https://…")]`).
    pub fn with_fields(fields: &[(&str, &str)]) -> Self {
        Self {
            account_id: AccountId::generate(),
            fields: fields
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            link_token: None,
            state: None,
            secret: None,
        }
    }

    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(Secret::new(secret));
        self
    }

    pub fn context(&self) -> ChannelContext<'_> {
        ChannelContext {
            account_id: &self.account_id,
            fields: &self.fields,
            link_token: self.link_token.as_deref(),
            state: self.state.as_ref(),
            secret: self.secret.as_ref(),
        }
    }

    /// Delivers `message` (delivery 1) through `provider` to this channel.
    pub async fn deliver(
        &self,
        provider: &dyn Provider,
        message: &EventMessage,
    ) -> DeliveryOutcome {
        provider
            .deliver(DeliveryRequest {
                delivery_id: 1,
                message,
                channel: self.context(),
            })
            .await
    }
}
