//! The provider against a wiremock stand-in for the Bot API, with a fake host.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use pingpilot_core::model::AccountId;
use pingpilot_core::provider::{
    ChannelContext, DeliveryOutcome, DeliveryRequest, EventMessage, HostError, LinkOutcome,
    LinkRequest, Provider, ProviderHost, ProviderSection, ProviderSetup,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string, body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const TOKEN: &str = "123:abc";

/// A link request as the host received it.
#[derive(Debug, PartialEq)]
struct LinkCall {
    provider: String,
    token: String,
    state: Value,
    /// The account field the linking user must match, and the user's value.
    must_match: Option<(String, Option<String>)>,
}

#[derive(Default)]
struct FakeHost {
    links: Mutex<Vec<LinkCall>>,
    /// `link_account` fails as storage would.
    link_fails: AtomicBool,
    /// What `link_account` answers; without it, `tok123` links "Acme & Co" for the first time
    /// and any other token is unknown.
    link_outcome: Mutex<Option<LinkOutcome>>,
    values: Mutex<HashMap<String, String>>,
    /// Live relay processes (0 is reported as 1).
    processes: AtomicU32,
    /// Another process holds every lease.
    lease_refused: AtomicBool,
    /// Storage fails when a lease is asked for.
    lease_fails: AtomicBool,
    /// Every lease asked for: name and ttl.
    leases: Mutex<Vec<(String, Duration)>>,
}

impl FakeHost {
    fn lease_calls(&self) -> usize {
        self.leases.lock().unwrap().len()
    }
}

#[async_trait]
impl ProviderHost for FakeHost {
    async fn link_account(
        &self,
        provider: &'static str,
        request: LinkRequest<'_>,
    ) -> Result<LinkOutcome, HostError> {
        let token = request.link_token.to_string();
        self.links.lock().unwrap().push(LinkCall {
            provider: provider.to_string(),
            token: token.clone(),
            state: request.state,
            must_match: request
                .must_match
                .map(|m| (m.field.to_string(), m.value.map(str::to_string))),
        });
        if self.link_fails.load(Ordering::Relaxed) {
            return Err(HostError("database unreachable".into()));
        }
        if let Some(outcome) = self.link_outcome.lock().unwrap().clone() {
            return Ok(outcome);
        }
        Ok(if token == "tok123" {
            LinkOutcome::Linked {
                account_name: "Acme & Co".into(),
                previous_state: None,
            }
        } else {
            LinkOutcome::UnknownToken
        })
    }

    async fn load_value(
        &self,
        provider: &'static str,
        key: &str,
    ) -> Result<Option<String>, HostError> {
        Ok(self
            .values
            .lock()
            .unwrap()
            .get(&format!("{provider}.{key}"))
            .cloned())
    }

    async fn save_value(
        &self,
        provider: &'static str,
        key: &str,
        value: &str,
    ) -> Result<(), HostError> {
        self.values
            .lock()
            .unwrap()
            .insert(format!("{provider}.{key}"), value.to_string());
        Ok(())
    }

    fn process_count(&self) -> u32 {
        self.processes.load(Ordering::Relaxed).max(1)
    }

    async fn hold_lease(&self, name: &str, ttl: Duration) -> Result<bool, HostError> {
        self.leases.lock().unwrap().push((name.to_string(), ttl));
        if self.lease_fails.load(Ordering::Relaxed) {
            return Err(HostError("database unreachable".into()));
        }
        Ok(!self.lease_refused.load(Ordering::Relaxed))
    }
}

fn registration() -> &'static ProviderRegistration {
    pingpilot_core::provider::registered()
        .into_iter()
        .find(|r| r.id == "telegram")
        .expect("telegram is registered")
}

fn setup(toml: &str, host: Arc<FakeHost>) -> ProviderSetup {
    ProviderSetup {
        section: ProviderSection::from_toml("telegram", toml),
        host,
        project_url: "https://example.test/pingpilot",
        version: "1.2.3",
    }
}

fn provider(toml: &str, host: Arc<FakeHost>) -> Arc<dyn Provider> {
    (registration().build)(setup(toml, host)).unwrap_or_else(|e| panic!("build failed: {e}"))
}

