//! The bot's side of linking: updates from long polling (or a webhook), `/start <link token>`
//! handling and the replies.

use std::time::Duration;

use pingpilot_core::provider::kit::secret::Secret;
use pingpilot_core::provider::{FieldMatch, LinkOutcome, LinkRequest};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::TelegramError;
use crate::text::escape;
use crate::{ID, TELEGRAM_USERNAME, TelegramProvider, chat_id};

/// Where the update offset is kept between runs (`ProviderHost::save_value`).
pub(crate) const OFFSET_KEY: &str = "update_offset";
/// The cross-process lease whose holder polls `getUpdates`: Telegram answers 409 to a second
/// poller of the same bot, and the update offset must move on in one place.
pub(crate) const UPDATES_LEASE: &str = "telegram-updates";
/// The lease outlives a long poll and its request timeout by this much: it is renewed before
/// each poll, so a poll never runs past it.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often a process that does not hold the lease (or cannot reach storage) tries again.
const LEASE_RETRY: Duration = Duration::from_secs(2);
/// A poll that comes back empty faster than this is followed by [`QUICK_POLL_PAUSE`], so that a
/// server answering at once (a stand-in, a proxy) is not hammered.
const QUICK_POLL: Duration = Duration::from_millis(200);
const QUICK_POLL_PAUSE: Duration = Duration::from_millis(250);
const ERROR_PAUSE_MAX: Duration = Duration::from_secs(30);

/// What a message asks of the bot.
#[derive(Debug, PartialEq, Eq)]
pub enum StartCommand {
    /// `/start` without a token: the user opened the bot, not a link.
    Bare,
    /// `/start <token>`.
    Link(String),
}

/// Parses `/start`, `/start <token>` and `/start@bot_username <token>`. A command addressed to
/// another bot (in a group) and any other text give `None`.
pub fn parse_start(text: &str, bot_username: Option<&str>) -> Option<StartCommand> {
    let mut words = text.split_whitespace();
    let command = words.next()?;
    let rest = command.strip_prefix("/start")?;
    if !rest.is_empty() {
        let addressee = rest.strip_prefix('@')?;
        if bot_username.is_some_and(|name| !name.eq_ignore_ascii_case(addressee)) {
            return None;
        }
    }
    Some(match words.next() {
        Some(token) => StartCommand::Link(token.to_string()),
        None => StartCommand::Bare,
    })
}

/// Link tokens are at most 64 of `[A-Za-z0-9_-]` (Telegram's limit for a deep-link parameter).
fn plausible_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
struct Update {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    chat: Chat,
    from: Option<User>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct User {
    username: Option<String>,
}

const HOW_TO: &str = "👋 This is the PingPilot notification bot. To receive your notifications \
    here, open the Telegram link shown in your PingPilot account settings and press Start.";
const UNKNOWN_LINK: &str = "❌ This link is invalid or was already used: each link works once. \
    Open the Telegram link shown now in your PingPilot account settings.";
const LINK_FAILED: &str = "⚠️ The chat could not be linked because of a server error. Please open the link again in a minute.";

fn linked_text(account: &str) -> String {
    format!(
        "✅ This chat is now linked to PingPilot account <b>{}</b>. Notifications will arrive here.",
        escape(account)
    )
}

/// Sent to the chat that had the link when another chat takes it over.
fn moved_text(account: &str) -> String {
    format!(
        "⚠️ Notifications of PingPilot account <b>{}</b> have moved to another chat and no longer \
         arrive here. If you did not move them, open the Telegram link shown in your PingPilot \
         account settings in this chat to bring them back.",
        escape(account)
    )
}

/// The refusal when the account names a Telegram username and someone else pressed Start.
fn mismatch_text(expected: &str, username: Option<&str>) -> String {
    let who = match username {
        Some(name) => format!("is @{}", escape(name)),
        None => "has no username".to_string(),
    };
    format!(
        "⛔ This link is for the Telegram account @{expected}, and this Telegram account {who}. \
         Open the link while signed in to Telegram as @{expected}, or change the Telegram \
         username in your PingPilot account settings.",
        expected = escape(expected),
    )
}

impl TelegramProvider {
    /// Handles one update (from `getUpdates` or the webhook). Failures are logged: one bad
    /// update must not stop the others.
    pub(crate) async fn handle_update(&self, token: &str, update: Value) {
        let Ok(update) = serde_json::from_value::<Update>(update) else {
            tracing::debug!("telegram: ignoring an update of unexpected shape");
            return;
        };
        let Some(message) = update.message else {
            return;
        };
        let Some(text) = message.text.as_deref() else {
            return;
        };
        let Some(command) = parse_start(text, self.bot_username.as_deref()) else {
            return;
        };
        let chat = message.chat.id;
        let replies = match command {
            StartCommand::Bare => vec![(chat, HOW_TO.to_string())],
            StartCommand::Link(link) if !plausible_token(&link) => {
                vec![(chat, UNKNOWN_LINK.to_string())]
            }
            StartCommand::Link(link) => {
                let username = message.from.and_then(|u| u.username);
                self.link_chat(chat, &link, username.as_deref()).await
            }
        };
        for (chat, reply) in replies {
            if let Err(err) = self.send_message(token, chat, &reply).await {
                tracing::warn!(error = %err, chat, "telegram: reply to /start failed");
            }
        }
    }

