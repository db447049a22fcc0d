//! The provider against a wiremock stand-in for Slack's incoming webhooks.

use std::time::Duration;

use pingpilot_core::provider::kit::testing::{TestChannel, build, registration, sale};
use pingpilot_core::provider::{DeliveryOutcome, Provider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn local_provider() -> Arc<dyn Provider> {
    build(ID, "allow_private_targets = true").expect("builds")
}

async fn slack(status: u16, body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .mount(&server)
        .await;
    server
}

fn channel(server: &MockServer, hook: &str) -> TestChannel {
    TestChannel::with_fields(&[(
        SLACK_WEBHOOK_URL,
        &format!("{}/services/{hook}", server.uri()),
    )])
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect()
}

#[test]
fn registers_off_for_older_accounts() {
    let reg = registration(ID);
    assert_eq!((reg.order, reg.on_for_older_accounts), (40, false));
    assert_eq!(reg.account_fields[0].name, "slackWebhookUrl");
}

#[tokio::test]
async fn posts_block_kit_with_a_text_fallback() {
    let server = slack(200, "ok").await;
    let outcome = channel(&server, "T1/B1/x")
        .deliver(&*local_provider(), &sale())
        .await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Delivered {
            http_status: Some(200)
        }
    );
    let requests = server.received_requests().await.expect("recording");
    assert_eq!(requests[0].url.path(), "/services/T1/B1/x");
    assert_eq!(
        requests[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(
        bodies(&server).await[0],
        json!({
            "text": "💰 Sale: New purchase completed",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "💰 Sale", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "New purchase completed"}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*plan*\npro"},
                    {"type": "mrkdwn", "text": "*amount*\n99.99"},
                    {"type": "mrkdwn", "text": "*recurring*\ntrue"},
                ]},
                {"type": "context", "elements": [{
                    "type": "mrkdwn",
                    "text": "<!date^1704164645^{date_short_pretty} {time}|2024-01-02T03:04:05.000Z> · evt_01JJ5Q7Y2K8D4M6N3P9R0S1T2V",
                }]},
            ],
        })
    );
}

#[test]
fn user_text_is_escaped_and_kept_within_slacks_limits() {
    assert_eq!(
        escape("a <!channel> & <b>", 100),
        "a &lt;!channel&gt; &amp; &lt;b&gt;"
    );
    assert_eq!(escape("abcdef", 4), "abc…");
    // An entity is never split: it goes whole or not at all.
    assert_eq!(escape("ab&cd", 5), "ab…");
    assert_eq!(escape("ab&", 7), "ab&amp;");
    let mut message = sale();
    message.description = "x".repeat(4096);
    message.fields = (0..25).map(|i| (format!("f{i}"), json!(i))).collect();
    let body = build_message(&message);
    let blocks = body["blocks"].as_array().expect("blocks");
    let description = blocks[1]["text"]["text"].as_str().expect("text");
    assert_eq!(description.chars().count(), 3000);
    assert!(description.ends_with('…'));
    // 25 fields in sections of at most 10.
    let sizes: Vec<usize> = blocks[2..5]
        .iter()
        .map(|b| b["fields"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(body["text"].as_str().map(|t| t.chars().count()), Some(3000));
}

#[tokio::test]
async fn one_message_per_second_per_webhook_url() {
    let server = slack(200, "ok").await;
    let provider = local_provider();
    let first = channel(&server, "A");
    assert!(matches!(
        first.deliver(&*provider, &sale()).await,
        DeliveryOutcome::Delivered { .. }
    ));
    // The same URL a moment later: put back for about a second, nothing sent.
    match first.deliver(&*provider, &sale()).await {
        // Throttled means the slot was further than a short wait; never past the spacing.
        DeliveryOutcome::Throttled { retry_after } => {
            assert!(
                retry_after <= Duration::from_millis(1010),
                "{retry_after:?}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    // Another webhook is not held up.
    assert!(matches!(
        channel(&server, "B").deliver(&*provider, &sale()).await,
        DeliveryOutcome::Delivered { .. }
    ));
    assert_eq!(bodies(&server).await.len(), 2);
}

#[tokio::test]
async fn a_429_pauses_its_webhook_and_asks_for_the_pause() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/A"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let provider = local_provider();
    let hook = channel(&server, "A");
    assert_eq!(
        hook.deliver(&*provider, &sale()).await,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            error: "Slack answered 429".into(),
            retry_after: Some(Duration::from_secs(30)),
        }
    );
    match hook.deliver(&*provider, &sale()).await {
        DeliveryOutcome::Throttled { retry_after } => {
            assert!(retry_after > Duration::from_secs(29), "{retry_after:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn removed_or_refused_webhooks_fail_and_slack_errors_retry() {
    let provider = local_provider();
    for (status, body, failed) in [
        (404, "no_service", true),
        (403, "action_prohibited", true),
        (410, "channel_is_archived", true),
        (400, "invalid_payload", true),
        (500, "rollup_error", false),
    ] {
        let server = slack(status, body).await;
        // One webhook per status: wiremock may hand out the same server again.
        let outcome = channel(&server, &format!("S{status}"))
            .deliver(&*provider, &sale())
            .await;
        let error = format!("Slack answered {status}: {body}");
        let expected = if failed {
            DeliveryOutcome::Failed {
                http_status: Some(status),
                error,
            }
        } else {
            DeliveryOutcome::Retry {
                http_status: Some(status),
                error,
                retry_after: None,
            }
        };
        assert_eq!(outcome, expected);
    }
}

#[tokio::test]
async fn inward_urls_are_refused() {
    let strict = build(ID, "").expect("builds");
    assert!(
        strict
            .check_field(SLACK_WEBHOOK_URL, "http://127.0.0.1/services/x")
            .await
            .is_err()
    );
    let server = slack(200, "ok").await;
    let outcome = channel(&server, "A").deliver(&*strict, &sale()).await;
    assert!(
        matches!(&outcome, DeliveryOutcome::Failed { error, .. } if error.starts_with("Slack URL refused")),
        "{outcome:?}"
    );
    assert!(bodies(&server).await.is_empty());
}