fn provider_for(server: &MockServer, host: Arc<FakeHost>) -> Arc<dyn Provider> {
    provider(
        &format!(
            "bot_token = \"{TOKEN}\"\napi_base = \"{}\"\nbot_username = \"@PingPilotBot\"\npoll_timeout_secs = 1",
            server.uri()
        ),
        host,
    )
}

fn message() -> EventMessage {
    let mut fields = serde_json::Map::new();
    fields.insert("plan".into(), json!("pro"));
    fields.insert("amount".into(), json!(99.99));
    EventMessage {
        event_id: "evt_1".into(),
        category: "sale".into(),
        emoji: Some("💰".into()),
        color: 0xFFAA00,
        description: "New purchase completed".into(),
        fields,
        created_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
    }
}

async fn deliver(provider: &dyn Provider, state: Option<&Value>) -> DeliveryOutcome {
    let msg = message();
    let fields = BTreeMap::from([(TELEGRAM_USERNAME.to_string(), "someone".to_string())]);
    let account_id = AccountId::generate();
    provider
        .deliver(DeliveryRequest {
            delivery_id: 1,
            message: &msg,
            channel: ChannelContext {
                account_id: &account_id,
                fields: &fields,
                link_token: Some("tok123"),
                state,
                secret: None,
            },
        })
        .await
}

fn send_message_mock() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path(format!("/bot{TOKEN}/sendMessage")))
}

#[test]
fn usernames_are_validated_and_normalized() {
    assert_eq!(
        normalize_username(" @ping_pilot "),
        Ok("ping_pilot".to_string())
    );
    assert_eq!(normalize_username("abcde"), Ok("abcde".to_string()));
    assert!(normalize_username(&"a".repeat(32)).is_ok());
    for bad in [
        "",
        "@",
        "abcd",
        "@abcd",
        &"a".repeat(33),
        "ab-cd",
        "ab cde",
        "@@abcde",
        "äbcde",
    ] {
        assert_eq!(
            normalize_username(bad),
            Err("telegramUsername must be a Telegram username: 5 to 32 letters, digits or underscores".to_string()),
            "{bad:?}"
        );
    }
}

#[test]
fn registration_declares_field_and_link_token() {
    let reg = registration();
    assert_eq!((reg.order, reg.uses_link_token), (20, true));
    let field = &reg.account_fields[0];
    assert_eq!(field.name, "telegramUsername");
    assert_eq!(
        field.missing_message,
        "Telegram username not set. Please set your telegram username in your account settings to receive notifications"
    );
    let schema = serde_json::to_value((reg.config_schema)()).unwrap();
    assert_eq!(
        schema["properties"]["api_base"]["default"],
        "https://api.telegram.org"
    );
    assert_eq!(schema["properties"]["mode"]["default"], "polling");
    assert_eq!(schema["properties"]["messages_per_second"]["minimum"], 1);
}

#[test]
fn webhook_mode_requires_a_valid_secret() {
    let build = |toml: &str| (registration().build)(setup(toml, Arc::default()));
    let err = build("bot_token = \"x\"\nmode = \"webhook\"")
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("providers.telegram.webhook_secret"),
        "{err}"
    );
    let err = build("bot_token = \"x\"\nmode = \"webhook\"\nwebhook_secret = \"a b\"")
        .err()
        .unwrap();
    assert!(err.to_string().contains("webhook_secret"), "{err}");
    assert!(build("bot_token = \"x\"\nmode = \"webhook\"\nwebhook_secret = \"s3cr3t\"").is_ok());
    assert!(build("mode = \"hook\"").is_err());
}

