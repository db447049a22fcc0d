//! The provider against a wiremock stand-in for Discord's API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pingpilot_core::model::AccountId;
use pingpilot_core::provider::kit::testing::{self, TestHost};
use pingpilot_core::provider::{
    ChannelContext, DeliveryOutcome, DeliveryRequest, EventMessage, Provider, ProviderSection,
    ProviderSetup,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const RECIPIENT: &str = "123456789012345678";

fn registration() -> &'static ProviderRegistration {
    testing::registration(ID)
}

fn provider(toml: &str) -> Arc<dyn Provider> {
    testing::build(ID, toml).unwrap_or_else(|e| panic!("build failed: {e}"))
}

fn provider_for(server: &MockServer) -> Arc<dyn Provider> {
    provider(&format!(
        "bot_token = \"t0k\"\napi_base = \"{}/\"",
        server.uri()
    ))
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

async fn deliver(provider: &dyn Provider, recipient: &str) -> DeliveryOutcome {
    let msg = message();
    let fields = BTreeMap::from([(DISCORD_ID.to_string(), recipient.to_string())]);
    let account_id = AccountId::generate();
    provider
        .deliver(DeliveryRequest {
            delivery_id: 1,
            message: &msg,
            channel: ChannelContext {
                account_id: &account_id,
                fields: &fields,
                link_token: None,
                state: None,
                secret: None,
            },
        })
        .await
}

const MESSAGE_BODY: &str = r#"{"embeds":[{"title":"💰 Sale","description":"New purchase completed","color":16755200,"timestamp":"2024-01-02T03:04:05.000Z","fields":[{"name":"plan","value":"pro","inline":true},{"name":"amount","value":"99.99","inline":true}]}]}"#;

/// Exact `User-Agent` (wiremock's `header` matcher splits values at commas).
fn user_agent(request: &wiremock::Request) -> bool {
    request.headers.get("user-agent").map(|v| v.as_bytes())
        == Some(b"DiscordBot (https://example.test/pingpilot, 1.2.3)".as_slice())
}

async fn mock_dm(server: &MockServer, channel: &str, expected_calls: u64) {
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .and(header("authorization", "Bot t0k"))
        .and(user_agent)
        .and(header("content-type", "application/json"))
        .and(body_string(format!(r#"{{"recipient_id":"{RECIPIENT}"}}"#)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": channel, "type": 1})))
        .expect(expected_calls)
        .mount(server)
        .await;
}

fn message_mock(channel: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/channels/{channel}/messages")))
        .and(header("authorization", "Bot t0k"))
        .and(user_agent)
        .and(header("content-type", "application/json"))
        .and(body_string(MESSAGE_BODY))
}

#[test]
fn discord_ids_are_snowflakes() {
    assert_eq!(
        normalize_discord_id(" 123456789012345678 "),
        Ok(RECIPIENT.to_string())
    );
    assert!(normalize_discord_id("12345678901234567").is_ok());
    assert!(normalize_discord_id("12345678901234567890").is_ok());
    for bad in [
        "",
        "1234567890123456",
        "123456789012345678901",
        "12345678901234567a",
        "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧",
    ] {
        assert_eq!(
            normalize_discord_id(bad),
            Err("discordId must be a Discord user ID: 17 to 20 digits".to_string()),
            "{bad:?}"
        );
    }
}

#[test]
fn registration_declares_field_and_schema() {
    let reg = registration();
    assert_eq!((reg.order, reg.uses_link_token), (10, false));
    let field = &reg.account_fields[0];
    assert_eq!(field.name, "discordId");
    assert_eq!(
        field.missing_message,
        "Please enter your discord ID in your account settings"
    );
    assert_eq!(
        (field.schema)().get("pattern"),
        Some(&json!("^[0-9]{17,20}$"))
    );
    let schema = serde_json::to_value((reg.config_schema)()).unwrap();
    assert!(schema["properties"]["bot_token"].is_object());
    assert_eq!(
        schema["properties"]["api_base"]["default"],
        "https://discord.com/api/v10"
    );
}

#[test]
fn unknown_or_zero_settings_are_rejected() {
    let setup = |toml: &str| ProviderSetup {
        section: ProviderSection::from_toml("discord", toml),
        host: Arc::new(TestHost::default()),
        project_url: "u",
        version: "v",
    };
    let err = (registration().build)(setup("bot_tokn = \"x\""))
        .err()
        .unwrap();
    assert!(err.to_string().contains("bot_tokn"), "{err}");
    let err = (registration().build)(setup("requests_per_second = 0"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("providers.discord.requests_per_second"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_token_waits_without_http() {
    let provider = provider("bot_token = \"  \"");
    let expected = "Discord is not configured: set providers.discord.bot_token (env PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN)";
    assert_eq!(
        deliver(provider.as_ref(), RECIPIENT).await,
        DeliveryOutcome::Wait {
            reason: expected.into()
        }
    );
    let fields = BTreeMap::new();
    let status = provider.channel_status(&ChannelContext {
        account_id: &AccountId::generate(),
        fields: &fields,
        link_token: None,
        state: None,
        secret: None,
    });
    assert_eq!(status.waiting.as_deref(), Some(expected));
    assert_eq!(provider.not_configured().as_deref(), Some(expected));
}

#[tokio::test]
async fn delivers_with_exact_requests_and_caches_the_dm_channel() {
    let server = MockServer::start().await;
    mock_dm(&server, "900", 1).await;
    message_mock("900")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .expect(2)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    assert_eq!(provider.not_configured(), None);
    for _ in 0..2 {
        assert_eq!(
            deliver(provider.as_ref(), RECIPIENT).await,
            DeliveryOutcome::Delivered {
                http_status: Some(200)
            }
        );
    }
    server.verify().await;
}

#[tokio::test]
async fn dms_refused_fail_permanently() {
    let server = MockServer::start().await;
    mock_dm(&server, "900", 1).await;
    message_mock("900")
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"message": "Cannot send messages to this user", "code": 50007}),
            ),
        )
        .mount(&server)
        .await;
    assert_eq!(
        deliver(provider_for(&server).as_ref(), RECIPIENT).await,
        DeliveryOutcome::Failed {
            http_status: Some(403),
            error: "Discord 403 (code 50007): Cannot send messages to this user".into(),
        }
    );
}

#[tokio::test]
async fn server_errors_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"message": "500: Internal Server Error", "code": 0})),
        )
        .mount(&server)
        .await;
    assert_eq!(
        deliver(provider_for(&server).as_ref(), RECIPIENT).await,
        DeliveryOutcome::Retry {
            http_status: Some(500),
            error: "Discord 500 (code 0): 500: Internal Server Error".into(),
            retry_after: None,
        }
    );
}