    /// Links `chat` with the account whose link token is `link`, when `username` (the Telegram
    /// user who pressed Start) matches the account's `telegramUsername` or the account has none.
    /// Returns the replies: the answer in `chat` and, when the link moved here from another
    /// chat, a notice to that chat.
    async fn link_chat(&self, chat: i64, link: &str, username: Option<&str>) -> Vec<(i64, String)> {
        let request = LinkRequest {
            link_token: link,
            state: json!({ "chatId": chat, "username": username }),
            must_match: Some(FieldMatch {
                field: TELEGRAM_USERNAME,
                value: username,
            }),
        };
        match self.host.link_account(ID, request).await {
            Ok(LinkOutcome::Linked {
                account_name,
                previous_state,
            }) => {
                tracing::info!(chat, "telegram: chat linked to an account");
                let mut replies = vec![(chat, linked_text(&account_name))];
                if let Some(old) = chat_id(previous_state.as_ref()).filter(|&old| old != chat) {
                    tracing::info!(
                        chat,
                        old_chat = old,
                        "telegram: an account's link moved to another chat"
                    );
                    replies.push((old, moved_text(&account_name)));
                }
                replies
            }
            Ok(LinkOutcome::UnknownToken) => vec![(chat, UNKNOWN_LINK.to_string())],
            Ok(LinkOutcome::FieldMismatch { expected }) => {
                tracing::info!(
                    chat,
                    "telegram: link refused: not the account's Telegram username"
                );
                vec![(chat, mismatch_text(&expected, username))]
            }
            Err(err) => {
                tracing::error!(error = %err, "telegram: linking a chat failed");
                vec![(chat, LINK_FAILED.to_string())]
            }
        }
    }

    /// Handles one webhook request (`POST /api/v1/telegram/webhook`): checks the
    /// `X-Telegram-Bot-Api-Secret-Token` header, then the update.
    pub async fn handle_webhook(
        &self,
        secret_token: Option<&str>,
        body: &[u8],
    ) -> Result<(), TelegramError> {
        let (Some(token), Some(secret), crate::Mode::Webhook) = (
            self.token.as_ref().map(Secret::expose),
            self.webhook_secret.as_ref().map(Secret::expose),
            self.mode,
        ) else {
            return Err(TelegramError::WebhookDisabled);
        };
        if !secret_token.is_some_and(|given| constant_time_eq(given.as_bytes(), secret.as_bytes()))
        {
            return Err(TelegramError::BadSecret);
        }
        let update: Value =
            serde_json::from_slice(body).map_err(|e| TelegramError::BadUpdate(e.to_string()))?;
        self.handle_update(token, update).await;
        Ok(())
    }

