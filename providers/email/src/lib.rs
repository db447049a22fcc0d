//! PingPilot provider `email`: each event is an e-mail to the account's `notificationEmail`,
//! sent through the operator's SMTP server (plain, STARTTLS or implicit TLS) with `lettre`.

mod message;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::{
    AccountField, ChannelContext, ChannelStatus, ConfigError, DeliveryOutcome, DeliveryRequest,
    EventMessage, Provider, ProviderRegistration, ProviderSetup,
};
use schemars::JsonSchema;
use serde::Deserialize;

pub use message::{html, plain, subject};

pub const ID: &str = "email";
/// The account field holding the address that receives the events.
pub const NOTIFICATION_EMAIL: &str = "notificationEmail";
/// Answered (403) by event intake while `notificationEmail` is unset and the channel is on.
pub const MISSING_MESSAGE: &str =
    "Please enter the e-mail address for notifications in your account settings";
/// Longest address accepted (RFC 5321's limit on a path).
const MAX_ADDRESS_CHARS: usize = 254;

/// The `providers.email` section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server: `smtp://host:25` (no TLS), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtp://host?tls=opportunistic` (STARTTLS when offered) or `smtps://host:465` (TLS from
    /// the start). May hold the user name and password (`smtps://user:pass@host`). Secret.
    pub smtp_url: Option<Secret>,
    /// SMTP user name, when not in `smtp_url`.
    pub username: Option<String>,
    /// SMTP password, when not in `smtp_url`. Secret.
    pub password: Option<Secret>,
    /// The sender, e.g. `PingPilot <alerts@example.com>`.
    pub from: Option<String>,
    /// Timeout of each SMTP command, in seconds.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            username: None,
            password: None,
            from: None,
            request_timeout_secs: 10,
        }
    }
}

fn config_schema() -> schemars::Schema {
    schemars::schema_for!(EmailSettings)
}

/// An e-mail address, as SMTP takes it.
pub fn normalize_address(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > MAX_ADDRESS_CHARS {
        return Err(format!("must be at most {MAX_ADDRESS_CHARS} characters"));
    }
    Address::from_str(value)
        .map(|address| address.to_string())
        .map_err(|_| "must be an e-mail address such as ann@example.com".to_string())
}

fn address_schema() -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "format": "email",
        "maxLength": MAX_ADDRESS_CHARS,
        "title": "E-mail address",
        "description": "The address that receives each event as an e-mail.",
        "examples": ["ann@example.com"],
    })
}

const ACCOUNT_FIELDS: &[AccountField] = &[AccountField {
    name: NOTIFICATION_EMAIL,
    description: "E-mail address that receives each event as a message.",
    example: "ann@example.com",
    missing_message: MISSING_MESSAGE,
    normalize: normalize_address,
    schema: address_schema,
}];

const SETTINGS: &[(&str, &str)] = &[
    (
        "smtp_url",
        "SMTP server: smtp://host:25, smtp://host:587?tls=required (STARTTLS), smtps://host:465; without it and from, deliveries wait (secret)",
    ),
    ("username", "SMTP user name, when not in smtp_url"),
    ("password", "SMTP password, when not in smtp_url (secret)"),
    ("from", "The sender, e.g. PingPilot <alerts@example.com>"),
    (
        "request_timeout_secs",
        "Timeout of each SMTP command in seconds (default 10)",
    ),
];

const NOT_CONFIGURED: &str = "E-mail is not configured: set providers.email.smtp_url and \
     providers.email.from (env PINGPILOT_PROVIDERS__EMAIL__SMTP_URL, …__FROM)";

