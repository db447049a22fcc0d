//! The provider against a wiremock receiver; signatures checked by the Standard Webhooks
//! authors' own library.

use std::time::Duration;

use pingpilot_core::provider::kit::testing::{TestChannel, build, registration, sale};
use pingpilot_core::provider::{DeliveryOutcome, Provider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;

/// Receivers on this machine: the test's stand-in listens on 127.0.0.1.
fn local_provider() -> Arc<dyn Provider> {
    build(ID, "allow_private_targets = true").expect("builds")
}

async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(status).set_body_string("nope"))
        .mount(&server)
        .await;
    server
}

fn channel(server: &MockServer, secret: &str) -> TestChannel {
    TestChannel::with_fields(&[(WEBHOOK_URL, &format!("{}/hook", server.uri()))]).secret(secret)
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording")
}

fn verify(secret: &str, request: &Request) -> Result<(), standardwebhooks::WebhookError> {
    let mut headers = ::http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.insert(name.clone(), value.clone());
    }
    standardwebhooks::Webhook::new(secret)?.verify(&request.body, &headers)
}

#[test]
fn registers_off_for_older_accounts_with_a_secret() {
    let reg = registration(ID);
    assert_eq!((reg.order, reg.on_for_older_accounts), (30, false));
    assert!(reg.channel_secret.is_some());
    assert_eq!(reg.account_fields[0].name, "webhookUrl");
}

#[tokio::test]
async fn delivers_a_signed_event_that_the_specification_library_accepts() {
    let server = receiver(204).await;
    let secret = new_secret();
    let channel = channel(&server, &secret);
    let outcome = channel.deliver(&*local_provider(), &sale()).await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Delivered {
            http_status: Some(204)
        }
    );
    let requests = received(&server).await;
    let request = &requests[0];
    verify(&secret, request).expect("the signature verifies");
    assert!(
        verify(&new_secret(), request).is_err(),
        "another secret fails"
    );
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("webhook-id"), Some("evt_01JJ5Q7Y2K8D4M6N3P9R0S1T2V"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(
        header("user-agent"),
        Some("PingPilot (https://example.test/pingpilot, 1.2.3)")
    );
    let body: Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(
        body,
        json!({
            "type": "event.created",
            "timestamp": "2024-01-02T03:04:05.000Z",
            "data": {
                "eventId": "evt_01JJ5Q7Y2K8D4M6N3P9R0S1T2V",
                "category": "sale",
                "description": "New purchase completed",
                "fields": {"plan": "pro", "amount": 99.99, "recurring": true},
                "createdAt": "2024-01-02T03:04:05.000Z",
            }
        })
    );
}

#[tokio::test]
async fn a_retry_carries_the_same_id() {
    let server = receiver(503).await;
    let secret = new_secret();
    let channel = channel(&server, &secret);
    let provider = local_provider();
    for _ in 0..2 {
        let outcome = channel.deliver(&*provider, &sale()).await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Retry {
                http_status: Some(503),
                error: "webhook answered 503: nope".into(),
                retry_after: None,
            }
        );
    }
    let requests = received(&server).await;
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.headers.get("webhook-id").cloned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    for request in &requests {
        verify(&secret, request).expect("each attempt is signed");
    }
}

#[tokio::test]
async fn statuses_decide_the_outcome_and_retry_after_is_honoured() {
    let provider = local_provider();
    for (status, expected) in [
        (410, "failed"),
        (400, "failed"),
        (404, "failed"),
        (500, "retry"),
        (302, "retry"),
        (200, "delivered"),
    ] {
        let server = receiver(status).await;
        let outcome = channel(&server, &new_secret())
            .deliver(&*provider, &sale())
            .await;
        let got = match outcome {
            DeliveryOutcome::Delivered { .. } => "delivered",
            DeliveryOutcome::Failed { .. } => "failed",
            DeliveryOutcome::Retry { .. } => "retry",
            _ => "other",
        };
        assert_eq!(got, expected, "{status}");
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    let outcome = channel(&server, &new_secret())
        .deliver(&*provider, &sale())
        .await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Retry {
            http_status: Some(429),
            error: "webhook answered 429".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/other", server.uri())),
        )
        .mount(&server)
        .await;
    let outcome = channel(&server, &new_secret())
        .deliver(&*local_provider(), &sale())
        .await;
    assert!(
        matches!(
            outcome,
            DeliveryOutcome::Retry {
                http_status: Some(307),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn inward_urls_are_refused_when_set_and_when_sent() {
    let strict = build(ID, "").expect("builds");
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://localhost/",
    ] {
        let refused = strict.check_field(WEBHOOK_URL, url).await;
        assert!(refused.is_err(), "{url}");
    }
    assert_eq!(
        strict
            .check_field(WEBHOOK_URL, "https://1.1.1.1/hook")
            .await,
        Ok(())
    );
    // A URL set while private targets were allowed is refused on send once they are not.
    let server = receiver(204).await;
    let outcome = channel(&server, &new_secret())
        .deliver(&*strict, &sale())
        .await;
    let DeliveryOutcome::Failed {
        http_status: None,
        error,
    } = outcome
    else {
        panic!("refused: {outcome:?}");
    };
    assert!(
        error.starts_with("webhook URL refused: 127.0.0.1"),
        "{error}"
    );
    assert!(received(&server).await.is_empty());
}

#[test]
fn urls_are_checked_for_their_form() {
    assert_eq!(
        target::normalize_url(" https://hooks.example.com/in "),
        Ok("https://hooks.example.com/in".into())
    );
    assert!(target::normalize_url("ftp://example.com").is_err());
    assert!(target::normalize_url("hooks.example.com").is_err());
}

#[tokio::test]
async fn a_huge_answer_is_read_only_as_far_as_the_error_needs() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("x".repeat(8 * 1024 * 1024)))
        .mount(&server)
        .await;
    let outcome = channel(&server, &new_secret())
        .deliver(&*local_provider(), &sale())
        .await;
    let DeliveryOutcome::Retry { error, .. } = outcome else {
        panic!("retried: {outcome:?}");
    };
    assert_eq!(error, format!("webhook answered 500: {}…", "x".repeat(199)));
}
