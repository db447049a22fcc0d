//! PingPilot provider `slack`: each event is a Block Kit message posted to the account's Slack
//! incoming webhook, at most one per second per webhook URL (Slack's limit).

mod message;
mod pace;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_core::provider::kit::target::{self, Targets, UrlSettings};
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    Provider, ProviderRegistration, ProviderSetup,
};
use reqwest::header::USER_AGENT;
use tokio::time::Instant;

pub use message::{build as build_message, escape};
use pace::PerUrl;

pub const ID: &str = "slack";
/// The account field holding the incoming webhook's URL.
pub const SLACK_WEBHOOK_URL: &str = "slackWebhookUrl";
/// Answered (403) by event intake while `slackWebhookUrl` is unset and the channel is on.
pub const MISSING_MESSAGE: &str = "Please enter your Slack webhook URL in your account settings";
/// What errors call the other side.
const SERVICE: &str = "Slack";
/// The pause after a 429 that did not say how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(UrlSettings)
}

fn webhook_url_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "format": "uri",
        "maxLength": target::MAX_URL_CHARS,
        "title": "Slack webhook URL",
        "description": "In Slack, create an app for your workspace, turn on Incoming Webhooks, \
            choose Add New Webhook, pick the channel and copy the URL it shows.",
        "examples": ["https://hooks.slack.com/services/T000/B000/XXXX"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: SLACK_WEBHOOK_URL,
    description: "Slack incoming webhook URL that posts to your channel.",
    example: "https://hooks.slack.com/services/T000/B000/XXXX",
    missing_message: MISSING_MESSAGE,
    normalize: target::normalize_url,
    schema: webhook_url_schema,
}];

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: UrlSettings = setup.section.extract()?;
    let (targets, http) = settings.client(setup.section.key())?;
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
        settings: target::URL_SETTINGS,
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
        self.targets.check_field(value).await
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
            Err(refused) => return target::refused_outcome(SERVICE, &refused),
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
        let outcome = target::outcome_of(SERVICE, sent).await;
        if let DeliveryOutcome::Retry {
            http_status: Some(429),
            retry_after,
            ..
        } = &outcome
        {
            // Slack's limit is per webhook: hold this URL's messages back, not the others'.
            let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
            self.pace.pause(url, pause, Instant::now());
        }
        outcome
    }
}