#[tokio::test]
async fn channel_status_shows_link_and_waits_until_linked() {
    let server = MockServer::start().await;
    let configured = provider_for(&server, Arc::default());
    let fields = BTreeMap::new();
    let account_id = AccountId::generate();
    let ctx = |state| ChannelContext {
        account_id: &account_id,
        fields: &fields,
        link_token: Some("tok123"),
        state,
        secret: None,
    };
    let status = configured.channel_status(&ctx(None));
    assert_eq!(
        Value::Object(status.extra),
        json!({"linked": false, "linkUrl": "https://t.me/PingPilotBot?start=tok123"})
    );
    assert_eq!(
        status.waiting.as_deref(),
        Some(
            "Telegram chat not linked yet: open https://t.me/PingPilotBot?start=tok123 and press Start"
        )
    );
    let state = json!({"chatId": 42, "username": "someone"});
    let status = configured.channel_status(&ctx(Some(&state)));
    assert_eq!(status.waiting, None);
    assert_eq!(status.extra["linked"], true);

    // Not configured, no bot username: no link, and the reason names the setting.
    let unconfigured = provider("", Arc::default());
    let status = unconfigured.channel_status(&ctx(None));
    assert_eq!(status.extra["linkUrl"], Value::Null);
    assert!(unconfigured.not_configured().is_some());
    assert_eq!(configured.not_configured(), None);
    assert_eq!(
        status.waiting.as_deref(),
        Some(
            "Telegram is not configured: set providers.telegram.bot_token (env PINGPILOT_PROVIDERS__TELEGRAM__BOT_TOKEN)"
        )
    );
    assert!(matches!(
        deliver(unconfigured.as_ref(), Some(&state)).await,
        DeliveryOutcome::Wait { .. }
    ));
}

#[tokio::test]
async fn unlinked_chat_waits_without_http() {
    let server = MockServer::start().await;
    let provider = provider_for(&server, Arc::default());
    assert_eq!(
        deliver(provider.as_ref(), None).await,
        DeliveryOutcome::Wait {
            reason: "Telegram chat not linked yet: open https://t.me/PingPilotBot?start=tok123 and press Start".into()
        }
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn sends_the_exact_message() {
    let server = MockServer::start().await;
    send_message_mock()
        .and(body_string(
            r#"{"chat_id":42,"text":"<b>💰 Sale</b>\nNew purchase completed\n\n<b>plan</b>: pro\n<b>amount</b>: 99.99","parse_mode":"HTML"}"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {"message_id": 7}})))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server, Arc::default());
    let state = json!({"chatId": 42});
    assert_eq!(
        deliver(provider.as_ref(), Some(&state)).await,
        DeliveryOutcome::Delivered {
            http_status: Some(200)
        }
    );
    server.verify().await;
}

#[tokio::test]
async fn blocked_bot_fails() {
    let server = MockServer::start().await;
    send_message_mock()
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"
        })))
        .mount(&server)
        .await;
    let provider = provider_for(&server, Arc::default());
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await,
        DeliveryOutcome::Failed {
            http_status: Some(403),
            error: "Telegram 403: Forbidden: bot was blocked by the user".into(),
        }
    );
}

#[tokio::test]
async fn rate_limited_retries_after_the_given_time() {
    let server = MockServer::start().await;
    send_message_mock()
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5",
            "parameters": {"retry_after": 5}
        })))
        .mount(&server)
        .await;
    let provider = provider_for(&server, Arc::default());
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            error: "Telegram 429: Too Many Requests: retry after 5".into(),
            retry_after: Some(Duration::from_secs(5)),
        }
    );
}

