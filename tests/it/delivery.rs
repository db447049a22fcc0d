//! Delivery to the stand-in Discord and Telegram: exact payloads, linking, retries, failures.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn an_event_reaches_discord_and_telegram_exactly_as_documented() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let created_at = event["createdAt"].as_str().expect("createdAt");

    // Discord: DM channel for the account's discordId, then the embed.
    let requests = relay.discord.received_requests().await.expect("recorded");
    let channel_call = requests
        .iter()
        .find(|r| r.url.path() == "/users/@me/channels")
        .expect("DM channel opened");
    assert_eq!(
        serde_json::from_slice::<Value>(&channel_call.body).expect("json"),
        json!({"recipient_id": DISCORD_ID})
    );
    let message = requests
        .iter()
        .find(|r| r.url.path() == format!("/channels/{DM_CHANNEL}/messages"))
        .expect("message sent");
    assert_eq!(
        message
            .headers
            .get("authorization")
            .expect("auth")
            .to_str()
            .expect("ascii"),
        format!("Bot {DISCORD_TOKEN}")
    );
    let agent = message
        .headers
        .get("user-agent")
        .expect("user agent")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        agent.starts_with("DiscordBot (")
            && agent.ends_with(&format!(", {})", env!("CARGO_PKG_VERSION"))),
        "{agent}"
    );
    let expected_embed = format!(
        r#"{{"embeds":[{{"title":"💰 Sale","description":"New purchase completed","color":16756782,"timestamp":"{created_at}","fields":[{{"name":"plan","value":"pro","inline":true}},{{"name":"amount","value":"99.99","inline":true}},{{"name":"recurring","value":"true","inline":true}}]}}]}}"#
    );
    assert_eq!(String::from_utf8_lossy(&message.body), expected_embed);

    // Telegram: HTML message to the linked chat.
    let sent = bodies_at(
        &relay.telegram,
        &format!("/bot{TELEGRAM_TOKEN}/sendMessage"),
    )
    .await;
    let delivered: Vec<&Value> = sent
        .iter()
        .filter(|b| b["text"].as_str().is_some_and(|t| t.contains("Sale")))
        .collect();
    assert_eq!(delivered.len(), 1, "{sent:?}");
    assert_eq!(
        delivered[0].to_string(),
        json!({"chat_id": TELEGRAM_CHAT,
               "text": "<b>💰 Sale</b>\nNew purchase completed\n\n<b>plan</b>: pro\n<b>amount</b>: 99.99\n<b>recurring</b>: true",
               "parse_mode": "HTML"})
        .to_string(),
    );

    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 2);
    for delivery in deliveries {
        assert_eq!(delivery["status"], "DELIVERED");
        assert_eq!(delivery["attempts"].as_array().map(Vec::len), Some(1));
        assert_eq!(delivery["attempts"][0]["httpStatus"], 200);
    }
    relay.stop().await;
}

#[tokio::test]
async fn html_is_escaped_and_the_default_description_and_bell_are_used() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (status, _) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "bug", "color": "#FF0000"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    relay.link_telegram(&key).await;
    let event_id = accepted_id(
        &relay,
        &key,
        json!({"category": "Bug", "fields": {"<tag>": "a & b"}}),
    )
    .await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED");
    assert_eq!(event["description"], "A new Bug event has occurred!");
    let sent = bodies_at(
        &relay.telegram,
        &format!("/bot{TELEGRAM_TOKEN}/sendMessage"),
    )
    .await;
    let text = sent
        .iter()
        .filter_map(|b| b["text"].as_str())
        .find(|t| t.contains("Bug"))
        .expect("sent");
    assert_eq!(
        text,
        "<b>🔔 Bug</b>\nA new Bug event has occurred!\n\n<b>&lt;tag&gt;</b>: a &amp; b"
    );
    let messages = bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages")).await;
    assert_eq!(messages[0]["embeds"][0]["title"], "🔔 Bug");
    assert_eq!(messages[0]["embeds"][0]["color"], 0xFF0000);
    relay.stop().await;
}

