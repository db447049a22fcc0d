//! Linking a Telegram chat with `/start <token>`: a token links once and is replaced, the
//! account's `telegramUsername` must be the user's who pressed Start, a move tells the old chat,
//! and two uses of one token at once link once.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

const CONFIRMATION: &str = "✅ This chat is now linked to PingPilot account <b>Test User</b>. \
    Notifications will arrive here.";
const UNKNOWN_LINK: &str = "❌ This link is invalid or was already used: each link works once. \
    Open the Telegram link shown now in your PingPilot account settings.";
const MOVED: &str = "⚠️ Notifications of PingPilot account <b>Test User</b> have moved to \
    another chat and no longer arrive here. If you did not move them, open the Telegram link \
    shown in your PingPilot account settings in this chat to bring them back.";

async fn telegram_channel(relay: &Relay, key: &str) -> Value {
    let (status, account) = relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    channel_of(&account, "telegram").clone()
}

/// Sends an event and returns the chat its Telegram message went to.
async fn chat_of_next_event(relay: &Relay, key: &str) -> i64 {
    let before = bodies_at(&relay.telegram, &send_message_path()).await.len();
    let event_id = accepted_id(relay, key, sale_event()).await;
    let event = relay.wait_final(key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let sent = bodies_at(&relay.telegram, &send_message_path()).await;
    let delivered: Vec<&Value> = sent[before..]
        .iter()
        .filter(|b| b["text"].as_str().is_some_and(|t| t.contains("Sale")))
        .collect();
    assert_eq!(delivered.len(), 1, "{sent:?}");
    delivered[0]["chat_id"].as_i64().expect("chat_id")
}

fn send_message_path() -> String {
    format!("/bot{TELEGRAM_TOKEN}/sendMessage")
}

#[tokio::test]
async fn telegram_a_link_token_links_once_and_is_replaced() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let first = relay.telegram_link_token(&key).await;
    relay.link_telegram(&key).await;
    assert_eq!(relay.telegram_texts(TELEGRAM_CHAT, 1).await, [CONFIRMATION]);

    let channel = telegram_channel(&relay, &key).await;
    assert_eq!(channel["linked"], true);
    let second = relay.telegram_link_token(&key).await;
    assert_ne!(
        second, first,
        "the account API shows a fresh link after use"
    );
    assert!(
        second.len() >= 32
            && second.len() <= 64
            && second
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{second}"
    );

    // The used token, even from the account's own Telegram user, and a token never issued:
    // answered in that chat, and nothing changes.
    let other_chat = 5150;
    relay
        .telegram_start(&first, other_chat, Some("test_user"))
        .await;
    assert_eq!(relay.telegram_texts(other_chat, 1).await, [UNKNOWN_LINK]);
    relay
        .telegram_start("never-issued-token", other_chat, Some("test_user"))
        .await;
    assert_eq!(
        relay.telegram_texts(other_chat, 2).await,
        [UNKNOWN_LINK, UNKNOWN_LINK]
    );
    assert_eq!(relay.telegram_link_token(&key).await, second);
    assert_eq!(telegram_channel(&relay, &key).await["linked"], true);
    assert_eq!(chat_of_next_event(&relay, &key).await, TELEGRAM_CHAT);
    relay.stop().await;
}