#[tokio::test]
async fn network_errors_retry_without_the_token() {
    let provider = provider(
        &format!("bot_token = \"{TOKEN}\"\napi_base = \"http://127.0.0.1:9\""),
        Arc::default(),
    );
    match deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await {
        DeliveryOutcome::Retry {
            http_status: None,
            error,
            ..
        } => {
            assert!(error.starts_with("Telegram request failed: "), "{error}");
            assert!(!error.contains(TOKEN), "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn polling_links_the_chat_and_confirms() {
    let server = MockServer::start().await;
    let update = json!({
        "update_id": 500,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": 4242, "type": "private"},
            "from": {"id": 4242, "is_bot": false, "first_name": "Ann", "username": "ann_t"},
            "text": "/start tok123"
        }
    });
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .and(body_string(
            r#"{"offset":0,"timeout":1,"allowed_updates":["message"]}"#,
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": [update]})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .and(body_string_contains(r#""offset":501"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": []})))
        .mount(&server)
        .await;
    send_message_mock()
        .and(body_string(
            r#"{"chat_id":4242,"text":"✅ This chat is now linked to PingPilot account <b>Acme &amp; Co</b>. Notifications will arrive here.","parse_mode":"HTML"}"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .expect(1)
        .mount(&server)
        .await;

    let host = Arc::new(FakeHost::default());
    let provider = provider_for(&server, host.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn({
        let provider = provider.clone();
        async move { provider.run_background(shutdown).await }
    });

    // Wait for the confirmation and at least one poll with the new offset.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let requests = server.received_requests().await.unwrap();
        let confirmed = requests
            .iter()
            .any(|r| r.url.path().ends_with("/sendMessage"));
        let polled_on = requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(r#""offset":501"#));
        if confirmed && polled_on {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no confirmation: {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("polling stops promptly")
        .unwrap();

    assert_eq!(
        *host.links.lock().unwrap(),
        vec![LinkCall {
            provider: "telegram".into(),
            token: "tok123".into(),
            state: json!({"chatId": 4242, "username": "ann_t"}),
            must_match: Some(("telegramUsername".into(), Some("ann_t".into()))),
        }]
    );
    assert_eq!(
        host.values
            .lock()
            .unwrap()
            .get("telegram.update_offset")
            .map(String::as_str),
        Some("501")
    );
    server.verify().await;
}

#[tokio::test]
async fn polling_resumes_from_the_saved_offset_and_answers_bad_links() {
    let server = MockServer::start().await;
    let update = json!({
        "update_id": 77,
        "message": {"chat": {"id": 9}, "text": "/start@PingPilotBot nope"}
    });
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .and(body_string_contains(r#""offset":77"#))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": [update]})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": []})))
        .mount(&server)
        .await;
    send_message_mock()
        .and(body_string(
            r#"{"chat_id":9,"text":"❌ This link is invalid or was already used: each link works once. Open the Telegram link shown now in your PingPilot account settings.","parse_mode":"HTML"}"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .expect(1)
        .mount(&server)
        .await;

    let host = Arc::new(FakeHost::default());
    host.values
        .lock()
        .unwrap()
        .insert("telegram.update_offset".into(), "77".into());
    let provider = provider_for(&server, host.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn({
        let provider = provider.clone();
        async move { provider.run_background(shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while host
        .values
        .lock()
        .unwrap()
        .get("telegram.update_offset")
        .map(String::as_str)
        != Some("78")
    {
        assert!(tokio::time::Instant::now() < deadline, "offset not saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("polling stops promptly")
        .unwrap();
    server.verify().await;
    let links = host.links.lock().unwrap();
    assert_eq!(links[0].state, json!({"chatId": 9, "username": null}));
    assert_eq!(
        links[0].must_match,
        Some(("telegramUsername".into(), None)),
        "a user without a username still asks for the account's field to be checked"
    );
}

#[tokio::test]
async fn webhook_checks_the_secret_then_handles_the_update() {
    let server = MockServer::start().await;
    send_message_mock()
        .and(body_string_contains(
            r#""chat_id":5,"text":"✅ This chat is now linked"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .expect(1)
        .mount(&server)
        .await;
    let host = Arc::new(FakeHost::default());
    let toml = format!(
        "bot_token = \"{TOKEN}\"\napi_base = \"{}\"\nmode = \"webhook\"\nwebhook_secret = \"s3cr3t\"",
        server.uri()
    );
    let provider = TelegramProvider::new(setup(&toml, host.clone())).unwrap();
    let body = br#"{"update_id": 1, "message": {"chat": {"id": 5}, "text": "/start tok123"}}"#;
    assert!(matches!(
        provider.handle_webhook(None, body).await,
        Err(TelegramError::BadSecret)
    ));
    assert!(matches!(
        provider.handle_webhook(Some("s3cr3"), body).await,
        Err(TelegramError::BadSecret)
    ));
    assert!(matches!(
        provider.handle_webhook(Some("s3cr3t"), b"{").await,
        Err(TelegramError::BadUpdate(_))
    ));
    assert!(host.links.lock().unwrap().is_empty());
    provider.handle_webhook(Some("s3cr3t"), body).await.unwrap();
    assert_eq!(host.links.lock().unwrap().len(), 1);
    // Polling is off in webhook mode: run_background returns at once.
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::time::timeout(Duration::from_secs(1), provider.run_background(shutdown))
        .await
        .unwrap();
    server.verify().await;

    let polling = TelegramProvider::new(setup(&format!("bot_token = \"{TOKEN}\""), host)).unwrap();
    assert!(matches!(
        polling.handle_webhook(Some("s3cr3t"), body).await,
        Err(TelegramError::WebhookDisabled)
    ));
}

/// A provider in webhook mode (secret `s3cr3t`) against `server`, and a `sendMessage` stand-in
/// that accepts everything.
async fn webhook_provider(server: &MockServer, host: Arc<FakeHost>) -> TelegramProvider {
    send_message_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .mount(server)
        .await;
    let toml = format!(
        "bot_token = \"{TOKEN}\"\napi_base = \"{}\"\nmode = \"webhook\"\nwebhook_secret = \"s3cr3t\"\nmessages_per_chat_per_second = 100",
        server.uri()
    );
    TelegramProvider::new(setup(&toml, host)).unwrap()
}

/// `/start <token>` from `username` (or a user without one) in private chat `chat`.
fn start_update(chat: i64, token: &str, username: Option<&str>) -> Vec<u8> {
    let mut from = json!({"id": chat, "is_bot": false, "first_name": "T"});
    if let Some(username) = username {
        from["username"] = json!(username);
    }
    serde_json::to_vec(&json!({"update_id": 1, "message": {
        "chat": {"id": chat, "type": "private"}, "from": from, "text": format!("/start {token}")
    }}))
    .unwrap()
}

/// The `(chat_id, text)` of every `sendMessage` the stand-in received, in order.
async fn sent_messages(server: &MockServer) -> Vec<(i64, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/sendMessage"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["parse_mode"], "HTML");
            (
                body["chat_id"].as_i64().unwrap(),
                body["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_username_other_than_the_accounts_is_refused_with_the_reason() {
    let server = MockServer::start().await;
    let host = Arc::new(FakeHost::default());
    *host.link_outcome.lock().unwrap() = Some(LinkOutcome::FieldMismatch {
        expected: "ann_t".into(),
    });
    let provider = webhook_provider(&server, host.clone()).await;
    for (chat, username) in [(5, Some("mallory")), (6, None)] {
        provider
            .handle_webhook(Some("s3cr3t"), &start_update(chat, "tok123", username))
            .await
            .unwrap();
    }
    assert_eq!(
        sent_messages(&server).await,
        vec![
            (
                5,
                "⛔ This link is for the Telegram account @ann_t, and this Telegram account is \
                 @mallory. Open the link while signed in to Telegram as @ann_t, or change the \
                 Telegram username in your PingPilot account settings."
                    .to_string()
            ),
            (
                6,
                "⛔ This link is for the Telegram account @ann_t, and this Telegram account has \
                 no username. Open the link while signed in to Telegram as @ann_t, or change the \
                 Telegram username in your PingPilot account settings."
                    .to_string()
            ),
        ]
    );
    let links = host.links.lock().unwrap();
    assert_eq!(
        links
            .iter()
            .map(|l| l.must_match.clone())
            .collect::<Vec<_>>(),
        vec![
            Some(("telegramUsername".into(), Some("mallory".into()))),
            Some(("telegramUsername".into(), None)),
        ]
    );
}

#[tokio::test]
async fn a_link_moved_to_another_chat_tells_the_chat_that_had_it() {
    let server = MockServer::start().await;
    let host = Arc::new(FakeHost::default());
    *host.link_outcome.lock().unwrap() = Some(LinkOutcome::Linked {
        account_name: "Acme & Co".into(),
        previous_state: Some(json!({"chatId": 1111, "username": "ann_t"})),
    });
    let provider = webhook_provider(&server, host.clone()).await;
    provider
        .handle_webhook(Some("s3cr3t"), &start_update(2222, "tok123", Some("Ann_T")))
        .await
        .unwrap();
    // Linking the chat that already had the link again tells no other chat.
    *host.link_outcome.lock().unwrap() = Some(LinkOutcome::Linked {
        account_name: "Acme & Co".into(),
        previous_state: Some(json!({"chatId": 2222, "username": "Ann_T"})),
    });
    provider
        .handle_webhook(Some("s3cr3t"), &start_update(2222, "tok456", Some("Ann_T")))
        .await
        .unwrap();
    let confirmation = "✅ This chat is now linked to PingPilot account <b>Acme &amp; Co</b>. \
        Notifications will arrive here.";
    assert_eq!(
        sent_messages(&server).await,
        vec![
            (2222, confirmation.to_string()),
            (
                1111,
                "⚠️ Notifications of PingPilot account <b>Acme &amp; Co</b> have moved to \
                 another chat and no longer arrive here. If you did not move them, open the \
                 Telegram link shown in your PingPilot account settings in this chat to bring \
                 them back."
                    .to_string()
            ),
            (2222, confirmation.to_string()),
        ]
    );
}

#[tokio::test]
async fn a_storage_failure_while_linking_is_answered_as_one() {
    let server = MockServer::start().await;
    let host = Arc::new(FakeHost::default());
    host.link_fails.store(true, Ordering::Relaxed);
    let provider = webhook_provider(&server, host.clone()).await;
    provider
        .handle_webhook(Some("s3cr3t"), &start_update(5, "tok123", Some("ann_t")))
        .await
        .unwrap();
    assert_eq!(
        sent_messages(&server).await,
        vec![(
            5,
            "⚠️ The chat could not be linked because of a server error. Please open the link \
             again in a minute."
                .to_string()
        )]
    );
}

#[tokio::test]
async fn a_second_message_to_the_same_chat_is_throttled_without_a_request() {
    let server = MockServer::start().await;
    send_message_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .expect(2)
        .mount(&server)
        .await;
    let provider = provider_for(&server, Arc::default());
    let state = json!({"chatId": 42});
    assert_eq!(
        deliver(provider.as_ref(), Some(&state)).await,
        DeliveryOutcome::Delivered {
            http_status: Some(200)
        }
    );
    match deliver(provider.as_ref(), Some(&state)).await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(500) && retry_after <= Duration::from_millis(1010),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    // Another chat is not held back by it.
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 43}))).await,
        DeliveryOutcome::Delivered {
            http_status: Some(200)
        }
    );
    let to_42 = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(r#""chat_id":42,"#))
        .count();
    assert_eq!(to_42, 1);
    server.verify().await;
}

#[tokio::test]
async fn a_429_holds_its_chat_back() {
    let server = MockServer::start().await;
    send_message_mock()
        .and(body_string_contains(r#""chat_id":42"#))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5",
            "parameters": {"retry_after": 5}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server, Arc::default());
    let state = json!({"chatId": 42});
    assert!(matches!(
        deliver(provider.as_ref(), Some(&state)).await,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            ..
        }
    ));
    match deliver(provider.as_ref(), Some(&state)).await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(4500) && retry_after <= Duration::from_secs(5),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    server.verify().await;
}

/// Answers `sendMessage` like Telegram and records when each request arrived.
struct Recorder {
    arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for Recorder {
    fn respond(&self, _request: &wiremock::Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_to_many_chats_never_exceeds_the_configured_rate() {
    // 40 deliveries to 40 chats at 20 messages/s, retried when throttled as the core does.
    let rate = 20;
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    send_message_mock()
        .respond_with(Recorder {
            arrivals: arrivals.clone(),
        })
        .mount(&server)
        .await;
    let provider = provider(
        &format!(
            "bot_token = \"{TOKEN}\"\napi_base = \"{}\"\nmessages_per_second = {rate}",
            server.uri()
        ),
        Arc::default(),
    );
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chat in 0..40 {
        let provider = provider.clone();
        tasks.spawn(async move {
            let state = json!({ "chatId": 1000 + chat });
            loop {
                match deliver(provider.as_ref(), Some(&state)).await {
                    DeliveryOutcome::Throttled { retry_after } => {
                        tokio::time::sleep(retry_after).await;
                    }
                    outcome => return outcome,
                }
            }
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(
            outcome.unwrap(),
            DeliveryOutcome::Delivered {
                http_status: Some(200)
            }
        );
    }
    let mut arrivals = arrivals.lock().unwrap().clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 40);
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            // Arrivals are timed at the stand-in, after connection set-up and scheduling on a
            // busy machine: allow one late arrival to bunch with the next by up to 75 ms.
            .take_while(|t| **t < *start + Duration::from_millis(925))
            .count();
        assert!(in_window <= rate, "{in_window} messages within one second");
    }
    // 39 intervals of 50.5 ms, plus scheduling slack.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

fn get_updates_requests(requests: &[wiremock::Request]) -> Vec<&wiremock::Request> {
    requests
        .iter()
        .filter(|r| r.url.path().ends_with("/getUpdates"))
        .collect()
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn only_the_lease_holder_polls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": []})))
        .mount(&server)
        .await;
    let host = Arc::new(FakeHost::default());
    host.lease_refused.store(true, Ordering::Relaxed);
    let provider = provider_for(&server, host.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn({
        let provider = provider.clone();
        async move { provider.run_background(shutdown).await }
    });

    // Another process holds the lease: nothing reaches Telegram.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(server.received_requests().await.unwrap().is_empty());
    // Taken for a whole long poll (1 s) and its request timeout (10 s), plus 10 s.
    assert_eq!(
        host.leases.lock().unwrap()[0],
        ("telegram-updates".to_string(), Duration::from_secs(21))
    );

    // Storage fails: still no polling, and the lease is asked for again.
    host.lease_fails.store(true, Ordering::Relaxed);
    let asked = host.lease_calls();
    wait_for("lease asked again", async || host.lease_calls() > asked + 1).await;
    assert!(server.received_requests().await.unwrap().is_empty());

    // The lease is this process's now: polling starts, renewing the lease before each poll.
    host.lease_fails.store(false, Ordering::Relaxed);
    host.lease_refused.store(false, Ordering::Relaxed);
    wait_for("polling starts", async || {
        get_updates_requests(&server.received_requests().await.unwrap()).len() >= 3
    })
    .await;
    let polls = get_updates_requests(&server.received_requests().await.unwrap()).len();
    let granted = host
        .leases
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name == "telegram-updates")
        .count();
    assert!(
        granted >= asked + 2 + polls,
        "{granted} leases, {polls} polls"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("polling stops promptly")
        .unwrap();
}

#[tokio::test]
async fn a_process_that_loses_the_lease_stops_polling_and_rereads_the_offset() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getUpdates")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": []})))
        .mount(&server)
        .await;
    let host = Arc::new(FakeHost::default());
    let provider = provider_for(&server, host.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn({
        let provider = provider.clone();
        async move { provider.run_background(shutdown).await }
    });
    wait_for("polling starts", async || {
        !get_updates_requests(&server.received_requests().await.unwrap()).is_empty()
    })
    .await;

    // Another process takes over and moves the offset on.
    host.lease_refused.store(true, Ordering::Relaxed);
    host.values
        .lock()
        .unwrap()
        .insert("telegram.update_offset".into(), "900".into());
    // A poll under way when the lease went ends first.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let polled = get_updates_requests(&server.received_requests().await.unwrap()).len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(get_updates_requests(&requests).len(), polled);
    assert!(
        get_updates_requests(&requests)
            .iter()
            .all(|r| String::from_utf8_lossy(&r.body).contains(r#""offset":0,"#))
    );

    // Back to this process: it goes on from the offset the other one saved.
    host.lease_refused.store(false, Ordering::Relaxed);
    wait_for("polling resumes from the saved offset", async || {
        get_updates_requests(&server.received_requests().await.unwrap())
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(r#""offset":900,"#))
    })
    .await;

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("polling stops promptly")
        .unwrap();
}

#[tokio::test]
async fn each_process_sends_its_share_of_the_bots_and_the_chats_budget() {
    // 30 messages/s for the bot, 1/s per chat, 3 relay processes: this one sends 10/s (101 ms
    // apart) and one message per chat every 3.03 s.
    let server = MockServer::start().await;
    send_message_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .expect(3)
        .mount(&server)
        .await;
    let host = Arc::new(FakeHost::default());
    host.processes.store(3, Ordering::Relaxed);
    let provider = provider_for(&server, host.clone());
    let delivered = DeliveryOutcome::Delivered {
        http_status: Some(200),
    };

    let started = std::time::Instant::now();
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await,
        delivered
    );
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 43}))).await,
        delivered
    );
    assert!(started.elapsed() >= Duration::from_millis(101));
    match deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(2000) && retry_after <= Duration::from_millis(3030),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }

    // The other processes left: the next booking uses the whole budgets.
    host.processes.store(1, Ordering::Relaxed);
    match deliver(provider.as_ref(), Some(&json!({"chatId": 42}))).await {
        DeliveryOutcome::Throttled { retry_after } => {
            assert!(
                retry_after <= Duration::from_millis(1010),
                "{retry_after:?}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        deliver(provider.as_ref(), Some(&json!({"chatId": 44}))).await,
        delivered
    );
    server.verify().await;
}
