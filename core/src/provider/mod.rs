//! The provider plugin contract.
//!
//! A provider crate registers one [`ProviderRegistration`] with `inventory::submit!`. The core
//! reads the registrations at run time and never names a provider: adding a channel means adding
//! a crate and one line in the binary that links it.

pub mod kit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{Account, AccountId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use pingpilot_config::{ConfigError, ProviderSection};

/// A field a provider needs on each account (e.g. the user's Discord ID).
pub struct AccountField {
    /// JSON property name in the account API, camelCase (`discordId`).
    pub name: &'static str,
    pub description: &'static str,
    pub example: &'static str,
    /// Exact message of the 403 answered by event intake while the field is unset.
    pub missing_message: &'static str,
    /// Validates a value the user entered and returns the form to store (e.g. without a leading `@`).
    pub normalize: fn(&str) -> Result<String, String>,
    /// JSON Schema of the stored value. The dashboard labels the field with its `title` and
    /// shows its `description` as help (where to find the value), in words for people; without
    /// a `title` it labels it with `description` above.
    pub schema: fn() -> schemars::Schema,
}

impl AccountField {
    /// The CLI flag for this field: `discordId` → `discord-id`.
    pub fn cli_flag(&self) -> String {
        let mut flag = String::new();
        for c in self.name.chars() {
            if c.is_ascii_uppercase() {
                flag.push('-');
                flag.push(c.to_ascii_lowercase());
            } else {
                flag.push(c);
            }
        }
        flag
    }
}

/// What a provider crate submits to the registry. Built from `const` parts only.
pub struct ProviderRegistration {
    /// Stable id, also the config section (`providers.<id>`) and the key in `channels`.
    pub id: &'static str,
    /// Position among providers: lower first. Decides the order of the 403 checks.
    pub order: u32,
    pub display_name: &'static str,
    pub description: &'static str,
    pub account_fields: &'static [AccountField],
    /// Whether the channel is on for accounts created before channels were switched on
    /// explicitly, unless they switched it off: true only for the providers linked in those days
    /// (Discord and Telegram). A provider linked later starts off for every existing account.
    pub on_for_older_accounts: bool,
    /// Whether the core keeps a per-account link token for this provider (e.g. Telegram's
    /// `/start <token>` deep link).
    pub uses_link_token: bool,
    /// Makes a per-account secret for a channel whose provider signs what it sends (the
    /// webhook's `whsec_…`). The relay keeps one per account, made the first time the channel is
    /// used while on; the provider gets it in [`ChannelContext::secret`] and may show it, and
    /// `POST /api/v1/account/channels/{id}/secret` replaces it with a new one.
    pub channel_secret: Option<fn() -> String>,
    /// Names of the settings in `providers.<id>` with what they do, for `pingpilot providers`.
    pub settings: &'static [(&'static str, &'static str)],
    /// JSON Schema of the `providers.<id>` configuration section.
    pub config_schema: fn() -> schemars::Schema,
    /// Builds the provider from its configuration section.
    pub build: fn(ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError>,
}

inventory::collect!(ProviderRegistration);

impl ProviderRegistration {
    /// Whether `account` has this channel on.
    pub fn enabled_for(&self, account: &Account) -> bool {
        match account.channels.get(self.id) {
            Some(on) => *on,
            None => !account.channels_explicit && self.on_for_older_accounts,
        }
    }
}

/// Every provider linked into this binary, in provider order.
pub fn registered() -> Vec<&'static ProviderRegistration> {
    let mut all: Vec<_> = inventory::iter::<ProviderRegistration>
        .into_iter()
        .collect();
    all.sort_by_key(|p| (p.order, p.id));
    all
}

/// Every account field declared by a linked provider, in provider order.
pub fn account_fields()
-> impl Iterator<Item = (&'static ProviderRegistration, &'static AccountField)> {
    registered()
        .into_iter()
        .flat_map(|p| p.account_fields.iter().map(move |f| (p, f)))
}

/// The channels `accounts.default_channels` switches on for a new account, as linked provider
/// ids; an id that names no linked provider is a configuration error.
pub fn default_channels(
    settings: &pingpilot_config::Settings,
) -> Result<Vec<&'static str>, ConfigError> {
    let linked = registered();
    settings
        .accounts
        .default_channels
        .iter()
        .map(|id| {
            linked
                .iter()
                .find(|p| p.id == id.as_str())
                .map(|p| p.id)
                .ok_or_else(|| {
                    let known: Vec<&str> = linked.iter().map(|p| p.id).collect();
                    ConfigError::Invalid(format!(
                        "accounts.default_channels: no provider named {id:?} (linked: {})",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// What a provider gets when it is built.
pub struct ProviderSetup {
    /// Its `providers.<id>` configuration section.
    pub section: ProviderSection,
    /// Access to the relay's storage for what a provider may need to do on its own.
    pub host: Arc<dyn ProviderHost>,
    /// `User-Agent` for outgoing requests: `PingPilot (<url>, <version>)`.
    pub project_url: &'static str,
    pub version: &'static str,
}

/// Storage services the core offers to providers (used by background tasks such as Telegram's
/// update polling).
#[async_trait]
pub trait ProviderHost: Send + Sync {
    /// Links the account owning `request.link_token`: in one transaction, checks the account
    /// against the request, stores the provider state (e.g. a Telegram chat id), replaces the
    /// token with a fresh one (a token links once) and releases the account's deliveries waiting
    /// for the link. Anything but [`LinkOutcome::Linked`] changes nothing.
    async fn link_account(
        &self,
        provider: &'static str,
        request: LinkRequest<'_>,
    ) -> Result<LinkOutcome, HostError>;

    /// Reads a provider-wide value saved with [`ProviderHost::save_value`] (e.g. an update offset).
    async fn load_value(
        &self,
        provider: &'static str,
        key: &str,
    ) -> Result<Option<String>, HostError>;

    async fn save_value(
        &self,
        provider: &'static str,
        key: &str,
        value: &str,
    ) -> Result<(), HostError>;

    /// How many relay processes share the database now (at least 1). A per-bot budget (requests
    /// per second) is shared by all of them: each process uses its part.
    fn process_count(&self) -> u32 {
        1
    }

    /// Takes or renews the cross-process lease `name` for `ttl`; true while this process holds
    /// it (e.g. only the holder polls Telegram updates). Renew well before `ttl` runs out.
    async fn hold_lease(&self, name: &str, ttl: Duration) -> Result<bool, HostError> {
        let _ = (name, ttl);
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct HostError(pub String);

/// A user's request to link their channel with an account's link token (e.g. Telegram's
/// `/start <token>`).
#[derive(Debug, Clone)]
pub struct LinkRequest<'a> {
    pub link_token: &'a str,
    /// Provider state to store on the account (e.g. `{"chatId": 42}`).
    pub state: Value,
    /// An account field the linking user must match when the account has it set (e.g. the
    /// Telegram username of whoever pressed Start against `telegramUsername`).
    pub must_match: Option<FieldMatch<'a>>,
}

/// "The account's `field`, when set, must equal `value`", compared ignoring ASCII case (as
/// usernames are). `value` is `None` when the linking user has none: a set field then refuses.
#[derive(Debug, Clone, Copy)]
pub struct FieldMatch<'a> {
    pub field: &'static str,
    pub value: Option<&'a str>,
}

impl FieldMatch<'_> {
    /// Whether the linking user matches an account whose `field` holds `expected`.
    pub fn matches(&self, expected: &str) -> bool {
        self.value
            .is_some_and(|value| value.eq_ignore_ascii_case(expected))
    }
}

/// How a [`ProviderHost::link_account`] call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkOutcome {
    /// Linked; the token was replaced. `previous_state` is what the account was linked to
    /// before (e.g. the chat that no longer gets its notifications), `None` on a first link.
    Linked {
        account_name: String,
        previous_state: Option<Value>,
    },
    /// No account holds that token: it was never issued, or it was used and replaced.
    UnknownToken,
    /// The account's field named by [`LinkRequest::must_match`] holds `expected`, and the
    /// linking user does not match it.
    FieldMismatch { expected: String },
}

/// The per-account view a provider gets of its channel.
pub struct ChannelContext<'a> {
    pub account_id: &'a AccountId,
    /// Values of every account field (by JSON name) that is set.
    pub fields: &'a BTreeMap<String, String>,
    /// The link token, when the provider uses one.
    pub link_token: Option<&'a str>,
    /// State stored by [`ProviderHost::link_account`], if any.
    pub state: Option<&'a Value>,
    /// The channel's secret, when the provider registers a
    /// [`ProviderRegistration::channel_secret`] and the channel is on.
    pub secret: Option<&'a kit::secret::Secret>,
}

/// A provider's channel readiness beyond its account fields.
#[derive(Debug, Default)]
pub struct ChannelStatus {
    /// Why deliveries on this channel cannot go out now (not configured, chat not linked).
    pub waiting: Option<String>,
    /// Extra properties shown in the account's `channels` entry (e.g. `linked`, `linkUrl`).
    pub extra: Map<String, Value>,
}

/// One event rendered for delivery.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// The event's id (a test message's: `test_` + ULID).
    pub event_id: String,
    pub category: String,
    pub emoji: Option<String>,
    /// `0xRRGGBB` as an integer.
    pub color: u32,
    /// The description as stored: never empty (the default text is filled in at intake).
    pub description: String,
    /// Fields in the order sent; values are strings, numbers or booleans.
    pub fields: Map<String, Value>,
    pub created_at: DateTime<Utc>,
}

impl EventMessage {
    /// `<emoji or 🔔> <Category with first letter upper-cased>`.
    pub fn title(&self) -> String {
        let emoji = self
            .emoji
            .as_deref()
            .filter(|e| !e.is_empty())
            .unwrap_or("🔔");
        let mut chars = self.category.chars();
        let name: String = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        };
        format!("{emoji} {name}")
    }

    /// A field value as text: strings as they are, numbers as their JSON text, `true`/`false`.
    pub fn value_text(value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// The event time as ISO 8601 with milliseconds, in UTC.
    pub fn timestamp(&self) -> String {
        self.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// Everything a provider needs to send one delivery.
pub struct DeliveryRequest<'a> {
    pub delivery_id: i64,
    pub message: &'a EventMessage,
    pub channel: ChannelContext<'a>,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered {
        http_status: Option<u16>,
    },
    /// Worth trying again: network error, 5xx, 429.
    Retry {
        http_status: Option<u16>,
        error: String,
        /// The provider asked for this pause; such an attempt does not count against the limit.
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (user blocks DMs, chat not found, bad token).
    Failed {
        http_status: Option<u16>,
        error: String,
    },
    /// Nothing was sent: the channel is not ready (provider not configured, chat not linked).
    Wait {
        reason: String,
    },
    /// Nothing was sent: the relay's own rate limit for this provider (or chat, or route) is
    /// used up for now. The delivery is put back, due after `retry_after`; not an attempt.
    /// Providers return this instead of sleeping for long, so a busy chat does not hold a
    /// worker slot that other deliveries could use.
    Throttled {
        retry_after: Duration,
    },
}

/// A request to `POST /api/v1/<provider id>/webhook`.
pub struct WebhookRequest<'a> {
    /// Request headers, names lower-cased.
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

/// How a provider answered its webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookReply {
    Accepted,
    /// The caller did not prove it is the provider (e.g. wrong secret header).
    Unauthorized(String),
    BadRequest(String),
    /// This provider takes no webhooks (or they are switched off in its settings).
    NotEnabled,
}

/// A channel implementation.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Why the provider cannot deliver at all (e.g. no bot token configured), naming the setting
    /// to fill; `None` when it is configured.
    fn not_configured(&self) -> Option<String> {
        None
    }

    /// Checks an account field's value (already normalized) against the provider's settings,
    /// e.g. that a URL may be sent to; the error is shown to the user next to the field.
    async fn check_field(&self, field: &str, value: &str) -> Result<(), String> {
        let _ = (field, value);
        Ok(())
    }

    /// Readiness of an account's channel beyond its account fields, and what to show about it.
    fn channel_status(&self, channel: &ChannelContext<'_>) -> ChannelStatus;

    /// What the account owner can do about a delivery error this provider recorded (e.g. allow
    /// the bot's direct messages), in plain words; `None` when there is nothing to say.
    fn advice(&self, error: &str) -> Option<&'static str> {
        let _ = error;
        None
    }

    /// Sends one event. Must not panic; every failure is an outcome.
    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome;

    /// Handles a call from the provider to `POST /api/v1/<id>/webhook`.
    async fn handle_webhook(&self, request: WebhookRequest<'_>) -> WebhookReply {
        let _ = request;
        WebhookReply::NotEnabled
    }

    /// Long-running work of the provider (e.g. polling for bot updates), run until `shutdown`
    /// turns true. The default has none.
    async fn run_background(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = shutdown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(id: &'static str, on_for_older_accounts: bool) -> ProviderRegistration {
        ProviderRegistration {
            id,
            order: 0,
            display_name: id,
            description: "",
            account_fields: &[],
            on_for_older_accounts,
            uses_link_token: false,
            channel_secret: None,
            settings: &[],
            config_schema: || schemars::json_schema!({}),
            build: |_| Err(ConfigError::Invalid("not built in tests".into())),
        }
    }

    fn account(explicit: bool, channels: &[(&str, bool)]) -> Account {
        Account {
            id: AccountId::generate(),
            name: "A".into(),
            email: None,
            plan: "free".into(),
            fields: BTreeMap::new(),
            channels: channels
                .iter()
                .map(|(id, on)| (id.to_string(), *on))
                .collect(),
            channels_explicit: explicit,
            created_at: 0,
            disabled_at: None,
        }
    }

    #[test]
    fn a_new_account_has_on_what_it_lists() {
        let new = account(true, &[("discord", true), ("telegram", false)]);
        assert!(registration("discord", true).enabled_for(&new));
        assert!(!registration("telegram", true).enabled_for(&new));
        assert!(!registration("webhook", false).enabled_for(&new));
        assert!(!registration("other", true).enabled_for(&new));
    }

    #[test]
    fn an_older_account_keeps_the_channels_of_its_day_and_gets_none_linked_later() {
        let older = account(false, &[("telegram", false)]);
        assert!(registration("discord", true).enabled_for(&older));
        assert!(!registration("telegram", true).enabled_for(&older));
        assert!(!registration("webhook", false).enabled_for(&older));
        let switched_on = account(false, &[("webhook", true)]);
        assert!(registration("webhook", false).enabled_for(&switched_on));
    }
}