    /// Long-polls `getUpdates` until `shutdown` turns true, while this process holds the
    /// [`UPDATES_LEASE`] (renewed before each poll); otherwise tries again every
    /// [`LEASE_RETRY`].
    pub(crate) async fn poll_updates(&self, token: &str, mut shutdown: watch::Receiver<bool>) {
        let ttl = self.lease_ttl();
        // The update offset while this process holds the lease; `None` when it must be read
        // from storage (at the start, and after another process may have polled).
        let mut offset: Option<i64> = None;
        let mut failures: u32 = 0;
        // Whether "another process polls" was logged since this process last polled.
        let mut told_waiting = false;
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            let lease = tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
                lease = self.host.hold_lease(UPDATES_LEASE, ttl) => lease,
            };
            let pause = match lease {
                Ok(true) => {
                    let current = match offset {
                        Some(offset) => offset,
                        None => {
                            tracing::info!("telegram: polling for bot updates");
                            told_waiting = false;
                            failures = 0;
                            self.load_offset().await
                        }
                    };
                    let started = Instant::now();
                    let result = tokio::select! {
                        changed = shutdown.changed() => {
                            if changed.is_err() || *shutdown.borrow() {
                                return;
                            }
                            offset = Some(current);
                            continue;
                        }
                        result = self.get_updates(token, current) => result,
                    };
                    let (next, pause) = self
                        .handle_poll(token, result, current, started, &mut failures)
                        .await;
                    offset = Some(next);
                    pause
                }
                Ok(false) => {
                    offset = None;
                    if !told_waiting {
                        told_waiting = true;
                        tracing::info!(
                            "telegram: another relay process polls for bot updates; this one stands by"
                        );
                    }
                    Some(LEASE_RETRY)
                }
                Err(err) => {
                    // Whether this process still holds the lease is unknown: stop polling.
                    offset = None;
                    tracing::warn!(error = %err, "telegram: cannot take the update polling lease; trying again");
                    Some(LEASE_RETRY)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// How long the polling lease is taken for: a whole long poll with its request timeout,
    /// and [`LEASE_MARGIN`].
    fn lease_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.poll_timeout_secs)) + self.request_timeout + LEASE_MARGIN
    }

    /// The saved update offset, or 0 (Telegram's own) when there is none or it cannot be read.
    async fn load_offset(&self) -> i64 {
        match self.host.load_value(ID, OFFSET_KEY).await {
            Ok(value) => value.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
            Err(err) => {
                tracing::warn!(error = %err, "telegram: cannot read the update offset; starting from Telegram's");
                0
            }
        }
    }

    /// Handles one `getUpdates` answer: each update, then the new offset is saved. Returns the
    /// next offset and the pause before the next poll, if any.
    async fn handle_poll(
        &self,
        token: &str,
        result: Result<Vec<Value>, TelegramError>,
        mut offset: i64,
        started: Instant,
        failures: &mut u32,
    ) -> (i64, Option<Duration>) {
        match result {
            Ok(updates) => {
                *failures = 0;
                let received = updates.len();
                for update in updates {
                    let id = update.get("update_id").and_then(Value::as_i64);
                    self.handle_update(token, update).await;
                    // Confirmed only once handled: a crash re-reads rather than loses it.
                    if let Some(id) = id {
                        offset = offset.max(id + 1);
                    }
                }
                if received > 0 {
                    if let Err(err) = self
                        .host
                        .save_value(ID, OFFSET_KEY, &offset.to_string())
                        .await
                    {
                        tracing::warn!(error = %err, "telegram: cannot save the update offset");
                    }
                    (offset, None)
                } else {
                    (
                        offset,
                        (started.elapsed() < QUICK_POLL).then_some(QUICK_POLL_PAUSE),
                    )
                }
            }
            Err(err) => {
                *failures += 1;
                // A 429 that names no chat: hold every message back as long as asked.
                if let TelegramError::Api {
                    status: 429,
                    retry_after: Some(pause),
                    ..
                } = &err
                {
                    self.limiter.pause_all(*pause, Instant::now());
                }
                if matches!(err, TelegramError::Api { status: 409, .. }) {
                    tracing::warn!(error = %err, "telegram: getUpdates conflicts with a webhook or a poller of this bot outside this relay's database (use mode = \"webhook\" or run one poller)");
                } else {
                    tracing::warn!(error = %err, "telegram: getUpdates failed");
                }
                // Honour Telegram's pause; otherwise back off 1s, 2s, 4s... up to 30s.
                let pause = err.retry_after().unwrap_or_else(|| {
                    (Duration::from_secs(1) * 2u32.saturating_pow((*failures).min(6) - 1))
                        .min(ERROR_PAUSE_MAX)
                });
                (offset, Some(pause))
            }
        }
    }