fn build(setup: ProviderSetup) -> Result<Arc<dyn Provider>, ConfigError> {
    let settings: EmailSettings = setup.section.extract()?;
    let key = setup.section.key().to_string();
    let invalid = |name: &str, why: String| ConfigError::Invalid(format!("{key}.{name}: {why}"));
    if settings.request_timeout_secs == 0 {
        return Err(invalid("request_timeout_secs", "must be at least 1".into()));
    }
    let url = Secret::from_setting(settings.smtp_url);
    let from = settings.from.filter(|from| !from.trim().is_empty());
    let (Some(url), Some(from)) = (url, from) else {
        tracing::warn!("{NOT_CONFIGURED}; e-mail deliveries will wait");
        return Ok(Arc::new(EmailProvider { sender: None }));
    };
    let from = Mailbox::from_str(from.trim())
        .map_err(|e| invalid("from", format!("not an e-mail sender: {e}")))?;
    // The URL may hold a password: the error says what is wrong, never the URL.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
        .map_err(|e| invalid("smtp_url", format!("not an SMTP URL ({e})")))?
        .timeout(Some(Duration::from_secs(settings.request_timeout_secs)));
    match (settings.username, Secret::from_setting(settings.password)) {
        (Some(user), Some(password)) => {
            transport = transport.credentials(Credentials::new(user, password.expose().into()));
        }
        (None, None) => {}
        _ => {
            return Err(invalid(
                "username",
                "username and password go together".into(),
            ));
        }
    }
    Ok(Arc::new(EmailProvider {
        sender: Some(Sender {
            transport: transport.build(),
            from,
        }),
    }))
}

inventory::submit! {
    ProviderRegistration {
        id: ID,
        order: 50,
        display_name: "E-mail",
        description: "An e-mail to your address through the relay's SMTP server",
        account_fields: ACCOUNT_FIELDS,
        on_for_older_accounts: false,
        uses_link_token: false,
        channel_secret: None,
        settings: SETTINGS,
        config_schema,
        build,
    }
}

/// The SMTP transport and sender, when configured.
struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Sends events as e-mails.
pub struct EmailProvider {
    sender: Option<Sender>,
}

#[async_trait]
impl Provider for EmailProvider {
    fn not_configured(&self) -> Option<String> {
        self.sender.is_none().then(|| NOT_CONFIGURED.to_string())
    }

    fn channel_status(&self, _channel: &ChannelContext<'_>) -> ChannelStatus {
        ChannelStatus {
            waiting: self.not_configured(),
            extra: Default::default(),
        }
    }

    async fn deliver(&self, request: DeliveryRequest<'_>) -> DeliveryOutcome {
        let Some(sender) = &self.sender else {
            return DeliveryOutcome::Wait {
                reason: NOT_CONFIGURED.into(),
            };
        };
        let Some(to) = request.channel.fields.get(NOTIFICATION_EMAIL) else {
            return DeliveryOutcome::Wait {
                reason: MISSING_MESSAGE.into(),
            };
        };
        let email = match compose(&sender.from, to, request.message) {
            Ok(email) => email,
            Err(why) => {
                return DeliveryOutcome::Failed {
                    http_status: None,
                    error: why,
                };
            }
        };
        match sender.transport.send(email).await {
            Ok(_) => DeliveryOutcome::Delivered { http_status: None },
            Err(err) => smtp_outcome(&err),
        }
    }
}

/// The e-mail of one event.
fn compose(from: &Mailbox, to: &str, message: &EventMessage) -> Result<Message, String> {
    let to = Mailbox::from_str(to).map_err(|e| format!("notificationEmail is not usable: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject(message))
        .multipart(MultiPart::alternative_plain_html(
            plain(message),
            html(message),
        ))
        .map_err(|e| format!("the e-mail could not be built: {e}"))
}

/// What an SMTP failure means: a 5xx answer will not succeed as it is (no such mailbox,
/// refused); a 4xx answer (mailbox busy, greylisting), a lost connection or a timeout is tried
/// again.
fn smtp_outcome(err: &lettre::transport::smtp::Error) -> DeliveryOutcome {
    let error = format!("SMTP: {err}");
    if err.is_permanent() || err.is_client() {
        DeliveryOutcome::Failed {
            http_status: None,
            error,
        }
    } else {
        DeliveryOutcome::Retry {
            http_status: None,
            error,
            retry_after: None,
        }
    }
}
