//! Channels beyond Discord and Telegram, end to end: the webhook (signed as the Standard
//! Webhooks specification says, checked with its authors' library) and routing per category.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;

/// The stand-in receivers listen on 127.0.0.1, which a relay refuses unless told otherwise.
const LOCAL_WEBHOOKS: &str = "[providers.webhook]\nallow_private_targets = true\n\n\
                              [providers.slack]\nallow_private_targets = true\n";

async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

fn verify(secret: &str, request: &Request) -> bool {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.insert(name.clone(), value.clone());
    }
    standardwebhooks::Webhook::new(secret)
        .and_then(|webhook| webhook.verify(&request.body, &headers))
        .is_ok()
}

async fn create_category(relay: &Relay, key: &str, body: Value) -> Value {
    let (status, category) = relay
        .call(Method::POST, "/api/v1/categories", Some(key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{category}");
    category
}

/// An account with only the webhook on, pointed at `server`; its key and signing secret.
async fn webhook_account(relay: &Relay, server: &MockServer) -> (String, String) {
    let (_, key) = relay.create_account(&[]).await;
    let (status, account) = relay
        .patch_account(
            &key,
            json!({
                "webhookUrl": format!("{}/hook", server.uri()),
                "channels": {"discord": false, "telegram": false, "webhook": true},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let webhook = channel_of(&account, "webhook");
    assert_eq!(webhook["ready"], true, "{webhook}");
    let secret = webhook["signingSecret"]
        .as_str()
        .expect("a signing secret once the channel is on")
        .to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (key, secret)
}

#[tokio::test]
async fn a_webhook_delivers_signed_events_and_its_secret_can_be_replaced() {
    let relay = Relay::start_with(LOCAL_WEBHOOKS, true).await;
    let server = receiver().await;
    let (key, secret) = webhook_account(&relay, &server).await;
    create_category(&relay, &key, json!({"name": "sale", "color": "#00FF00"})).await;

    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/event?wait=5",
            Some(&key),
            Some(sale_event()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("eventId").to_string();
    let requests = server.received_requests().await.expect("recording");
    assert_eq!(requests.len(), 1);
    assert!(
        verify(&secret, &requests[0]),
        "signed with the shown secret"
    );
    assert_eq!(
        requests[0]
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok()),
        Some(event_id.as_str())
    );
    let payload: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(payload["type"], "event.created");
    assert_eq!(payload["data"]["eventId"], json!(event_id));
    assert_eq!(payload["data"]["fields"], sale_event()["fields"]);

    // The secret shown stays the same until it is replaced.
    let (_, account) = relay
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    assert_eq!(
        channel_of(&account, "webhook")["signingSecret"],
        json!(secret)
    );
    let (status, account) = relay
        .call(
            Method::POST,
            "/api/v1/account/channels/webhook/secret",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let rotated = channel_of(&account, "webhook")["signingSecret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(rotated, secret);
    let (status, _) = relay
        .call(
            Method::POST,
            "/api/v1/event?wait=5",
            Some(&key),
            Some(sale_event()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let requests = server.received_requests().await.expect("recording");
    assert!(verify(&rotated, &requests[1]));
    assert!(
        !verify(&secret, &requests[1]),
        "the old secret no longer signs"
    );

    for provider in ["discord", "pigeon"] {
        let (status, body) = relay
            .call(
                Method::POST,
                &format!("/api/v1/account/channels/{provider}/secret"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"message": "Channel has no signing secret"}));
    }
    relay.stop().await;
}

#[tokio::test]
async fn webhook_urls_on_the_relays_own_network_are_refused() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "http://localhost:9000/",
    ] {
        let (status, body) = relay.patch_account(&key, json!({"webhookUrl": url})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["errors"][0]["path"], "webhookUrl", "{body}");
    }
    let (status, body) = relay
        .patch_account(&key, json!({"webhookUrl": "ftp://example.com/"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = relay
        .patch_account(&key, json!({"webhookUrl": "https://1.1.1.1/hook"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhookUrl"], "https://1.1.1.1/hook");
    relay.stop().await;
}

/// A channel switched on without its field is refused at intake like the first two, with its
/// own message; accounts that never switched it on are not concerned.
#[tokio::test]
async fn a_new_channel_concerns_only_the_accounts_that_switch_it_on() {
    let relay = Relay::start_with(LOCAL_WEBHOOKS, true).await;
    let key = relay.ready_account().await;
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = relay
        .patch_account(&key, json!({"channels": {"webhook": true}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"message": "Please enter your webhook URL in your account settings"})
    );
    relay.stop().await;
}

/// The providers of an event's deliveries, in order.
async fn delivery_providers(relay: &Relay, key: &str, event_id: &str) -> Vec<String> {
    let event = relay.wait_final(key, event_id).await;
    event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["provider"].as_str().expect("provider").to_string())
        .collect()
}

#[tokio::test]
async fn a_category_routed_to_one_channel_reaches_only_it() {
    let relay = Relay::start_with(LOCAL_WEBHOOKS, true).await;
    let server = receiver().await;
    // Discord and the webhook on; Telegram on without its username.
    let (_, key) = relay.create_account(&["--discord-id", DISCORD_ID]).await;
    let (status, body) = relay
        .patch_account(
            &key,
            json!({"webhookUrl": format!("{}/hook", server.uri()), "channels": {"webhook": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let routed = create_category(
        &relay,
        &key,
        json!({"name": "deploy", "color": "#0000FF", "channels": ["webhook"]}),
    )
    .await;
    assert_eq!(routed["channels"], json!(["webhook"]));
    let everywhere =
        create_category(&relay, &key, json!({"name": "sale", "color": "#00FF00"})).await;
    assert_eq!(everywhere["channels"], Value::Null);

    // Telegram's missing username concerns only the events that would go to Telegram.
    let (status, body) = relay
        .send_event(
            &key,
            json!({"category": "deploy", "description": "v2 is out"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("id").to_string();
    assert_eq!(
        delivery_providers(&relay, &key, &event_id).await,
        ["webhook"]
    );
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "Telegram username not set. Please set your telegram username in your account settings to receive notifications"
    );
    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        1
    );
    assert!(
        bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages"))
            .await
            .is_empty(),
        "nothing reached Discord"
    );

    // Routed to Discord and Telegram, without Telegram on: Discord only.
    let (status, _) = relay
        .patch_account(&key, json!({"channels": {"telegram": false}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = relay
        .route_sale(&key, json!(["telegram", "discord", "telegram"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["channels"],
        json!(["discord", "telegram"]),
        "provider order, once each"
    );
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("id").to_string();
    assert_eq!(
        delivery_providers(&relay, &key, &event_id).await,
        ["discord"]
    );

    // Routed only to channels that are off: refused, saying so.
    let (status, _) = relay.route_sale(&key, json!(["telegram"])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"message": "None of this category's channels is enabled. Enable one in your account settings or change the category's channels"})
    );
    // Back to every channel the account has on.
    let (status, body) = relay.route_sale(&key, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["channels"], Value::Null);
    let (status, body) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("id").to_string();
    assert_eq!(
        delivery_providers(&relay, &key, &event_id).await,
        ["discord", "webhook"]
    );
    relay.stop().await;
}

#[tokio::test]
async fn category_channels_must_name_linked_providers() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let linked = linked_provider_ids().join(", ");
    for (channels, path, message) in [
        (
            json!(["discord", "pigeon"]),
            "channels[1]",
            format!("must be one of {linked}"),
        ),
        (
            json!([]),
            "channels",
            "must be a list of one or more channels, or null for every channel the account has on"
                .to_string(),
        ),
        (
            json!("discord"),
            "channels",
            "must be a list of one or more channels, or null for every channel the account has on"
                .to_string(),
        ),
    ] {
        let (status, body) = relay
            .call(
                Method::POST,
                "/api/v1/categories",
                Some(&key),
                Some(json!({"name": "sale", "color": "#00FF00", "channels": channels})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            body["errors"],
            json!([{"path": path, "message": message}]),
            "{body}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn slack_gets_a_block_kit_message_through_the_accounts_webhook() {
    let relay = Relay::start_with(LOCAL_WEBHOOKS, true).await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let (_, key) = relay.create_account(&[]).await;
    let (status, body) = relay
        .patch_account(
            &key,
            json!({
                "slackWebhookUrl": format!("{}/services/T1/B1/secret", slack.uri()),
                "channels": {"discord": false, "telegram": false, "slack": true},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(channel_of(&body, "slack")["ready"], true);
    create_category(
        &relay,
        &key,
        json!({"name": "sale", "color": "#00FF00", "emoji": "💰"}),
    )
    .await;
    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/event?wait=5",
            Some(&key),
            Some(json!({"category": "sale", "description": "<!channel> paid & done"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deliveryStatus"], "DELIVERED");
    let requests = slack.received_requests().await.expect("recording");
    let message: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(message["text"], "💰 Sale: &lt;!channel&gt; paid &amp; done");
    assert_eq!(message["blocks"][0]["text"]["text"], "💰 Sale");
    assert_eq!(
        message["blocks"][1]["text"]["text"],
        "&lt;!channel&gt; paid &amp; done"
    );
    relay.stop().await;
}
