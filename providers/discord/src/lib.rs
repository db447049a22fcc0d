//! PingPilot provider `discord`: each event becomes a direct message with an embed, sent by the
//! operator's bot to the account's Discord user (`discordId`).

mod embed;
mod error;
mod limiter;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_core::lock;
use pingpilot_core::provider::kit::http;
use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    Provider, ProviderRegistration, ProviderSetup,
};
use reqwest::header::{AUTHORIZATION, USER_AGENT};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

pub use embed::build_embed;
pub use error::DiscordError;
use limiter::{Limiter, RateLimitHeaders, Route};

pub const ID: &str = "discord";
/// The account field holding the recipient's user ID.
pub const DISCORD_ID: &str = "discordId";
/// Answered (403) by event intake while `discordId` is unset.
pub const MISSING_MESSAGE: &str = "Please enter your discord ID in your account settings";
const TOKEN_SETTING: &str = "providers.discord.bot_token";
const TOKEN_ENV: &str = "PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN";

/// The `providers.discord` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordSettings {
    /// Bot token from the Discord developer portal (Bot → Token). Without it the provider is not
    /// configured and its deliveries wait.
    pub bot_token: Option<Secret>,
    /// Discord API base URL, versioned (a stand-in server may be used for tests).
    pub api_base: String,
    /// Most HTTP requests per second sent with this bot token (Discord's global limit is 50).
    /// The budget is for the bot token across all relay processes on the database: each
    /// process uses its share (this rate divided by the number of live processes).
    #[schemars(range(min = 1))]
    pub requests_per_second: u32,
    /// Timeout of each HTTP request to Discord, in seconds.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_base: "https://discord.com/api/v10".into(),
            requests_per_second: 50,
            request_timeout_secs: 10,
        }
    }
}

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(DiscordSettings)
}

/// A Discord user ID: a snowflake of 17 to 20 digits.
pub fn normalize_discord_id(value: &str) -> Result<String, String> {
    let id = value.trim();
    if (17..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_string())
    } else {
        Err("discordId must be a Discord user ID: 17 to 20 digits".into())
    }
}

fn discord_id_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^[0-9]{17,20}$",
        "title": "Discord user ID",
        "description": "To find it: in Discord, open User Settings → Advanced and turn on \
            Developer Mode, then right-click your name and choose Copy User ID. The bot can \
            message you once you share a server with it, or allow direct messages from it.",
        "examples": ["123456789012345678"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: DISCORD_ID,
    description: "Discord user ID that receives the bot's direct messages (17 to 20 digits).",
    example: "123456789012345678",
    missing_message: MISSING_MESSAGE,
    normalize: normalize_discord_id,
    schema: discord_id_schema,
}];

const SETTINGS: &[(&str, &str)] = &[
    (
        "bot_token",
        "Bot token; without it deliveries wait (secret)",
    ),
    (
        "api_base",
        "API base URL (default https://discord.com/api/v10)",
    ),
    (
        "requests_per_second",
        "Most requests per second with this token, shared by all relay processes on the database (default 50)",
    ),
    (
        "request_timeout_secs",
        "HTTP timeout per request in seconds (default 10)",
    ),
];

fn not_configured() -> String {
    format!("Discord is not configured: set {TOKEN_SETTING} (env {TOKEN_ENV})")
}

/// Builds the provider. A missing token is not an error: the server starts and deliveries wait.
fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: DiscordSettings = setup.section.extract()?;
    let key = setup.section.key().to_string();
    for (name, value) in [
        ("requests_per_second", settings.requests_per_second as u64),
        ("request_timeout_secs", settings.request_timeout_secs),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid(format!(
                "{key}.{name}: must be at least 1"
            )));
        }
    }
    let token = Secret::from_setting(settings.bot_token);
    if token.is_none() {
        tracing::warn!(
            "Discord is not configured: set {TOKEN_SETTING} (env {TOKEN_ENV}); Discord deliveries will wait"
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.request_timeout_secs))
        .build()
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot create the HTTP client: {e}")))?;
    Ok(Arc::new(DiscordProvider {
        token,
        api_base: settings.api_base.trim_end_matches('/').to_string(),
        // Discord requires `DiscordBot (url, version)`; reqwest sends no User-Agent by default.
        user_agent: format!("DiscordBot ({}, {})", setup.project_url, setup.version),
        http,
        // The host tells at each booking how many relay processes share the token's budget.
        limiter: Limiter::new(settings.requests_per_second).shared_with(setup.host),
        dm_channels: Mutex::new(HashMap::new()),
    }))
}

inventory::submit! {
    ProviderRegistration {
        id: ID,
        order: 10,
        display_name: "Discord",
        description: "Direct messages with an embed from your Discord bot",
        account_fields: ACCOUNT_FIELDS,
        on_for_older_accounts: true,
        uses_link_token: false,
        channel_secret: None,
        settings: SETTINGS,
        config_schema,
        build,
    }
}