#[tokio::test]
async fn rate_limited_retries_after_the_given_time() {
    let server = MockServer::start().await;
    mock_dm(&server, "900", 1).await;
    message_mock("900")
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": 2.5,
                    "global": false
                })),
        )
        .mount(&server)
        .await;
    assert_eq!(
        deliver(provider_for(&server).as_ref(), RECIPIENT).await,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            error: "Discord 429: You are being rate limited.".into(),
            retry_after: Some(Duration::from_millis(2500)),
        }
    );
}

#[tokio::test]
async fn a_stale_cached_channel_is_reopened_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "900"})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "901"})))
        .mount(&server)
        .await;
    message_mock("900")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    message_mock("900")
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Unknown Channel", "code": 10003})),
        )
        .mount(&server)
        .await;
    message_mock("901")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "2"})))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    for _ in 0..2 {
        assert_eq!(
            deliver(provider.as_ref(), RECIPIENT).await,
            DeliveryOutcome::Delivered {
                http_status: Some(200)
            }
        );
    }
    server.verify().await;
}

#[tokio::test]
async fn unreachable_api_retries_without_status() {
    // Nothing listens on port 9 of localhost in a test environment.
    let provider = provider("bot_token = \"t0k\"\napi_base = \"http://127.0.0.1:9\"");
    match deliver(provider.as_ref(), RECIPIENT).await {
        DeliveryOutcome::Retry {
            http_status: None,
            error,
            retry_after: None,
        } => {
            assert!(error.starts_with("Discord request failed: "), "{error}");
            assert!(!error.contains("t0k"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Answers 200 like Discord and records when each request arrived.
struct Recorder {
    arrivals: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for Recorder {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        // A DM channel named after its recipient; a message id otherwise.
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let id = body["recipient_id"].as_str().unwrap_or("1").to_string();
        ResponseTemplate::new(200).set_body_json(json!({ "id": id }))
    }
}

/// At most `rate` arrivals in any one-second window.
fn assert_within_rate(arrivals: &[std::time::Instant], rate: usize) {
    let mut arrivals = arrivals.to_vec();
    arrivals.sort();
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            // Arrivals are timed at the stand-in, after connection set-up and scheduling on a
            // busy machine: allow one late arrival to bunch with the next by up to 75 ms.
            .take_while(|t| **t < *start + Duration::from_millis(925))
            .count();
        assert!(in_window <= rate, "{in_window} requests within one second");
    }
}

#[tokio::test]
async fn a_route_with_nothing_remaining_is_throttled_without_a_request() {
    let server = MockServer::start().await;
    mock_dm(&server, "900", 1).await;
    message_mock("900")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "1"}))
                .insert_header("x-ratelimit-bucket", "d721dea6054f6322373d361f98e5c38b")
                .insert_header("x-ratelimit-limit", "5")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset-after", "2")
                .insert_header("x-ratelimit-scope", "user"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    assert_eq!(
        deliver(provider.as_ref(), RECIPIENT).await,
        DeliveryOutcome::Delivered {
            http_status: Some(200)
        }
    );
    match deliver(provider.as_ref(), RECIPIENT).await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(1500) && retry_after <= Duration::from_secs(2),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    // The DM channel stayed cached; the second delivery reached nothing.
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    server.verify().await;
}

#[tokio::test]
async fn a_global_429_throttles_every_recipient() {
    let server = MockServer::start().await;
    mock_dm(&server, "900", 1).await;
    message_mock("900")
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "message": "You are being rate limited.",
            "retry_after": 3.0,
            "global": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    assert!(matches!(
        deliver(provider.as_ref(), RECIPIENT).await,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            retry_after: Some(d),
            ..
        } if d == Duration::from_secs(3)
    ));
    // Another recipient: not even its DM channel is asked for.
    match deliver(provider.as_ref(), "876543210987654321").await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(2500) && retry_after <= Duration::from_secs(3),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_never_exceeds_the_configured_rate() {
    // 20 new recipients at 20 requests/s: 40 requests (DM, then message), retried when
    // throttled as the core does.
    let rate = 20;
    let server = MockServer::start().await;
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Recorder {
            arrivals: arrivals.clone(),
        })
        .mount(&server)
        .await;
    let provider = provider(&format!(
        "bot_token = \"t0k\"\napi_base = \"{}\"\nrequests_per_second = {rate}",
        server.uri()
    ));
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let provider = provider.clone();
        tasks.spawn(async move {
            let recipient = format!("1000000000000000{i:02}");
            loop {
                match deliver(provider.as_ref(), &recipient).await {
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
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 40);
    assert_within_rate(&arrivals, rate);
    // 39 intervals of 50.5 ms, plus scheduling slack.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn each_process_sends_its_share_of_the_token_budget() {
    // 30 requests/s for the token and 3 relay processes: this one sends 10/s, 101 ms apart.
    let server = MockServer::start().await;
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Recorder {
            arrivals: arrivals.clone(),
        })
        .mount(&server)
        .await;
    let host = TestHost::with_processes(3);
    let provider = (registration().build)(ProviderSetup {
        section: ProviderSection::from_toml(
            "discord",
            &format!(
                "bot_token = \"t0k\"\napi_base = \"{}\"\nrequests_per_second = 30",
                server.uri()
            ),
        ),
        host: host.clone(),
        project_url: "https://example.test/pingpilot",
        version: "1.2.3",
    })
    .unwrap_or_else(|e| panic!("build failed: {e}"));
    let delivered = DeliveryOutcome::Delivered {
        http_status: Some(200),
    };

    // Opening the DM, then the message one slot (101 ms) later.
    let started = std::time::Instant::now();
    assert_eq!(deliver(provider.as_ref(), RECIPIENT).await, delivered);
    assert!(started.elapsed() >= Duration::from_millis(101));
    assert_eq!(arrivals.lock().unwrap().len(), 2);

    // Thirty processes now: the next booking is 1.01 s after the last one, too far to wait for.
    host.set_processes(30);
    match deliver(provider.as_ref(), RECIPIENT).await {
        DeliveryOutcome::Throttled { retry_after } => assert!(
            retry_after > Duration::from_millis(500) && retry_after <= Duration::from_millis(1010),
            "{retry_after:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(arrivals.lock().unwrap().len(), 2);

    // Alone: the whole budget, 33.7 ms apart, so it goes at once.
    host.set_processes(1);
    assert_eq!(deliver(provider.as_ref(), RECIPIENT).await, delivered);
    assert_eq!(arrivals.lock().unwrap().len(), 3);
}
