//! The one error type of this crate (Bot API calls, polling, webhook) and its delivery outcomes.

use std::time::Duration;

use pingpilot_core::provider::kit::{http, outcome};
use pingpilot_core::provider::{DeliveryOutcome, HostError};

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// No HTTP answer: connection failure, timeout, broken body. Never holds the URL (it
    /// contains the bot token).
    #[error("Telegram request failed: {0}")]
    Network(String),
    /// Telegram answered with an error (or a body that is not a Bot API answer).
    #[error("Telegram {status}: {description}")]
    Api {
        status: u16,
        description: String,
        /// `parameters.retry_after` of a 429.
        retry_after: Option<Duration>,
    },
    /// Nothing was sent: the relay's own rate limit for the bot or the chat is used up for now.
    #[error("Telegram rate limit of the relay: next message in {0:?}")]
    Throttled(Duration),
    /// A webhook request without the configured `X-Telegram-Bot-Api-Secret-Token`.
    #[error("webhook secret token missing or wrong")]
    BadSecret,
    /// A webhook request while the provider is not configured for webhooks.
    #[error("Telegram webhook is not enabled (providers.telegram.mode = \"webhook\")")]
    WebhookDisabled,
    #[error("Telegram update is not valid JSON: {0}")]
    BadUpdate(String),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl TelegramError {
    /// A reqwest error without its URL (which holds the token), with its causes.
    pub(crate) fn network(err: reqwest::Error, token: &str) -> Self {
        TelegramError::Network(redact(&http::error_text(err), token))
    }

    /// Telegram's own pause request, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TelegramError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Network trouble is retried; Telegram's answers follow the kit's rule (429 and 5xx
    /// retried; 403 bot blocked, 400 chat not found, 401 bad token and every other 4xx
    /// permanent).
    pub fn outcome(&self) -> DeliveryOutcome {
        let error = self.to_string();
        match self {
            TelegramError::Api {
                status,
                retry_after,
                ..
            } => outcome::outcome(*status, *retry_after, error),
            TelegramError::Throttled(retry_after) => DeliveryOutcome::Throttled {
                retry_after: *retry_after,
            },
            _ => DeliveryOutcome::Retry {
                http_status: None,
                error,
                retry_after: None,
            },
        }
    }
}

/// Removes the token from a text, in case some layer echoed a URL anyway.
pub(crate) fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_string();
    }
    text.replace(token, "<bot token>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, description: &str, retry_after: Option<u64>) -> TelegramError {
        TelegramError::Api {
            status,
            description: description.into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn classifies_bot_api_errors() {
        assert_eq!(
            api(403, "Forbidden: bot was blocked by the user", None).outcome(),
            DeliveryOutcome::Failed {
                http_status: Some(403),
                error: "Telegram 403: Forbidden: bot was blocked by the user".into(),
            }
        );
        assert!(matches!(
            api(400, "Bad Request: chat not found", None).outcome(),
            DeliveryOutcome::Failed { .. }
        ));
        assert!(matches!(
            api(401, "Unauthorized", None).outcome(),
            DeliveryOutcome::Failed { .. }
        ));
        assert_eq!(
            api(429, "Too Many Requests: retry after 7", Some(7)).outcome(),
            DeliveryOutcome::Retry {
                http_status: Some(429),
                error: "Telegram 429: Too Many Requests: retry after 7".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert!(matches!(
            api(502, "Bad Gateway", None).outcome(),
            DeliveryOutcome::Retry { .. }
        ));
    }

    #[test]
    fn redacts_the_token() {
        assert_eq!(
            redact("GET /bot123:abc/sendMessage failed", "123:abc"),
            "GET /bot<bot token>/sendMessage failed"
        );
    }
}