/// Sends events as DMs through the bot.
pub struct DiscordProvider {
    /// `None` when not configured.
    token: Option<Secret>,
    api_base: String,
    user_agent: String,
    http: reqwest::Client,
    /// The relay's own limits for this token: this process's share of the global budget (it
    /// asks `host` for the number of live processes at each booking) and per-route buckets.
    limiter: Limiter,
    /// DM channel id per recipient: opening a DM costs a request and is rate limited (40003).
    dm_channels: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl Provider for DiscordProvider {
    fn not_configured(&self) -> Option<String> {
        self.token.is_none().then(not_configured)
    }

    fn advice(&self, error: &str) -> Option<&'static str> {
        error::advice(error)
    }

    fn channel_status(&self, _channel: &ChannelContext<'_>) -> ChannelStatus {
        ChannelStatus {
            waiting: self.token.is_none().then(not_configured),
            extra: Default::default(),
        }
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome {
        let Some(token) = self.token.as_ref().map(Secret::expose) else {
            return DeliveryOutcome::Wait {
                reason: not_configured(),
            };
        };
        // Intake refuses events without it, but the user may have cleared it since.
        let Some(recipient) = request.channel.fields.get(DISCORD_ID) else {
            return DeliveryOutcome::Wait {
                reason: MISSING_MESSAGE.into(),
            };
        };
        let body = json!({ "embeds": [build_embed(request.message)] });
        match self.send(token, recipient, &body).await {
            Ok(status) => DeliveryOutcome::Delivered {
                http_status: Some(status),
            },
            Err(err) => err.outcome(),
        }
    }
}

impl DiscordProvider {
    /// Opens (or reuses) the DM channel and posts the message; returns the final HTTP status.
    async fn send(&self, token: &str, recipient: &str, body: &Value) -> Result<u16, DiscordError> {
        let cached = self.cached_channel(recipient);
        let from_cache = cached.is_some();
        let channel = match cached {
            Some(channel) => channel,
            None => self.open_dm(token, recipient).await?,
        };
        let result = self.post_message(token, &channel, body).await;
        match result {
            Err(err) if err.status() == Some(404) => {
                self.forget_channel(recipient);
                if !from_cache {
                    return Err(err);
                }
                // The cached channel is gone: open the DM again, once.
                let channel = self.open_dm(token, recipient).await?;
                let result = self.post_message(token, &channel, body).await;
                if matches!(&result, Err(e) if e.status() == Some(404)) {
                    self.forget_channel(recipient);
                }
                result
            }
            other => other,
        }
    }

    async fn open_dm(&self, token: &str, recipient: &str) -> Result<String, DiscordError> {
        let (status, body) = self
            .post(
                token,
                "/users/@me/channels",
                &json!({ "recipient_id": recipient }),
            )
            .await?;
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| DiscordError::Unexpected {
                status,
                detail: "DM channel without an id".into(),
            })?;
        lock(&self.dm_channels).insert(recipient.to_string(), id.clone());
        Ok(id)
    }

    async fn post_message(
        &self,
        token: &str,
        channel: &str,
        body: &Value,
    ) -> Result<u16, DiscordError> {
        let path = format!("/channels/{channel}/messages");
        self.post(token, &path, body)
            .await
            .map(|(status, _)| status)
    }

    /// One POST within the relay's rate limits; a non-2xx answer becomes [`DiscordError::Api`].
    /// When the limits leave no slot soon, nothing is sent and the answer is
    /// [`DiscordError::Throttled`].
    async fn post(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Vec<u8>), DiscordError> {
        let route = Route::new("POST", path);
        self.limiter
            .acquire(&route)
            .await
            .map_err(DiscordError::Throttled)?;
        let response = self
            .http
            .post(format!("{}{path}", self.api_base))
            .header(AUTHORIZATION, format!("Bot {token}"))
            .header(USER_AGENT, &self.user_agent)
            .json(body)
            .send()
            .await
            .map_err(DiscordError::network)?;
        let status = response.status().as_u16();
        let limits = RateLimitHeaders::from_headers(response.headers());
        self.limiter.learn(&route, &limits, Instant::now());
        let retry_after = http::retry_after_header(response.headers());
        let bytes = response.bytes().await.map_err(DiscordError::network)?;
        if (200..300).contains(&status) {
            return Ok((status, bytes.to_vec()));
        }
        let err = DiscordError::from_response(status, retry_after, &bytes);
        if let DiscordError::Api {
            status: 429,
            retry_after,
            global,
            ..
        } = &err
        {
            self.limiter
                .rate_limited(&route, &limits, *retry_after, *global, Instant::now());
        }
        Err(err)
    }

    fn cached_channel(&self, recipient: &str) -> Option<String> {
        lock(&self.dm_channels).get(recipient).cloned()
    }

    fn forget_channel(&self, recipient: &str) {
        lock(&self.dm_channels).remove(recipient);
    }
}
