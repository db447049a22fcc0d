//! PingPilot provider `telegram`: each event becomes an HTML message from the operator's bot in
//! the chat the account linked by opening `https://t.me/<bot>?start=<link token>`.

mod error;
mod limiter;
#[cfg(test)]
mod tests;
mod text;
mod updates;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    Provider, ProviderHost, ProviderRegistration, ProviderSetup, WebhookReply, WebhookRequest,
};
use reqwest::header::USER_AGENT;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

pub use error::TelegramError;
use limiter::Limiter;
pub use text::{escape, render_text};
pub use updates::{StartCommand, parse_start};

pub const ID: &str = "telegram";
/// The account field holding the user's Telegram username.
pub const TELEGRAM_USERNAME: &str = "telegramUsername";
/// Answered (403) by event intake while `telegramUsername` is unset.
pub const MISSING_MESSAGE: &str = "Telegram username not set. Please set your telegram username in your account settings to receive notifications";
const TOKEN_SETTING: &str = "providers.telegram.bot_token";
const TOKEN_ENV: &str = "PINGPILOT_PROVIDERS__TELEGRAM__BOT_TOKEN";

/// How the bot receives updates (needed for linking chats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Long polling of `getUpdates` (no public URL needed), by one relay process at a time: the
    /// holder of the `telegram-updates` lease in the database.
    #[default]
    Polling,
    /// Telegram posts updates to `POST /api/v1/telegram/webhook` (set with `setWebhook`,
    /// `secret_token` = `webhook_secret`); any relay process can serve it.
    Webhook,
}

/// The `providers.telegram` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramSettings {
    /// Bot token from @BotFather (`123456:ABC...`). Without it the provider is not configured and
    /// its deliveries wait.
    pub bot_token: Option<Secret>,
    /// Bot API base URL (a stand-in server may be used for tests).
    pub api_base: String,
    /// The bot's username (without `@`), used for the `https://t.me/<bot_username>?start=...`
    /// link users open to link their chat.
    pub bot_username: Option<String>,
    /// How updates (`/start <link token>`) reach the bot.
    pub mode: Mode,
    /// Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (webhook mode; required
    /// there): 1 to 256 of `A-Z a-z 0-9 _ -`.
    pub webhook_secret: Option<Secret>,
    /// Most messages per second sent by the bot (Telegram allows about 30). The budget is for
    /// the bot token across all relay processes on the database: each process uses its share
    /// (this rate divided by the number of live processes).
    #[schemars(range(min = 1))]
    pub messages_per_second: u32,
    /// Most messages per second sent to one chat (Telegram allows about 1). The budget is for
    /// the bot token across all relay processes on the database (any of them may serve a chat):
    /// each process uses its share (this rate divided by the number of live processes).
    #[schemars(range(min = 1))]
    pub messages_per_chat_per_second: u32,
    /// Long-poll duration of `getUpdates`, in seconds.
    pub poll_timeout_secs: u32,
    /// Timeout of each HTTP request to Telegram, in seconds (added to `poll_timeout_secs` for
    /// `getUpdates`).
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_base: "https://api.telegram.org".into(),
            bot_username: None,
            mode: Mode::Polling,
            webhook_secret: None,
            messages_per_second: 30,
            messages_per_chat_per_second: 1,
            poll_timeout_secs: 30,
            request_timeout_secs: 10,
        }
    }
}

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(TelegramSettings)
}

/// A Telegram username: 5 to 32 of `[A-Za-z0-9_]`; a leading `@` is dropped.
pub fn normalize_username(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let name = trimmed.strip_prefix('@').unwrap_or(trimmed);
    if (5..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(name.to_string())
    } else {
        Err(
            "telegramUsername must be a Telegram username: 5 to 32 letters, digits or underscores"
                .into(),
        )
    }
}

