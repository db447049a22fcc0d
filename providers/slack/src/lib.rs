//! PingPilot provider `slack`: each event is a Block Kit message posted to the account's Slack
//! incoming webhook, at most one per second per webhook URL (Slack's limit).

mod message;
mod pace;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_core::provider::kit::target::{self, Targets};
use pingpilot_core::provider::kit::{http, outcome};
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    Provider, ProviderRegistration, ProviderSetup,
};
use reqwest::header::USER_AGENT;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

pub use message::{build as build_message, escape};
use pace::PerUrl;

pub const ID: &str = "slack";
/// The account field holding the incoming webhook's URL.
pub const SLACK_WEBHOOK_URL: &str = "slackWebhookUrl";
/// Answered (403) by event intake while `slackWebhookUrl` is unset and the channel is on.
pub const MISSING_MESSAGE: &str = "Please enter your Slack webhook URL in your account settings";
/// Longest part of Slack's answer kept in the attempt's error.
const ANSWER_SNIPPET_CHARS: usize = 200;

/// The `providers.slack` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SlackSettings {
    /// Allow webhook URLs on loopback, private and link-local addresses (a Slack-compatible
    /// server on the relay's own network). Off: such URLs are refused when set and on every
    /// send.
    pub allow_private_targets: bool,
    /// Timeout of each request to Slack, in seconds.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            request_timeout_secs: 10,
        }
    }
}

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(SlackSettings)
}

/// An incoming webhook URL's form: `http` or `https`, a host, no credentials. Kept as entered,
/// without surrounding blanks.
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
        "description": "Slack incoming webhook URL (Slack app → Incoming Webhooks → Add New Webhook).",
        "examples": ["https://hooks.slack.com/services/T000/B000/XXXX"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: SLACK_WEBHOOK_URL,
    description: "Slack incoming webhook URL that posts to your channel.",
    example: "https://hooks.slack.com/services/T000/B000/XXXX",
    missing_message: MISSING_MESSAGE,
    normalize: normalize_webhook_url,
    schema: webhook_url_schema,
}];

const SETTINGS: &[(&str, &str)] = &[
    (
        "allow_private_targets",
        "Allow webhook URLs on loopback, private and link-local addresses (default false)",
    ),
    (
        "request_timeout_secs",
        "HTTP timeout per request in seconds (default 10)",
    ),
];

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: SlackSettings = setup.section.extract()?;
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
    Ok(Arc::new(SlackProvider {
        targets,
        http,
        user_agent: format!("PingPilot ({}, {})", setup.project_url, setup.version),
        pace: PerUrl::new(setup.host),
    }))
}

inventory::submit! {
    ProviderRegistration {
        id: ID,
        order: 40,
        display_name: "Slack",
        description: "Messages in a Slack channel through an incoming webhook",
        account_fields: ACCOUNT_FIELDS,
        on_for_older_accounts: false,
        uses_link_token: false,
        channel_secret: None,
        settings: SETTINGS,
        config_schema,
        build,
    }
}

/// Posts events to the accounts' incoming webhooks.
pub struct SlackProvider {
    targets: Targets,
    /// Checks every address it connects to, follows no redirect, uses no proxy.
    http: reqwest::Client,
    user_agent: String,
    /// One message per second per webhook URL, shared by the relay processes.
    pace: PerUrl,
}

#[async_trait]
impl Provider for SlackProvider {
    async fn check_field(&self, _field: &str, value: &str) -> Result<(), String> {
        self.targets
            .check_resolved(value)
            .await
            .map(|_| ())
            .map_err(|refused| refused.to_string())
    }

    fn channel_status(&self, _channel: &ChannelContext<'_>) -> ChannelStatus {
        ChannelStatus::default()
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome {
        let Some(url) = request.channel.fields.get(SLACK_WEBHOOK_URL) else {
            return DeliveryOutcome::Wait {
                reason: MISSING_MESSAGE.into(),
            };
        };
        let parsed = match self.targets.check(url) {
            Ok(parsed) => parsed,
            Err(refused) => return refused_outcome(&refused),
        };
        if let Err(retry_after) = self.pace.try_acquire(url).await {
            return DeliveryOutcome::Throttled { retry_after };
        }
        let sent = self
            .http
            .post(parsed)
            .header(USER_AGENT, &self.user_agent)
            .json(&build_message(request.message))
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
                    error: format!("Slack request failed: {}", http::error_text(err)),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = http::retry_after_header(response.headers());
        if status == 429 {
            // Slack's limit is per webhook: hold this URL's messages back, not the others'.
            let pause = retry_after.unwrap_or(Duration::from_secs(1));
            self.pace.pause(url, pause, Instant::now());
        }
        let answer = http::answer_snippet(response, ANSWER_SNIPPET_CHARS).await;
        let error = if answer.is_empty() {
            format!("Slack answered {status}")
        } else {
            format!("Slack answered {status}: {answer}")
        };
        outcome::outcome(status, retry_after, error)
    }
}

/// A URL the settings refuse will not be sent to as it is: failed, saying why.
fn refused_outcome(refused: &target::Refused) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        http_status: None,
        error: format!("Slack webhook URL refused: {refused}"),
    }
}
