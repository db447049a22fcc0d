//! PingPilot provider `webhook`: each event is POSTed as JSON to the account's URL, signed as
//! the Standard Webhooks specification says (<https://www.standardwebhooks.com/>), so receivers
//! can check it with that specification's libraries.

mod sign;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::kit::target::{self, Targets, UrlSettings};
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    EventMessage, Provider, ProviderRegistration, ProviderSetup,
};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use serde_json::{Value, json};

pub use sign::{new_secret, signature};

pub const ID: &str = "webhook";
/// The account field holding the URL that receives the events.
pub const WEBHOOK_URL: &str = "webhookUrl";
/// Answered (403) by event intake while `webhookUrl` is unset and the channel is on.
pub const MISSING_MESSAGE: &str = "Please enter your webhook URL in your account settings";
/// The `type` of every message.
pub const EVENT_TYPE: &str = "event.created";
/// What errors call the other side.
const SERVICE: &str = "webhook";

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(UrlSettings)
}

fn webhook_url_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "format": "uri",
        "maxLength": target::MAX_URL_CHARS,
        "title": "Webhook URL",
        "description": "An address of yours that receives each event as a signed POST \
            (Standard Webhooks): http or https, on a public address.",
        "examples": ["https://hooks.example.com/pingpilot"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: WEBHOOK_URL,
    description: "URL that receives each event as a signed POST (Standard Webhooks); http or \
                  https, on a public address.",
    example: "https://hooks.example.com/pingpilot",
    missing_message: MISSING_MESSAGE,
    normalize: target::normalize_url,
    schema: webhook_url_schema,
}];

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: UrlSettings = setup.section.extract()?;
    let (targets, http) = settings.client(setup.section.key())?;
    Ok(Arc::new(WebhookProvider {
        targets,
        http,
        user_agent: format!("PingPilot ({}, {})", setup.project_url, setup.version),
    }))
}

inventory::submit! {
    ProviderRegistration {
        id: ID,
        order: 30,
        display_name: "Webhook",
        description: "A signed JSON POST to your URL (Standard Webhooks)",
        account_fields: ACCOUNT_FIELDS,
        on_for_older_accounts: false,
        uses_link_token: false,
        channel_secret: Some(new_secret),
        settings: target::URL_SETTINGS,
        config_schema,
        build,
    }
}

/// Sends events to the accounts' URLs.
pub struct WebhookProvider {
    targets: Targets,
    /// Checks every address it connects to, follows no redirect, uses no proxy.
    http: reqwest::Client,
    user_agent: String,
}

/// The JSON body of a message.
pub fn payload(message: &EventMessage) -> Value {
    json!({
        "type": EVENT_TYPE,
        "timestamp": message.timestamp(),
        "data": {
            "eventId": message.event_id,
            "category": message.category,
            "description": message.description,
            "fields": message.fields,
            "createdAt": message.timestamp(),
        },
    })
}

#[async_trait]
impl Provider for WebhookProvider {
    async fn check_field(&self, _field: &str, value: &str) -> Result<(), String> {
        self.targets.check_field(value).await
    }

    fn channel_status(&self, _channel: &ChannelContext<'_>) -> ChannelStatus {
        // The relay shows the signing secret itself (`signingSecret`).
        ChannelStatus::default()
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome {
        let Some(url) = request.channel.fields.get(WEBHOOK_URL) else {
            return DeliveryOutcome::Wait {
                reason: MISSING_MESSAGE.into(),
            };
        };
        let Some(secret) = request.channel.secret else {
            return DeliveryOutcome::Wait {
                reason: "the channel has no signing secret yet".into(),
            };
        };
        // The URL was checked when it was set; the settings may have changed since.
        let url = match self.targets.check(url) {
            Ok(url) => url,
            Err(refused) => return target::refused_outcome(SERVICE, &refused),
        };
        self.send(url, secret, request.message).await
    }
}

impl WebhookProvider {
    async fn send(
        &self,
        url: reqwest::Url,
        secret: &Secret,
        message: &EventMessage,
    ) -> DeliveryOutcome {
        // One id per event: the same on every retry, so receivers can drop repeats.
        let id = message.event_id.as_str();
        let timestamp = Utc::now().timestamp();
        let body = payload(message).to_string().into_bytes();
        let Some(signature) = signature(secret.expose(), id, timestamp, &body) else {
            return DeliveryOutcome::Failed {
                http_status: None,
                error: "the channel's signing secret is not a whsec_ secret; replace it".into(),
            };
        };
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, &self.user_agent)
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        target::outcome_of(SERVICE, sent).await
    }
}