fn username_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^@?[A-Za-z0-9_]{5,32}$",
        "title": "Telegram username",
        "description": "Your username in Telegram (Settings → Username), with or without the \
            @. Then connect your chat: open the bot's link from that Telegram account and press \
            Start.",
        "examples": ["pingpilot_user"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: TELEGRAM_USERNAME,
    description: "Your Telegram username (5 to 32 letters, digits or underscores). Then open the \
        link shown in channels.linkUrl from that Telegram account and press Start so the bot can \
        message you.",
    example: "pingpilot_user",
    missing_message: MISSING_MESSAGE,
    normalize: normalize_username,
    schema: username_schema,
}];

const SETTINGS: &[(&str, &str)] = &[
    (
        "bot_token",
        "Bot token from @BotFather; without it deliveries wait (secret)",
    ),
    (
        "api_base",
        "Bot API base URL (default https://api.telegram.org)",
    ),
    (
        "bot_username",
        "The bot's username, for the t.me link users open to link their chat",
    ),
    (
        "mode",
        "How the bot receives /start: polling (default; one relay process polls at a time) or webhook",
    ),
    (
        "webhook_secret",
        "Secret token checked on webhook requests (webhook mode, secret)",
    ),
    (
        "messages_per_second",
        "Most messages per second, shared by all relay processes on the database (default 30)",
    ),
    (
        "messages_per_chat_per_second",
        "Most messages per second to one chat, shared by all relay processes on the database (default 1)",
    ),
    (
        "poll_timeout_secs",
        "getUpdates long-poll duration in seconds (default 30)",
    ),
    (
        "request_timeout_secs",
        "HTTP timeout per request in seconds (default 10)",
    ),
];

fn not_configured() -> String {
    format!("Telegram is not configured: set {TOKEN_SETTING} (env {TOKEN_ENV})")
}

fn blank_to_none(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn valid_webhook_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(TelegramProvider::new(setup)?))
}