    async fn get_updates(&self, token: &str, offset: i64) -> Result<Vec<Value>, TelegramError> {
        let body = json!({
            "offset": offset,
            "timeout": self.poll_timeout_secs,
            "allowed_updates": ["message"],
        });
        // The long poll holds the request for up to `timeout` seconds: allow that on top.
        let timeout = Duration::from_secs(u64::from(self.poll_timeout_secs)) + self.request_timeout;
        let (status, result) = self.call(token, "getUpdates", &body, Some(timeout)).await?;
        match result {
            Value::Array(updates) => Ok(updates),
            _ => Err(TelegramError::Api {
                status,
                description: "getUpdates result is not a list".into(),
                retry_after: None,
            }),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_commands() {
        let bot = Some("PingPilotBot");
        assert_eq!(
            parse_start("/start tok123", bot),
            Some(StartCommand::Link("tok123".into()))
        );
        assert_eq!(
            parse_start("/start@pingpilotbot  tok123 ", bot),
            Some(StartCommand::Link("tok123".into()))
        );
        assert_eq!(
            parse_start("/start@SomeBot tok", None),
            Some(StartCommand::Link("tok".into()))
        );
        assert_eq!(parse_start("/start", bot), Some(StartCommand::Bare));
        assert_eq!(
            parse_start("/start@PingPilotBot", bot),
            Some(StartCommand::Bare)
        );
        assert_eq!(parse_start("/start@OtherBot tok", bot), None);
        assert_eq!(parse_start("/starter tok", bot), None);
        assert_eq!(parse_start("hello /start tok", bot), None);
        assert_eq!(parse_start("", bot), None);
    }

    #[test]
    fn link_tokens_are_checked_before_lookup() {
        assert!(plausible_token("Ab-_09"));
        assert!(plausible_token(&"a".repeat(64)));
        assert!(!plausible_token(&"a".repeat(65)));
        assert!(!plausible_token("a.b"));
    }

    #[test]
    fn confirmation_escapes_the_account_name() {
        assert_eq!(
            linked_text("Acme <&> Co"),
            "✅ This chat is now linked to PingPilot account <b>Acme &lt;&amp;&gt; Co</b>. Notifications will arrive here."
        );
    }

    #[test]
    fn a_refused_link_names_the_expected_and_the_actual_username() {
        assert_eq!(
            mismatch_text("ann_t", Some("mallory")),
            "⛔ This link is for the Telegram account @ann_t, and this Telegram account is \
             @mallory. Open the link while signed in to Telegram as @ann_t, or change the Telegram \
             username in your PingPilot account settings."
        );
        assert_eq!(
            mismatch_text("ann_t", None),
            "⛔ This link is for the Telegram account @ann_t, and this Telegram account has no \
             username. Open the link while signed in to Telegram as @ann_t, or change the \
             Telegram username in your PingPilot account settings."
        );
        assert!(
            mismatch_text("a<b", Some("c&d"))
                .contains("@a&lt;b, and this Telegram account is @c&amp;d.")
        );
    }

    #[test]
    fn the_old_chat_is_told_where_its_notifications_went() {
        assert_eq!(
            moved_text("Acme <&> Co"),
            "⚠️ Notifications of PingPilot account <b>Acme &lt;&amp;&gt; Co</b> have moved to \
             another chat and no longer arrive here. If you did not move them, open the Telegram \
             link shown in your PingPilot account settings in this chat to bring them back."
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
