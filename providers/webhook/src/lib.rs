//! PingPilot provider `webhook`: each event is POSTed as JSON to the account's URL, signed as
//! the Standard Webhooks specification says (<https://www.standardwebhooks.com/>), so receivers
//! can check it with that specification's libraries.

mod sign;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::kit::target::{self, Targets};
use pingpilot_core::provider::kit::{http, outcome};
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    EventMessage, Provider, ProviderRegistration, ProviderSetup,
};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

pub use sign::{new_secret, signature};

pub const ID: &str = "webhook";
/// The account field holding the URL that receives the events.
pub const WEBHOOK_URL: &str = "webhookUrl";
/// Answered (403) by event intake while `webhookUrl` is unset and the channel is on.
pub const MISSING_MESSAGE: &str = "Please enter your webhook URL in your account settings";
/// The `type` of every message.
pub const EVENT_TYPE: &str = "event.created";
/// Longest part of a receiver's answer kept in the attempt's error.
const ANSWER_SNIPPET_CHARS: usize = 200;

/// The `providers.webhook` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow URLs on loopback, private, link-local and other inward addresses (receivers on the
    /// relay's own network). Off: such URLs are refused when set and on every send.
    pub allow_private_targets: bool,
    /// Timeout of each delivery request, in seconds.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            request_timeout_secs: 10,
        }
    }
}

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(WebhookSettings)
}

/// A webhook URL's form: `http` or `https`, a host, no credentials (the settings' check of its
/// address comes in [`Provider::check_field`]). Kept as entered, without surrounding blanks.
pub fn normalize_webhook_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    Targets::new(true)
        .check(value)
        .map(|_| value.to_string())
        .map_err(|refused| refused.to_string())
}

fn webhook_url_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "format": "uri",
        "maxLength": target::MAX_URL_CHARS,
        "description": "URL that receives each event as a signed POST (Standard Webhooks).",
        "examples": ["https://hooks.example.com/pingpilot"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: WEBHOOK_URL,
    description: "URL that receives each event as a signed POST (Standard Webhooks); http or \
                  https, on a public address.",
    example: "https://hooks.example.com/pingpilot",
    missing_message: MISSING_MESSAGE,
    normalize: normalize_webhook_url,
    schema: webhook_url_schema,
}];

const SETTINGS: &[(&str, &str)] = &[
    (
        "allow_private_targets",
        "Allow URLs on loopback, private and link-local addresses (default false)",
    ),
    (
        "request_timeout_secs",
        "HTTP timeout per delivery in seconds (default 10)",
    ),
];

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: WebhookSettings = setup.section.extract()?;
    let key = setup.section.key().to_string();
    if settings.request_timeout_secs == 0 {
        return Err(ConfigError::Invalid(format!(
            "{key}.request_timeout_secs: must be at least 1"
        )));
    }
    let targets = Targets::new(settings.allow_private_targets);
    let http = targets
        .client(Duration::from_secs(settings.request_timeout_secs))
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot create the HTTP client: {e}")))?;
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
        settings: SETTINGS,
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
        self.targets
            .check_resolved(value)
            .await
            .map(|_| ())
            .map_err(|refused| refused.to_string())
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
            Err(refused) => return refused_outcome(&refused),
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
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                if let Some(refused) = target::refused_in(&err) {
                    return refused_outcome(refused);
                }
                return DeliveryOutcome::Retry {
                    http_status: None,
                    error: format!("webhook request failed: {}", http::error_text(err)),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = http::retry_after_header(response.headers());
        let answer = http::answer_snippet(response, ANSWER_SNIPPET_CHARS).await;
        let error = if answer.is_empty() {
            format!("webhook answered {status}")
        } else {
            format!("webhook answered {status}: {answer}")
        };
        outcome::outcome(status, retry_after, error)
    }
}

/// A URL the settings refuse will not be sent to as it is: failed, saying why.
fn refused_outcome(refused: &target::Refused) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        http_status: None,
        error: format!("webhook URL refused: {refused}"),
    }
}
