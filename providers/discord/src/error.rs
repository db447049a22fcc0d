//! The one error type of this crate and how each case maps to a delivery outcome.

use std::time::Duration;

use pingpilot_core::provider::DeliveryOutcome;
use pingpilot_core::provider::kit::{http, outcome};
use serde::Deserialize;

/// What a user can do about an error this crate recorded (`DiscordError`'s text).
pub fn advice(error: &str) -> Option<&'static str> {
    if error.contains("(code 50007)") || error.contains("(code 50278)") {
        Some(
            "Discord lets a bot message only people who share a server with it and accept direct \
             messages from that server's members: invite the bot to a server you are in, and \
             turn on Direct Messages in that server's privacy settings. Then retry.",
        )
    } else if error.contains("(code 50033)") || error.contains("Discord 400") {
        Some("Check the Discord user ID in Settings: it is a number of 17 to 20 digits.")
    } else if error.contains("Discord 401") {
        Some("The relay's Discord bot token is wrong or was reset: ask the relay's operator.")
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// No HTTP answer: connection failure, timeout, broken body.
    #[error("Discord request failed: {0}")]
    Network(String),
    /// Discord answered with a non-2xx status.
    #[error("Discord {status}{}: {message}", code_text(.code))]
    Api {
        status: u16,
        /// Discord's JSON error code (e.g. 50007), when the body had one.
        code: Option<u64>,
        message: String,
        retry_after: Option<Duration>,
        /// A 429 that applies to every route of the bot.
        global: bool,
    },
    /// Nothing was sent: the relay's own rate limit for this bot or route is used up for now.
    #[error("Discord rate limit of the relay: next request in {0:?}")]
    Throttled(Duration),
    /// A 2xx answer we cannot use (e.g. a DM channel without an id).
    #[error("Discord {status}: unexpected response: {detail}")]
    Unexpected { status: u16, detail: String },
}

fn code_text(code: &Option<u64>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

/// Discord's error body: `{message, code?, retry_after?, global?}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    code: Option<u64>,
    retry_after: Option<f64>,
    #[serde(default)]
    global: bool,
}

impl DiscordError {
    pub(crate) fn network(err: reqwest::Error) -> Self {
        DiscordError::Network(http::error_text(err))
    }

    /// Classifies a non-2xx answer from its status, `Retry-After` header and body.
    pub(crate) fn from_response(
        status: u16,
        retry_after_header: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let retry_after = parsed
            .as_ref()
            .and_then(|b| b.retry_after)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .or(retry_after_header);
        let (code, message, global) = match parsed {
            Some(b) => (
                b.code,
                b.message.unwrap_or_else(|| reason(status)),
                b.global,
            ),
            None => (None, snippet(body).unwrap_or_else(|| reason(status)), false),
        };
        DiscordError::Api {
            status,
            code,
            message,
            retry_after,
            global,
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            DiscordError::Network(_) | DiscordError::Throttled(_) => None,
            DiscordError::Api { status, .. } | DiscordError::Unexpected { status, .. } => {
                Some(*status)
            }
        }
    }

    /// Network trouble is worth retrying; Discord's answers follow the kit's rule (429 and 5xx
    /// retried, every other 4xx permanent: 50007/50278 DMs refused, 400 invalid recipient, 401
    /// bad token, 404 unknown channel). Retrying those would only bring the bot closer to
    /// Discord's ban for too many 401/403/429s.
    pub fn outcome(&self) -> DeliveryOutcome {
        let error = self.to_string();
        match self {
            DiscordError::Throttled(retry_after) => DeliveryOutcome::Throttled {
                retry_after: *retry_after,
            },
            DiscordError::Network(_) => DeliveryOutcome::Retry {
                http_status: None,
                error,
                retry_after: None,
            },
            DiscordError::Api {
                status,
                retry_after,
                ..
            } => outcome::outcome(*status, *retry_after, error),
            DiscordError::Unexpected { status, .. } => DeliveryOutcome::Retry {
                http_status: Some(*status),
                error,
                retry_after: None,
            },
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

/// The start of a non-JSON body (e.g. a proxy's HTML page), on one line.
fn snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = line.chars().take(200).collect();
    (!cut.is_empty()).then_some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_direct_messages_come_with_what_to_do() {
        let refused = DiscordError::Api {
            status: 403,
            code: Some(50007),
            message: "Cannot send messages to this user".into(),
            retry_after: None,
            global: false,
        };
        let said = advice(&refused.to_string()).expect("advice");
        assert!(
            said.contains("invite the bot to a server you are in"),
            "{said}"
        );
        assert_eq!(advice("Discord request failed: timed out"), None);
    }

    #[test]
    fn permanent_errors_fail_with_code_and_message() {
        let err = DiscordError::from_response(
            403,
            None,
            br#"{"message": "Cannot send messages to this user", "code": 50007}"#,
        );
        assert_eq!(
            err.outcome(),
            DeliveryOutcome::Failed {
                http_status: Some(403),
                error: "Discord 403 (code 50007): Cannot send messages to this user".into(),
            }
        );
        for status in [400, 401, 404] {
            assert!(matches!(
                DiscordError::from_response(status, None, b"{}").outcome(),
                DeliveryOutcome::Failed { .. }
            ));
        }
    }

    #[test]
    fn rate_limits_and_server_errors_retry() {
        let err = DiscordError::from_response(
            429,
            Some(Duration::from_secs(9)),
            br#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": true}"#,
        );
        assert!(matches!(err, DiscordError::Api { global: true, .. }));
        assert_eq!(
            err.outcome(),
            DeliveryOutcome::Retry {
                http_status: Some(429),
                error: "Discord 429: You are being rate limited.".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
        // Without a JSON body the header decides.
        let err = DiscordError::from_response(429, Some(Duration::from_secs(3)), b"");
        assert!(matches!(
            err.outcome(),
            DeliveryOutcome::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let err = DiscordError::from_response(502, None, b"<html> Bad\n gateway </html>");
        assert_eq!(
            err.outcome(),
            DeliveryOutcome::Retry {
                http_status: Some(502),
                error: "Discord 502: <html> Bad gateway </html>".into(),
                retry_after: None,
            }
        );
    }
}