#[tokio::test]
async fn telegram_deliveries_wait_until_the_chat_is_linked_then_go_out() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (_, account) = relay
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    let telegram = channel_of(&account, "telegram");
    assert_eq!(telegram["provider"], "telegram");
    assert_eq!(telegram["linked"], false);
    assert_eq!(telegram["ready"], false);
    let link = telegram["linkUrl"].as_str().expect("link");
    let token = link
        .strip_prefix("https://t.me/PingPilotTestBot?start=")
        .expect("bot deep link");
    assert!(
        !token.is_empty()
            && token.len() <= 64
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
    assert!(!key.contains(token));

    let event_id = accepted_id(&relay, &key, sale_event()).await;
    // Discord goes out; Telegram waits with its reason.
    let mut waiting = Value::Null;
    for _ in 0..100 {
        let (_, event) = relay
            .call(
                Method::GET,
                &format!("/api/v1/events/{event_id}"),
                Some(&key),
                None,
            )
            .await;
        if event["deliveries"][0]["status"] == "DELIVERED"
            && event["deliveries"][1]["waitingReason"].is_string()
        {
            waiting = event;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting["deliveryStatus"], "PENDING", "{waiting}");
    assert_eq!(waiting["deliveries"][1]["status"], "PENDING");
    assert!(
        waiting["deliveries"][1]["waitingReason"]
            .as_str()
            .expect("reason")
            .contains("not linked")
    );
    assert_eq!(waiting["deliveries"][1]["attempts"], json!([]));

    relay.link_telegram(&key).await;
    // The bot confirms the link in the chat (right after the link is stored).
    let confirmed = |sent: &[Value]| {
        sent.iter().any(|b| {
            b["chat_id"] == TELEGRAM_CHAT
                && b["text"].as_str().is_some_and(|t| t.contains("linked"))
        })
    };
    let mut sent = Vec::new();
    for _ in 0..100 {
        sent = bodies_at(
            &relay.telegram,
            &format!("/bot{TELEGRAM_TOKEN}/sendMessage"),
        )
        .await;
        if confirmed(&sent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(confirmed(&sent), "{sent:?}");
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let (_, account) = relay
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    assert_eq!(channel_of(&account, "telegram")["linked"], true);
    assert_eq!(channel_of(&account, "telegram")["ready"], true);
    relay.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let relay = Relay::start_with("", false).await;
    mount_telegram_send_ok(&relay.telegram).await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": DM_CHANNEL})))
        .mount(&relay.discord)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&relay.discord)
        .await;
    mount_discord_ok(&relay.discord).await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let attempts = event["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["httpStatus"]).collect();
    assert_eq!(statuses, [&json!(502), &json!(502), &json!(200)]);
    assert!(
        attempts[0]["error"]
            .as_str()
            .expect("error text")
            .contains("502")
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_with_its_reason() {
    let relay = Relay::start_with("", false).await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(discord_dm_refused())
        .mount(&relay.discord)
        .await;
    let key = relay.discord_only_account().await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "FAILED", "{event}");
    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(
        deliveries.len(),
        1,
        "only the enabled channel gets a delivery"
    );
    assert_eq!(deliveries[0]["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(deliveries[0]["attempts"][0]["httpStatus"], 403);
    let reason = deliveries[0]["lastError"].as_str().expect("reason");
    assert!(reason.contains("50007"), "{reason}");
    relay.stop().await;
}

#[tokio::test]
async fn unconfigured_providers_let_the_server_start_and_deliveries_wait_with_the_reason() {
    let relay = Relay::start_with("", true).await;
    // A second relay on the same stand-ins but without tokens.
    let bare = Relay::start_with_config_text("").await;
    let key = bare.ready_account().await;
    let (_, account) = bare
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    let reason = channel_of(&account, "discord")["waitingReason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("providers.discord.bot_token"), "{reason}");
    let event_id = accepted_id(&bare, &key, sale_event()).await;
    let mut event = Value::Null;
    for _ in 0..100 {
        let (_, current) = bare
            .call(
                Method::GET,
                &format!("/api/v1/events/{event_id}"),
                Some(&key),
                None,
            )
            .await;
        if current["deliveries"][0]["waitingReason"].is_string()
            && current["deliveries"][1]["waitingReason"].is_string()
        {
            event = current;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(event["deliveryStatus"], "PENDING", "{event}");
    assert!(
        event["deliveries"][0]["waitingReason"]
            .as_str()
            .expect("reason")
            .contains("providers.discord.bot_token")
    );
    assert!(
        event["deliveries"][1]["waitingReason"]
            .as_str()
            .expect("reason")
            .contains("providers.telegram.bot_token")
    );
    bare.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn telegram_webhook_mode_verifies_the_secret_and_links_chats() {
    let relay = Relay::start_with("", true).await;
    let hooked = Relay::start_with_config_text(&format!(
        "[providers.telegram]\nbot_token = \"{TELEGRAM_TOKEN}\"\napi_base = \"{}\"\nbot_username = \"PingPilotTestBot\"\nmode = \"webhook\"\nwebhook_secret = \"s3cret\"\n",
        relay.telegram.uri()
    ))
    .await;
    let key = hooked.ready_account().await;
    let (_, account) = hooked
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    let link = channel_of(&account, "telegram")["linkUrl"]
        .as_str()
        .expect("link")
        .to_string();
    let token = link.rsplit("start=").next().expect("token");
    let update = start_update(token, TELEGRAM_CHAT, Some("test_user"));
    for secret in [None, Some("wrong")] {
        let mut request = hooked
            .request(Method::POST, "/api/v1/telegram/webhook")
            .json(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let response = request.send().await.expect("webhook");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(parse_body(&response.text().await.expect("body"))["message"].is_string());
    }
    let response = hooked
        .request(Method::POST, "/api/v1/telegram/webhook")
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret")
        .json(&update)
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, account) = hooked
        .call(Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    assert_eq!(channel_of(&account, "telegram")["linked"], true);
    // Discord takes no webhooks.
    let (status, body) = hooked
        .call(
            Method::POST,
            "/api/v1/discord/webhook",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    hooked.stop().await;
    relay.stop().await;
}