#[tokio::test]
async fn telegram_a_user_other_than_the_accounts_telegram_username_is_refused() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let token = relay.telegram_link_token(&key).await;
    let chat = 6160;

    relay.telegram_start(&token, chat, Some("mallory")).await;
    let refused = "⛔ This link is for the Telegram account @test_user, and this Telegram \
        account is @mallory. Open the link while signed in to Telegram as @test_user, or change \
        the Telegram username in your PingPilot account settings.";
    assert_eq!(relay.telegram_texts(chat, 1).await, [refused]);
    relay.telegram_start(&token, chat, None).await;
    let nameless = "⛔ This link is for the Telegram account @test_user, and this Telegram \
        account has no username. Open the link while signed in to Telegram as @test_user, or \
        change the Telegram username in your PingPilot account settings.";
    assert_eq!(relay.telegram_texts(chat, 2).await, [refused, nameless]);
    // Refusals change nothing: not linked, and the same link still works.
    let channel = telegram_channel(&relay, &key).await;
    assert_eq!(channel["linked"], false, "{channel}");
    assert_eq!(relay.telegram_link_token(&key).await, token);

    // The account's username in another case is the same Telegram user.
    relay.telegram_start(&token, chat, Some("Test_USER")).await;
    assert_eq!(
        relay.telegram_texts(chat, 3).await,
        [refused, nameless, CONFIRMATION]
    );
    assert_eq!(telegram_channel(&relay, &key).await["linked"], true);
    assert_ne!(relay.telegram_link_token(&key).await, token);

    // Without a telegramUsername on the account anyone holding the link may link it; intake
    // still asks for the field before events are sent.
    let (_, open_key) = relay.create_account(&[]).await;
    let open_token = relay.telegram_link_token(&open_key).await;
    relay.telegram_start(&open_token, 6161, None).await;
    assert_eq!(relay.telegram_texts(6161, 1).await, [CONFIRMATION]);
    assert_eq!(telegram_channel(&relay, &open_key).await["linked"], true);
    relay.stop().await;
}

#[tokio::test]
async fn telegram_moving_the_link_takes_the_current_token_and_tells_the_old_chat() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    assert_eq!(chat_of_next_event(&relay, &key).await, TELEGRAM_CHAT);

    let current = relay.telegram_link_token(&key).await;
    let new_chat = 7170;
    relay
        .telegram_start(&current, new_chat, Some("test_user"))
        .await;
    assert_eq!(relay.telegram_texts(new_chat, 1).await, [CONFIRMATION]);
    let old_chat = relay.telegram_texts(TELEGRAM_CHAT, 3).await;
    assert_eq!(old_chat[0], CONFIRMATION, "{old_chat:?}");
    assert!(old_chat[1].contains("Sale"), "the event: {old_chat:?}");
    assert_eq!(old_chat[2], MOVED);
    assert_ne!(relay.telegram_link_token(&key).await, current);
    assert_eq!(chat_of_next_event(&relay, &key).await, new_chat);
    relay.stop().await;
}

#[tokio::test]
async fn telegram_two_uses_of_one_token_at_once_link_one_chat() {
    let stand_in = Relay::start_with("", true).await;
    let relay = Relay::start_with_config_text(&format!(
        "[providers.telegram]\nbot_token = \"{TELEGRAM_TOKEN}\"\napi_base = \"{}\"\n\
         bot_username = \"PingPilotTestBot\"\nmode = \"webhook\"\nwebhook_secret = \"s3cret\"\n\
         messages_per_chat_per_second = 100\n",
        stand_in.telegram.uri()
    ))
    .await;
    let key = relay.ready_account().await;
    let token = relay.telegram_link_token(&key).await;
    let chats = [8181, 8182, 8183, 8184];
    let posts = chats.map(|chat| {
        let post = relay
            .request(Method::POST, "/api/v1/telegram/webhook")
            .header("X-Telegram-Bot-Api-Secret-Token", "s3cret")
            .json(&start_update(&token, chat, Some("test_user")));
        tokio::spawn(post.send())
    });
    for post in posts {
        let response = post.await.expect("task").expect("webhook");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut linked = Vec::new();
    for chat in chats {
        let texts = stand_in.telegram_texts(chat, 1).await;
        match texts.as_slice() {
            [text] if text == CONFIRMATION => linked.push(chat),
            [text] if text == UNKNOWN_LINK => {}
            other => panic!("chat {chat}: {other:?}"),
        }
    }
    assert_eq!(linked.len(), 1, "one chat links: {linked:?}");
    assert_eq!(telegram_channel(&relay, &key).await["linked"], true);
    assert_ne!(relay.telegram_link_token(&key).await, token);
    // The stand-in relay has no account: nothing else went to these chats.
    assert_eq!(
        bodies_at(&stand_in.telegram, &send_message_path())
            .await
            .len(),
        chats.len()
    );
    relay.stop().await;
    stand_in.stop().await;
}