impl TelegramProvider {
    /// Builds the provider. A missing token is not an error: the server starts and deliveries wait.
    pub fn new(setup: ProviderSetup) -> Result<Self, ConfigError> {
        let settings: TelegramSettings = setup.section.extract()?;
        let key = setup.section.key().to_string();
        let invalid = |name: &str, why: &str| ConfigError::Invalid(format!("{key}.{name}: {why}"));
        for (name, value) in [
            (
                "messages_per_second",
                u64::from(settings.messages_per_second),
            ),
            (
                "messages_per_chat_per_second",
                u64::from(settings.messages_per_chat_per_second),
            ),
            ("request_timeout_secs", settings.request_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        let token = Secret::from_setting(settings.bot_token);
        let bot_username = blank_to_none(settings.bot_username)
            .map(|name| name.trim_start_matches('@').to_string());
        let webhook_secret = Secret::from_setting(settings.webhook_secret);
        if let Some(secret) = &webhook_secret
            && !valid_webhook_secret(secret.expose())
        {
            return Err(invalid(
                "webhook_secret",
                "must be 1 to 256 of A-Z, a-z, 0-9, _ and -",
            ));
        }
        if settings.mode == Mode::Webhook && token.is_some() && webhook_secret.is_none() {
            // Without it anyone could post forged updates to the webhook.
            return Err(invalid(
                "webhook_secret",
                "required when mode = \"webhook\"",
            ));
        }
        if token.is_none() {
            tracing::warn!(
                "Telegram is not configured: set {TOKEN_SETTING} (env {TOKEN_ENV}); Telegram deliveries will wait"
            );
        }
        if bot_username.is_none() {
            tracing::warn!(
                "providers.telegram.bot_username is not set: accounts cannot be shown the link that connects their Telegram chat"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            .build()
            .map_err(|e| {
                ConfigError::Invalid(format!("{key}: cannot create the HTTP client: {e}"))
            })?;
        Ok(TelegramProvider {
            token,
            api_base: settings.api_base.trim_end_matches('/').to_string(),
            bot_username,
            mode: settings.mode,
            webhook_secret,
            poll_timeout_secs: settings.poll_timeout_secs,
            request_timeout: Duration::from_secs(settings.request_timeout_secs),
            user_agent: format!("PingPilot ({}, {})", setup.project_url, setup.version),
            http,
            // The host tells at each booking how many relay processes share the budgets.
            limiter: Limiter::new(
                settings.messages_per_second,
                settings.messages_per_chat_per_second,
            )
            .shared_with(setup.host.clone()),
            host: setup.host,
        })
    }
}

inventory::submit! {
    ProviderRegistration {
        id: ID,
        order: 20,
        display_name: "Telegram",
        description: "Messages from your Telegram bot in the chat each account links",
        account_fields: ACCOUNT_FIELDS,
        on_for_older_accounts: true,
        uses_link_token: true,
        channel_secret: None,
        settings: SETTINGS,
        config_schema,
        build,
    }
}

/// Sends events through the bot and links chats.
pub struct TelegramProvider {
    /// `None` when not configured.
    token: Option<Secret>,
    api_base: String,
    bot_username: Option<String>,
    mode: Mode,
    webhook_secret: Option<Secret>,
    poll_timeout_secs: u32,
    request_timeout: Duration,
    user_agent: String,
    http: reqwest::Client,
    /// The relay's own budgets for this bot and each chat (this process's share of them).
    limiter: Limiter,
    host: Arc<dyn ProviderHost>,
}

/// Telegram's answer envelope: `{ok, result}` or `{ok:false, error_code, description, parameters}`.
#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    result: Value,
    description: Option<String>,
    parameters: Option<ReplyParameters>,
}

#[derive(Deserialize)]
struct ReplyParameters {
    retry_after: Option<u64>,
}

#[async_trait]
impl Provider for TelegramProvider {
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> WebhookReply {
        let secret = request
            .headers
            .get("x-telegram-bot-api-secret-token")
            .map(String::as_str);
        match TelegramProvider::handle_webhook(self, secret, request.body).await {
            Ok(()) => WebhookReply::Accepted,
            Err(TelegramError::WebhookDisabled) => WebhookReply::NotEnabled,
            Err(TelegramError::BadSecret) => {
                WebhookReply::Unauthorized(TelegramError::BadSecret.to_string())
            }
            Err(err) => WebhookReply::BadRequest(err.to_string()),
        }
    }

    fn not_configured(&self) -> Option<String> {
        self.token.is_none().then(not_configured)
    }

    fn advice(&self, error: &str) -> Option<&'static str> {
        if error.contains("bot was blocked by the user") {
            Some("You blocked the bot in Telegram: open its chat, unblock it, then retry.")
        } else if error.contains("chat not found") || error.contains("user is deactivated") {
            Some("The linked chat is gone: connect Telegram again from Settings, then retry.")
        } else {
            None
        }
    }

    fn channel_status(&self, channel: &ChannelContext<'_>) -> ChannelStatus {
        let link_url = self.link_url(channel.link_token);
        let linked = chat_id(channel.state).is_some();
        let waiting = if self.token.is_none() {
            Some(not_configured())
        } else if !linked {
            Some(not_linked(link_url.as_deref()))
        } else {
            None
        };
        let mut extra = Map::new();
        extra.insert("linked".into(), Value::Bool(linked));
        extra.insert(
            "linkUrl".into(),
            link_url.map_or(Value::Null, Value::String),
        );
        ChannelStatus { waiting, extra }
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome {
        let Some(token) = self.token.as_ref().map(Secret::expose) else {
            return DeliveryOutcome::Wait {
                reason: not_configured(),
            };
        };
        let Some(chat) = chat_id(request.channel.state) else {
            return DeliveryOutcome::Wait {
                reason: not_linked(self.link_url(request.channel.link_token).as_deref()),
            };
        };
        match self
            .deliver_message(token, chat, &render_text(request.message))
            .await
        {
            Ok(status) => DeliveryOutcome::Delivered {
                http_status: Some(status),
            },
            Err(err) => err.outcome(),
        }
    }

    async fn run_background(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        // Webhook mode gets updates through the HTTP API; unconfigured bots get none.
        if let (Some(token), Mode::Polling) = (self.token.as_ref().map(Secret::expose), self.mode) {
            self.poll_updates(token, shutdown).await;
        }
    }
}

/// The linked chat id from the provider state (`{"chatId": ...}`).
fn chat_id(state: Option<&Value>) -> Option<i64> {
    match state?.get("chatId")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn not_linked(link_url: Option<&str>) -> String {
    match link_url {
        Some(url) => format!("Telegram chat not linked yet: open {url} and press Start"),
        None => "Telegram chat not linked yet: open the bot link from your account settings and press Start".into(),
    }
}

impl TelegramProvider {
    fn link_url(&self, link_token: Option<&str>) -> Option<String> {
        let bot = self.bot_username.as_deref()?;
        let token = link_token.filter(|t| !t.is_empty())?;
        Some(format!("https://t.me/{bot}?start={token}"))
    }

    /// Delivers one message: `sendMessage` when the bot's and the chat's budgets have a slot
    /// soon, else [`TelegramError::Throttled`] without sending.
    pub(crate) async fn deliver_message(
        &self,
        token: &str,
        chat: i64,
        text: &str,
    ) -> Result<u16, TelegramError> {
        self.limiter
            .try_acquire(chat)
            .await
            .map_err(TelegramError::Throttled)?;
        self.send_now(token, chat, text).await
    }

    /// `sendMessage` for the bot's own replies: waits as long as its budgets need.
    pub(crate) async fn send_message(
        &self,
        token: &str,
        chat: i64,
        text: &str,
    ) -> Result<u16, TelegramError> {
        self.limiter.acquire(chat).await;
        self.send_now(token, chat, text).await
    }

    /// `sendMessage` in HTML parse mode, its slot already taken; a 429 pauses the chat.
    async fn send_now(&self, token: &str, chat: i64, text: &str) -> Result<u16, TelegramError> {
        let body = json!({ "chat_id": chat, "text": text, "parse_mode": "HTML" });
        match self.call(token, "sendMessage", &body, None).await {
            Ok((status, _)) => Ok(status),
            Err(err) => {
                if let Some(pause) = err.retry_after() {
                    self.limiter.pause_chat(chat, pause, Instant::now());
                }
                Err(err)
            }
        }
    }

    /// One Bot API call. `ok: true` with a 2xx gives `(status, result)`; anything else an error
    /// carrying Telegram's `description`.
    pub(crate) async fn call(
        &self,
        token: &str,
        method: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<(u16, Value), TelegramError> {
        let mut request = self
            .http
            .post(format!("{}/bot{token}/{method}", self.api_base))
            .header(USER_AGENT, &self.user_agent)
            .json(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TelegramError::network(e, token))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TelegramError::network(e, token))?;
        match serde_json::from_slice::<Reply>(&bytes) {
            Ok(reply) if reply.ok && (200..300).contains(&status) => Ok((status, reply.result)),
            Ok(reply) => Err(TelegramError::Api {
                status,
                description: reply.description.unwrap_or_else(|| reason(status)),
                retry_after: reply
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(Duration::from_secs),
            }),
            Err(_) => Err(TelegramError::Api {
                status,
                description: error::redact(
                    &snippet(&bytes).unwrap_or_else(|| reason(status)),
                    token,
                ),
                retry_after: None,
            }),
        }
    }
}

fn reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
        .to_string()
}

/// The start of a body that is not a Bot API answer (e.g. a proxy's HTML page), on one line.
fn snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = line.chars().take(200).collect();
    (!cut.is_empty()).then_some(cut)
}
